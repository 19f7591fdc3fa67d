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
from collections.abc import Iterable
from datetime import timedelta
from decimal import Decimal
from typing import Any, Optional

from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone

from orderweb import events
from orderweb.events import pg_text
from orderweb.models import Order, OrderEvent, OrderLine, RefusedStart, Shipment
from orderweb.sql import row_values
from temporal_app.client import start_order_workflow
from temporal_app.contracts import (
    CLIENT_ACTOR,
    DEFAULT_CURRENCY,
    MAX_ADDRESS_LENGTH,
    MAX_CUSTOMER_LENGTH,
    SYSTEM_ACTOR,
    LineItem,
    OrderOptions,
    OrderState,
    ProgressEvent,
    ProgressRecord,
    address_error,
    customer_details_problems,
    customer_error,
    has_control_chars,
    line_items_clean,
    normalise_address,
    order_id_error,
    order_total,
)
from temporal_app.contracts import (
    RefusedStart as RefusedStartRecord,
)

logger = logging.getLogger(__name__)

ORDER_ID_EXISTS = "An order with id {order_id!r} already exists."
# Order ids are one namespace regardless of case: ORDER-1 and order-1 would run as the same
# workflow (order_workflow_id), so the second is refused, naming the order that holds the id.
ORDER_ID_TAKEN = (
    "The order id {order_id!r} is taken by the existing order {existing!r}: order ids that differ "
    "only in case name the same order (workflow {workflow_id!r})."
)
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


def order_id_holder(*, order_id: str) -> Optional[Order]:
    """The order that holds ``order_id`` in any case, or the workflow it maps to: the one an
    order with this id would collide with (the unique index on ``LOWER(order_id)``, and the one
    on ``workflow_id``), or None."""
    return (
        Order.objects.alias(order_id_lower=Lower("order_id"))
        .filter(Q(order_id_lower=order_id.lower()) | Q(workflow_id=order_workflow_id(order_id)))
        .order_by("pk")
        .first()
    )


def order_id_conflict(*, order_id: str, holder: Order) -> ValidationError:
    """The refusal for a new order whose id ``holder`` holds (code ``order_exists`` for the same
    id, ``order_id_taken`` for one that differs in case or maps to its workflow)."""
    if holder.order_id == order_id:
        return ValidationError(ORDER_ID_EXISTS.format(order_id=order_id), code="order_exists")
    return ValidationError(
        ORDER_ID_TAKEN.format(order_id=order_id, existing=holder.order_id, workflow_id=holder.workflow_id),
        code="order_id_taken",
        params={"existing_order_id": holder.order_id},
    )


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
    details = customer_details_problems(
        email=customer_email,
        billing_address=billing_address,
        client_ip=client_ip,
        user_agent=user_agent,
        currency=currency,
    )
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
        holder = order_id_holder(order_id=order_id)
        if holder is None:  # another constraint: not ours to explain
            raise
        raise order_id_conflict(order_id=order_id, holder=holder) from None
    OrderLine.objects.bulk_create(
        OrderLine(order=order, sku=line.sku, name=line.name, quantity=line.quantity, unit_price=line.unit_price)
        for line in lines
    )
    # A review timeout of its own (tests, the chaos run) is kept in the creation's audit row, so
    # that the outbox sweep starts an order saved while Temporal was down with it too.
    events.order_created_event(
        order=order,
        source=source,
        user=user,
        actor=actor,
        details={"review_timeout_seconds": review_timeout_seconds} if review_timeout_seconds is not None else None,
    )
    options = order_workflow_options(order, review_timeout_seconds=review_timeout_seconds, lines=lines)
    if actor and not options.created_by:
        options.created_by = actor
    transaction.on_commit(lambda: start_order_workflow(order, options), robust=False)
    return order


