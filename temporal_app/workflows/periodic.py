"""PeriodicJobWorkflow: one run of one periodic job, started by that job's Temporal Schedule.

The jobs (the outbox sweep, the reconciler, the webhook sweep, the Idempotency-Key purge) are
registered with ``temporal_app.registry.periodic``; ``temporal_app.schedules`` gives each a
Schedule that starts this workflow every period, one run at a time (a run still going when the
next falls due makes the schedule skip that one). The job itself is an activity, retried a few
times and then given up: the next period runs it again, and the failure stays visible in the
schedule's recent actions and the Web UI. Django-free and deterministic like the other
workflows; a start that is not its schedule's is refused, like theirs.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

from temporal_app.contracts import Activities, Errors, Refusal
from temporal_app.workflows import boundary

# The runner heartbeats every 5 s while the job runs (temporal_app.registry), so a worker that
# dies under a job is noticed in this long, not at the end of the whole allowance; meanwhile the
# schedule skips the runs that fall due.
PERIODIC_JOB_HEARTBEAT = timedelta(seconds=20)
PERIODIC_JOB_TIMEOUT = timedelta(minutes=10)
PERIODIC_JOB_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=3,
    non_retryable_error_types=[Errors.PERMANENT],
)


@workflow.defn(name="PeriodicJobWorkflow")
class PeriodicJobWorkflow:
    @workflow.run
    async def run(self, *args: Any) -> str:
        job = boundary.periodic_input(args)
        if isinstance(job, Refusal):
            workflow.logger.warning("periodic job refused: %s", job.message)
            return "refused"
        result = await workflow.execute_activity(
            Activities.PERIODIC_JOB_RAN,
            job.job,
            result_type=str,
            start_to_close_timeout=PERIODIC_JOB_TIMEOUT,
            heartbeat_timeout=PERIODIC_JOB_HEARTBEAT,
            retry_policy=PERIODIC_JOB_RETRY,
        )
        return result
