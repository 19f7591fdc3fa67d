"""The workflows' short database steps: local activities, with a limit.

A local activity runs inside the workflow's task, so it costs no round trip to the server and
one marker in the history: the right shape for the steps that write Postgres in milliseconds
(``order_received``, ``order_validated``, ``package_prepared`` and the projection writes). But
while one keeps retrying, the task stays open and the SDK renews it about every 8 s (three
history events each time), and signals and Updates wait for it. So a step gets
``LOCAL_STEP_ATTEMPTS`` local attempts, with its policy's backoff (about 3 s in all for a
projection write, 15 s for the first steps, when Postgres refuses at once); a step still
failing then (Postgres down for longer than a blip) goes on as a regular activity with the same
retry policy, which retries on the server's clock for as long as it takes, adds nothing to the
history meanwhile, and leaves the workflow free to take messages. Every step is idempotent by a
database constraint, so a local attempt still running when the regular one starts writes nothing
twice.

Replay-safe: the fallback is chosen by data in the history (the local activity's failure in its
marker, which no history recorded before this change holds, since those retried without end),
and behind ``workflow.patched(BOUNDED_LOCAL_STEPS_PATCH)``, called only on that path, so an
order that never falls back pays no marker (docs/determinism.md).
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any, Optional

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError

BOUNDED_LOCAL_STEPS_PATCH = "issue-19-bounded-local-steps"
# Attempts, not a schedule-to-close timeout: temporalio 1.35's core does not end a local
# activity's retries at its schedule-to-close timeout (measured: still retrying after 45 s of a
# 6 s one), while maximum_attempts ends them (4 attempts: 7.5 s).
LOCAL_STEP_ATTEMPTS = 5


def _gave_up_on_time(err: BaseException, retry_policy: RetryPolicy) -> bool:
    """The local attempts ran out of time (or attempts) on a fault that a retry may fix; not a
    refusal the step meant (non-retryable, or one of the policy's non-retryable types)."""
    while True:
        if isinstance(err, TimeoutError):
            return True
        if isinstance(err, ApplicationError):
            return not err.non_retryable and err.type not in (retry_policy.non_retryable_error_types or ())
        if isinstance(err, ActivityError) and err.__cause__ is not None:
            err = err.__cause__
            continue
        return False


async def db_step(
    activity: str,
    arg: Any,
    *,
    start_to_close_timeout: timedelta,
    retry_policy: RetryPolicy,
    result_type: Optional[type] = None,
) -> Any:
    """Run a short database step as a local activity; after LOCAL_STEP_ATTEMPTS failed attempts,
    as a regular one with ``retry_policy`` (its own limit, if any, then applies again)."""
    local_attempts = min(retry_policy.maximum_attempts or LOCAL_STEP_ATTEMPTS, LOCAL_STEP_ATTEMPTS)
    try:
        return await workflow.execute_local_activity(
            activity,
            arg,
            result_type=result_type,
            start_to_close_timeout=start_to_close_timeout,
            retry_policy=dataclasses.replace(retry_policy, maximum_attempts=local_attempts),
        )
    except (ActivityError, ApplicationError, TimeoutError) as err:
        if not _gave_up_on_time(err, retry_policy) or not workflow.patched(BOUNDED_LOCAL_STEPS_PATCH):
            raise
        workflow.logger.warning(
            "%s failed %d local attempts; retrying it as a regular activity", activity, local_attempts
        )
    return await workflow.execute_activity(
        activity,
        arg,
        result_type=result_type,
        start_to_close_timeout=start_to_close_timeout,
        retry_policy=retry_policy,
    )