def order_workflow_options(
    order: Order, *, review_timeout_seconds: Optional[float] = None, lines: Optional[list[LineItem]] = None
) -> OrderOptions:
    """The workflow's optional input, rebuilt from the row (also when starting it late: then the
    review timeout order_create was given comes from its audit row)."""
    if lines is None:
        lines = [LineItem(line.sku, line.name, line.quantity, str(line.unit_price)) for line in order.lines.all()]
        if review_timeout_seconds is None:
            created = (
                OrderEvent.objects.filter(order=order, type=OrderEvent.Type.ORDER_CREATED)
                .values_list("details", flat=True)
                .first()
            ) or {}
            review_timeout_seconds = created.get("review_timeout_seconds")
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


# The start of orderweb.reconcile.WORKFLOW_GONE's words, which the reconciler no longer gives a
# `started` order (tests/temporal_app/test_outage.py holds the two together).
STRANDED_FLAG_PREFIX = "Temporal has no workflow "


def orders_awaiting_workflow_start(
    *,
    older_than_seconds: float = 15,
    limit: int = 100,
    after: Optional[tuple[Any, int]] = None,
    cutoff: Optional[Any] = None,
) -> list[Order]:
    """Orders saved but never started: Temporal was unreachable when their transaction
    committed. Their workflow's first activity moves them out of `started` within a second, so
    what stays there longer has no workflow (or one whose workers are down: starting it again is
    refused as a duplicate, which is harmless).

    Oldest first, by (created_at, pk): ``after`` is the last (created_at, pk) of the previous
    batch, so a sweep pages through the whole backlog, each order once, even though the orders it
    started stay `started` until their workflow's first step; ``cutoff`` (a time) replaces
    ``older_than_seconds``, so every batch of one sweep reads up to the same moment."""
    cutoff = cutoff if cutoff is not None else timezone.now() - timedelta(seconds=older_than_seconds)
    # Not flagged, or flagged `workflow_gone` by a reconciler from before the sweep owned these
    # (issue 19): those were never started either. Their workflow's first step clears the flag.
    unflagged = Q(attention_since__isnull=True) | Q(attention_reason__startswith=STRANDED_FLAG_PREFIX)
    queryset = Order.objects.filter(unflagged, status=OrderState.STARTED, created_at__lt=cutoff)
    if after is not None:
        created_at, pk = after
        queryset = queryset.filter(Q(created_at__gt=created_at) | Q(created_at=created_at, pk__gt=pk))
    return list(queryset.select_related("created_by").prefetch_related("lines").order_by("created_at", "pk")[:limit])


# An order the outbox sweep could not start for a reason that is not an outage (Temporal refused
# the start): flagged for staff, so that it neither blocks the orders after it nor is retried
# every sweep.
WORKFLOW_NOT_STARTED_PROBLEM = "workflow_not_started"
WORKFLOW_NOT_STARTED = (
    "Its workflow {workflow_id} could not be started ({error}); the order was saved but nothing "
    "runs it. Fix the cause, then start it again."
)


def order_flag_not_started(*, order: Order, error: BaseException) -> bool:
    """Flag an order whose workflow start failed for a reason other than Temporal being down."""
    first_line = (str(error).strip().splitlines() or [""])[0][:300]
    detail = f"{type(error).__name__}: {first_line}" if first_line else type(error).__name__
    return order_flag_attention(
        order=order,
        problem=WORKFLOW_NOT_STARTED_PROBLEM,
        reason=WORKFLOW_NOT_STARTED.format(workflow_id=order.workflow_id, error=detail),
        details={"error": detail},
    )


# -- projection (activities) ------------------------------------------------------------------
#
# Every activity moves the order with ``order_transition``: one statement locks the row, moves it
# (if it is before the new state) and writes the transition's audit event. A step whose writes
# fit that one statement sends it alone, in autocommit (it is its own transaction: no BEGIN and
# COMMIT round trips); a step with more writes runs it in its transaction, and the order's row
# lock is held to the commit, so the lock order everywhere stays the order first, then its review
# task.


