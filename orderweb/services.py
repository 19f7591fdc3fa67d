"""Order services: every write to orders goes through here (HackSoft style: `<entity>_<action>`).

Two kinds of callers:
- entry points (admin, review UI, demo, benchmark) create orders and ask for actions; they
  record who asked and reach Temporal after the transaction commits;
- activities project the workflow's progress; those functions are idempotent, keyed by the
  database constraints in ``orderweb.models``.
"""

from __future__ import annotations

import dataclasses
import logging
import unicodedata
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable, Optional

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from orderweb.models import Order, OrderEvent, OrderLine, Shipment
from temporal_app.contracts import (
    LineItem,
    OrderOptions,
    OrderState,
    ProgressRecord,
    address_error,
    normalise_address,
)

logger = logging.getLogger(__name__)

ORDER_ID_EXISTS = "An order with id {order_id!r} already exists."
ORDER_ID_INVALID = (
    "An order id is 1 to 64 characters: letters, digits, '-', '_' or '.'."
)
AMOUNT_INVALID = "The amount must be a number of at most 2 decimals, not negative."
ORDER_INPUT_REFUSED = "order_input_refused"  # event type: input an outside client sent that we could not take
ORDER_ALREADY_FINISHED = "Order {order_id} has already finished ({status}); an order runs once."
ORDER_OWNED_BY_OTHER_WORKFLOW = "Order {order_id} belongs to workflow {workflow_id}."
LINE_INVALID = "Line item {sku!r}: quantity must be a positive whole number and price not negative."
LINE_SKU_INVALID = (
    "Line item {sku!r}: a SKU is 1 to 64 characters and a name at most 200, without control characters."
)
LINE_DUPLICATE_SKU = "SKU {sku!r} appears on more than one line; put the quantity on one line."
TOTAL_TOO_LARGE = "The order total is too large: at most 9999999999.99."
CUSTOMER_INVALID = "The customer name contains control characters."
# OrderLine.quantity is a Postgres integer.
MAX_LINE_QUANTITY = 2_147_483_647

class OrderConflict(Exception):
    """A workflow run may not take this order (it finished, or belongs to another workflow)."""


# The order in which states can follow each other; a projection write never moves an order back
# (a slow, superseded activity attempt must not undo a later state).
_STATE_RANK = {
    OrderState.STARTED: 0,
    OrderState.PROCESSING: 1,
    OrderState.AWAITING_MANUAL_REVIEW: 2,
    OrderState.MANUAL_REVIEW_COMPLETED: 3,
    OrderState.PROCESSING_PAYMENT: 4,
    OrderState.SHIPPING: 5,
    OrderState.COMPLETED: 6,
    OrderState.CANCELLED: 6,
    OrderState.FAILED: 6,
}


def pg_text(value: Any) -> Any:
    """Postgres text and jsonb cannot hold NUL, nor a lone surrogate (which a signal's JSON can
    carry); keep the evidence of a bad input visible instead of failing the write (a refused
    address with a NUL in it must still be audited, or the workflow's projection retries forever)."""
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


def states_before(state: OrderState) -> list[str]:
    return [s.value for s, rank in _STATE_RANK.items() if rank < _STATE_RANK[state]]


def order_workflow_id(order_id: str) -> str:
    """Workflow ids follow the seed's example: ORDER-123 runs as order-123."""
    return order_id.lower()


# -- validation -------------------------------------------------------------------------------


def validate_order_id(order_id: str) -> str:
    order_id = (order_id or "").strip()
    if not (1 <= len(order_id) <= 64) or not all(ch.isascii() and (ch.isalnum() or ch in "-_.") for ch in order_id):
        raise ValidationError(ORDER_ID_INVALID, code="order_id_invalid")
    return order_id


def validate_address(address: str) -> str:
    problem = address_error(address)
    if problem:
        raise ValidationError(problem, code="address_invalid")
    return normalise_address(address)


