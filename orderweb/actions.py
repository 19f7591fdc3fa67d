"""Staff actions on orders: cancel, change the shipping address, retry a failed shipment.

Zulip style: validate, write the audit event in a transaction, and reach Temporal only after that
transaction commits. The workflow decides; these functions never write ``Order.status`` or
``Order.address`` (the workflow's projection does, see ``orderweb.services.order_record_progress``).

The person who asked must learn at once whether it took, so each action sends a Workflow Update
(its validator answers before anything reaches the workflow's history) and returns an
``ActionOutcome``: accepted or not, with a message for people. A refusal, or Temporal being out
of reach, is audited too. Permissions are checked by the entry points (the admin), not here.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from typing import Any, Callable, Optional

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from orderweb.models import Order, OrderEvent, Shipment
from orderweb.services import order_event_record
from temporal_app.client import (
    ORDER_WORKFLOW_FINISHED,
    ActionRefused,
    TemporalNoAnswer,
    TemporalUnavailable,
    order_workflow_update,
)
from temporal_app.contracts import (
    ActionResult,
    AddressChange,
    CancelRequest,
    Errors,
    OrderState,
    ShippingRetryRequest,
    Updates,
    address_error,
    normalise_address,
)

MAX_REASON_LENGTH = 500

CANCEL_REASON_REQUIRED = "Give a reason for the cancellation."
CANCEL_REASON_TOO_LONG = f"The reason is longer than {MAX_REASON_LENGTH} characters."
CANCEL_REASON_CONTROL_CHARS = "The reason contains control characters."

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
OUTSIDE_TRANSACTION = "Order actions must run outside a transaction: they answer after commit."



@dataclass(frozen=True)
class ActionOutcome:
    """What happened to one staff action, for the person who asked."""

    order: Order
    accepted: bool
    message: str
    workflow_status: str = ""


# -- validation ---------------------------------------------------------------------------------


def validate_cancel_reason(reason: Any) -> str:
    reason = reason.replace("\r\n", "\n").strip() if isinstance(reason, str) else ""
    if not reason:
        raise ValidationError(CANCEL_REASON_REQUIRED, code="reason_required")
    if len(reason) > MAX_REASON_LENGTH:
        raise ValidationError(CANCEL_REASON_TOO_LONG, code="reason_too_long")
    if any(ord(ch) < 32 and ch != "\n" or ord(ch) == 127 for ch in reason):
        raise ValidationError(CANCEL_REASON_CONTROL_CHARS, code="reason_control_chars")
    return reason


def validate_new_address(address: Any) -> str:
    if isinstance(address, str):
        address = address.replace("\r\n", "\n")  # what a browser's textarea sends
    problem = address_error(address)
    if problem:
        raise ValidationError(problem, code="address_invalid")
    return normalise_address(address)


# -- actions ------------------------------------------------------------------------------------


def order_cancel(*, order: Order, reason: str, acting_user) -> ActionOutcome:
    """Ask the workflow to cancel (and refund, if paid). Answers when the order has ended."""
    reason = validate_cancel_reason(reason)
    action_id = _new_action_id("cancel")
    request = CancelRequest(reason=reason, actor=acting_user.get_username(), action_id=action_id)
    outcome = _run_action(
        order=order,
        kind="cancel",
        acting_user=acting_user,
        action_id=action_id,
        message=f"cancellation requested: {reason}",
        details={"reason": reason},
        send=lambda: order_workflow_update(order.workflow_id, Updates.REQUEST_CANCEL, request),
        done="{message}",
        refused=CANCEL_REFUSED,
    )
    if not outcome.accepted:
        return outcome
    # RequestCancel answers once the ending is in Postgres, so the row already shows it.
    order.refresh_from_db()
    return replace(outcome, message=CANCEL_DONE.format(order_id=order.order_id, reason=order.cancel_reason or reason))


def order_address_change(*, order: Order, address: str, acting_user) -> ActionOutcome:
    """Ask the workflow to ship to ``address``; it refuses once the package is being dispatched."""
    address = validate_new_address(address)
    action_id = _new_action_id("address")
    change = AddressChange(address=address, actor=acting_user.get_username(), action_id=action_id)
    return _run_action(
        order=order,
        kind="address_change",
        acting_user=acting_user,
        action_id=action_id,
        message="address change requested",
        details={"old_address": order.address, "new_address": address},
        send=lambda: order_workflow_update(order.workflow_id, Updates.CHANGE_ADDRESS, change),
        done=ADDRESS_DONE,
        refused=ADDRESS_REFUSED,
    )


def order_shipping_retry(*, order: Order, acting_user) -> ActionOutcome:
    """Ask the workflow to dispatch again after its carrier dispatch failed."""
    action_id = _new_action_id("retry")
    request = ShippingRetryRequest(actor=acting_user.get_username(), action_id=action_id)
    return _run_action(
        order=order,
        kind="shipping_retry",
        acting_user=acting_user,
        action_id=action_id,
        message="shipping retry requested",
        details={"dispatch_failures": order.dispatch_failures},
        send=lambda: order_workflow_update(order.workflow_id, Updates.RETRY_SHIPPING, request),
        done=RETRY_DONE,
        refused=RETRY_REFUSED,
    )


def order_is_awaiting_shipping_retry(*, order: Order) -> bool:
    """The projection's view: dispatch failed and the order waits for staff (retry or cancel)."""
    return (
        order.status == OrderState.SHIPPING
        and Shipment.objects.filter(order=order, status=Shipment.Status.DISPATCH_FAILED).exists()
    )


