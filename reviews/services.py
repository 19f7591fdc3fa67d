"""Review task services. Opening and closing follow the workflow (activities call them);
claiming and releasing are a reviewer's own coordination; deciding records who asked and then
asks the workflow (DecideReview), which alone changes the order. See docs/review-ui.md."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Optional

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from orderweb.models import Order, OrderEvent
from orderweb.services import order_event_record
from reviews.models import ReviewTask
from temporal_app.contracts import Errors, OrderState, ReviewDecision, Updates

# How a workflow's review outcome maps onto the task.
_OUTCOME_STATUS = {
    "approved": ReviewTask.Status.APPROVED,
    "rejected": ReviewTask.Status.REJECTED,
    "expired": ReviewTask.Status.EXPIRED,
    "cancelled": ReviewTask.Status.CANCELLED,
}


def review_task_open(*, order: Order, due_at: datetime) -> ReviewTask:
    """Open the order's review task, once: a retried activity finds the task it opened."""
    with transaction.atomic():
        task = ReviewTask.objects.filter(order=order).order_by("-pk").first()
        if task is not None:
            return task
        return ReviewTask.objects.create(order=order, due_at=due_at)


def review_task_close(
    *, order: Order, outcome: str, actor: str, note: str, decided_at: datetime
) -> None:
    """Close the open task with the workflow's outcome. A closed task is left as it is."""
    user = get_user_model().objects.filter(username=actor).first() if actor else None
    ReviewTask.objects.filter(order=order, status=ReviewTask.Status.OPEN).update(
        status=_OUTCOME_STATUS[outcome],
        decided_by=user if outcome in ("approved", "rejected") else None,
        decided_by_name=actor if outcome in ("approved", "rejected") else "",
        decided_at=decided_at,
        note=note,
    )


# -- reviewer actions (the review back office) ---------------------------------------------------
#
# Lock order, everywhere: the Order row first, then its ReviewTask. The workflow's projection
# (orderweb.services.order_record_progress) locks the order and then closes the task; taking the
# locks in the same order means a reviewer's click and a projection write queue up instead of
# deadlocking.

logger = logging.getLogger(__name__)

CLAIM_OK = "You claimed {order_id}."
CLAIM_ALREADY_YOURS = "You already hold {order_id}."
CLAIM_TAKEN = "{order_id} is already claimed by {user}."
RELEASE_OK = "You released {order_id}; it is back in the unclaimed queue."
RELEASE_NOT_CLAIMED = "{order_id} is not claimed by anyone."
RELEASE_NOT_YOURS = "{order_id} is claimed by {user}, not by you."
NO_OPEN_REVIEW = "{order_id} is not awaiting review (it is {state}); there is nothing to decide."

DECISION_UNKNOWN = "Choose approve or reject."
DECISION_NOTE_TOO_LONG = "The note is longer than {max} characters."
DECIDED_APPROVED = "{order_id} approved. Payment and shipping follow automatically."
DECIDED_REJECTED = "{order_id} rejected and cancelled. Reason: {note}"
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

MAX_NOTE_LENGTH = 2000


@dataclass
class DecisionOutcome:
    """What happened to a reviewer's decision, for the page that shows it."""

    accepted: bool
    level: str  # "success" | "info" | "warning" | "error" (django.contrib.messages levels)
    message: str
    workflow_status: str = ""


def _locked_order_and_task(*, order: Order) -> tuple[Order, Optional[ReviewTask]]:
    """Lock the order row, then its open review task (the consistent lock order)."""
    locked = Order.objects.select_for_update().get(pk=order.pk)
    task = (
        ReviewTask.objects.select_for_update(of=("self",))
        .select_related("claimed_by")
        .filter(order=locked, status=ReviewTask.Status.OPEN)
        .first()
    )
    return locked, task


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
        return REFUSED_ALREADY_DECIDED.format(
            order_id=order.order_id, outcome=task.status, who=_decider(task, username)
        )
    if task.status == ReviewTask.Status.EXPIRED:
        return REFUSED_TIMED_OUT.format(order_id=order.order_id)
    if task.status == ReviewTask.Status.CANCELLED:
        return REFUSED_CANCELLED.format(order_id=order.order_id, reason=order.cancel_reason or "cancelled")
    return NO_OPEN_REVIEW.format(order_id=order.order_id, state=order.status)