def parse_amount(value: Any) -> Decimal:
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ValidationError(AMOUNT_INVALID, code="amount_invalid") from None
    if not amount.is_finite() or amount < 0 or amount != amount.quantize(Decimal("0.01")) or amount >= Decimal("1e10"):
        raise ValidationError(AMOUNT_INVALID, code="amount_invalid")
    return amount.quantize(Decimal("0.01"))


def _has_control_chars(text: str) -> bool:
    """Control characters (NUL cannot be stored) and lone surrogates (cannot be encoded)."""
    return any(unicodedata.category(ch) in ("Cc", "Cs") for ch in text)


def _clean_lines(line_items: Iterable[LineItem]) -> list[LineItem]:
    lines = []
    for item in line_items:
        try:
            quantity = int(item.quantity)
            price = parse_amount(item.unit_price)
        except (TypeError, ValueError, ValidationError):
            raise ValidationError(LINE_INVALID.format(sku=item.sku), code="line_invalid") from None
        if quantity <= 0 or quantity > MAX_LINE_QUANTITY:
            raise ValidationError(LINE_INVALID.format(sku=item.sku), code="line_invalid")
        sku, name = str(item.sku).strip(), str(item.name or "")
        if not sku or len(sku) > 64 or len(name) > 200 or _has_control_chars(sku + name):
            raise ValidationError(LINE_SKU_INVALID.format(sku=sku), code="line_invalid")
        if any(line.sku == sku for line in lines):
            raise ValidationError(LINE_DUPLICATE_SKU.format(sku=sku), code="line_duplicate_sku")
        lines.append(LineItem(sku, name, quantity, str(price)))
    return lines


# -- creation (entry points) ------------------------------------------------------------------


@transaction.atomic
def order_create(
    *,
    order_id: str,
    address: str,
    line_items: Iterable[LineItem] = (),
    amount: Any = None,
    customer: str = "",
    user=None,
    source: str = OrderEvent.Source.API,
    review_timeout_seconds: Optional[float] = None,
) -> Order:
    """Save a new order and start its workflow once the row is committed.

    Raises ValidationError (with a code) for bad input or a duplicate order id; nothing is
    written then. If Temporal cannot be reached after commit, the order stays in `started` and
    the error propagates to the caller, who shows it; `order_start_workflow` can be retried.
    """
    from temporal_app.client import start_order_workflow

    order_id = validate_order_id(order_id)
    address = validate_address(address)
    lines = _clean_lines(line_items)
    total = parse_amount(amount) if amount not in (None, "") else sum(
        (Decimal(line.unit_price) * line.quantity for line in lines), Decimal("0.00")
    )
    if total >= Decimal("1e10"):  # Order.amount holds 12 digits, 2 after the point
        raise ValidationError(TOTAL_TOO_LARGE, code="total_too_large")
    if _has_control_chars(str(customer)):
        raise ValidationError(CUSTOMER_INVALID, code="customer_invalid")
    try:
        with transaction.atomic():
            order = Order.objects.create(
                order_id=order_id,
                workflow_id=order_workflow_id(order_id),
                address=address,
                customer=customer[:200],
                amount=total,
                source=source,
                created_by=user if user is not None and user.is_authenticated else None,
            )
    except IntegrityError:
        raise ValidationError(ORDER_ID_EXISTS.format(order_id=order_id), code="order_exists") from None
    OrderLine.objects.bulk_create(
        OrderLine(order=order, sku=l.sku, name=l.name, quantity=l.quantity, unit_price=l.unit_price)
        for l in lines
    )
    order_event_record(
        order=order, type="order_created", user=user, source=source,
        to_status=OrderState.STARTED, message="order created",
    )
    options = order_workflow_options(order, review_timeout_seconds=review_timeout_seconds, lines=lines)
    transaction.on_commit(lambda: start_order_workflow(order, options), robust=False)
    return order


def order_workflow_options(
    order: Order, *, review_timeout_seconds: Optional[float] = None, lines: Optional[list[LineItem]] = None
) -> OrderOptions:
    """The workflow's optional input, rebuilt from the row (also when starting it late)."""
    if lines is None:
        lines = [LineItem(l.sku, l.name, l.quantity, str(l.unit_price)) for l in order.lines.all()]
    return OrderOptions(
        line_items=lines,
        amount=str(order.amount),
        customer=order.customer,
        review_timeout_seconds=review_timeout_seconds,
        source=order.source,
        created_by=order.created_by.get_username() if order.created_by_id else "",
    )


