"""The order's steps, as Temporal activities: plain sync functions run by the workers' threads.

Each is idempotent by a database constraint: run it twice (a retry, a worker killed after the
write but before reporting, an operator reset) and there is still one row, one charge, one
dispatch. Each writes its own step into the projection with its other writes, in one statement
where they fit one (autocommit) and in one transaction where they do not, so the projection
costs no extra round trip. Registered with ``temporal_app.registry``.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone
from temporalio import activity
from temporalio.exceptions import ApplicationError

from orderweb import events, simulators
from orderweb.api.services import api_idempotency_keys_purge
from orderweb.models import Order, Payment, Shipment
from orderweb.services import (
    OrderConflict,
    order_flag_not_started,
    order_receive,
    order_start_refused,
    order_transition,
    order_workflow_options,
    orders_awaiting_workflow_start,
    shipment_dispatched,
)
from orderweb.sql import insert_ignoring_conflicts
from orderweb.webhooks import webhook_gave_up as webhook_failed
from orderweb.webhooks import webhook_send, webhooks_queue
from temporal_app.client import TemporalUnavailable, start_order_workflow
from temporal_app.contracts import (
    ORDER_TASK_QUEUE,
    SHIPPING_TASK_QUEUE,
    WEBHOOK_TASK_QUEUE,
    Activities,
    DispatchInput,
    Errors,
    OrderRef,
    OrderState,
    PaymentInput,
    PaymentReceipt,
    ReceivedOrder,
    ReceiveOrderInput,
    RefusedStart,
    ShippingOutcome,
    ShippingStatus,
)
from temporal_app.registry import also_on, db_activity, periodic, worker_stopping

logger = logging.getLogger(__name__)


def charge_key(order_id: str) -> str:
    return f"order:{order_id}:charge"


def refund_key(order_id: str) -> str:
    return f"order:{order_id}:refund"


def dispatch_key(order_id: str) -> str:
    return f"order:{order_id}:dispatch"


@db_activity(Activities.ORDER_RECEIVED, queue=ORDER_TASK_QUEUE)
def order_received(request: ReceiveOrderInput) -> ReceivedOrder:
    try:
        order_receive(
            order_id=request.order_id,
            workflow_id=request.workflow_id,
            address=request.address,
            options=request.options,
            run_id=_workflow_run_id(),
        )
    except OrderConflict as err:
        raise ApplicationError(str(err), type=Errors.ORDER_CONFLICT, non_retryable=True) from None
    # The row's amount is the checked total the workflow was started with (order_create passes
    # it; an outside client's start is totalled by the workflow's boundary).
    return ReceivedOrder(
        review_timeout_seconds=settings.ORDER_REVIEW_TIMEOUT_SECONDS, amount=request.options.amount or "0.00"
    )


def _workflow_run_id() -> str:
    """The run of the workflow this activity serves ("" when called outside a worker)."""
    try:
        return activity.info().workflow_run_id or ""
    except RuntimeError:
        return ""


@db_activity(Activities.PAYMENT_CHARGED, queue=ORDER_TASK_QUEUE)
def payment_charged(request: PaymentInput) -> PaymentReceipt:
    key = charge_key(request.order_id)
    amount = Decimal(request.amount)
    pk = order_transition(
        order_id=request.order_id, to_status=OrderState.PROCESSING_PAYMENT, event_key="payment:started"
    )
    order = Order(pk=pk) if pk is not None else _order_ref(request.order_id)  # a retry reads it
    # The gateway call sits outside our transaction, like any external service: if we die after
    # it, the retry sends the same key and the gateway answers with the first charge.
    try:
        entry = simulators.gateway_charge(idempotency_key=key, order_ref=request.order_id, amount=amount)
    except simulators.PaymentDeclined as err:
        Payment.objects.bulk_create(
            [
                Payment(
                    order=order,
                    kind=Payment.Kind.CHARGE,
                    status=Payment.Status.DECLINED,
                    amount=amount,
                    idempotency_key=key,
                    message=str(err),
                )
            ],
            ignore_conflicts=True,
        )
        raise ApplicationError(str(err), type=Errors.PAYMENT_DECLINED, non_retryable=True) from None
    except simulators.ServiceUnavailable as err:
        raise ApplicationError(str(err), type=Errors.PAYMENT_UNAVAILABLE) from None
    # Our record of the charge and its audit event, once per key, in one statement: the gateway's
    # entry is the truth for both attempts.
    insert_ignoring_conflicts(
        Payment(
            order=order,
            kind=Payment.Kind.CHARGE,
            status=Payment.Status.SUCCEEDED,
            amount=entry.amount,
            idempotency_key=key,
            provider_reference=entry.reference,
        ),
        events.payment_charged_event(order=order, amount=entry.amount, reference=entry.reference, idempotency_key=key),
    )
    return PaymentReceipt(key, entry.reference, str(entry.amount))


@db_activity(Activities.PAYMENT_REFUNDED, queue=ORDER_TASK_QUEUE)
def payment_refunded(request: OrderRef) -> bool:
    """Refund the order's charge, if the gateway made one. Returns whether there was one.

    The charge is looked up at the gateway by its key, not in our Payment table: after a payment
    activity that gave up, the gateway may hold a charge that we never recorded."""
    key = charge_key(request.order_id)
    charge = simulators.gateway_charge_lookup(idempotency_key=key)
    if charge is None:
        logger.info("order %s: nothing to refund", request.order_id)
        return False
    order = Order.objects.get(order_id=request.order_id)
    entry = simulators.gateway_refund(idempotency_key=refund_key(request.order_id), charge_key=key)
    with transaction.atomic():
        # Record the charge too if its own activity never got to (it gave up after the gateway
        # call), so that our books show what the customer saw.
        Payment.objects.get_or_create(
            idempotency_key=key,
            defaults={
                "order": order,
                "kind": Payment.Kind.CHARGE,
                "status": Payment.Status.SUCCEEDED,
                "amount": charge.amount,
                "provider_reference": charge.reference,
            },
        )
        Payment.objects.get_or_create(
            idempotency_key=refund_key(request.order_id),
            defaults={
                "order": order,
                "kind": Payment.Kind.REFUND,
                "status": Payment.Status.SUCCEEDED,
                "amount": entry.amount,
                "provider_reference": entry.reference,
            },
        )
        events.payment_refunded_event(
            order=order, amount=entry.amount, reference=entry.reference, charge_reference=charge.reference
        )
    return True


@db_activity(Activities.PACKAGE_PREPARED, queue=SHIPPING_TASK_QUEUE)
def package_prepared(request: DispatchInput) -> None:
    with transaction.atomic(), events.batch():
        pk = order_transition(
            order_id=request.order_id,
            to_status=OrderState.SHIPPING,
            event_key="shipping:prepared",
            reason="package prepared",
        )
        if pk is None:  # a retry: the order moved on with its shipment already
            pk = _order_ref(request.order_id).pk
        Shipment.objects.bulk_create(
            [Shipment(order_id=pk, address=request.address, idempotency_key=dispatch_key(request.order_id))],
            ignore_conflicts=True,
        )


@db_activity(Activities.CARRIER_DISPATCHED, queue=SHIPPING_TASK_QUEUE)
def carrier_dispatched(request: DispatchInput) -> str:
    try:
        entry = simulators.carrier_dispatch(
            idempotency_key=dispatch_key(request.order_id), order_ref=request.order_id, address=request.address
        )
    except simulators.ServiceUnavailable as err:
        raise ApplicationError(str(err), type=Errors.DISPATCH_FAILED) from None
    shipment_dispatched(
        idempotency_key=dispatch_key(request.order_id), tracking_number=entry.tracking_number, address=entry.address
    )
    return entry.tracking_number


@db_activity(Activities.SHIPMENT_CHECKED, queue=ORDER_TASK_QUEUE)
def shipment_checked(request: OrderRef) -> ShippingOutcome:
    """What the carrier holds for this order: asked when the shipping workflow stopped without
    an answer (terminated, timed out), so the order completes or is refunded on facts."""
    entry = simulators.carrier_dispatch_lookup(idempotency_key=dispatch_key(request.order_id))
    if entry is None:
        return ShippingOutcome(ShippingStatus.NOT_DISPATCHED)
    with transaction.atomic():
        Shipment.objects.filter(order__order_id=request.order_id).exclude(status=Shipment.Status.DISPATCHED).update(
            status=Shipment.Status.DISPATCHED,
            tracking_number=entry.tracking_number,
            address=entry.address,
            dispatched_at=entry.created_at,
            updated_at=timezone.now(),
        )
    return ShippingOutcome(ShippingStatus.DISPATCHED, entry.tracking_number, entry.address)


@db_activity(Activities.START_REFUSED, queue=ORDER_TASK_QUEUE)
def start_refused(record: RefusedStart) -> None:
    order_start_refused(record)


def _order_ref(order_id: str) -> Order:
    """The order's row as a reference (its pk), without reading the rest."""
    return Order.objects.only("pk").get(order_id=order_id)


