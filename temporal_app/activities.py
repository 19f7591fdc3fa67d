"""Activities: plain sync functions, run by the worker's ThreadPoolExecutor.

Each one is idempotent by a database constraint: run it twice (a retry, a worker killed after the
write but before reporting, an operator reset) and there is still one row, one charge, one
dispatch. Each also writes its own step into the Postgres projection in the same transaction, so
the projection costs no extra round trip.
"""

from __future__ import annotations

import functools
import logging
import random
from datetime import datetime, timezone as dt_timezone
from decimal import Decimal
from typing import Any, Callable, TypeVar

from django.conf import settings
from django.db import close_old_connections, transaction
from django.utils import timezone
from temporalio import activity
from temporalio.exceptions import ApplicationError

from orderweb import simulators
from orderweb.models import Order, OrderEvent, Payment, Shipment
from orderweb.services import ORDER_INPUT_REFUSED, OrderConflict, order_advance, order_event_record, order_receive, order_record_progress
from reviews.services import review_task_open
from temporal_app.contracts import (
    Activities,
    DispatchInput,
    Errors,
    OrderRef,
    OrderState,
    PaymentInput,
    PaymentReceipt,
    ProgressRecord,
    ReceivedOrder,
    ReceiveOrderInput,
    ValidateOrderInput,
    address_error,
)

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

INJECTED_FAULT = "InjectedFault"


def django_activity(name: str) -> Callable[[F], F]:
    """Register a sync activity that uses the ORM from a worker thread.

    Worker threads outlive requests, so stale or broken connections are closed before and after
    each attempt, as Django's request cycle would. ``ACTIVITY_FAULT_RATE`` (chaos runs only)
    fails that share of attempts before they touch anything.
    """

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            close_old_connections()
            try:
                rate = settings.ACTIVITY_FAULT_RATE
                if rate and random.random() < rate:
                    raise ApplicationError(f"injected fault in {name}", type=INJECTED_FAULT)
                return fn(*args, **kwargs)
            finally:
                close_old_connections()

        return activity.defn(name=name)(wrapper)  # type: ignore[return-value]

    return decorate


@django_activity(Activities.ORDER_RECEIVED)
def order_received(request: ReceiveOrderInput) -> ReceivedOrder:
    try:
        order = order_receive(
            order_id=request.order_id,
            workflow_id=request.workflow_id,
            address=request.address,
            options=request.options,
        )
    except OrderConflict as err:
        raise ApplicationError(str(err), type=Errors.ORDER_CONFLICT, non_retryable=True) from None
    return ReceivedOrder(
        review_timeout_seconds=settings.ORDER_REVIEW_TIMEOUT_SECONDS, amount=str(order.amount)
    )


@django_activity(Activities.ORDER_VALIDATED)
def order_validated(request: ValidateOrderInput) -> None:
    order = Order.objects.get(order_id=request.order_id)
    problem = address_error(order.address) if order.address != "(no address)" else Errors.ADDRESS_EMPTY
    if problem is None and order.amount < 0:
        problem = "the amount is negative"
    if problem is None:
        refused = order.events.filter(type=ORDER_INPUT_REFUSED).first()
        problem = refused.message if refused is not None else None
    if problem:
        raise ApplicationError(problem, type=Errors.VALIDATION_FAILED, non_retryable=True)
    due_at = datetime.fromtimestamp(request.review_due_epoch, tz=dt_timezone.utc)
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order.pk)
        order_advance(
            order=order, to_status=OrderState.AWAITING_MANUAL_REVIEW, event_key="validated",
            reason="order validated; waiting for manual review", details={"review_due": due_at.isoformat()},
        )
        review_task_open(order=order, due_at=due_at)


def charge_key(order_id: str) -> str:
    return f"order:{order_id}:charge"


