"""Order services: every write to orders goes through here (HackSoft style: ``<entity>_<action>``).

Two kinds of callers:
- entry points (admin, the API, the demo, the benchmark) create orders; the workflow starts after
  the transaction commits;
- activities project the workflow's progress; those functions are idempotent, keyed by the
  database constraints in ``orderweb.models``.

The input rules are the contracts' (``temporal_app.contracts``): the same for a form, the API and
a workflow started by any Temporal client.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal
from typing import Any, Iterable, Optional

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from orderweb import events
from orderweb.events import pg_text
from orderweb.models import Order, OrderEvent, OrderLine, RefusedStart, Shipment
from temporal_app.client import start_order_workflow
from temporal_app.contracts import (
    CLIENT_ACTOR,
    DEFAULT_CURRENCY,
    MAX_ADDRESS_LENGTH,
    MAX_CUSTOMER_LENGTH,
    LineItem,
    OrderOptions,
    OrderState,
    ProgressEvent,
    ProgressRecord,
    RefusedStart as RefusedStartRecord,
    address_error,
    customer_details_problems,
    customer_error,
    line_items_clean,
    normalise_address,
    order_id_error,
    order_total,
)

logger = logging.getLogger(__name__)

ORDER_ID_EXISTS = "An order with id {order_id!r} already exists."
ORDER_ALREADY_FINISHED = "Order {order_id} has already finished ({status}); an order runs once."
ORDER_OWNED_BY_OTHER_WORKFLOW = "Order {order_id} belongs to workflow {workflow_id}."
# What the order's row shows for an address a workflow was started with but cannot use.
UNUSABLE_ADDRESS = "(unusable address: {preview})"


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


def states_before(state: OrderState) -> list[str]:
    return [s.value for s, rank in _STATE_RANK.items() if rank < _STATE_RANK[state]]


def order_workflow_id(order_id: str) -> str:
    """Workflow ids follow the seed's example: ORDER-123 runs as order-123."""
    return order_id.lower()


# -- validation: the contracts' rules as ValidationErrors ------------------------------------------


def validate_order_id(order_id: Any) -> str:
    order_id = order_id.strip() if isinstance(order_id, str) else order_id
    problem = order_id_error(order_id)
    if problem:
        raise ValidationError(problem, code="order_id_invalid")
    return order_id


def validate_address(address: Any) -> str:
    if isinstance(address, str):
        address = address.replace("\r\n", "\n")  # what a browser's textarea sends
    problem = address_error(address)
    if problem:
        raise ValidationError(problem, code="address_invalid")
    return normalise_address(address)


def validate_lines_and_total(line_items: Iterable[LineItem], amount: Any) -> tuple[list[LineItem], Decimal]:
    try:
        lines = line_items_clean(list(line_items))
        return lines, order_total(lines, amount)
    except ValueError as err:
        raise ValidationError(str(err), code="order_lines_invalid") from None


# -- creation (entry points) ------------------------------------------------------------------


@transaction.atomic
def order_create(
    *,
    order_id: str,
    address: str,
    line_items: Iterable[LineItem] = (),
    amount: Any = None,
    customer: str = "",
    customer_email: str = "",
    billing_address: str = "",
    client_ip: str = "",
    user_agent: str = "",
    currency: str = DEFAULT_CURRENCY,
    user=None,
    actor: str = "",
    source: str = OrderEvent.Source.API,
    review_timeout_seconds: Optional[float] = None,
) -> Order:
    """Save a new order and start its workflow once the row is committed.

    ``user`` is the person who created it; ``actor`` names a client that is not a person (an
    API key's name), for the audit trail and the workflow's record.

    Raises ValidationError (with a code) for bad input or a duplicate order id; nothing is
    written then. If Temporal cannot be reached after commit, the order stays in `started` and
    the error propagates to the caller, who shows it; the workers start it later.
    """
    order_id = validate_order_id(order_id)
    address = validate_address(address)
    lines, total = validate_lines_and_total(line_items, amount)
    if customer_error(customer):
        raise ValidationError(customer_error(customer) or "", code="customer_invalid")
    details = customer_details_problems(email=customer_email, billing_address=billing_address, client_ip=client_ip,
                                        user_agent=user_agent, currency=currency)
    if details:
        raise ValidationError(details, code="customer_details_invalid")
    try:
        with transaction.atomic():
            order = Order.objects.create(
                order_id=order_id,
                workflow_id=order_workflow_id(order_id),
                address=address,
                customer=customer,
                customer_email=customer_email,
                billing_address=normalise_address(billing_address) if billing_address else "",
                client_ip=client_ip or None,
                user_agent=user_agent,
                currency=currency,
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
    events.order_created_event(order=order, source=source, user=user, actor=actor)
    options = order_workflow_options(order, review_timeout_seconds=review_timeout_seconds, lines=lines)
    if actor and not options.created_by:
        options.created_by = actor
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
        customer_email=order.customer_email,
        billing_address=order.billing_address,
        client_ip=order.client_ip or "",
        user_agent=order.user_agent,
        currency=order.currency,
    )


