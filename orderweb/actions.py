"""Asking an order's workflow to do something, for staff, reviewers and API clients alike.

One flow (Zulip's ``do_*``): record who asked, in a durable transaction with its audit row;
after that commit, send the Workflow Update; record the answer on the same audit trail; return a
typed ``ActionOutcome`` that the admin, the review pages or the API turn into words. The
workflow decides: nothing here writes ``Order.status`` or ``Order.address`` (its projection
does). Permissions are checked by the entry points.

The Update is sent after the ``durable`` block has committed: the request is on record before
Temporal hears of it, and a failure to reach Temporal is told to the person who asked.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Optional

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connections, transaction

from orderweb import events
from orderweb.models import CancelReason, Order, OrderEvent, Shipment
from orderweb.services import validate_address
from temporal_app.client import (
    ActionRefused,
    TemporalNoAnswer,
    TemporalUnavailable,
    WorkersNotAnswering,
    WorkflowCannotAnswer,
    order_workflow_update,
)
from temporal_app.contracts import (
    AddressChange,
    CancelRequest,
    OrderState,
    RefusalCode,
    ShippingRetryRequest,
    Updates,
    has_control_chars,
    refusal,
)

Type = OrderEvent.Type

# One line per request and one per answer, with order_id and workflow_id as fields (JSON logs:
# temporal_app/logs.py). No addresses or reasons: codes only, people's words stay in the audit trail.
logger = logging.getLogger(__name__)

MAX_REASON_LENGTH = 500

CANCEL_REASON_REQUIRED = "Give a reason for the cancellation."
CANCEL_REASON_TOO_LONG = f"The reason is longer than {MAX_REASON_LENGTH} characters."
CANCEL_REASON_CONTROL_CHARS = "The reason contains control characters."
CANCEL_REASON_CODE_UNKNOWN = "Unknown cancel reason code {code!r}; use one of: {codes}."
CANCEL_REASON_OTHER_NEEDS_TEXT = "Say why in the reason when the code is “other”."

CANCEL_DONE = "Order {order_id} is cancelled: {reason}."
CANCEL_REFUSED = "Order {order_id} was not cancelled: {message}"
ADDRESS_DONE = "The shipping address of order {order_id} was changed."
ADDRESS_REFUSED = "The shipping address of order {order_id} was not changed: {message}"
RETRY_DONE = "Shipping of order {order_id} is being retried."
RETRY_REFUSED = "Shipping of order {order_id} was not retried: {message}"
NOT_DISPATCH_FAILED = (
    "Order {order_id} is not waiting after a failed dispatch, so it was left alone; "
    "use “Cancel selected orders” for it."
)
NO_ANSWER = (
    "Order {order_id}: its workflow did not answer within {seconds:g} s, so the request may still "
    "take effect; check the order's timeline before trying again."
)


class Outcome(StrEnum):
    APPLIED = "applied"  # the workflow took it
    REFUSED = "refused"  # the workflow (or Temporal for it) said no: ``code`` says why
    UNANSWERED = "unanswered"  # no answer could be had: ``code`` says why; it may still apply


class Unanswered(StrEnum):
    """Why a request got no answer (``ActionOutcome.code`` when UNANSWERED)."""

    UNREACHABLE = "temporal_unreachable"  # nothing reached Temporal: nothing changed
    WORKERS_DOWN = "workers_not_answering"  # the workers answer no query: not sent, nothing changed
    NO_ANSWER = "no_answer"  # it reached Temporal, no answer in time: it may still apply
    WORKFLOW_STUCK = "workflow_stuck"  # the workflow's task is failing: it takes nothing now


@dataclass(frozen=True)
class ActionKind:
    """One kind of request and the audit events that tell its story."""

    name: str
    update: str
    requested: str
    refused: str
    unanswered: str


CANCEL = ActionKind(
    "cancel", Updates.REQUEST_CANCEL, Type.CANCEL_REQUESTED, Type.CANCEL_REFUSED, Type.CANCEL_UNANSWERED
)
ADDRESS_CHANGE = ActionKind(
    "address_change",
    Updates.CHANGE_ADDRESS,
    Type.ADDRESS_CHANGE_REQUESTED,
    Type.ADDRESS_CHANGE_REFUSED,
    Type.ADDRESS_CHANGE_UNANSWERED,
)
SHIPPING_RETRY = ActionKind(
    "shipping_retry",
    Updates.RETRY_SHIPPING,
    Type.SHIPPING_RETRY_REQUESTED,
    Type.SHIPPING_RETRY_REFUSED,
    Type.SHIPPING_RETRY_UNANSWERED,
)
REVIEW_DECISION = ActionKind(
    "review_decision",
    Updates.DECIDE_REVIEW,
    Type.REVIEW_DECISION_REQUESTED,
    Type.REVIEW_DECISION_REFUSED,
    Type.REVIEW_DECISION_UNANSWERED,
)


@dataclass(frozen=True)
class ActionOutcome:
    """What happened to one request, for the person (or client) who asked."""

    order: Order
    status: Outcome
    message: str  # the workflow's words, or ours when there was no answer
    code: str = (
        ""  # a RefusalCode or an Unanswered value; when applied, "" or a partial effect (FIRST_OF_TWO_APPROVALS)
    )
    workflow_status: str = ""

    @property
    def accepted(self) -> bool:
        return self.status == Outcome.APPLIED


@dataclass
class Preparation:
    """What an entry point checks and changes in the request's own transaction, the order's
    row locked: a refusal stops the request before anything is sent; ``undo`` runs if the
    workflow does not apply it (a reviewer's claim taken for the decision is released)."""

    refusal: Optional[ActionOutcome] = None
    undo: Optional[Callable[[], None]] = None


@dataclass(frozen=True)
class WorkflowRequest:
    kind: ActionKind
    payload: Any  # the Update's argument (CancelRequest, AddressChange, ...)
    action_id: str
    message: str  # the audit row's text
    details: dict[str, Any] = field(default_factory=dict)


def _actor_name(acting_user, actor: str) -> str:
    return acting_user.get_username() if acting_user is not None else actor


def new_action_id(kind: ActionKind, source: str) -> str:
    return f"{source}:{kind.name}:{uuid.uuid4().hex}"


def workflow_action_send(
    *,
    order: Order,
    request: WorkflowRequest,
    acting_user=None,
    actor: str = "",
    source: str,
    prepare: Optional[Callable[[Order], Preparation]] = None,
    describe: Optional[Callable[[ActionOutcome], ActionOutcome]] = None,
) -> ActionOutcome:
    """Record, commit, send, record the answer (see the module doc). ``describe`` puts the
    outcome in the entry point's words before it is recorded. A request whose action id is
    already on record is refused as a duplicate and sent no second time."""
    requested_key = f"{request.action_id}:requested"
    preparation = Preparation()
    with transaction.atomic(durable=True):
        locked = Order.objects.select_for_update().get(pk=order.pk)
        if OrderEvent.objects.filter(order=locked, event_key=requested_key).exists():
            found = refusal(RefusalCode.DUPLICATE_ACTION)
            duplicate = ActionOutcome(locked, Outcome.REFUSED, found.message, found.code.value, locked.status)
            return describe(duplicate) if describe else duplicate
        if prepare is not None:
            preparation = prepare(locked)
            if preparation.refusal is not None:
                _record_answer(locked, request, acting_user, actor, source, preparation.refusal)
                return preparation.refusal
        events.action_requested_event(
            order=locked,
            type=request.kind.requested,
            source=source,
            user=acting_user,
            actor=actor,
            message=request.message,
            details={**request.details, "action_id": request.action_id},
            event_key=requested_key,
        )

    context = {
        "order_id": order.order_id,
        "workflow_id": order.workflow_id,
        "action": request.kind.name,
        "action_id": request.action_id,
        "source": str(source),
    }
    logger.info(
        "%s of order %s requested by %s",
        request.kind.name,
        order.order_id,
        _actor_name(acting_user, actor) or "unknown",
        extra=context,
    )
    outcome = _send(order, request)
    if describe is not None:
        outcome = describe(outcome)
    logger.log(
        logging.INFO if outcome.status != Outcome.UNANSWERED else logging.WARNING,
        "%s of order %s: %s%s",
        request.kind.name,
        order.order_id,
        outcome.status.value,
        f" ({outcome.code})" if outcome.code else "",
        extra={**context, "outcome": outcome.status.value, "code": str(outcome.code)},
    )
    if not outcome.accepted:
        _record_answer(order, request, acting_user, actor, source, outcome)
        if preparation.undo is not None:
            preparation.undo()
    return outcome


# How many of a bulk action's requests are in flight at once: a cancel answers only once its
# order has ended (a refund included), so one after another a page of orders took N times that;
# more at once would only queue up in the workers and hold more database connections here.
BULK_CONCURRENCY = 8


def workflow_actions_send_many(
    *,
    orders: Sequence[Order],
    send: Callable[[Order], ActionOutcome],
    concurrency: int = BULK_CONCURRENCY,
) -> list[ActionOutcome]:
    """``send(order)`` (an entry point's service, each going through ``workflow_action_send``)
    for every order, ``concurrency`` at a time on threads of their own; the outcomes in the
    orders' order, one for each. A failure of one (an exception) is re-raised only after all
    have answered, so no order is left sent but unreported. When the workers are down, the first
    unanswered Update makes the rest answer at once, unsent (``temporal_app.client.WorkerSilence``)."""

    def one(order: Order) -> ActionOutcome:
        try:
            return send(order)
        finally:
            connections.close_all()  # this thread's own connections

    if len(orders) <= 1:
        return [send(order) for order in orders]
    with ThreadPoolExecutor(max_workers=min(concurrency, len(orders)), thread_name_prefix="bulk-action") as pool:
        futures = [pool.submit(one, order) for order in orders]
        wait(futures)
    return [future.result() for future in futures]


def _send(order: Order, request: WorkflowRequest) -> ActionOutcome:
    try:
        result = order_workflow_update(order.workflow_id, request.kind.update, request.payload)
    except ActionRefused as err:
        return ActionOutcome(order, Outcome.REFUSED, err.message, err.code.value, err.workflow_status or order.status)
    except WorkflowCannotAnswer as err:
        return ActionOutcome(order, Outcome.UNANSWERED, str(err), Unanswered.WORKFLOW_STUCK, order.status)
    except TemporalNoAnswer as err:
        return ActionOutcome(order, Outcome.UNANSWERED, str(err), Unanswered.NO_ANSWER, order.status)
    except WorkersNotAnswering as err:
        return ActionOutcome(order, Outcome.UNANSWERED, str(err), Unanswered.WORKERS_DOWN, order.status)
    except TemporalUnavailable as err:
        return ActionOutcome(order, Outcome.UNANSWERED, str(err), Unanswered.UNREACHABLE, order.status)
    if result.accepted:  # its code, if any, says it took effect only in part (a first of two approvals)
        return ActionOutcome(order, Outcome.APPLIED, result.message, result.code, result.workflow_status)
    return ActionOutcome(order, Outcome.REFUSED, result.message, result.code, result.workflow_status)


def _record_answer(
    order: Order,
    request: WorkflowRequest,
    acting_user,
    actor: str,
    source: str,
    outcome: ActionOutcome,
) -> None:
    kind = request.kind
    events.action_answered_event(
        order=order,
        type=kind.refused if outcome.status == Outcome.REFUSED else kind.unanswered,
        source=source,
        user=acting_user,
        actor=actor,
        message=outcome.message,
        details={"action_id": request.action_id, "outcome": outcome.status.value, "code": outcome.code},
        event_key=f"{request.action_id}:answer",
    )


# -- staff actions ------------------------------------------------------------------------------


def validate_cancel_reason(reason: Any) -> str:
    reason = reason.replace("\r\n", "\n").strip() if isinstance(reason, str) else ""
    if not reason:
        raise ValidationError(CANCEL_REASON_REQUIRED, code="reason_required")
    if len(reason) > MAX_REASON_LENGTH:
        raise ValidationError(CANCEL_REASON_TOO_LONG, code="reason_too_long")
    if has_control_chars(reason.replace("\n", " ")):
        raise ValidationError(CANCEL_REASON_CONTROL_CHARS, code="reason_control_chars")
    return reason


def validate_cancel_reason_code(reason_code: Any, reason: str = "") -> str:
    """A staff cancel's code: one of ``CancelReason``, or empty (a client that sends none).
    ``other`` needs words of its own in ``reason``, not just its label."""
    code = reason_code.strip() if isinstance(reason_code, str) else ""
    if code and code not in CancelReason.values:
        raise ValidationError(
            CANCEL_REASON_CODE_UNKNOWN.format(code=code[:40], codes=", ".join(CancelReason.values)),
            code="reason_code_unknown",
        )
    if code == CancelReason.OTHER and reason.strip().lower() in ("", CancelReason.OTHER.label.lower()):
        raise ValidationError(CANCEL_REASON_OTHER_NEEDS_TEXT, code="reason_other_needs_text")
    return code


def _closed_refusal(order: Order, kind: ActionKind, outcome: ActionOutcome) -> ActionOutcome:
    """A closed workflow takes no Update at all: say why in the order's own terms."""
    if outcome.code != RefusalCode.WORKFLOW_CLOSED:
        return outcome
    status = Order.objects.filter(pk=order.pk).values_list("status", flat=True).get()
    if status == OrderState.COMPLETED and kind in (CANCEL, ADDRESS_CHANGE):
        found = refusal(RefusalCode.CANCEL_TOO_LATE if kind == CANCEL else RefusalCode.ADDRESS_TOO_LATE)
    elif OrderState(status).is_terminal:
        found = refusal(RefusalCode.ALREADY_FINISHED, state=status)
    else:
        return outcome
    return ActionOutcome(outcome.order, Outcome.REFUSED, found.message, found.code.value, status)


def _staff_outcome(order: Order, kind: ActionKind, outcome: ActionOutcome, done: str, refused: str) -> ActionOutcome:
    """The outcome in the words the admin shows (``done``: the message when applied)."""
    outcome = _closed_refusal(order, kind, outcome)
    if outcome.accepted:
        message = done
    elif outcome.code == Unanswered.NO_ANSWER:
        message = NO_ANSWER.format(order_id=order.order_id, seconds=settings.TEMPORAL_RPC_TIMEOUT_SECONDS)
    else:
        message = refused.format(order_id=order.order_id, message=outcome.message)
    return ActionOutcome(outcome.order, outcome.status, message, outcome.code, outcome.workflow_status)


def order_cancel(
    *,
    order: Order,
    reason: str,
    acting_user=None,
    actor: str = "",
    source: str = OrderEvent.Source.ADMIN,
    reason_code: str = "",
) -> ActionOutcome:
    """Ask the workflow to cancel (and refund, if paid). Answers when the order has ended.
    ``reason`` is for people; ``reason_code`` (a ``CancelReason``, or empty) is for reports."""
    reason = validate_cancel_reason(reason)
    reason_code = validate_cancel_reason_code(reason_code, reason)
    action_id = new_action_id(CANCEL, source)
    request = WorkflowRequest(
        CANCEL,
        CancelRequest(
            reason=reason, actor=_actor_name(acting_user, actor), action_id=action_id, reason_code=reason_code
        ),
        action_id,
        f"cancellation requested: {reason}",
        {"reason": reason, "reason_code": reason_code},
    )

    def describe(outcome: ActionOutcome) -> ActionOutcome:
        # RequestCancel answers once the ending is in Postgres, so the row shows its reason.
        order.refresh_from_db(fields=["status", "cancel_reason"])
        done = CANCEL_DONE.format(order_id=order.order_id, reason=order.cancel_reason or reason)
        return _staff_outcome(order, CANCEL, outcome, done, CANCEL_REFUSED)

    return workflow_action_send(
        order=order, request=request, acting_user=acting_user, actor=actor, source=source, describe=describe
    )


def order_address_change(
    *,
    order: Order,
    address: str,
    acting_user=None,
    actor: str = "",
    source: str = OrderEvent.Source.ADMIN,
) -> ActionOutcome:
    """Ask the workflow to ship to ``address``; it refuses once the package is being dispatched."""
    address = validate_address(address)
    action_id = new_action_id(ADDRESS_CHANGE, source)
    request = WorkflowRequest(
        ADDRESS_CHANGE,
        AddressChange(address=address, actor=_actor_name(acting_user, actor), action_id=action_id),
        action_id,
        "address change requested",
        {"old_address": order.address, "requested_address": address},
    )
    return workflow_action_send(
        order=order,
        request=request,
        acting_user=acting_user,
        actor=actor,
        source=source,
        describe=lambda outcome: _staff_outcome(
            order, ADDRESS_CHANGE, outcome, ADDRESS_DONE.format(order_id=order.order_id), ADDRESS_REFUSED
        ),
    )


def order_shipping_retry(
    *,
    order: Order,
    acting_user=None,
    actor: str = "",
    source: str = OrderEvent.Source.ADMIN,
) -> ActionOutcome:
    """Ask the workflow to dispatch again after its carrier dispatch failed."""
    action_id = new_action_id(SHIPPING_RETRY, source)
    request = WorkflowRequest(
        SHIPPING_RETRY,
        ShippingRetryRequest(actor=_actor_name(acting_user, actor), action_id=action_id),
        action_id,
        "shipping retry requested",
        {"dispatch_failures": order.dispatch_failures},
    )
    return workflow_action_send(
        order=order,
        request=request,
        acting_user=acting_user,
        actor=actor,
        source=source,
        describe=lambda outcome: _staff_outcome(
            order, SHIPPING_RETRY, outcome, RETRY_DONE.format(order_id=order.order_id), RETRY_REFUSED
        ),
    )


def order_is_awaiting_shipping_retry(*, order: Order) -> bool:
    """The projection's view: dispatch failed and the order waits for staff (retry or cancel)."""
    return (
        order.status == OrderState.SHIPPING
        and Shipment.objects.filter(order=order, status=Shipment.Status.DISPATCH_FAILED).exists()
    )


def order_cancel_dispatch_failed(*, order: Order, reason: str, acting_user, reason_code: str = "") -> ActionOutcome:
    """Cancel-and-refund for an order stuck after a failed dispatch; other orders are left alone."""
    reason = validate_cancel_reason(reason)
    reason_code = validate_cancel_reason_code(reason_code, reason)
    if not order_is_awaiting_shipping_retry(order=order):
        return ActionOutcome(
            order,
            Outcome.REFUSED,
            NOT_DISPATCH_FAILED.format(order_id=order.order_id),
            RefusalCode.NOT_DISPATCH_FAILED.value,
            order.status,
        )
    return order_cancel(order=order, reason=reason, acting_user=acting_user, reason_code=reason_code)
