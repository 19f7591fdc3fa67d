"""The order's audit trail: one constructor per event type (Saleor's ``events.py``).

Every writer of ``OrderEvent`` goes through here, so the timeline, the admin and the tests share
one vocabulary (``OrderEvent.Type``). Text that came from outside (a client's reason, an
address with a NUL in it) is made storable first: an audit write that fails on every retry
would wedge the workflow that makes it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Optional, Union

from orderweb.models import Order, OrderEvent

Type = OrderEvent.Type
Source = OrderEvent.Source


def pg_text(value: Any) -> Any:
    """Postgres text and jsonb cannot hold NUL, nor a lone surrogate (which a signal's JSON can
    carry): keep the evidence of bad input visible, escaped, instead of failing the write."""
    if isinstance(value, str):
        value = value.replace("\x00", "\\x00")
        if any("\ud800" <= ch <= "\udfff" for ch in value):
            value = value.encode("utf-8", "backslashreplace").decode("utf-8")
        return value
    if isinstance(value, dict):
        return {pg_text(k): pg_text(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [pg_text(v) for v in value]
    return value


_pending = threading.local()


@contextmanager
def batch() -> Iterator[None]:
    """Collect the events written inside and insert them in one statement at the end (a hot
    path's audit rows, in its transaction). Nested batches write with the outermost one."""
    if getattr(_pending, "events", None) is not None:
        yield
        return
    _pending.events = []
    try:
        yield
        collected = _pending.events
    finally:
        _pending.events = None
    if collected:
        OrderEvent.objects.bulk_create(collected, ignore_conflicts=True)


def event_build(
    *,
    order: Union[Order, int, None],
    type: str,
    source: str,
    user=None,
    actor: str = "",
    from_status: str = "",
    to_status: str = "",
    message: str = "",
    details: Optional[dict[str, Any]] = None,
    event_key: Optional[str] = None,
) -> OrderEvent:
    """One event, unsaved (``order``: the order, its pk, or None when the statement that writes
    it supplies the order)."""
    if user is not None and not user.is_authenticated:
        user = None
    return OrderEvent(
        order_id=order if isinstance(order, int) or order is None else order.pk,
        type=type,
        event_key=event_key,
        user=user,
        actor=pg_text(actor or (user.get_username() if user is not None else "system"))[:150],
        source=source,
        from_status=str(from_status),
        to_status=str(to_status),
        message=pg_text(message),
        details=pg_text(details or {}),
    )


def event_write(**event: Any) -> None:
    """Write one event (``event_build``'s arguments). With an ``event_key`` it is written once,
    whatever the retries: a repeat is ignored by the database (INSERT ... ON CONFLICT DO
    NOTHING), in one statement. Inside ``batch()`` it waits for the batch's insert."""
    row = event_build(**event)
    if getattr(_pending, "events", None) is not None:
        _pending.events.append(row)
    elif row.event_key is None:
        row.save(force_insert=True)
    else:
        OrderEvent.objects.bulk_create([row], ignore_conflicts=True)


# -- the order's life --------------------------------------------------------------------------


def order_created_event(
    *,
    order: Order,
    source: str,
    user=None,
    actor: str = "",
    event_key: Optional[str] = None,
    message: str = "order created",
    details: Optional[dict[str, Any]] = None,
) -> None:
    event_write(
        order=order,
        type=Type.ORDER_CREATED,
        source=source,
        user=user,
        actor=actor,
        to_status=order.status,
        message=message,
        event_key=event_key,
        details=details,
    )


def status_changed_event(
    *,
    type: str,
    to_status: str,
    event_key: str,
    actor: str = "system",
    source: str = Source.WORKFLOW,
    reason: str = "",
    details: Optional[dict[str, Any]] = None,
) -> OrderEvent:
    """A transition the workflow made (``type``: STATUS_CHANGED, or the ending or approval the
    workflow named), unsaved: ``order_transition`` writes it in the transition's own statement,
    which also supplies the order and the status it came from."""
    return event_build(
        order=None,
        type=type,
        source=source,
        actor=actor,
        to_status=to_status,
        message=reason,
        details=details,
        event_key=event_key,
    )


def payment_charged_event(*, order: Union[Order, int], amount: Any, reference: str, idempotency_key: str) -> OrderEvent:
    """Unsaved: ``payment_charged`` inserts it with the Payment row, in one statement."""
    return event_build(
        order=order,
        type=Type.PAYMENT_CHARGED,
        source=Source.WORKFLOW,
        event_key="payment:charged",
        message=f"charged {amount}",
        details={"reference": reference, "idempotency_key": idempotency_key},
    )


def payment_refunded_event(*, order: Union[Order, int], amount: Any, reference: str, charge_reference: str) -> None:
    event_write(
        order=order,
        type=Type.PAYMENT_REFUNDED,
        source=Source.WORKFLOW,
        event_key="payment:refunded",
        message=f"refunded {amount}",
        details={"reference": reference, "charge": charge_reference},
    )


def carrier_dispatched_event(*, tracking_number: str, address: str) -> OrderEvent:
    """Unsaved, without its order: ``shipment_dispatched`` writes it in the statement that marks
    the shipment dispatched, which supplies the order."""
    return event_build(
        order=None,
        type=Type.CARRIER_DISPATCHED,
        source=Source.WORKFLOW,
        event_key="shipping:dispatched",
        message=f"dispatched, tracking {tracking_number}",
        details={"tracking_number": tracking_number, "address": address},
    )


def workflow_message_event(
    *,
    order: Union[Order, int],
    type: str,
    source: str,
    actor: str,
    reason: str,
    details: dict[str, Any],
    event_key: str,
) -> None:
    """A message's outcome as the workflow recorded it (signal or Update applied or refused,
    Temporal's own cancel, a dispatch failure)."""
    event_write(
        order=order,
        type=type,
        source=source,
        actor=actor,
        message=reason or details.get("message", ""),
        details=details,
        event_key=event_key,
    )


# -- people's requests and the answers ----------------------------------------------------------


def action_requested_event(
    *,
    order: Order,
    type: str,
    source: str,
    user,
    actor: str = "",
    message: str,
    details: dict[str, Any],
    event_key: str,
) -> None:
    event_write(
        order=order,
        type=type,
        source=source,
        user=user,
        actor=actor,
        from_status=order.status,
        message=message,
        details=details,
        event_key=event_key,
    )


def action_answered_event(
    *,
    order: Order,
    type: str,
    source: str,
    user,
    actor: str = "",
    message: str,
    details: dict[str, Any],
    event_key: str,
) -> None:
    """A refused or unanswered request (an accepted one shows as the workflow's own event)."""
    event_write(
        order=order,
        type=type,
        source=source,
        user=user,
        actor=actor,
        message=message,
        details=details,
        event_key=event_key,
    )


def note_added_event(*, order: Order, source: str, user, text: str) -> None:
    """A person's remark on the order: in the timeline with its author; not a state change."""
    event_write(order=order, type=Type.NOTE_ADDED, source=source, user=user, message=text)


# -- the reconciler -------------------------------------------------------------------------------


def attention_flagged_event(*, order: Order, reason: str, details: dict[str, Any]) -> None:
    event_write(
        order=order,
        type=Type.ATTENTION_FLAGGED,
        source=Source.COMMAND,
        actor="reconciler",
        message=reason,
        details=details,
        event_key=f"attention:{details.get('problem', '')}",
    )