def order_cancel_dispatch_failed(*, order: Order, reason: str, acting_user) -> ActionOutcome:
    """Cancel-and-refund for an order stuck after a failed dispatch; other orders are left alone."""
    reason = validate_cancel_reason(reason)
    if not order_is_awaiting_shipping_retry(order=order):
        return ActionOutcome(order, False, NOT_DISPATCH_FAILED.format(order_id=order.order_id), order.status)
    return order_cancel(order=order, reason=reason, acting_user=acting_user)


# -- the shared shape: audit, commit, ask the workflow, audit the answer ------------------------


def _new_action_id(kind: str) -> str:
    return f"admin:{kind}:{uuid.uuid4().hex}"


def _run_action(
    *,
    order: Order,
    kind: str,
    acting_user,
    action_id: str,
    message: str,
    details: dict[str, Any],
    send: Callable[[], ActionResult],
    done: str,
    refused: str,
) -> ActionOutcome:
    answer: dict[str, Any] = {}

    def reach_workflow() -> None:
        try:
            answer["result"] = send()
        # A timed-out Update reached Temporal but got no answer (no worker polls, or the
        # workflow is stuck waiting): unlike "unreachable", it may still be applied later.
        except (ActionRefused, TemporalUnavailable) as err:
            answer["error"] = err

    with transaction.atomic(durable=True):
        order_event_record(
            order=order, type=f"{kind}_requested", source=OrderEvent.Source.ADMIN, user=acting_user,
            from_status=order.status, message=message, details={**details, "action_id": action_id},
            event_key=f"{action_id}:requested",
        )
        transaction.on_commit(reach_workflow, robust=False)
    if not answer:
        # durable=True refuses an outer transaction, except inside a test's wrapping one.
        raise RuntimeError(OUTSIDE_TRANSACTION)

    result: Optional[ActionResult] = answer.get("result")
    if result is not None and result.accepted:
        return ActionOutcome(
            order, True, done.format(order_id=order.order_id, message=result.message), result.workflow_status
        )

    error = answer.get("error")
    shown = None
    if result is not None:
        reason, event_type = result.message, f"{kind}_refused"
    elif isinstance(error, ActionRefused):
        reason, event_type = _precise_refusal(order, kind, str(error)), f"{kind}_refused"
    elif isinstance(error, TemporalNoAnswer):
        reason, event_type = "the workflow did not answer in time", f"{kind}_unanswered"
        shown = NO_ANSWER.format(order_id=order.order_id, seconds=settings.TEMPORAL_RPC_TIMEOUT_SECONDS)
    else:
        reason, event_type = str(error), f"{kind}_failed"
    order_event_record(
        order=order, type=event_type, source=OrderEvent.Source.ADMIN, user=acting_user,
        message=reason, details={"action_id": action_id}, event_key=f"{action_id}:answer",
    )
    order.refresh_from_db()
    return ActionOutcome(
        order, False, shown or refused.format(order_id=order.order_id, message=reason),
        result.workflow_status if result is not None else order.status,
    )


def _precise_refusal(order: Order, kind: str, message: str) -> str:
    """A finished workflow accepts no Update at all; say why in the order's own terms."""
    if message != ORDER_WORKFLOW_FINISHED:
        return message
    status = Order.objects.filter(pk=order.pk).values_list("status", flat=True).get()
    if status == OrderState.COMPLETED and kind == "cancel":
        return Errors.CANCEL_TOO_LATE
    if status == OrderState.COMPLETED and kind == "address_change":
        return Errors.ADDRESS_TOO_LATE
    if OrderState(status).is_terminal:
        return Errors.ALREADY_FINISHED.format(state=status)
    return message