@django_activity(Activities.PAYMENT_CHARGED)
def payment_charged(request: PaymentInput) -> PaymentReceipt:
    key = charge_key(request.order_id)
    amount = Decimal(request.amount)
    with transaction.atomic():
        order = Order.objects.select_for_update().get(order_id=request.order_id)
        order_advance(order=order, to_status=OrderState.PROCESSING_PAYMENT, event_key="payment:started")
    # The gateway call sits outside our transaction, like any external service: if we die after
    # it, the retry sends the same key and the gateway answers with the first charge.
    try:
        entry = simulators.gateway_charge(idempotency_key=key, order_ref=request.order_id, amount=amount)
    except simulators.PaymentDeclined as err:
        Payment.objects.get_or_create(
            idempotency_key=key,
            defaults={"order": order, "kind": Payment.Kind.CHARGE, "status": Payment.Status.DECLINED,
                      "amount": amount, "message": str(err)},
        )
        raise ApplicationError(str(err), type=Errors.PAYMENT_DECLINED, non_retryable=True) from None
    except simulators.ServiceUnavailable as err:
        raise ApplicationError(str(err), type="PaymentGatewayUnavailable") from None
    with transaction.atomic():
        payment, _ = Payment.objects.get_or_create(
            idempotency_key=key,
            defaults={"order": order, "kind": Payment.Kind.CHARGE, "status": Payment.Status.SUCCEEDED,
                      "amount": entry.amount, "provider_reference": entry.reference},
        )
        order_event_record(
            order=order, type="payment_charged", event_key="payment:charged",
            source=OrderEvent.Source.WORKFLOW, message=f"charged {entry.amount}",
            details={"reference": entry.reference, "idempotency_key": key},
        )
    return PaymentReceipt(key, payment.provider_reference, str(payment.amount))


@django_activity(Activities.PAYMENT_REFUNDED)
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
    refund_key = f"order:{request.order_id}:refund"
    entry = simulators.gateway_refund(idempotency_key=refund_key, charge_key=key)
    with transaction.atomic():
        # Record the charge too if its own activity never got to (it gave up after the gateway
        # call), so that our books show what the customer saw.
        Payment.objects.get_or_create(
            idempotency_key=key,
            defaults={"order": order, "kind": Payment.Kind.CHARGE, "status": Payment.Status.SUCCEEDED,
                      "amount": charge.amount, "provider_reference": charge.reference},
        )
        Payment.objects.get_or_create(
            idempotency_key=refund_key,
            defaults={"order": order, "kind": Payment.Kind.REFUND, "status": Payment.Status.SUCCEEDED,
                      "amount": entry.amount, "provider_reference": entry.reference},
        )
        order_event_record(
            order=order, type="payment_refunded", event_key="payment:refunded",
            source=OrderEvent.Source.WORKFLOW, message=f"refunded {entry.amount}",
            details={"reference": entry.reference, "charge": charge.reference},
        )
    return True


@django_activity(Activities.PACKAGE_PREPARED)
def package_prepared(request: DispatchInput) -> None:
    with transaction.atomic():
        order = Order.objects.select_for_update().get(order_id=request.order_id)
        Shipment.objects.get_or_create(
            order=order,
            defaults={"address": request.address, "idempotency_key": f"order:{request.order_id}:dispatch"},
        )
        order_advance(
            order=order, to_status=OrderState.SHIPPING, event_key="shipping:prepared",
            reason="package prepared",
        )


@django_activity(Activities.CARRIER_DISPATCHED)
def carrier_dispatched(request: DispatchInput) -> str:
    shipment = Shipment.objects.select_related("order").get(order__order_id=request.order_id)
    try:
        entry = simulators.carrier_dispatch(
            idempotency_key=shipment.idempotency_key, order_ref=request.order_id, address=request.address
        )
    except simulators.ServiceUnavailable as err:
        raise ApplicationError(str(err), type=Errors.DISPATCH_FAILED) from None
    with transaction.atomic():
        Shipment.objects.filter(pk=shipment.pk).exclude(status=Shipment.Status.DISPATCHED).update(
            status=Shipment.Status.DISPATCHED, tracking_number=entry.tracking_number,
            address=entry.address, dispatched_at=timezone.now(), updated_at=timezone.now(),
        )
        order_event_record(
            order=shipment.order, type="carrier_dispatched", event_key="shipping:dispatched",
            source=OrderEvent.Source.WORKFLOW, message=f"dispatched, tracking {entry.tracking_number}",
            details={"tracking_number": entry.tracking_number, "address": entry.address},
        )
    return entry.tracking_number


@django_activity(Activities.RECORD_ORDER_PROGRESS)
def record_order_progress(record: ProgressRecord) -> None:
    order_record_progress(record)


ORDER_ACTIVITIES = [order_received, order_validated, payment_charged, payment_refunded, record_order_progress]
SHIPPING_ACTIVITIES = [package_prepared, carrier_dispatched]
