"""The periodic jobs as Temporal Schedules: one run per period, whatever the number of workers.

Each job registered with ``temporal_app.registry.periodic`` (the outbox sweep, the reconciler,
the webhook sweep, the Idempotency-Key purge) gets a Schedule, id ``periodic-<module.function>``,
that starts ``PeriodicJobWorkflow`` on the job's task queue every ``seconds``. The schedule, not
each worker process, decides when a job runs, so two or twenty worker processes run it once per
period; a run still going when the next falls due makes the schedule skip that one (overlap
SKIP); a failed run is retried a few times, then shows as failed in the schedule's recent
actions; and every run is a workflow in the Web UI (``temporal schedule list``, ``describe``).

The workers create the schedules of their queues when they start, or update one whose interval
or target no longer matches the settings (what an operator paused stays paused): idempotent, so
every worker process may do it. ``python manage.py periodic_schedules`` does the same, and lists
them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Optional

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError

from temporal_app.contracts import PeriodicRun
from temporal_app.registry import PeriodicJob, periodic_jobs_for

logger = logging.getLogger(__name__)

SCHEDULE_PREFIX = "periodic-"
WORKFLOW_TYPE = "PeriodicJobWorkflow"
# After an outage of the workers or of Temporal, a missed run is made up if it fell due at most
# this long ago (one run: the overlap policy skips the rest); older ones are dropped.
MIN_CATCHUP_WINDOW = timedelta(minutes=1)


def schedule_id(job: PeriodicJob) -> str:
    return f"{SCHEDULE_PREFIX}{job.name}"


def job_schedule(job: PeriodicJob, *, paused: bool = False, note: Optional[str] = None) -> Schedule:
    every = timedelta(seconds=job.seconds)
    return Schedule(
        action=ScheduleActionStartWorkflow(
            WORKFLOW_TYPE,
            PeriodicRun(job.name),
            id=schedule_id(job),
            task_queue=job.queue,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=max(every, MIN_CATCHUP_WINDOW)),
        state=ScheduleState(paused=paused, note=note or f"runs {job.name} every {job.seconds:g} s"),
    )


def _matches(current: Schedule, wanted: Schedule) -> bool:
    action, target = current.action, wanted.action
    if not isinstance(action, ScheduleActionStartWorkflow) or not isinstance(target, ScheduleActionStartWorkflow):
        return False
    intervals = [(i.every, i.offset) for i in current.spec.intervals]
    return (
        action.workflow == target.workflow
        and action.task_queue == target.task_queue
        and intervals == [(i.every, i.offset) for i in wanted.spec.intervals]
        and current.policy.overlap == wanted.policy.overlap
        and current.policy.catchup_window == wanted.policy.catchup_window
    )


async def ensure_schedule(client: Client, job: PeriodicJob) -> str:
    """Create the job's schedule, or bring an existing one in line with the settings. Returns
    "created", "updated" or "unchanged"."""
    wanted = job_schedule(job)
    try:
        await client.create_schedule(schedule_id(job), wanted)
        return "created"
    except ScheduleAlreadyRunningError:
        pass
    changed = False

    def update(input: ScheduleUpdateInput) -> ScheduleUpdate | None:
        nonlocal changed
        current = input.description.schedule
        if _matches(current, wanted):
            return None
        changed = True
        # The operator's pause and note are theirs to keep.
        return ScheduleUpdate(schedule=job_schedule(job, paused=current.state.paused, note=current.state.note))

    await client.get_schedule_handle(schedule_id(job)).update(update)
    return "updated" if changed else "unchanged"


async def ensure_schedules(client: Client, queues: Iterable[str]) -> dict[str, str]:
    """Every periodic job of ``queues`` has its schedule. A failure is logged, not fatal: the
    workers still run the orders, and the next start tries again."""
    outcomes: dict[str, str] = {}
    for job in [job for queue in queues for job in periodic_jobs_for(queue)]:
        try:
            outcomes[schedule_id(job)] = outcome = await ensure_schedule(client, job)
        except Exception as err:  # noqa: BLE001  (RPCError, or the connection lost meanwhile)
            detail = (
                err.message
                if isinstance(err, RPCError)
                else str(err).splitlines()[0]
                if str(err)
                else type(err).__name__
            )
            logger.error(
                "could not create or update the schedule %s (%s); the job does not run until it exists",
                schedule_id(job),
                detail,
            )
            outcomes[schedule_id(job)] = "failed"
            continue
        if outcome != "unchanged":
            logger.info("schedule %s %s: every %g s on %s", schedule_id(job), outcome, job.seconds, job.queue)
    return outcomes


async def periodic_schedule_ids(client: Client) -> list[str]:
    return sorted([s.id async for s in await client.list_schedules() if s.id.startswith(SCHEDULE_PREFIX)])


def all_jobs(queues: Sequence[str]) -> list[PeriodicJob]:
    return [job for queue in queues for job in periodic_jobs_for(queue)]