def review_task_claim(*, order: Order, user) -> str:
    """Take the order's open review so that colleagues see who is on it. Returns the message;
    raises ValidationError if the review is closed or someone else holds it."""
    with transaction.atomic():
        locked, task = _locked_order_and_task(order=order)
        if task is None:
            raise ValidationError(_closed_task_message(order=locked), code="review_closed")
        if task.claimed_by_id == user.pk:
            return CLAIM_ALREADY_YOURS.format(order_id=locked.order_id)
        if task.claimed_by_id is not None:
            raise ValidationError(
                CLAIM_TAKEN.format(order_id=locked.order_id, user=task.claimed_by.get_username()),
                code="review_claimed",
            )
        task.claimed_by, task.claimed_at = user, timezone.now()
        task.save(update_fields=["claimed_by", "claimed_at"])
        order_event_record(order=locked, type="review_claimed", user=user, source=OrderEvent.Source.WEB,
                           message="claimed the review")
    return CLAIM_OK.format(order_id=order.order_id)


def review_task_release(*, order: Order, user) -> str:
    """Give a claimed review back. Only its holder may, or a supervisor with
    ``reviews.change_reviewtask`` (for a colleague who went home)."""
    with transaction.atomic():
        locked, task = _locked_order_and_task(order=order)
        if task is None:
            raise ValidationError(_closed_task_message(order=locked), code="review_closed")
        if task.claimed_by_id is None:
            raise ValidationError(RELEASE_NOT_CLAIMED.format(order_id=locked.order_id), code="not_claimed")
        holder = task.claimed_by.get_username()
        if task.claimed_by_id != user.pk and not user.has_perm("reviews.change_reviewtask"):
            raise ValidationError(
                RELEASE_NOT_YOURS.format(order_id=locked.order_id, user=holder), code="not_yours"
            )
        task.claimed_by, task.claimed_at = None, None
        task.save(update_fields=["claimed_by", "claimed_at"])
        order_event_record(order=locked, type="review_released", user=user, source=OrderEvent.Source.WEB,
                           message=f"released the review held by {holder}", details={"holder": holder})
    return RELEASE_OK.format(order_id=order.order_id)


def _refusal_message(*, order: Order, reason: str, username: str) -> str:
    """Turn the workflow's refusal into what the reviewer needs to know, naming who or what won."""
    order.refresh_from_db()
    if reason == Errors.ALREADY_DECIDED:
        task = ReviewTask.objects.filter(order=order).exclude(status=ReviewTask.Status.OPEN).order_by("-pk").first()
        if task is not None and task.status in (ReviewTask.Status.APPROVED, ReviewTask.Status.REJECTED):
            return REFUSED_ALREADY_DECIDED.format(
                order_id=order.order_id, outcome=task.status, who=_decider(task, username)
            )
        return REFUSED_ALREADY_DECIDED_UNKNOWN.format(order_id=order.order_id)
    cancelled_state = Errors.NOT_AWAITING_REVIEW.format(state=OrderState.CANCELLED.value)
    if reason in (Errors.CANCEL_ALREADY_REQUESTED, cancelled_state) or (
        order.status == OrderState.CANCELLED and reason.startswith("The order's workflow")
    ):
        cancel_reason = order.cancel_reason or _workflow_reason(order)
        if cancel_reason == Errors.REVIEW_TIMED_OUT:
            return REFUSED_TIMED_OUT.format(order_id=order.order_id)
        return REFUSED_CANCELLED.format(order_id=order.order_id, reason=cancel_reason or "cancellation requested")
    for state in OrderState:
        if reason == Errors.NOT_AWAITING_REVIEW.format(state=state.value):
            return REFUSED_NOT_AWAITING.format(order_id=order.order_id, state=state.value)
    return REFUSED_OTHER.format(order_id=order.order_id, reason=reason)


def _workflow_reason(order: Order) -> str:
    """The workflow's own reason, when the projection has not caught up yet (best effort)."""
    from temporal_app.client import order_workflow_status

    try:
        return order_workflow_status(order.workflow_id).get("reason", "")
    except Exception:  # best effort: the refusal message still follows without the reason
        logger.warning("could not read %s's status for a refusal message", order.workflow_id, exc_info=True)
        return ""