def orders_awaiting_workflow_start(*, older_than_seconds: float = 15, limit: int = 100) -> list[Order]:
    """Orders saved but never started: Temporal was unreachable when their transaction
    committed. Their workflow's first activity moves them out of `started` within a second, so
    what stays there longer has no workflow (or one whose workers are down: starting it again is
    refused as a duplicate, which is harmless)."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    return list(
        Order.objects.filter(status=OrderState.STARTED, created_at__lt=cutoff)
        .select_related("created_by").prefetch_related("lines").order_by("created_at")[:limit]
    )


# -- audit ------------------------------------------------------------------------------------


def order_event_record(
    *,
    order: Order,
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
    """Write one audit event. With an ``event_key`` it is written once: a repeat returns the
    event already there (retried activities and projections rely on this)."""
    if user is not None and not user.is_authenticated:
        user = None
    if event_key is not None:
        existing = OrderEvent.objects.filter(order=order, event_key=event_key).first()
        if existing is not None:
            return existing
    return _order_event_create(
        order=order, type=type, source=source, user=user, actor=actor, from_status=from_status,
        to_status=to_status, message=message, details=details, event_key=event_key,
    )


def _order_event_create(
    *, order: Order, type: str, source: str, user=None, actor: str = "", from_status: str = "",
    to_status: str = "", message: str = "", details: Optional[dict[str, Any]] = None,
    event_key: Optional[str] = None,
) -> OrderEvent:
    return OrderEvent.objects.create(
        order=order,
        type=type,
        event_key=event_key,
        user=user,
        actor=actor or (user.get_username() if user is not None else "system"),
        source=source,
        from_status=str(from_status),
        to_status=str(to_status),
        message=pg_text(message),
        details=pg_text(details or {}),
    )


# -- projection (activities) ------------------------------------------------------------------


def order_receive(
    *, order_id: str, workflow_id: str, address: str, options: OrderOptions
) -> Order:
    """Make sure the order row exists (outside clients start workflows with no row) and mark it
    processing. Idempotent: a second run finds the row and the event already there."""
    defaults = {
        "workflow_id": workflow_id,
        # The workflow validates the address next; keep what we were given, even if bad, so the
        # failure is visible on the order. The empty-address constraint needs a placeholder.
        "address": pg_text(address or "")[:300] or "(no address)",
        "customer": pg_text(options.customer)[:200],
        "source": pg_text(options.source)[:32] or "temporal-client",
    }
    # An outside client's input is checked like the creation service's; what cannot be stored
    # is left out and named in an `order_input_refused` event, which fails validation next.
    problems: list[str] = []
    try:
        lines = _clean_lines(options.line_items)
    except ValidationError as err:
        lines = []
        problems.extend(err.messages)
    if options.amount:
        try:
            defaults["amount"] = parse_amount(options.amount)
        except ValidationError as err:
            problems.extend(err.messages)
    with transaction.atomic():
        order, created = Order.objects.select_for_update().get_or_create(
            order_id=order_id, defaults=defaults
        )
        if not created and order.workflow_id != workflow_id:
            raise OrderConflict(ORDER_OWNED_BY_OTHER_WORKFLOW.format(order_id=order_id, workflow_id=order.workflow_id))
        if not created and order.is_terminal:
            # A finished order's workflow id started again (no id-reuse policy on the start,
            # or a reset to the beginning): running the story twice could charge twice.
            raise OrderConflict(ORDER_ALREADY_FINISHED.format(order_id=order_id, status=order.status))
        if created:
            OrderLine.objects.bulk_create(
                OrderLine(order=order, sku=l.sku, name=l.name, quantity=l.quantity, unit_price=l.unit_price)
                for l in lines
            )
            if problems:
                order_event_record(
                    order=order, type=ORDER_INPUT_REFUSED, source=OrderEvent.Source.WORKFLOW,
                    message=" ".join(problems), event_key="received:input-refused",
                )
            order_event_record(
                order=order, type="order_created", source=OrderEvent.Source.WORKFLOW,
                actor=pg_text(options.created_by)[:150] or "temporal-client", to_status=OrderState.STARTED,
                message="order created by its workflow", event_key="received:created",
            )
        order_advance(order=order, to_status=OrderState.PROCESSING, event_key="received")
    return order


def order_advance(
    *,
    order: Order,
    to_status: OrderState,
    event_key: str,
    type: str = "status_changed",
    actor: str = "system",
    reason: str = "",
    details: Optional[dict[str, Any]] = None,
    **fields: Any,
) -> bool:
    """Move the order forward to ``to_status`` and audit it, once per ``event_key``.

    Returns False (and writes nothing) if the event was already written or the order is already
    at or past that state. ``order`` must be locked (select_for_update) in the caller's
    transaction, so its status is current.
    """
    if OrderEvent.objects.filter(order=order, event_key=event_key).exists():
        return False
    from_status = order.status
    if to_status.value != from_status:
        updated = Order.objects.filter(pk=order.pk, status__in=states_before(to_status)).update(
            status=to_status, status_changed_at=timezone.now(), updated_at=timezone.now(), **fields
        )
        if not updated:
            logger.info("order %s: not moving %s -> %s", order.order_id, from_status, to_status)
            return False
    elif fields:
        Order.objects.filter(pk=order.pk).update(updated_at=timezone.now(), **fields)
    order.status = to_status.value
    _order_event_create(
        order=order, type=type, source=OrderEvent.Source.WORKFLOW, actor=actor,
        from_status=from_status, to_status=to_status, message=reason, details=details,
        event_key=event_key,
    )
    return True


def order_record_progress(record: ProgressRecord) -> None:
    """Project one workflow transition or signal outcome (the ``record_order_progress`` local
    activity). Idempotent by ``record.event_key``."""
    from reviews.services import review_task_close

    # Reasons, notes and actor names come from any Temporal client: make them storable, or this
    # write would fail on every retry and the workflow could never finish.
    record = dataclasses.replace(
        record, actor=pg_text(record.actor)[:150], reason=pg_text(record.reason),
        details=pg_text(dict(record.details)),
    )
    with transaction.atomic():
        order = Order.objects.select_for_update().get(order_id=record.order_id)
        details = dict(record.details)
        if record.to_status:
            state = OrderState(record.to_status)
            fields: dict[str, Any] = {}
            if state == OrderState.CANCELLED:
                fields["cancel_reason"] = record.reason or "cancelled"
            elif state == OrderState.FAILED:
                fields["failure_reason"] = record.reason or "failed"
            advanced = order_advance(
                order=order, to_status=state, event_key=record.event_key, type=record.event_type,
                actor=record.actor, reason=record.reason, details=details, **fields,
            )
            review_outcome = details.get("review_outcome")
            if advanced and review_outcome:
                review_task_close(
                    order=order, outcome=review_outcome, actor=record.actor,
                    note=details.get("note", ""), decided_at=timezone.now(),
                )
            return
        if OrderEvent.objects.filter(order=order, event_key=record.event_key).exists():
            return
        if record.event_type == "dispatch_failed":
            Order.objects.filter(pk=order.pk).update(
                dispatch_failures=details.get("dispatch_failures", order.dispatch_failures + 1),
                updated_at=timezone.now(),
            )
            Shipment.objects.filter(order=order).exclude(status=Shipment.Status.DISPATCHED).update(
                status=Shipment.Status.DISPATCH_FAILED, updated_at=timezone.now()
            )
        if details.get("new_address"):
            Order.objects.filter(pk=order.pk).update(
                address=details["new_address"], updated_at=timezone.now()
            )
        _order_event_create(
            order=order, type=record.event_type, source=record.source, actor=record.actor,
            message=record.reason or details.get("message", ""), details=details,
            event_key=record.event_key,
        )

