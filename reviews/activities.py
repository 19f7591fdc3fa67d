"""The workflow's steps that open and close the manual review, as Temporal activities.

Each moves the order and its review task together, in one transaction: the order waits for a
review exactly when a task is open. Registered with ``temporal_app.registry``.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone as dt_timezone

from django.conf import settings
from django.db import transaction
from temporalio.exceptions import ApplicationError

from orderweb.models import Order
from orderweb.services import order_advance, order_record_progress
from reviews.risk import risk_assess
from reviews.services import orders_reconcile_with_reviews, review_task_close, review_task_open
from temporal_app.contracts import (
    ORDER_TASK_QUEUE,
    Activities,
    Errors,
    OrderState,
    ReviewOutcome,
    ReviewOutcomeRecord,
    ValidatedOrder,
    ValidateOrderInput,
    address_error,
)
from temporal_app.registry import db_activity, periodic

logger = logging.getLogger(__name__)


@db_activity(Activities.ORDER_VALIDATED, queue=ORDER_TASK_QUEUE)
def order_validated(request: ValidateOrderInput) -> ValidatedOrder:
    """The order is fit for review: it is scored (reviews/risk.py), moves to
    awaiting_manual_review and its task opens. Under REVIEW_POLICY=risky an order scoring below
    the threshold comes back ``approved_by_policy`` (the rule and its figures), and the workflow
    approves it as the actor "policy"."""
    due_at = datetime.fromtimestamp(request.review_due_epoch, tz=dt_timezone.utc)
    with transaction.atomic():
        order = Order.objects.select_for_update().get(order_id=request.order_id)
        # The workflow checked its input at the start; the row is checked too, as it may have
        # been written by another release.
        problem = address_error(order.address)
        if problem:
            raise ApplicationError(problem, type=Errors.VALIDATION_FAILED, non_retryable=True)
        order_advance(
            order=order, to_status=OrderState.AWAITING_MANUAL_REVIEW, event_key="validated",
            reason="order validated; waiting for manual review", details={"review_due": due_at.isoformat()},
        )
        risk = risk_assess(order=order)
        review_task_open(order=order, due_at=due_at, risk=risk)
    return ValidatedOrder(approved_by_policy=risk.approved_by_policy)


@db_activity(Activities.RECORD_REVIEW_OUTCOME, queue=ORDER_TASK_QUEUE)
def record_review_outcome(record: ReviewOutcomeRecord) -> None:
    """A transition that ends the review (approved, rejected, timed out, cancelled in review):
    the order's projection and the task's close in one write."""
    with transaction.atomic():
        order = order_record_progress(record.progress)
        review_task_close(order=order, outcome=ReviewOutcome(record.outcome), actor=record.reviewer, note=record.note,
                          reason_code=record.reason_code)


@periodic(seconds=settings.RECONCILE_INTERVAL_SECONDS, queue=ORDER_TASK_QUEUE)
def orders_reconciled() -> None:
    """What the workflows cannot report themselves (see ``orderweb.reconcile``); the review
    tasks of orders found stopped are closed, so the queue no longer offers them."""
    report = orders_reconcile_with_reviews()
    # Quiet when all is well: a line a minute that says nothing would bury the ones that matter.
    level = logging.WARNING if report.findings or report.unsettled_charges else logging.DEBUG
    for line in report.summary_lines():
        logger.log(level, "reconcile: %s", line)
