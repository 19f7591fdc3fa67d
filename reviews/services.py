"""Review task services. Opening and closing follow the workflow (activities call them);
claiming and releasing are a reviewer's own coordination; deciding goes through the one
service that asks a workflow (``orderweb.actions.workflow_action_send``), and the workflow alone
changes the order. See docs/review-ui.md.

Lock order, everywhere: the Order row first, then its ReviewTask. The workflow's projection
locks the order and then closes the task, so a reviewer's click and a projection write queue up
instead of deadlocking.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Optional, Union

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Subquery
from django.utils import timezone

from orderweb.actions import (
    REVIEW_DECISION,
    ActionOutcome,
    Outcome,
    Preparation,
    Unanswered,
    WorkflowRequest,
    workflow_action_send,
)
from orderweb.events import pg_text
from orderweb.models import Order, OrderEvent
from orderweb.reconcile import STOPPED_PROBLEMS, ReconcileReport, orders_reconcile
from reviews import events
from reviews.models import RejectReason, ReviewTask, RiskAssessment
from temporal_app.client import TemporalUnavailable, WorkflowGone, order_workflow_status
from temporal_app.contracts import (
    MAX_NOTE_LENGTH,
    OrderState,
    RefusalCode,
    ReviewDecision,
    ReviewOutcome,
)

logger = logging.getLogger(__name__)

# How a workflow's review outcome maps onto the task.
_OUTCOME_STATUS = {
    ReviewOutcome.APPROVED: ReviewTask.Status.APPROVED,
    ReviewOutcome.REJECTED: ReviewTask.Status.REJECTED,
    ReviewOutcome.EXPIRED: ReviewTask.Status.EXPIRED,
    ReviewOutcome.CANCELLED: ReviewTask.Status.CANCELLED,
}
_DECIDED_BY_PERSON = (ReviewOutcome.APPROVED, ReviewOutcome.REJECTED)


def review_task_open(
    *, order_pk: int, due_at: datetime, risk: Optional[RiskAssessment] = None, amount: Optional[Decimal] = None,
) -> None:
    """Open the order's review task. Called once, with the order's move to review (a retried
    activity does not move it again); the unique open task per order guards the rest. The task
    carries the order's risk and amount, which the queue sorts and filters by (neither changes)."""
    ReviewTask.objects.bulk_create([ReviewTask(
        order_id=order_pk, due_at=due_at, amount=amount,
        risk_score=risk.score if risk is not None else None, risk_level=risk.level if risk is not None else "",
    )], ignore_conflicts=True)


def review_task_close(
    *, order: Union[Order, int], outcome: ReviewOutcome, actor: str, note: str, reason_code: str = "",
    action_id: str = "",
) -> None:
    """Close the open task with the workflow's outcome, in one statement. A closed task is left
    as it is.

    ``actor`` is a name as any Temporal client sent it: it is kept as the decider's name, and
    linked to an account (``decided_by``) only when our own action path vouches for it, that is
    when this order's audit trail holds the decision's request under ``action_id``, made by that
    very account (``orderweb.actions.workflow_action_send`` writes it, with the signed-in user,
    before it sends the Update). A client that names a colleague gets the name, not the link."""
    person = outcome in _DECIDED_BY_PERSON
    actor = pg_text(actor)[:150]
    vouched = OrderEvent.objects.filter(
        order=order, type=OrderEvent.Type.REVIEW_DECISION_REQUESTED, event_key=f"{pg_text(action_id)}:requested",
        user__username=actor,
    ).values("user")[:1] if person and actor and action_id else None
    ReviewTask.objects.filter(order=order, status=ReviewTask.Status.OPEN).update(
        status=_OUTCOME_STATUS[outcome],
        decided_by=Subquery(vouched) if vouched is not None else None,
        decided_by_name=actor if person else "",
        decided_at=timezone.now(),
        note=pg_text(note),
        reason_code=pg_text(reason_code)[:40],
    )


