"""Timeouts and retry policies of the workflows' steps, in one place."""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

from temporal_app.contracts import Errors

ACTIVITY_TIMEOUT = timedelta(seconds=30)
PROJECTION_TIMEOUT = timedelta(seconds=10)

# Steps that only need Postgres retry until it is back (giving up would lose the order), except
# for a fault that no retry can fix (a data or integrity error), which the activity marks as
# non-retryable (Errors.PERMANENT) and the workflow turns into a refund and a failed order.
RETRY_FOREVER = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=[Errors.PERMANENT],
)
# Bad input is refused at once; only transient faults are retried.
VALIDATION_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=[Errors.VALIDATION_FAILED, Errors.PERMANENT],
)
PAYMENT_ATTEMPTS = 10
PAYMENT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=PAYMENT_ATTEMPTS,
    non_retryable_error_types=[Errors.PAYMENT_DECLINED, Errors.PERMANENT],
)
# After these attempts the child reports the failure to the parent and waits for staff.
DISPATCH_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=3,
    non_retryable_error_types=[Errors.PERMANENT],
)
# Local activities that write the projection: short first retry, then as RETRY_FOREVER.
PROJECTION_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    non_retryable_error_types=[Errors.PERMANENT],
)
# Webhooks: one POST per attempt, retried with backoff up to 10 minutes apart until the
# delivery's time is up (WebhookInput.give_up_after_seconds).
WEBHOOK_ATTEMPT_TIMEOUT = timedelta(seconds=30)
WEBHOOK_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
    non_retryable_error_types=[Errors.PERMANENT],
)
# Reading who cancelled a workflow from its history: best effort, the cancel goes on without it.
LOOKUP_RETRY = RetryPolicy(maximum_attempts=3)
