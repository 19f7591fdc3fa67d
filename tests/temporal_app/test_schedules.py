"""The periodic jobs run as Temporal Schedules (temporal_app/schedules.py): once per period
however many worker processes run, visible to operators, and created idempotently by every
worker that starts."""

from __future__ import annotations

import subprocess
import threading

import pytest
from django.conf import settings

from devtools.devserver import temporal_binary
from temporal_app.registry import periodic, periodic_jobs_for, unregister_periodic
from temporal_app.schedules import SCHEDULE_PREFIX, ensure_schedule, job_schedule, schedule_id
from tests.conftest import WorkerThread
from tests.helpers import temporal, wait_until

pytestmark = pytest.mark.temporal

RUNS: list[str] = []
RUNS_LOCK = threading.Lock()


def counted_job() -> int:
    """A periodic job that notes which workflow run ran it."""
    from temporalio import activity

    with RUNS_LOCK:
        RUNS.append(activity.info().workflow_id)
        return len(RUNS)


def schedule_description(sid: str):
    return temporal(lambda client: client.get_schedule_handle(sid).describe())


def test_two_worker_processes_run_a_periodic_job_once_per_period(workers):
    """Issue 19, item 10: each worker process ran every periodic job on its own clock, so two
    processes ran each job twice per period (and shutdown waited for a running job)."""
    RUNS.clear()
    periodic(seconds=2)(counted_job)
    job = next(j for j in periodic_jobs_for("order-tq") if j.name.endswith(".counted_job"))
    sid = schedule_id(job)
    pair = [WorkerThread(threads=4), WorkerThread(threads=4)]  # the fewest slot_plan allows for two queues
    try:
        for thread in pair:
            thread.start()
        for thread in pair:
            assert thread.ready.wait(60) and thread.error is None
        # Both processes started; the schedule (created by whichever came first) runs the job.
        wait_until(lambda: len(RUNS) >= 3, timeout=60, what="three runs of the job")
        listed = subprocess.run(
            [
                temporal_binary(),
                "schedule",
                "list",
                "--address",
                settings.TEMPORAL_ADDRESS,
                "--namespace",
                settings.TEMPORAL_NAMESPACE,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        assert sid in listed
        temporal(lambda client: client.get_schedule_handle(sid).pause(note="test over"))
        wait_until(lambda: not schedule_description(sid).info.running_actions, what="the last run to end")
    finally:
        for thread in pair:
            thread.stop()
        unregister_periodic(job.name)
    info = schedule_description(sid).info
    temporal(lambda client: client.get_schedule_handle(sid).delete())
    # Each action the schedule took ran the job once, and nothing else ran it: not one run per
    # process per period.
    assert len(RUNS) == info.num_actions >= 3
    assert len(set(RUNS)) == len(RUNS)
    assert all(run.startswith(sid) for run in RUNS)


def test_a_schedule_is_created_once_and_follows_the_settings_interval(workers):
    periodic(seconds=3600)(counted_job)
    job = next(j for j in periodic_jobs_for("order-tq") if j.name.endswith(".counted_job"))
    sid = schedule_id(job)
    try:
        assert temporal(lambda client: ensure_schedule(client, job)) == "created"
        assert temporal(lambda client: ensure_schedule(client, job)) == "unchanged"
        temporal(lambda client: client.get_schedule_handle(sid).pause(note="paused by an operator"))
        periodic(seconds=600)(counted_job)  # the setting changed; the next worker start follows it
        job = next(j for j in periodic_jobs_for("order-tq") if j.name.endswith(".counted_job"))
        assert temporal(lambda client: ensure_schedule(client, job)) == "updated"
        schedule = schedule_description(sid).schedule
        assert [i.every.total_seconds() for i in schedule.spec.intervals] == [600]
        assert schedule.state.paused and schedule.state.note == "paused by an operator"
    finally:
        unregister_periodic(job.name)
        temporal(lambda client: client.get_schedule_handle(sid).delete())


def test_every_registered_job_has_its_schedule_on_the_workers_server(workers):
    """The session's workers created the apps' four jobs' schedules when they started."""

    async def ids(client):
        return {s.id async for s in await client.list_schedules()}

    wanted = {schedule_id(job) for job in periodic_jobs_for("order-tq")}
    assert {
        SCHEDULE_PREFIX + name
        for name in (
            "orderweb.activities.orphaned_orders_started",
            "orderweb.activities.webhooks_queued",
            "orderweb.activities.api_idempotency_keys_expired",
            "reviews.activities.orders_reconciled",
        )
    } <= wanted
    wait_until(lambda: wanted <= temporal(ids), what="the schedules to be listed")
    assert job_schedule(periodic_jobs_for("order-tq")[0]).policy.overlap.name == "SKIP"


def test_the_command_creates_or_updates_the_schedules_and_lists_them(workers):
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("periodic_schedules", stdout=out)
    lines = out.getvalue().splitlines()
    assert (
        f"{SCHEDULE_PREFIX}reviews.activities.orders_reconciled: every "
        f"{settings.RECONCILE_INTERVAL_SECONDS:g} s on order-tq (unchanged)" in lines
    )
    assert len(lines) == len(periodic_jobs_for("order-tq")) + len(periodic_jobs_for("shipping-tq"))


@pytest.mark.parametrize("args", [[], [42], [{"job": ""}], [{"job": "x"}, "extra"], [{"no": "job"}]])
def test_a_periodic_run_started_with_anything_but_a_job_name_is_refused_not_stuck(workers, args):
    """The boundary takes anything (DESIGN.md rule 9): a start that is not its schedule's ends at once."""
    import uuid

    async def run(client):
        return await client.execute_workflow(
            "PeriodicJobWorkflow", args=args, id=f"periodic-bad-{uuid.uuid4().hex[:8]}", task_queue="order-tq"
        )

    assert temporal(run) == "refused"


def test_a_schedule_left_behind_by_a_removed_job_fails_its_run_at_once(workers):
    import uuid

    from temporalio.client import WorkflowFailureError

    from temporal_app.contracts import PeriodicRun

    async def run(client):
        return await client.execute_workflow(
            "PeriodicJobWorkflow",
            PeriodicRun("orderweb.gone.job"),
            id=f"periodic-gone-{uuid.uuid4().hex[:8]}",
            task_queue="order-tq",
        )

    with pytest.raises(WorkflowFailureError) as failed:
        temporal(run)
    assert "no periodic job 'orderweb.gone.job' is registered" in str(failed.value.cause.cause)


def slow_job() -> str:
    """Longer than PeriodicJobWorkflow's heartbeat timeout, in one step (no batches)."""
    import time

    from temporal_app.workflows.periodic import PERIODIC_JOB_HEARTBEAT

    time.sleep(PERIODIC_JOB_HEARTBEAT.total_seconds() + 5)
    return "slow and done"


def test_a_job_longer_than_the_heartbeat_timeout_is_kept_alive_by_the_runner(workers):
    """The runner heartbeats while the job runs, so only a dead worker times a job out."""
    import uuid

    from temporal_app.contracts import PeriodicRun

    periodic(seconds=3600)(slow_job)
    job = next(j for j in periodic_jobs_for("order-tq") if j.name.endswith(".slow_job"))
    try:

        async def run(client):
            return await client.execute_workflow(
                "PeriodicJobWorkflow",
                PeriodicRun(job.name),
                id=f"periodic-slow-{uuid.uuid4().hex[:8]}",
                task_queue="order-tq",
            )

        assert temporal(run, timeout=120) == "slow and done"
    finally:
        unregister_periodic(job.name)