ORPHAN_SWEEP_SECONDS = settings.ORDER_START_SWEEP_SECONDS


@periodic(seconds=ORPHAN_SWEEP_SECONDS, queue=ORDER_TASK_QUEUE)
def orphaned_orders_started(*, older_than_seconds: float = 15) -> int:
    """Start the workflows of orders saved while Temporal was unreachable (an outbox sweep).

    The request that saved such an order told its user that Temporal was down; nothing was
    lost, and this sweep starts the workflow once it can. It owns the orders never started (the
    reconciler leaves a `started` order without a workflow to it), so it drains the whole
    backlog, batch after batch, oldest first. An order whose start fails for any reason but an
    outage is flagged for staff and the sweep goes on with the next; an outage ends the sweep
    (the next one carries on). Returns how many it started."""
    started = 0
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    after = None
    while not worker_stopping():
        batch = orders_awaiting_workflow_start(cutoff=cutoff, after=after, limit=settings.ORDER_START_SWEEP_BATCH)
        if not batch:
            break
        for order in batch:
            try:
                if start_order_workflow(order, order_workflow_options(order)):
                    started += 1
                    logger.info("started the workflow of order %s (saved while Temporal was down)", order.order_id)
            except TemporalUnavailable:
                logger.warning(
                    "Temporal is still unreachable; %s and the orders after it will be started later", order.order_id
                )
                return started
            except DatabaseError:
                raise  # Postgres is down: the whole sweep fails and runs again
            except Exception as err:  # one order's problem must not hold up the others
                logger.exception("the workflow of order %s could not be started; flagged for staff", order.order_id)
                order_flag_not_started(order=order, error=err)
        after = (batch[-1].created_at, batch[-1].pk)
    return started