def review_tasks_close_stopped() -> int:
    """Close the open tasks of orders whose workflow stopped without ending the review (closed
    or gone, as the reconciler flagged them): nobody can decide them any more. A stuck workflow
    may still carry on after a fix, so its review stays open. Idempotent."""
    stopped = OrderEvent.objects.filter(
        type=OrderEvent.Type.ATTENTION_FLAGGED, details__problem__in=list(STOPPED_PROBLEMS),
    ).values("order_id")
    return ReviewTask.objects.filter(
        status=ReviewTask.Status.OPEN, order__attention_since__isnull=False, order_id__in=stopped,
    ).update(status=ReviewTask.Status.STOPPED, decided_at=timezone.now(), note="the order's workflow stopped")


def orders_reconcile_with_reviews(*, grace_seconds: Optional[float] = None) -> ReconcileReport:
    """The reconciler (orderweb.reconcile), then the reviews it leaves no one to decide."""
    report = orders_reconcile(grace_seconds=grace_seconds)
    report.reviews_closed = review_tasks_close_stopped()
    return report


# -- reviewer actions (the review back office) ---------------------------------------------------

CLAIM_OK = "You claimed {order_id}."
CLAIM_ALREADY_YOURS = "You already hold {order_id}."
CLAIM_TAKEN = "{order_id} is already claimed by {user}."
RELEASE_OK = "You released {order_id}; it is back in the unclaimed queue."
RELEASE_NOT_CLAIMED = "{order_id} is not claimed by anyone."
RELEASE_NOT_YOURS = "{order_id} is claimed by {user}, not by you."
NO_OPEN_REVIEW = "{order_id} is not awaiting review (it is {state}); there is nothing to decide."

DECISION_UNKNOWN = "Choose approve or reject."
DECISION_NOTE_TOO_LONG = "The note is longer than {max} characters."
REJECT_REASON_REQUIRED = "Choose a reason for the rejection."
REJECT_REASON_UNKNOWN = "Unknown rejection reason {code!r}; use one of: {codes}."
REJECT_OTHER_NEEDS_NOTE = "Say why in the note when the reason is “Other”."
DECIDED_APPROVED = "{order_id} approved. Payment and shipping follow automatically."
DECIDED_REJECTED = "{order_id} rejected and cancelled. Reason: {reason}"
DECISION_DUPLICATE = "This decision for {order_id} was already submitted; it was sent once."
DECISION_CLAIMED_BY_OTHER = (
    "{order_id} is claimed by {user}; your decision was not applied. Ask them, or wait until "
    "they release it."
)
REFUSED_ALREADY_DECIDED = "{order_id} was already {outcome} by {who}; your decision was not applied."
REFUSED_ALREADY_DECIDED_UNKNOWN = "{order_id} was already decided by someone else; your decision was not applied."
REFUSED_CANCELLED = "{order_id} was cancelled ({reason}); your decision was not applied."
REFUSED_TIMED_OUT = (
    "The review of {order_id} timed out before your decision, so the order was cancelled; "
    "your decision was not applied."
)
REFUSED_NOT_AWAITING = "{order_id} is not awaiting review (it is {state}); your decision was not applied."
REFUSED_OTHER = "The workflow refused the decision for {order_id}: {reason}"
DECISION_UNCONFIRMED = (
    "The decision for {order_id} could not be confirmed: Temporal at {address} did not answer. "
    "Nothing is lost: reload the order in a moment and, if it still awaits review, decide again "
    "(a repeat can never apply twice)."
)
DECISION_NOT_SENT = (
    "The decision for {order_id} was not sent: the order workers are not answering, so it could not "
    "be applied now. Nothing changed and your claim was released; decide again once the live "
    "status is back."
)
DECISION_WORKFLOW_STUCK = (
    "The decision for {order_id} was not applied: the order's workflow cannot take decisions right "
    "now (its task keeps failing). Staff are told; your claim was released."
)