def _transition_sql(fields: list[str], check_workflow: bool, event_columns: list[str]) -> str:
    quote = connection.ops.quote_name
    table, events_table = quote(Order._meta.db_table), quote(OrderEvent._meta.db_table)
    column = lambda name: quote(Order._meta.get_field(name).column)  # noqa: E731
    assignments = ", ".join(
        f"{column(name)} = %s"
        for name in ["status", "status_changed_at", "updated_at", "attention_reason", "attention_since", *fields]
    )
    workflow = f" AND {column('workflow_id')} = %s" if check_workflow else ""
    event_order, event_from = (quote(OrderEvent._meta.get_field(name).column) for name in ("order", "from_status"))
    return (
        f"WITH prev AS (SELECT {column('id')} AS pk, {column('status')} AS from_status FROM {table} "
        f"WHERE {column('order_id')} = %s{workflow} FOR UPDATE), "
        f"moved AS (UPDATE {table} AS o SET {assignments} FROM prev "
        f"WHERE o.{column('id')} = prev.pk AND prev.from_status = ANY(%s) RETURNING prev.pk, prev.from_status), "
        f"audit AS (INSERT INTO {events_table} ({event_order}, {event_from}, {', '.join(map(quote, event_columns))}) "
        f"SELECT moved.pk, moved.from_status, {', '.join(['%s'] * len(event_columns))} FROM moved "
        f"ON CONFLICT DO NOTHING) "
        f"SELECT pk, from_status FROM moved"
    )


def _event_values(event: OrderEvent) -> tuple[list[str], list[Any]]:
    """The columns and database values of an unsaved event, but its order and from status."""
    return row_values(event, leave_out=("order", "from_status"))


def order_transition(
    *,
    order_id: str,
    to_status: OrderState,
    event_key: str,
    type: str = OrderEvent.Type.STATUS_CHANGED,
    actor: str = SYSTEM_ACTOR,
    reason: str = "",
    details: Optional[dict[str, Any]] = None,
    workflow_id: Optional[str] = None,
    **fields: Any,
) -> Optional[int]:
    """Move the order forward to ``to_status`` and audit it, in one statement; returns the
    order's pk, or None when the order is already there or past it (a retried write, a
    superseded attempt: nothing is written). A workflow that moves its order on is alive, so a
    reconciler's flag is cleared. With ``workflow_id``, only that workflow's order moves. Alone
    (autocommit) the statement is its own transaction; inside the caller's, the row stays locked
    until the caller's other writes commit."""
    now = timezone.now()
    event_columns, event_values = _event_values(
        events.status_changed_event(
            type=type,
            to_status=to_status,
            event_key=event_key,
            actor=actor,
            reason=reason,
            details=details,
        )
    )
    values = [order_id, *([workflow_id] if workflow_id else [])]  # the parameters in the statement's order
    values += [to_status.value, now, now, "", None]
    values += [Order._meta.get_field(name).get_db_prep_save(value, connection) for name, value in fields.items()]
    values += [states_before(to_status), *event_values]
    with connection.cursor() as cursor:
        cursor.execute(_transition_sql(list(fields), workflow_id is not None, event_columns), values)
        row = cursor.fetchone()
    return None if row is None else row[0]