# -- webhooks (orderweb/webhooks.py; WebhookDeliveryWorkflow) --------------------------------------


@db_activity(Activities.WEBHOOK_DELIVERED, queue=WEBHOOK_TASK_QUEUE)
def webhook_delivered(delivery_id: int) -> None:
    """One POST of one status change; raises (and Temporal retries) unless the receiver says 2xx."""
    webhook_send(delivery_id=delivery_id)


@db_activity(Activities.WEBHOOK_GAVE_UP, queue=WEBHOOK_TASK_QUEUE)
def webhook_gave_up(delivery_id: int, reason: str) -> None:
    webhook_failed(delivery_id=delivery_id, reason=reason)


# Deliveries started on order-tq before webhooks had a queue of their own finish there (their
# workflow and its scheduled attempts stay on the queue they started on). Remove these two lines
# and WebhookDeliveryWorkflow from order-tq (temporal_app.worker.workflows_for) once none can be
# running: ORDER_WEBHOOK_GIVE_UP_SECONDS (a day) after the deploy that moved them.
also_on(ORDER_TASK_QUEUE, webhook_delivered)
also_on(ORDER_TASK_QUEUE, webhook_gave_up)


@periodic(seconds=settings.ORDER_WEBHOOK_SWEEP_SECONDS, queue=ORDER_TASK_QUEUE)
def webhooks_queued() -> tuple[int, int]:
    """The webhook outbox sweep: a delivery for each new status change, a workflow for each new
    delivery (idempotent: several worker processes may run it at once)."""
    return webhooks_queue()


# -- the API's Idempotency-Keys (orderweb/api/services.py) ----------------------------------------


@periodic(seconds=3600, queue=ORDER_TASK_QUEUE)
def api_idempotency_keys_expired() -> int:
    """Delete the Idempotency-Keys older than API_IDEMPOTENCY_KEY_HOURS (safe in every worker
    process at once: SKIP LOCKED batches)."""
    deleted = api_idempotency_keys_purge()
    if deleted:
        logger.info("deleted %d expired API idempotency keys", deleted)
    return deleted