@dataclass
class DecisionOutcome:
    """What happened to a reviewer's decision, for the page that shows it."""

    accepted: bool
    level: str  # "success" | "info" | "warning" | "error" (django.contrib.messages levels)
    message: str
    workflow_status: str = ""
    code: str = ""  # the outcome's code when not accepted (a RefusalCode or an Unanswered value)


def _open_task_locked(order: Order) -> Optional[ReviewTask]:
    """The order's open review task, locked; the caller holds the order's row lock."""
    return (
        ReviewTask.objects.select_for_update(of=("self",)).select_related("claimed_by")
        .filter(order=order, status=ReviewTask.Status.OPEN).first()
    )


def _decider(task: ReviewTask, username: str) -> str:
    if task.decided_by_name and task.decided_by_name == username:
        return "you"
    return task.decided_by_name or "another client"


def _closed_task_message(*, order: Order, username: str = "") -> str:
    """Why there is no open task: the precise story of the order's latest review."""
    task = ReviewTask.objects.filter(order=order).order_by("-pk").first()
    if task is None:
        return NO_OPEN_REVIEW.format(order_id=order.order_id, state=order.status)
    if task.status in (ReviewTask.Status.APPROVED, ReviewTask.Status.REJECTED):
        return REFUSED_ALREADY_DECIDED.format(order_id=order.order_id, outcome=task.status, who=_decider(task, username))
    if task.status == ReviewTask.Status.EXPIRED:
        return REFUSED_TIMED_OUT.format(order_id=order.order_id)
    if task.status == ReviewTask.Status.CANCELLED:
        return REFUSED_CANCELLED.format(order_id=order.order_id, reason=order.cancel_reason or "cancelled")
    return NO_OPEN_REVIEW.format(order_id=order.order_id, state=order.status)


def review_task_claim(*, order: Order, user) -> str:
    """Take the order's open review so that colleagues see who is on it. Returns the message;
    raises ValidationError if the review is closed or someone else holds it."""
    with transaction.atomic():
        locked = Order.objects.select_for_update().get(pk=order.pk)
        task = _open_task_locked(locked)
        if task is None:
            raise ValidationError(_closed_task_message(order=locked), code="review_closed")
        if task.claimed_by_id == user.pk:
            return CLAIM_ALREADY_YOURS.format(order_id=locked.order_id)
        if task.claimed_by_id is not None:
            raise ValidationError(
                CLAIM_TAKEN.format(order_id=locked.order_id, user=task.claimed_by.get_username()), code="review_claimed",
            )
        task.claimed_by, task.claimed_at = user, timezone.now()
        task.save(update_fields=["claimed_by", "claimed_at"])
        events.review_claimed_event(order=locked, user=user)
    return CLAIM_OK.format(order_id=order.order_id)


def review_task_release(*, order: Order, user) -> str:
    """Give a claimed review back. Only its holder may, or a supervisor with
    ``reviews.change_reviewtask`` (for a colleague who went home)."""
    with transaction.atomic():
        locked = Order.objects.select_for_update().get(pk=order.pk)
        task = _open_task_locked(locked)
        if task is None:
            raise ValidationError(_closed_task_message(order=locked), code="review_closed")
        if task.claimed_by_id is None:
            raise ValidationError(RELEASE_NOT_CLAIMED.format(order_id=locked.order_id), code="not_claimed")
        holder = task.claimed_by.get_username()
        if task.claimed_by_id != user.pk and not user.has_perm("reviews.change_reviewtask"):
            raise ValidationError(RELEASE_NOT_YOURS.format(order_id=locked.order_id, user=holder), code="not_yours")
        task.claimed_by, task.claimed_at = None, None
        task.save(update_fields=["claimed_by", "claimed_at"])
        events.review_released_event(order=locked, user=user, holder=holder)
    return RELEASE_OK.format(order_id=order.order_id)


