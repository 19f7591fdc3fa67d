"""The workflow's steps that open and close the manual review, as Temporal activities.

Each moves the order and its review task together, in one transaction: the order waits for a
review exactly when a task is open. Registered with ``temporal_app.registry``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from django.conf import settings
from django.db import transaction

from orderweb import events
from orderweb.models import Order
from orderweb.services import order_record_progress, order_transition
from reviews.risk import risk_assess, risk_policy_answer
from reviews.services import (
    orders_reconcile_with_reviews,
    review_rules_for,
    review_rules_stored,
    review_task_close,
    review_task_escalate,
    review_task_first_approval,
    review_task_open,
)
from temporal_app.contracts import (
    ORDER_TASK_QUEUE,
    Activities,
    OrderState,
    ProgressRecord,
    ReviewApprovalRecord,
    ReviewEscalation,
    ReviewOutcome,
    ReviewOutcomeRecord,
    ValidatedOrder,
    ValidateOrderInput,
)
from temporal_app.registry import db_activity, periodic

logger = logging.getLogger(__name__)


@db_activity(Activities.ORDER_VALIDATED, queue=ORDER_TASK_QUEUE)
def order_validated(request: ValidateOrderInput) -> ValidatedOrder:
    """The order is fit for review: it moves to awaiting_manual_review, is scored
    (reviews/risk.py) and its task opens. Under REVIEW_POLICY=risky an order scoring below the
    threshold comes back ``approved_by_policy`` (the rule and its figures), and the workflow
    approves it as the actor "policy".

    The workflow checked its input at the start (temporal_app.workflows.boundary), and so did
    order_create; the row's address is what one of them wrote."""
    due_at = datetime.fromtimestamp(request.review_due_epoch, tz=UTC)
    with transaction.atomic(), events.batch():
        pk = order_transition(
            order_id=request.order_id,
            to_status=OrderState.AWAITING_MANUAL_REVIEW,
            event_key="validated",
            reason="order validated; waiting for manual review",
            details={"review_due": due_at.isoformat()},
        )
        if pk is None:  # a retry finds the order moved on, its task opened and its risk stored
            rules = review_rules_stored(order_id=request.order_id)
            return rules.validated(risk_policy_answer(order_id=request.order_id))
        scored = risk_assess(order_pk=pk)
        rules = review_rules_for(amount=scored.amount, level=scored.assessment.level)
        review_task_open(order_pk=pk, due_at=due_at, risk=scored.assessment, amount=scored.amount, rules=rules)
    return rules.validated(scored.assessment.approved_by_policy)


@db_activity(Activities.REVIEW_ESCALATED, queue=ORDER_TASK_QUEUE)
def review_escalated(request: ReviewEscalation) -> bool:
    """The workflow's escalation timer fired on an undecided review: the leads are told (audit,
    task, webhook; the email after commit), once whatever the retries."""
    return review_task_escalate(
        order_id=request.order_id,
        waited_seconds=request.waited_seconds,
        review_due=datetime.fromtimestamp(request.review_due_epoch, tz=UTC),
    )


@db_activity(Activities.RECORD_REVIEW_APPROVAL, queue=ORDER_TASK_QUEUE)
def record_review_approval(record: ReviewApprovalRecord) -> None:
    """A four-eyes order's first approval: its audit event (keyed, once) and the task's record of
    it (who, when, the note; the approver's claim given back), in one transaction."""
    with transaction.atomic():
        # The order's row first (the lock order everywhere), then the approval's event, then the
        # task (so the timeline reads "approved, 1 of 2" before the claim's release).
        Order.objects.select_for_update().only("pk").get(order_id=record.progress.order_id)
        order_record_progress(record.progress)
        review_task_first_approval(order_id=record.progress.order_id, reviewer=record.reviewer, note=record.note)


# An order that stops without a review to close (the workflow's state says none is open) may
# still have an open task: order_validated commits it in a first workflow task that then fails
# (a worker killed, Temporal restarted) and is retried from `started`, where a cancel that came
# meanwhile stops the order before it reaches review again. Nobody could decide that task.
_ENDS_WITHOUT_REVIEW = {OrderState.CANCELLED.value, OrderState.FAILED.value}


@db_activity(Activities.RECORD_ORDER_PROGRESS, queue=ORDER_TASK_QUEUE)
def record_order_progress(record: ProgressRecord) -> None:
    """One workflow transition or message outcome (``order_record_progress``). An order that
    ends cancelled or failed this way closes, in the same transaction, a review task a retried
    first workflow task left open; the happy path (completed) keeps its single statement."""
    if record.to_status not in _ENDS_WITHOUT_REVIEW:
        order_record_progress(record)
        return
    with transaction.atomic():
        pk = order_record_progress(record)
        if pk is not None:
            review_task_close(order=pk, outcome=ReviewOutcome.CANCELLED, actor=record.actor, note=record.reason)


@db_activity(Activities.RECORD_REVIEW_OUTCOME, queue=ORDER_TASK_QUEUE)
def record_review_outcome(record: ReviewOutcomeRecord) -> None:
    """A transition that ends the review (approved, rejected, timed out, cancelled in review):
    the order's projection and the task's close in one write."""
    with transaction.atomic(), events.batch():
        pk = order_record_progress(record.progress)
        if pk is not None:
            review_task_close(
                order=pk,
                outcome=ReviewOutcome(record.outcome),
                actor=record.reviewer,
                note=record.note,
                reason_code=record.reason_code,
                action_id=record.action_id,
            )


@periodic(seconds=settings.RECONCILE_INTERVAL_SECONDS, queue=ORDER_TASK_QUEUE)
def orders_reconciled() -> None:
    """What the workflows cannot report themselves (see ``orderweb.reconcile``); the review
    tasks of orders found stopped are closed, so the queue no longer offers them."""
    report = orders_reconcile_with_reviews()
    # Quiet when all is well: a line a minute that says nothing would bury the ones that matter.
    level = logging.WARNING if report.findings or report.unsettled_charges else logging.DEBUG
    for line in report.summary_lines():
        logger.log(level, "reconcile: %s", line)