def orders_awaiting_workflow_start(*, older_than_seconds: float = 15, limit: int = 100) -> list[Order]:
    """Orders saved but never started: Temporal was unreachable when their transaction
    committed. Their workflow's first activity moves them out of `started` within a second, so
    what stays there longer has no workflow (or one whose workers are down: starting it again is
    refused as a duplicate, which is harmless)."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    return list(
        Order.objects.filter(status=OrderState.STARTED, created_at__lt=cutoff, attention_since__isnull=True)
        .select_related("created_by").prefetch_related("lines").order_by("created_at")[:limit]
    )


# -- projection (activities) ------------------------------------------------------------------


def order_receive(*, order_id: str, workflow_id: str, address: str, options: OrderOptions) -> Order:
    """Make sure the order row exists (outside clients start workflows with no row) and mark it
    processing. Idempotent: a second run finds the row and the events already there.

    The workflow has checked its input (``temporal_app.workflows.boundary``) and fails the order
    next if it broke a rule; the row keeps what Postgres can hold, so staff see the failure."""
    defaults = {
        "workflow_id": workflow_id,
        "address": address if not address_error(address)
        else UNUSABLE_ADDRESS.format(preview=pg_text(address)[:60] or "none")[:MAX_ADDRESS_LENGTH],
        "customer": pg_text(options.customer)[:MAX_CUSTOMER_LENGTH],
        "source": pg_text(options.source)[:32] or CLIENT_ACTOR,
        # Checked by the workflow's boundary (customer_details_problems), or left empty.
        "customer_email": options.customer_email,
        "billing_address": options.billing_address,
        "client_ip": options.client_ip or None,
        "user_agent": options.user_agent,
        "currency": options.currency,
    }
    if options.amount is not None:
        defaults["amount"] = options.amount
    with transaction.atomic():
        order, created = Order.objects.select_for_update().get_or_create(order_id=order_id, defaults=defaults)
        if not created and order.workflow_id != workflow_id:
            raise OrderConflict(ORDER_OWNED_BY_OTHER_WORKFLOW.format(order_id=order_id, workflow_id=order.workflow_id))
        if not created and order.is_terminal:
            # A finished order's workflow id started again (no id-reuse policy on the start,
            # or a reset to the beginning): running the story twice could charge twice.
            raise OrderConflict(ORDER_ALREADY_FINISHED.format(order_id=order_id, status=order.status))
        if created:
            OrderLine.objects.bulk_create(
                OrderLine(order=order, sku=l.sku, name=l.name, quantity=l.quantity, unit_price=l.unit_price)
                for l in options.line_items
            )
            events.order_created_event(
                order=order, source=OrderEvent.Source.WORKFLOW, actor=options.created_by or CLIENT_ACTOR,
                event_key="received:created", message="order created by its workflow",
            )
        order_advance(order=order, to_status=OrderState.PROCESSING, event_key="received")
    return order


def order_advance(
    *,
    order: Order,
    to_status: OrderState,
    event_key: str,
    type: str = OrderEvent.Type.STATUS_CHANGED,
    actor: str = "system",
    reason: str = "",
    details: Optional[dict[str, Any]] = None,
    **fields: Any,
) -> bool:
    """Move the order forward to ``to_status`` and audit it, once per ``event_key``.

    Returns False (and writes nothing) if the order is already past that state: a retried
    write, or a superseded attempt. ``order`` must be locked (select_for_update) in the caller's
    transaction, so its status is current.
    """
    from_status = order.status
    now = timezone.now()
    if to_status.value != from_status:
        # A workflow that moves its order on is alive: a reconciler's flag no longer holds.
        updated = Order.objects.filter(pk=order.pk, status__in=states_before(to_status)).update(
            status=to_status, status_changed_at=now, updated_at=now, attention_reason="", attention_since=None,
            **fields,
        )
        if not updated:
            logger.info("order %s: not moving %s -> %s", order.order_id, from_status, to_status)
            return False
    elif fields:
        Order.objects.filter(pk=order.pk).update(updated_at=now, **fields)
    order.status = to_status.value
    events.status_changed_event(
        order=order, type=type, from_status=from_status, to_status=to_status, event_key=event_key,
        actor=actor, reason=reason, details=details,
    )
    return True


def order_record_progress(record: ProgressRecord) -> Order:
    """Project one workflow transition or message outcome (the ``record_order_progress`` local
    activity), in the caller's transaction. Idempotent by ``record.event_key``. Returns the
    order, locked, for the caller's own part of the write (a review task's close)."""
    event = ProgressEvent(record.event_type)  # the workflow names only known events
    order = Order.objects.select_for_update().get(order_id=record.order_id)
    details = dict(record.details)
    if record.to_status:
        state = OrderState(record.to_status)
        fields: dict[str, Any] = {}
        if state == OrderState.CANCELLED:
            fields["cancel_reason"] = pg_text(record.reason) or "cancelled"
            fields["cancel_reason_code"] = pg_text(str(details.get("reason_code", "")))[:40]
        elif state == OrderState.FAILED:
            fields["failure_reason"] = pg_text(record.reason) or "failed"
        order_advance(
            order=order, to_status=state, event_key=record.event_key, type=event.value,
            actor=record.actor, reason=record.reason, details=details, **fields,
        )
        return order
    if event == ProgressEvent.DISPATCH_FAILED:
        Order.objects.filter(pk=order.pk).update(
            dispatch_failures=details.get("dispatch_failures", order.dispatch_failures + 1),
            updated_at=timezone.now(),
        )
        Shipment.objects.filter(order=order).exclude(status=Shipment.Status.DISPATCHED).update(
            status=Shipment.Status.DISPATCH_FAILED, last_error=pg_text(record.reason), updated_at=timezone.now()
        )
    if details.get("new_address") and event in (ProgressEvent.SIGNAL_APPLIED, ProgressEvent.UPDATE_APPLIED):
        Order.objects.filter(pk=order.pk).update(address=details["new_address"], updated_at=timezone.now())
    events.workflow_message_event(
        order=order, type=event.value, source=record.source, actor=record.actor, reason=record.reason,
        details=details, event_key=record.event_key,
    )
    return order


def order_start_refused(record: RefusedStartRecord) -> None:
    """Record a start that could not make an order, once per workflow run."""
    RefusedStart.objects.bulk_create(
        [RefusedStart(workflow_id=pg_text(record.workflow_id), run_id=record.run_id,
                      reason=pg_text(record.reason), arguments=pg_text(record.arguments))],
        ignore_conflicts=True,
    )


def order_flag_attention(*, order: Order, problem: str, reason: str, details: Optional[dict[str, Any]] = None) -> bool:
    """Flag an order for staff: its workflow cannot report for itself. Once per problem;
    returns whether this call flagged it."""
    flagged = Order.objects.filter(pk=order.pk, attention_since__isnull=True).update(
        attention_reason=reason, attention_since=timezone.now(), updated_at=timezone.now(),
    )
    if flagged:
        events.attention_flagged_event(order=order, reason=reason, details={"problem": problem, **(details or {})})
    return bool(flagged)