def _claim_release_after_failed_decision(*, order: Order, user) -> None:
    """Give back a claim the decision took, when the decision did not apply."""
    with transaction.atomic():
        locked = Order.objects.select_for_update().get(pk=order.pk)
        task = _open_task_locked(locked)
        if task is not None and task.claimed_by_id == user.pk:
            task.claimed_by, task.claimed_at = None, None
            task.save(update_fields=["claimed_by", "claimed_at"])
            events.review_released_event(order=locked, user=user, holder=user.get_username(),
                                         reason="released: the decision was not applied")


def review_decide(
    *, order: Order, user, decision: str, note: str = "", action_id: str = "", reason_code: str = "",
) -> DecisionOutcome:
    """Approve or reject an order in manual review, as ``user``, and report whether it took.

    In the request's transaction: the order's open task must be there and not held by someone
    else; a free task is claimed (and released again if the decision does not apply). Then the
    ``DecideReview`` Update, which answers once the workflow has projected the decision into
    Postgres, so the next page shows it. A form submitted twice (same ``action_id``) is sent once.
    """
    note = (note or "").strip()
    if decision not in ("approve", "reject"):
        raise ValidationError(DECISION_UNKNOWN, code="decision_unknown")
    if len(note) > MAX_NOTE_LENGTH:
        raise ValidationError(DECISION_NOTE_TOO_LONG.format(max=MAX_NOTE_LENGTH), code="note_too_long")
    reason_code = reject_reason_clean(reason_code, note) if decision == "reject" else ""
    reason = reject_reason_text(reason_code, note) if decision == "reject" else ""
    if decision == "reject":
        # The workflow records a rejection's note as the order's cancel reason: never empty.
        note = note or RejectReason(reason_code).label
    action_id = action_id or str(uuid.uuid4())
    username = user.get_username()

    def prepare(locked: Order) -> Preparation:
        task = _open_task_locked(locked)
        if task is None:
            message = _closed_task_message(order=locked, username=username)
            return Preparation(refusal=ActionOutcome(locked, Outcome.REFUSED, message, RefusalCode.NOT_AWAITING_REVIEW,
                                                     locked.status))
        if task.claimed_by_id not in (None, user.pk):
            message = DECISION_CLAIMED_BY_OTHER.format(order_id=locked.order_id, user=task.claimed_by.get_username())
            return Preparation(refusal=ActionOutcome(locked, Outcome.REFUSED, message, "claimed_by_other", locked.status))
        if task.claimed_by_id is not None:
            return Preparation()
        task.claimed_by, task.claimed_at = user, timezone.now()
        task.save(update_fields=["claimed_by", "claimed_at"])
        return Preparation(undo=lambda: _claim_release_after_failed_decision(order=locked, user=user))

    request = WorkflowRequest(
        REVIEW_DECISION,
        ReviewDecision(decision=decision, reviewer=username, note=note, action_id=action_id, reason_code=reason_code),
        action_id, f"{decision} requested" + (f": {note}" if note else ""),
        {"decision": decision, "note": note, "reason_code": reason_code},
    )
    outcome = workflow_action_send(
        order=order, request=request, acting_user=user, source=OrderEvent.Source.WEB, prepare=prepare,
        describe=lambda answer: _decision_words(order, answer, username=username, decision=decision, reason=reason),
    )
    if outcome.accepted:
        return DecisionOutcome(True, "success", outcome.message, outcome.workflow_status)
    level = "info" if outcome.code == RefusalCode.DUPLICATE_ACTION else "error"
    return DecisionOutcome(False, level, outcome.message, outcome.workflow_status, outcome.code)


def reject_reason_clean(reason_code: str, note: str) -> str:
    """A rejection's code: required, one of ``RejectReason``; “other” needs the note to say why."""
    code = (reason_code or "").strip()
    if not code:
        raise ValidationError(REJECT_REASON_REQUIRED, code="reason_required")
    if code not in RejectReason.values:
        raise ValidationError(REJECT_REASON_UNKNOWN.format(code=code[:40], codes=", ".join(RejectReason.values)),
                              code="reason_unknown")
    if code == RejectReason.OTHER and not note.strip():
        raise ValidationError(REJECT_OTHER_NEEDS_NOTE, code="note_required")
    return code


