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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Optional, Union

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import connections, transaction
from django.db.models import Subquery
from django.urls import reverse
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
from orderweb.models import Order, OrderEvent, WebhookDelivery
from orderweb.reconcile import STOPPED_PROBLEMS, ReconcileReport, orders_reconcile
from reviews import events
from reviews.models import RejectReason, ReviewTask, RiskAssessment, RiskLevel, claim_timeout
from reviews.selectors import duration_text
from temporal_app.client import TemporalUnavailable, WorkflowGone, order_workflow_status
from temporal_app.contracts import (
    FIRST_OF_TWO_APPROVALS,
    MAX_NOTE_LENGTH,
    OrderState,
    RefusalCode,
    ReviewDecision,
    ReviewOutcome,
    TimeoutAction,
    ValidatedOrder,
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


@dataclass(frozen=True)
class ReviewRules:
    """The review's rules for one order, from settings and what the order is (its amount and
    risk level): handed to the workflow in order_validated's result (``ValidatedOrder``), which
    enforces them, and copied onto the task for the pages."""

    escalate_after: float = 0.0
    timeout_action: str = TimeoutAction.EXPIRE
    timeout_rule: str = ""
    approvals_required: int = 1
    four_eyes_rule: str = ""

    def validated(self, approved_by_policy: str = "") -> ValidatedOrder:
        return ValidatedOrder(
            approved_by_policy=approved_by_policy,
            escalate_after=self.escalate_after,
            timeout_action=self.timeout_action,
            timeout_rule=self.timeout_rule,
            approvals_required=self.approvals_required,
            four_eyes_rule=self.four_eyes_rule,
        )


def review_rules_for(*, amount: Optional[Decimal], level: str) -> ReviewRules:
    """Four eyes (REVIEW_FOUR_EYES_AMOUNT, REVIEW_FOUR_EYES_LEVELS), the timeout's action by risk
    level (REVIEW_TIMEOUT_ACTION_<LEVEL>) and the escalation (REVIEW_ESCALATE_AFTER). A four-eyes
    order always expires: no policy stands in for the two people it needs. An order without a
    risk level (not assessed) expires too."""
    four_eyes = ""
    threshold = settings.REVIEW_FOUR_EYES_AMOUNT
    if threshold and amount is not None and amount >= Decimal(threshold):
        four_eyes = f"amount {amount} ≥ REVIEW_FOUR_EYES_AMOUNT {threshold}"
    elif level and level in settings.REVIEW_FOUR_EYES_LEVELS:
        four_eyes = f"{level} risk (REVIEW_FOUR_EYES_LEVELS={','.join(settings.REVIEW_FOUR_EYES_LEVELS)})"
    action, rule = TimeoutAction.EXPIRE, ""
    if level in RiskLevel.values and not four_eyes:
        name = f"REVIEW_TIMEOUT_ACTION_{level.upper()}"
        if getattr(settings, name) == TimeoutAction.APPROVE:
            action, rule = TimeoutAction.APPROVE, f"{name}=approve, {level} risk"
    return ReviewRules(
        escalate_after=settings.REVIEW_ESCALATE_AFTER,
        timeout_action=action,
        timeout_rule=rule,
        approvals_required=2 if four_eyes else 1,
        four_eyes_rule=four_eyes[:200],
    )


def review_task_open(
    *,
    order_pk: int,
    due_at: datetime,
    risk: Optional[RiskAssessment] = None,
    amount: Optional[Decimal] = None,
    rules: ReviewRules = ReviewRules(),
) -> None:
    """Open the order's review task. Called once, with the order's move to review (a retried
    activity does not move it again); the unique open task per order guards the rest. The task
    carries the order's risk and amount, which the queue sorts and filters by (neither changes),
    and the rules the workflow was given."""
    ReviewTask.objects.bulk_create(
        [
            ReviewTask(
                order_id=order_pk,
                due_at=due_at,
                amount=amount,
                risk_score=risk.score if risk is not None else None,
                risk_level=risk.level if risk is not None else "",
                approvals_required=rules.approvals_required,
                four_eyes_rule=rules.four_eyes_rule,
                timeout_action=rules.timeout_action,
            )
        ],
        ignore_conflicts=True,
    )


def review_rules_stored(*, order_id: str) -> ReviewRules:
    """The rules a retried order_validated answers with: those its task was opened with."""
    task = (
        ReviewTask.objects.filter(order__order_id=order_id)
        .order_by("-pk")
        .values("approvals_required", "four_eyes_rule", "timeout_action", "risk_level")
        .first()
    )
    if task is None:
        return ReviewRules(escalate_after=settings.REVIEW_ESCALATE_AFTER)
    fresh = review_rules_for(amount=None, level=task["risk_level"])
    return ReviewRules(
        escalate_after=settings.REVIEW_ESCALATE_AFTER,
        timeout_action=task["timeout_action"],
        timeout_rule=fresh.timeout_rule if task["timeout_action"] == fresh.timeout_action else "",
        approvals_required=task["approvals_required"],
        four_eyes_rule=task["four_eyes_rule"],
    )


# -- the workflow's escalation and four eyes (activities call these) --------------------------------

FIRST_APPROVAL_RELEASED = "released: approved, 1 of 2; a second reviewer decides"

ESCALATION_SUBJECT = "Review escalated: {order_id} has waited {waited} undecided"
ESCALATION_BODY = """Order {order_id} ({amount} {currency}, {risk}) has waited {waited} for a review decision.
Its review times out at {due:%Y-%m-%d %H:%M} UTC; then it is {timeout}.

Review it: {url}
The leads' Escalated view: {escalated_url}
"""


def review_task_escalate(*, order_id: str, waited_seconds: float, review_due: datetime) -> bool:
    """The workflow escalated the order's undecided review: mark the task, audit who is told,
    queue the ``review.escalated`` webhook, and email the leads once the transaction commits.
    Once: the conditional update of the task decides which call does it (a retried activity, a
    second worker), so each of these happens once. Returns whether this call did."""
    told = list(settings.REVIEW_ESCALATION_EMAILS)
    with transaction.atomic():
        order = Order.objects.select_for_update().get(order_id=order_id)  # the order first, then its task
        task = ReviewTask.objects.filter(order=order, status=ReviewTask.Status.OPEN, escalated_at__isnull=True).first()
        if task is None:
            return False
        ReviewTask.objects.filter(pk=task.pk, escalated_at__isnull=True).update(escalated_at=timezone.now())
        event = events.review_escalated_event(order=order, told=told, waited_seconds=waited_seconds, due_at=review_due)
        if settings.ORDER_WEBHOOK_URL:
            WebhookDelivery.objects.bulk_create(
                [WebhookDelivery(event=event, url=settings.ORDER_WEBHOOK_URL)], ignore_conflicts=True
            )
        if told:
            transaction.on_commit(lambda: _escalation_email(order, task, waited_seconds, review_due, told))
    logger.info(
        "review of %s escalated after %.0f s",
        order_id,
        waited_seconds,
        extra={"order_id": order_id, "workflow_id": order.workflow_id},
    )
    return True


def _escalation_email(order: Order, task: ReviewTask, waited_seconds: float, due: datetime, told: list[str]) -> None:
    """Sent after the escalation committed, at most once. A mail server that refuses is logged
    (the escalation itself stands: the Escalated view and the webhook carry it)."""
    waited = duration_text(timedelta(seconds=waited_seconds))
    risk = f"{task.get_risk_level_display().lower()} risk" if task.risk_level else "not assessed"
    body = ESCALATION_BODY.format(
        order_id=order.order_id,
        amount=order.amount,
        currency=order.currency,
        risk=risk,
        waited=waited,
        due=due,
        timeout="approved by policy" if task.timeout_action == TimeoutAction.APPROVE else "cancelled",
        url=settings.SITE_URL + reverse("reviews:order", args=[order.order_id]),
        escalated_url=settings.SITE_URL + reverse("reviews:queue") + "?filter=escalated",
    )
    try:
        send_mail(
            ESCALATION_SUBJECT.format(order_id=order.order_id, waited=waited), body, settings.DEFAULT_FROM_EMAIL, told
        )
    except Exception:  # any backend's failure (SMTP, DNS, TLS): logged, the escalation stands
        logger.exception(
            "could not email the escalation of %s to %s",
            order.order_id,
            ", ".join(told),
            extra={"order_id": order.order_id, "workflow_id": order.workflow_id},
        )


def review_task_first_approval(*, order_id: str, reviewer: str, note: str) -> None:
    """A four-eyes order's first approval, as the workflow took it: the task says who and when,
    and the approver's claim is given back so that a colleague can take the order. In the
    caller's transaction (record_review_approval's), the order's row locked first."""
    reviewer = pg_text(reviewer)[:150]
    order = Order.objects.select_for_update().only("pk", "order_id", "status").get(order_id=order_id)
    task = _open_task_locked(order)
    if task is None:
        return
    if not task.first_approval_by:
        task.first_approval_by, task.first_approval_at, task.first_approval_note = (
            reviewer,
            timezone.now(),
            pg_text(note),
        )
    if task.claimed_by is not None and task.claimed_by.get_username() == reviewer:
        events.review_released_event(
            order=order,
            user=task.claimed_by,
            holder=reviewer,
            reason=FIRST_APPROVAL_RELEASED,
            event_key=f"four_eyes:released:{task.pk}",
        )
        task.claimed_by, task.claimed_at = None, None
    task.save(
        update_fields=["first_approval_by", "first_approval_at", "first_approval_note", "claimed_by", "claimed_at"]
    )


def review_task_close(
    *,
    order: Union[Order, int],
    outcome: ReviewOutcome,
    actor: str,
    note: str,
    reason_code: str = "",
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
    vouched = (
        OrderEvent.objects.filter(
            order=order,
            type=OrderEvent.Type.REVIEW_DECISION_REQUESTED,
            event_key=f"{pg_text(action_id)}:requested",
            user__username=actor,
        ).values("user")[:1]
        if person and actor and action_id
        else None
    )
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
        type=OrderEvent.Type.ATTENTION_FLAGGED,
        details__problem__in=list(STOPPED_PROBLEMS),
    ).values("order_id")
    return ReviewTask.objects.filter(
        status=ReviewTask.Status.OPEN,
        order__attention_since__isnull=False,
        order_id__in=stopped,
    ).update(status=ReviewTask.Status.STOPPED, decided_at=timezone.now(), note="the order's workflow stopped")


def orders_reconcile_with_reviews(*, grace_seconds: Optional[float] = None) -> ReconcileReport:
    """The reconciler (orderweb.reconcile), then the reviews it leaves no one to decide."""
    report = orders_reconcile(grace_seconds=grace_seconds)
    report.reviews_closed = review_tasks_close_stopped()
    return report


# -- reviewer actions (the review back office) ---------------------------------------------------

CLAIM_OK = "You claimed {order_id}."
CLAIM_ALREADY_YOURS = "You already hold {order_id}; your claim is extended."
CLAIM_TAKEN = "{order_id} is already claimed by {user}."
CLAIM_ALREADY_HELD_BY = "{order_id} is already held by {user}."
EXTEND_OK = "Your claim on {order_id} now lasts until {time:%H:%M}."
EXTEND_NOT_CLAIMED = "Your claim on {order_id} lapsed and is not yours any more; claim it again if it is free."
RELEASE_OK = "You released {order_id}; it is back in the unclaimed queue."
RELEASE_OTHERS_OK = "You released {user}'s claim on {order_id}; it is back in the unclaimed queue."
RELEASE_NOT_CLAIMED = "{order_id} is not claimed by anyone."
RELEASE_NOT_YOURS = "{order_id} is claimed by {user}, not by you."
REASSIGN_OK = "{order_id} is now {user}'s to review."
REASSIGN_NOT_LEAD = "Only a review lead can reassign a review."
REASSIGN_NOT_REVIEWER = "{user!r} is not an active reviewer."
REASSIGN_FIRST_APPROVER = "{user} already approved {order_id}; four eyes needs someone else for the second approval."
NO_OPEN_REVIEW = "{order_id} is not awaiting review (it is {state}); there is nothing to decide."

DECISION_UNKNOWN = "Choose approve or reject."
DECISION_NOTE_TOO_LONG = "The note is longer than {max} characters."
REJECT_REASON_REQUIRED = "Choose a reason for the rejection."
REJECT_REASON_UNKNOWN = "Unknown rejection reason {code!r}; use one of: {codes}."
REJECT_OTHER_NEEDS_NOTE = "Say why in the note when the reason is “Other”."
DECIDED_APPROVED = "{order_id} approved. Payment and shipping follow automatically."
DECIDED_FIRST_OF_TWO = (
    "{order_id}: your approval is recorded, 1 of 2. It needs a second reviewer's approval before "
    "payment ({rule}); it is back in the queue for a colleague."
)
REFUSED_SAME_REVIEWER = (
    "You already approved {order_id}; four eyes needs a second approval from someone else. Your "
    "decision was not applied again."
)
DECIDED_REJECTED = "{order_id} rejected and cancelled. Reason: {reason}"
DECISION_DUPLICATE = "This decision for {order_id} was already submitted; it was sent once."
DECISION_CLAIMED_BY_OTHER = (
    "{order_id} is claimed by {user}; your decision was not applied. Ask them, or wait until they release it."
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


# A decision refused before it was sent: a colleague's claim is active.
CLAIMED_BY_OTHER = "claimed_by_other"


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
        ReviewTask.objects.select_for_update(of=("self",))
        .select_related("claimed_by")
        .filter(order=order, status=ReviewTask.Status.OPEN)
        .first()
    )


def _lock_open_task(order: Order) -> tuple[Order, ReviewTask]:
    """The order's row, then its open task, locked (in the caller's transaction); a closed review
    is a ValidationError that says how it ended."""
    locked = Order.objects.select_for_update().get(pk=order.pk)
    task = _open_task_locked(locked)
    if task is None:
        raise ValidationError(_closed_task_message(order=locked), code="review_closed")
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


LEAD_PERMISSION = "reviews.lead_review"


def _may_lead(user) -> bool:
    """Leads release or reassign anyone's claim (``change_reviewtask``: staff who could before)."""
    return user.has_perm(LEAD_PERMISSION) or user.has_perm("reviews.change_reviewtask")


def _take_over_lapsed(locked: Order, task: ReviewTask, user, now: datetime) -> None:
    """The claim of someone else lapsed: its audit row is written now, as ``user`` takes it."""
    if task.claimed_by_id not in (None, user.pk) and not task.claim_active(now):
        events.review_claim_lapsed_event(
            order=locked,
            user=user,
            holder=task.claimed_by.get_username(),
            idle_minutes=settings.REVIEW_CLAIM_TIMEOUT_MINUTES,
        )


def review_task_claim(*, order: Order, user) -> str:
    """Take the order's open review so that colleagues see who is on it (or extend one's own
    claim). Returns the message; raises ValidationError if the review is closed or someone else
    holds it. A lapsed claim is free: taking it over is audited."""
    now = timezone.now()
    with transaction.atomic():
        locked, task = _lock_open_task(order)
        if task.claimed_by_id == user.pk:
            task.claimed_at = now
            task.save(update_fields=["claimed_at"])
            return CLAIM_ALREADY_YOURS.format(order_id=locked.order_id)
        if task.claim_active(now):
            raise ValidationError(
                CLAIM_TAKEN.format(order_id=locked.order_id, user=task.claimed_by.get_username()),
                code="review_claimed",
            )
        _take_over_lapsed(locked, task, user, now)
        task.claimed_by, task.claimed_at = user, now
        task.save(update_fields=["claimed_by", "claimed_at"])
        events.review_claimed_event(order=locked, user=user)
    return CLAIM_OK.format(order_id=order.order_id)


def review_task_extend(*, order: Order, user) -> tuple[str, datetime]:
    """Keep one's claim for another REVIEW_CLAIM_TIMEOUT_MINUTES (the page offers it before the
    claim lapses: WCAG 2.2.1). A claim that lapsed is kept too, unless someone took it over.
    Returns the message and when the claim now lapses."""
    now = timezone.now()
    with transaction.atomic():
        locked, task = _lock_open_task(order)
        if task.claimed_by_id != user.pk:
            holder = task.holder(now)
            message = (
                CLAIM_TAKEN.format(order_id=locked.order_id, user=holder.get_username())
                if holder is not None
                else EXTEND_NOT_CLAIMED.format(order_id=locked.order_id)
            )
            raise ValidationError(message, code="not_yours")
        task.claimed_at = now
        task.save(update_fields=["claimed_at"])
        lapses = now + claim_timeout()
        events.review_claim_extended_event(order=locked, user=user, lapses_at=lapses)
    return EXTEND_OK.format(order_id=order.order_id, time=timezone.localtime(lapses)), lapses


def review_task_release(*, order: Order, user) -> str:
    """Give a claimed review back. Only its holder may, or a lead (``reviews.lead_review``), for
    a colleague who went home."""
    with transaction.atomic():
        locked, task = _lock_open_task(order)
        if task.claimed_by_id is None:
            raise ValidationError(RELEASE_NOT_CLAIMED.format(order_id=locked.order_id), code="not_claimed")
        holder = task.claimed_by.get_username()
        if task.claimed_by_id != user.pk and not _may_lead(user) and task.claim_active():
            raise ValidationError(RELEASE_NOT_YOURS.format(order_id=locked.order_id, user=holder), code="not_yours")
        task.claimed_by, task.claimed_at = None, None
        task.save(update_fields=["claimed_by", "claimed_at"])
        events.review_released_event(order=locked, user=user, holder=holder)
    if holder != user.get_username():
        return RELEASE_OTHERS_OK.format(order_id=order.order_id, user=holder)
    return RELEASE_OK.format(order_id=order.order_id)


def review_task_reassign(*, order: Order, user, to_username: str) -> str:
    """A lead hands the review to a reviewer (the claim becomes theirs, freshly). Audited with
    who held it before. Someone who already approved a four-eyes order cannot be its second."""
    if not _may_lead(user):
        raise ValidationError(REASSIGN_NOT_LEAD, code="not_lead")
    to = get_user_model().objects.filter(username=to_username, is_active=True).first()
    if to is None or not to.has_perm("reviews.decide_review"):
        raise ValidationError(REASSIGN_NOT_REVIEWER.format(user=to_username[:150]), code="not_reviewer")
    now = timezone.now()
    with transaction.atomic():
        locked, task = _lock_open_task(order)
        if task.first_approval_by == to.get_username():
            raise ValidationError(
                REASSIGN_FIRST_APPROVER.format(order_id=locked.order_id, user=to.get_username()), code="same_reviewer"
            )
        holder = task.claimed_by.get_username() if task.claimed_by_id else ""
        if task.claimed_by_id == to.pk and task.claim_active(now):
            return CLAIM_ALREADY_HELD_BY.format(order_id=locked.order_id, user=holder)
        task.claimed_by, task.claimed_at = to, now
        task.save(update_fields=["claimed_by", "claimed_at"])
        events.review_reassigned_event(order=locked, user=user, holder=holder, to=to.get_username())
    return REASSIGN_OK.format(order_id=order.order_id, user=to.get_username())


def _claim_release_after_failed_decision(*, order: Order, user) -> None:
    """Give back a claim the decision took, when the decision did not apply."""
    with transaction.atomic():
        locked = Order.objects.select_for_update().get(pk=order.pk)
        task = _open_task_locked(locked)
        if task is not None and task.claimed_by_id == user.pk:
            task.claimed_by, task.claimed_at = None, None
            task.save(update_fields=["claimed_by", "claimed_at"])
            events.review_released_event(
                order=locked, user=user, holder=user.get_username(), reason="released: the decision was not applied"
            )


def review_decide(
    *,
    order: Order,
    user,
    decision: str,
    note: str = "",
    action_id: str = "",
    reason_code: str = "",
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
        now = timezone.now()
        task = _open_task_locked(locked)
        if task is None:
            message = _closed_task_message(order=locked, username=username)
            return Preparation(
                refusal=ActionOutcome(locked, Outcome.REFUSED, message, RefusalCode.NOT_AWAITING_REVIEW, locked.status)
            )
        if task.claimed_by_id not in (None, user.pk) and task.claim_active(now):
            message = DECISION_CLAIMED_BY_OTHER.format(order_id=locked.order_id, user=task.claimed_by.get_username())
            return Preparation(refusal=ActionOutcome(locked, Outcome.REFUSED, message, CLAIMED_BY_OTHER, locked.status))
        if task.claimed_by_id == user.pk:
            task.claimed_at = now  # deciding is activity: the claim does not lapse under the decision
            task.save(update_fields=["claimed_at"])
            return Preparation()
        _take_over_lapsed(locked, task, user, now)
        task.claimed_by, task.claimed_at = user, now
        task.save(update_fields=["claimed_by", "claimed_at"])
        return Preparation(undo=lambda: _claim_release_after_failed_decision(order=locked, user=user))

    request = WorkflowRequest(
        REVIEW_DECISION,
        ReviewDecision(decision=decision, reviewer=username, note=note, action_id=action_id, reason_code=reason_code),
        action_id,
        f"{decision} requested" + (f": {note}" if note else ""),
        {"decision": decision, "note": note, "reason_code": reason_code},
    )
    outcome = workflow_action_send(
        order=order,
        request=request,
        acting_user=user,
        source=OrderEvent.Source.WEB,
        prepare=prepare,
        describe=lambda answer: _decision_words(order, answer, username=username, decision=decision, reason=reason),
    )
    if outcome.accepted:
        return DecisionOutcome(True, "success", outcome.message, outcome.workflow_status, outcome.code)
    level = "info" if outcome.code == RefusalCode.DUPLICATE_ACTION else "error"
    return DecisionOutcome(False, level, outcome.message, outcome.workflow_status, outcome.code)


# -- bulk decisions ------------------------------------------------------------------------------

MAX_BULK_DECISIONS = 50
BULK_NONE_SELECTED = "Select at least one order."
BULK_TOO_MANY = "Choose at most {max} orders at once; {count} were selected."
BULK_NO_SUCH_ORDER = "There is no order {order_id}."
BULK_BATCH_INVALID = "The form is out of date; reload the page and try again."
_UNANSWERED = {value.value for value in Unanswered}


@dataclass(frozen=True)
class BulkLine:
    """One order's answer in a bulk decision."""

    order_id: str
    status: str  # Outcome: applied, refused or unanswered
    code: str  # why, when not applied (a RefusalCode, "claimed_by_other", an Unanswered value)
    message: str


def review_decide_bulk(
    *,
    order_ids: list[str],
    user,
    decision: str,
    note: str = "",
    reason_code: str = "",
    batch_id: str,
) -> list[BulkLine]:
    """Approve or reject up to 50 orders with one reason, each through ``review_decide``, the
    path of a single decision (its own audit rows, its own Update, its own answer), at most
    REVIEW_BULK_CONCURRENCY at a time: each Update waits for its workflow's projection, so fifty
    in a row would be fifty round trips end to end. A four-eyes order counts one approval, like
    any other decision. ``batch_id`` (a UUID the form carries) names each order's action id, so a
    form sent twice applies nothing twice. The answer: a line per order, in the order given."""
    ids = list(dict.fromkeys(order_id.strip() for order_id in order_ids if order_id and order_id.strip()))
    if not ids:
        raise ValidationError(BULK_NONE_SELECTED, code="none_selected")
    if len(ids) > MAX_BULK_DECISIONS:
        raise ValidationError(BULK_TOO_MANY.format(max=MAX_BULK_DECISIONS, count=len(ids)), code="too_many")
    try:
        batch = uuid.UUID(str(batch_id))
    except ValueError:
        raise ValidationError(BULK_BATCH_INVALID, code="batch_invalid") from None
    note = (note or "").strip()
    if decision not in ("approve", "reject"):
        raise ValidationError(DECISION_UNKNOWN, code="decision_unknown")
    if decision == "reject":
        reject_reason_clean(reason_code, note)
    orders = {order.order_id: order for order in Order.objects.filter(order_id__in=ids)}

    def one(order_id: str) -> BulkLine:
        order = orders.get(order_id)
        if order is None:
            return BulkLine(order_id, Outcome.REFUSED, "not_found", BULK_NO_SUCH_ORDER.format(order_id=order_id))
        try:
            outcome = review_decide(
                order=order,
                user=user,
                decision=decision,
                note=note,
                reason_code=reason_code,
                action_id=str(uuid.uuid5(batch, order_id)),
            )
        except ValidationError as err:
            return BulkLine(order_id, Outcome.REFUSED, err.code or "invalid", " ".join(err.messages))
        finally:
            connections.close_all()  # this thread's connections; the pool's threads end with the call
        if outcome.accepted:
            return BulkLine(order_id, Outcome.APPLIED, outcome.code, outcome.message)
        status = Outcome.UNANSWERED if outcome.code in _UNANSWERED else Outcome.REFUSED
        return BulkLine(order_id, status, outcome.code, outcome.message)

    with ThreadPoolExecutor(
        max_workers=min(settings.REVIEW_BULK_CONCURRENCY, len(ids)), thread_name_prefix="bulk-decision"
    ) as pool:
        lines = list(pool.map(one, ids))
    logger.info(
        "bulk %s by %s: %s",
        decision,
        user.get_username(),
        ", ".join(f"{sum(line.status == status for line in lines)} {status.value}" for status in Outcome),
    )
    return lines


def reject_reason_clean(reason_code: str, note: str) -> str:
    """A rejection's code: required, one of ``RejectReason``; “other” needs the note to say why."""
    code = (reason_code or "").strip()
    if not code:
        raise ValidationError(REJECT_REASON_REQUIRED, code="reason_required")
    if code not in RejectReason.values:
        raise ValidationError(
            REJECT_REASON_UNKNOWN.format(code=code[:40], codes=", ".join(RejectReason.values)), code="reason_unknown"
        )
    if code == RejectReason.OTHER and not note.strip():
        raise ValidationError(REJECT_OTHER_NEEDS_NOTE, code="note_required")
    return code


def reject_reason_text(reason_code: str, note: str) -> str:
    """The reason as people read it: the code's label, and the note when there is one."""
    label = RejectReason(reason_code).label
    return f"{label}: {note}" if note and note != label else label


def _decision_words(
    order: Order, outcome: ActionOutcome, *, username: str, decision: str, reason: str
) -> ActionOutcome:
    """The outcome in the words the reviewer needs: who or what won, when it was not theirs."""
    if outcome.accepted and outcome.code == FIRST_OF_TWO_APPROVALS:
        rule = ReviewTask.objects.filter(order=order).order_by("-pk").values_list("four_eyes_rule", flat=True).first()
        message = DECIDED_FIRST_OF_TWO.format(order_id=order.order_id, rule=rule or "four eyes")
    elif outcome.accepted:
        message = (
            DECIDED_APPROVED.format(order_id=order.order_id)
            if decision == "approve"
            else DECIDED_REJECTED.format(order_id=order.order_id, reason=reason)
        )
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
    if code == RefusalCode.SAME_REVIEWER:
        return REFUSED_SAME_REVIEWER.format(order_id=order.order_id)
    if code == RefusalCode.ALREADY_DECIDED:
        task = ReviewTask.objects.filter(order=order).exclude(status=ReviewTask.Status.OPEN).order_by("-pk").first()
        if task is not None and task.status in (ReviewTask.Status.APPROVED, ReviewTask.Status.REJECTED):
            return REFUSED_ALREADY_DECIDED.format(
                order_id=order.order_id, outcome=task.status, who=_decider(task, username)
            )
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