def order_receive(*, order_id: str, workflow_id: str, address: str, options: OrderOptions, run_id: str = "") -> int:
    """Make sure the order row exists (outside clients start workflows with no row) and mark it
    processing; returns its pk. Idempotent: a second run finds the row and the events there.

    The workflow has checked its input (``temporal_app.workflows.boundary``) and fails the order
    next if it broke a rule; the row keeps what Postgres can hold, so staff see the failure."""
    # The usual case, one statement in autocommit: the order saved by order_create, started by
    # its workflow.
    pk = order_transition(
        order_id=order_id, to_status=OrderState.PROCESSING, event_key="received", workflow_id=workflow_id
    )
    if pk is not None:
        return pk
    with transaction.atomic():
        try:
            order, created = Order.objects.select_for_update().get_or_create(
                order_id=order_id, defaults=_received_row(workflow_id, address, options)
            )
        except IntegrityError:
            # An outside client's start whose id another order holds in another case, or whose
            # workflow id is another order's: refused like a start by an entry point, naming it.
            holder = order_id_holder(order_id=order_id) or Order.objects.filter(workflow_id=workflow_id).first()
            if holder is None:
                raise
            raise OrderConflict(
                ORDER_ID_TAKEN.format(order_id=order_id, existing=holder.order_id, workflow_id=holder.workflow_id)
            ) from None
        if not created and order.workflow_id != workflow_id:
            raise OrderConflict(ORDER_OWNED_BY_OTHER_WORKFLOW.format(order_id=order_id, workflow_id=order.workflow_id))
        if not created and order.is_terminal:
            if run_id and OrderEvent.objects.filter(order=order, event_key__startswith=f"{run_id}:").exists():
                # This very run ended it: its workflow task ran this step and the ending's, then
                # its completion was lost (a worker or Temporal gone at that moment), and the
                # task runs again from the start. The same story again, each write keyed once.
                return order.pk
            # A finished order's workflow id started again (no id-reuse policy on the start,
            # or a reset to the beginning): running the story twice could charge twice.
            raise OrderConflict(ORDER_ALREADY_FINISHED.format(order_id=order_id, status=order.status))
        if created:
            OrderLine.objects.bulk_create(
                OrderLine(order=order, sku=line.sku, name=line.name, quantity=line.quantity, unit_price=line.unit_price)
                for line in options.line_items
            )
            # Written before the transition's event, so the timeline reads created, then processing.
            events.order_created_event(
                order=order,
                source=OrderEvent.Source.WORKFLOW,
                actor=options.created_by or CLIENT_ACTOR,
                event_key="received:created",
                message="order created by its workflow",
            )
            order_transition(order_id=order_id, to_status=OrderState.PROCESSING, event_key="received")
        return order.pk


def _received_row(workflow_id: str, address: str, options: OrderOptions) -> dict[str, Any]:
    row = {
        "workflow_id": workflow_id,
        "address": address
        if not address_error(address)
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
        row["amount"] = options.amount
    return row


def order_record_progress(record: ProgressRecord) -> Optional[int]:
    """Project one workflow transition or message outcome (the ``record_order_progress`` local
    activity). A transition is one statement (in the caller's transaction, if there is one); a
    message's outcome writes in one transaction. Idempotent by ``record.event_key``. Returns the
    order's pk when the record moved it (the caller may add to that write: a review's close)."""
    event = ProgressEvent(record.event_type)  # the workflow names only known events
    details = dict(record.details)
    if record.to_status:
        state = OrderState(record.to_status)
        fields: dict[str, Any] = {}
        if state == OrderState.CANCELLED:
            fields["cancel_reason"] = pg_text(record.reason) or "cancelled"
            fields["cancel_reason_code"] = pg_text(str(details.get("reason_code", "")))[:40]
        elif state == OrderState.FAILED:
            fields["failure_reason"] = pg_text(record.reason) or "failed"
        return order_transition(
            order_id=record.order_id,
            to_status=state,
            event_key=record.event_key,
            type=event.value,
            actor=record.actor,
            reason=record.reason,
            details=details,
            **fields,
        )
    with transaction.atomic(savepoint=False):
        _record_message(record, event, details)
    return None


def _record_message(record: ProgressRecord, event: ProgressEvent, details: dict[str, Any]) -> None:
    order = Order.objects.only("pk", "dispatch_failures").get(order_id=record.order_id)
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
        order=order.pk,
        type=event.value,
        source=record.source,
        actor=record.actor,
        reason=record.reason,
        details=details,
        event_key=record.event_key,
    )