def review_decide(*, order: Order, user, decision: str, note: str = "", action_id: str = "") -> DecisionOutcome:
    """Approve or reject an order in manual review, as ``user``, and report whether it took.

    1. In one short transaction: lock the order and its open task, check the task is open and
       not held by someone else, claim it if free, and audit the request (an OrderEvent keyed by
       the form's ``action_id``: a double submit of the same form hits the unique key and is
       sent once).
    2. After that commit (``on_commit`` of a durable block, so it runs right here and not in
       some outer transaction): the ``DecideReview`` Workflow Update. It returns once the
       workflow has projected the decision into Postgres, so the next page shows it.
    3. A refusal or an outage is audited too and comes back as a precise message.

    Nothing here writes the order's status: the workflow does.
    """
    from temporal_app.client import ActionRefused, TemporalUnavailable, order_workflow_update

    note = (note or "").strip()
    if decision not in ("approve", "reject"):
        raise ValidationError(DECISION_UNKNOWN, code="decision_unknown")
    if decision == "reject" and not note:
        raise ValidationError(Errors.REJECT_NEEDS_NOTE, code="note_required")
    if len(note) > MAX_NOTE_LENGTH:
        raise ValidationError(DECISION_NOTE_TOO_LONG.format(max=MAX_NOTE_LENGTH), code="note_too_long")
    action_id = action_id or str(uuid.uuid4())
    username = user.get_username()
    sent: dict = {}

    def send() -> None:
        try:
            sent["result"] = order_workflow_update(
                order.workflow_id,
                Updates.DECIDE_REVIEW,
                ReviewDecision(decision=decision, reviewer=username, note=note, action_id=action_id),
            )
        except (ActionRefused, TemporalUnavailable) as err:
            sent["error"] = err

    try:
        with transaction.atomic(durable=True):
            locked, task = _locked_order_and_task(order=order)
            event_key = f"web:decide:{action_id}"
            if OrderEvent.objects.filter(order=locked, event_key=event_key).exists():
                return DecisionOutcome(False, "info", DECISION_DUPLICATE.format(order_id=locked.order_id),
                                       locked.status)
            if task is None:
                message = _closed_task_message(order=locked, username=username)
                _audit_refusal(order=locked, user=user, decision=decision, action_id=action_id, message=message)
                return DecisionOutcome(False, "error", message, locked.status)
            if task.claimed_by_id not in (None, user.pk):
                message = DECISION_CLAIMED_BY_OTHER.format(
                    order_id=locked.order_id, user=task.claimed_by.get_username()
                )
                _audit_refusal(order=locked, user=user, decision=decision, action_id=action_id, message=message)
                return DecisionOutcome(False, "error", message, locked.status)
            if task.claimed_by_id is None:
                task.claimed_by, task.claimed_at = user, timezone.now()
                task.save(update_fields=["claimed_by", "claimed_at"])
            with transaction.atomic():  # savepoint: the duplicate check must not spoil the block
                order_event_record(
                    order=locked, type="review_decision_requested", user=user,
                    source=OrderEvent.Source.WEB, from_status=locked.status,
                    message=f"{decision} requested" + (f": {note}" if note else ""),
                    details={"decision": decision, "note": note, "action_id": action_id},
                    event_key=event_key,
                )
            transaction.on_commit(send, robust=False)
    except IntegrityError:
        # The same form was submitted twice: the first submit holds the key and sends once.
        return DecisionOutcome(False, "info", DECISION_DUPLICATE.format(order_id=order.order_id), order.status)

    if "error" in sent:
        err = sent["error"]
        if isinstance(err, TemporalUnavailable):
            message = DECISION_UNCONFIRMED.format(order_id=order.order_id, address=settings.TEMPORAL_ADDRESS)
            _audit_refusal(order=order, user=user, decision=decision, action_id=action_id, message=message,
                           type="review_decision_unconfirmed", error=str(err))
            return DecisionOutcome(False, "error", message, "")
        reason = str(err)
        if reason == Errors.DUPLICATE_ACTION:
            return DecisionOutcome(False, "info", DECISION_DUPLICATE.format(order_id=order.order_id), "")
        message = _refusal_message(order=order, reason=reason, username=username)
        _audit_refusal(order=order, user=user, decision=decision, action_id=action_id, message=message,
                       workflow_reason=reason)
        return DecisionOutcome(False, "error", message, order.status)
    result = sent["result"]
    if decision == "approve":
        message = DECIDED_APPROVED.format(order_id=order.order_id)
    else:
        message = DECIDED_REJECTED.format(order_id=order.order_id, note=note)
    return DecisionOutcome(True, "success", message, result.workflow_status)


def _audit_refusal(
    *, order: Order, user, decision: str, action_id: str, message: str,
    type: str = "review_decision_refused", workflow_reason: str = "", error: str = "",
) -> None:
    details = {"decision": decision, "action_id": action_id, "workflow_reason": workflow_reason}
    if error:
        details["error"] = error  # the technical detail, for whoever investigates
    order_event_record(
        order=order, type=type, user=user, source=OrderEvent.Source.WEB, message=message, details=details,
    )