def reject_reason_text(reason_code: str, note: str) -> str:
    """The reason as people read it: the code's label, and the note when there is one."""
    label = RejectReason(reason_code).label
    return f"{label}: {note}" if note and note != label else label


def _decision_words(order: Order, outcome: ActionOutcome, *, username: str, decision: str, reason: str) -> ActionOutcome:
    """The outcome in the words the reviewer needs: who or what won, when it was not theirs."""
    if outcome.accepted:
        message = (DECIDED_APPROVED.format(order_id=order.order_id) if decision == "approve"
                   else DECIDED_REJECTED.format(order_id=order.order_id, reason=reason))
    elif outcome.code == Unanswered.WORKFLOW_STUCK:
        message = DECISION_WORKFLOW_STUCK.format(order_id=order.order_id)
    elif outcome.code == Unanswered.WORKERS_DOWN:
        message = DECISION_NOT_SENT.format(order_id=order.order_id)
    elif outcome.status == Outcome.UNANSWERED:
        message = DECISION_UNCONFIRMED.format(order_id=order.order_id, address=settings.TEMPORAL_ADDRESS)
    else:
        message = _refusal_message(order=order, outcome=outcome, username=username)
    return ActionOutcome(outcome.order, outcome.status, message, outcome.code, outcome.workflow_status)


def _refusal_message(*, order: Order, outcome: ActionOutcome, username: str) -> str:
    order.refresh_from_db(fields=["status", "cancel_reason"])  # what the workflow has projected by now
    code = outcome.code
    if code == RefusalCode.DUPLICATE_ACTION:
        return DECISION_DUPLICATE.format(order_id=order.order_id)
    if code == RefusalCode.ALREADY_DECIDED:
        task = ReviewTask.objects.filter(order=order).exclude(status=ReviewTask.Status.OPEN).order_by("-pk").first()
        if task is not None and task.status in (ReviewTask.Status.APPROVED, ReviewTask.Status.REJECTED):
            return REFUSED_ALREADY_DECIDED.format(order_id=order.order_id, outcome=task.status,
                                                  who=_decider(task, username))
        return REFUSED_ALREADY_DECIDED_UNKNOWN.format(order_id=order.order_id)
    state = outcome.workflow_status or order.status
    cancelled = code == RefusalCode.CANCEL_ALREADY_REQUESTED or (
        code in (RefusalCode.NOT_AWAITING_REVIEW, RefusalCode.WORKFLOW_CLOSED, RefusalCode.ALREADY_FINISHED)
        and OrderState.CANCELLED in (state, order.status)
    )
    if cancelled:
        ending = _workflow_ending(order)
        if ending.get("review_outcome") == ReviewOutcome.EXPIRED:
            return REFUSED_TIMED_OUT.format(order_id=order.order_id)
        reason = order.cancel_reason or ending.get("reason") or "cancellation requested"
        return REFUSED_CANCELLED.format(order_id=order.order_id, reason=reason)
    if code in (RefusalCode.NOT_AWAITING_REVIEW, RefusalCode.ALREADY_FINISHED, RefusalCode.WORKFLOW_CLOSED):
        return REFUSED_NOT_AWAITING.format(order_id=order.order_id, state=state)
    return REFUSED_OTHER.format(order_id=order.order_id, reason=outcome.message)


def _workflow_ending(order: Order) -> dict:
    """How the order ended (its reason, how its review ended): from the ending's audit row, or
    from the workflow itself when the projection has not caught up yet (best effort: the
    message still says what happened without it)."""
    ending = order.events.filter(type=OrderEvent.Type.ORDER_CANCELLED).first()
    if ending is not None:
        return {"reason": ending.message, "review_outcome": ending.details.get("review_outcome")}
    try:
        return order_workflow_status(order.workflow_id)
    except (TemporalUnavailable, WorkflowGone) as err:
        logger.warning("could not read %s's status for a refusal message: %s", order.workflow_id, err)
        return {}