def shipment_dispatched(*, idempotency_key: str, tracking_number: str, address: str) -> int:
    """Mark the shipment dispatched with the carrier's answer and write its audit event, in one
    statement (autocommit); returns the order's pk. A repeat (a retried activity) leaves the
    dispatched shipment and its event as they are. No shipment under the key: DoesNotExist."""
    quote = connection.ops.quote_name
    table, events_table = quote(Shipment._meta.db_table), quote(OrderEvent._meta.db_table)
    column = lambda name: quote(Shipment._meta.get_field(name).column)  # noqa: E731
    event_columns, event_values = row_values(
        events.carrier_dispatched_event(tracking_number=tracking_number, address=address), leave_out=("order",)
    )
    now = timezone.now()
    sql = (
        f"WITH shipment AS (SELECT {column('id')} AS pk, {column('order')} AS order_pk FROM {table} "
        f"WHERE {column('idempotency_key')} = %s), "
        f"dispatched AS (UPDATE {table} AS s SET {column('status')} = %s, {column('tracking_number')} = %s, "
        f"{column('address')} = %s, {column('dispatched_at')} = %s, {column('updated_at')} = %s "
        f"FROM shipment WHERE s.{column('id')} = shipment.pk AND s.{column('status')} <> %s), "
        f"audit AS (INSERT INTO {events_table} ({quote(OrderEvent._meta.get_field('order').column)}, "
        f"{', '.join(map(quote, event_columns))}) "
        f"SELECT shipment.order_pk, {', '.join(['%s'] * len(event_values))} FROM shipment ON CONFLICT DO NOTHING) "
        f"SELECT order_pk FROM shipment"
    )
    dispatched = Shipment.Status.DISPATCHED
    with connection.cursor() as cursor:
        cursor.execute(
            sql, [idempotency_key, dispatched, tracking_number, address, now, now, dispatched, *event_values]
        )
        row = cursor.fetchone()
    if row is None:
        raise Shipment.DoesNotExist(f"no shipment under {idempotency_key}")
    return row[0]


def order_start_refused(record: RefusedStartRecord) -> None:
    """Record a start that could not make an order, once per workflow run."""
    RefusedStart.objects.bulk_create(
        [
            RefusedStart(
                workflow_id=pg_text(record.workflow_id),
                run_id=record.run_id,
                reason=pg_text(record.reason),
                arguments=pg_text(record.arguments),
            )
        ],
        ignore_conflicts=True,
    )


# -- notes ---------------------------------------------------------------------------------------

MAX_ORDER_NOTE_LENGTH = 2000
NOTE_EMPTY = "Write the note first."
NOTE_TOO_LONG = f"A note is at most {MAX_ORDER_NOTE_LENGTH} characters."
NOTE_CONTROL_CHARS = "The note contains control characters; write plain text."
NOTE_NOT_ALLOWED = "You may not add notes to orders."
NOTE_ADDED = "Your note on {order_id} was added."


def order_note_add(*, order: Order, user, text: Any, source: str) -> None:
    """A remark on the order for colleagues, without a decision: plain text, audited with its
    author (it is an event of the timeline), never a state change and never sent to the workflow."""
    if not user.has_perm("orderweb.add_order_note"):
        raise ValidationError(NOTE_NOT_ALLOWED, code="not_allowed")
    text = text.replace("\r\n", "\n").strip() if isinstance(text, str) else ""
    if not text:
        raise ValidationError(NOTE_EMPTY, code="note_empty")
    if len(text) > MAX_ORDER_NOTE_LENGTH:
        raise ValidationError(NOTE_TOO_LONG, code="note_too_long")
    if has_control_chars(text.replace("\n", " ").replace("\t", " ")):
        raise ValidationError(NOTE_CONTROL_CHARS, code="note_control_chars")
    events.note_added_event(order=order, source=source, user=user, text=text)


def order_flag_attention(*, order: Order, problem: str, reason: str, details: Optional[dict[str, Any]] = None) -> bool:
    """Flag an order for staff: its workflow cannot report for itself. Once per problem;
    returns whether this call flagged it."""
    flagged = Order.objects.filter(pk=order.pk, attention_since__isnull=True).update(
        attention_reason=reason,
        attention_since=timezone.now(),
        updated_at=timezone.now(),
    )
    if flagged:
        events.attention_flagged_event(order=order, reason=reason, details={"problem": problem, **(details or {})})
    return bool(flagged)
