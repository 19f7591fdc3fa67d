"""Each activity run twice (a retry, or a worker killed after the write) writes once."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import IntegrityError
from temporalio.exceptions import ApplicationError

from orderweb import activities
from orderweb.models import CarrierLedgerEntry, GatewayLedgerEntry, Order, OrderEvent, Payment, Shipment
from orderweb.simulators import fault_plan
from reviews.activities import order_validated, record_order_progress
from reviews.models import ReviewTask
from temporal_app.contracts import (
    DispatchInput,
    Errors,
    LineItem,
    OrderOptions,
    OrderRef,
    PaymentInput,
    ProgressRecord,
    ReceiveOrderInput,
    ValidateOrderInput,
)

# Committed transactions: the activity wrapper closes connections between attempts, as on a worker.
pytestmark = pytest.mark.django_db(transaction=True)


def receive(order_id="ORD-1", address="1 Main St", **options) -> Order:
    request = ReceiveOrderInput(order_id, order_id.lower(), address, OrderOptions(**options))
    activities.order_received(request)
    return Order.objects.get(order_id=order_id)


def received_and_validated(order_id="ORD-1") -> Order:
    order = receive(order_id, amount="12.00", line_items=[LineItem("A", "a", 2, "6.00")])
    order_validated(ValidateOrderInput(order_id, 1_900_000_000.0))
    return order


def test_order_received_twice_creates_one_order_with_its_lines():
    for _ in range(2):
        order = receive(amount="12.00", line_items=[LineItem("A", "a", 2, "6.00")])
    assert Order.objects.count() == 1
    assert order.lines.count() == 1
    assert order.status == "processing"
    assert order.amount == Decimal("12.00")
    assert list(order.events.values_list("to_status", flat=True)) == ["started", "processing"]


def test_order_validated_twice_opens_one_review_task():
    order = received_and_validated()
    order_validated(ValidateOrderInput(order.order_id, 1_900_000_000.0))
    assert ReviewTask.objects.filter(order=order).count() == 1
    assert Order.objects.get(pk=order.pk).status == "awaiting_manual_review"
    assert OrderEvent.objects.filter(order=order, event_key="validated").count() == 1


def test_payment_charged_twice_charges_once():
    order = received_and_validated()
    first = activities.payment_charged(PaymentInput(order.order_id, "12.00"))
    second = activities.payment_charged(PaymentInput(order.order_id, "12.00"))
    assert first == second
    assert GatewayLedgerEntry.objects.filter(kind="charge").count() == 1
    assert Payment.objects.get().status == "succeeded"
    assert OrderEvent.objects.filter(order=order, type="payment_charged").count() == 1


def test_payment_retry_after_crash_between_gateway_and_our_row_charges_once():
    """The gateway charged, then we died before writing our Payment row: the retry must reuse the
    gateway's charge by idempotency key."""
    order = received_and_validated()
    activities.payment_charged(PaymentInput(order.order_id, "12.00"))
    Payment.objects.all().delete()  # as if our write never happened
    activities.payment_charged(PaymentInput(order.order_id, "12.00"))
    assert GatewayLedgerEntry.objects.filter(kind="charge").count() == 1
    assert Payment.objects.get().provider_reference == GatewayLedgerEntry.objects.get().reference


def test_transient_gateway_failure_is_retryable_and_charges_nothing():
    order = received_and_validated()
    fault_plan(target="payment_charged", order_ref=order.order_id, times=1)
    with pytest.raises(ApplicationError) as err:
        activities.payment_charged(PaymentInput(order.order_id, "12.00"))
    assert not err.value.non_retryable
    assert not GatewayLedgerEntry.objects.exists()


def test_refund_twice_refunds_once_and_names_the_charge():
    order = received_and_validated()
    activities.payment_charged(PaymentInput(order.order_id, "12.00"))
    for _ in range(2):
        activities.payment_refunded(OrderRef(order.order_id, order.workflow_id))
    refund = GatewayLedgerEntry.objects.get(kind="refund")
    assert refund.refunds == GatewayLedgerEntry.objects.get(kind="charge")
    assert Payment.objects.filter(kind="refund").count() == 1


def test_refund_without_a_charge_does_nothing():
    order = received_and_validated()
    activities.payment_refunded(OrderRef(order.order_id, order.workflow_id))
    assert not GatewayLedgerEntry.objects.exists()


def test_shipping_activities_twice_dispatch_once():
    order = received_and_validated()
    request = DispatchInput(order.order_id, "1 Main St")
    activities.package_prepared(request)
    activities.package_prepared(request)
    first = activities.carrier_dispatched(request)
    second = activities.carrier_dispatched(request)
    assert first == second
    assert CarrierLedgerEntry.objects.count() == 1
    shipment = Shipment.objects.get()
    assert (shipment.status, shipment.tracking_number) == ("dispatched", first)
    assert Order.objects.get(pk=order.pk).status == "shipping"


def test_a_dispatch_without_a_prepared_shipment_fails_for_good_and_writes_no_event():
    """The one statement that marks the shipment dispatched finds none: a data fault no retry
    fixes (non-retryable, so the workflow refunds), not a silent no-op."""
    order = received_and_validated()
    with pytest.raises(ApplicationError) as raised:
        activities.carrier_dispatched(DispatchInput(order.order_id, "1 Main St"))
    assert raised.value.type == Errors.PERMANENT and raised.value.non_retryable
    assert "DoesNotExist" in raised.value.message
    assert not OrderEvent.objects.filter(order=order, type="carrier_dispatched").exists()


def test_progress_record_twice_writes_one_event_and_never_moves_backwards():
    order = received_and_validated()
    done = ProgressRecord(order.order_id, "order_cancelled", "run:1", to_status="cancelled", reason="stop")
    record_order_progress(done)
    record_order_progress(done)
    assert OrderEvent.objects.filter(event_key="run:1").count() == 1
    # A stale, superseded write (an earlier state) cannot undo the terminal state.
    record_order_progress(ProgressRecord(order.order_id, "signal_applied", "run:0", to_status="processing"))
    order.refresh_from_db()
    assert (order.status, order.cancel_reason) == ("cancelled", "stop")


def test_an_order_that_ends_without_its_review_closes_the_task_a_retried_first_task_left_open():
    """order_validated committed the task in a first workflow task that then failed; the retry
    starts from `started` and a cancel that came meanwhile stops the order before review, so
    the workflow has no review of its own to close (seen in the chaos run: race_signals after a
    Temporal restart). The ending's write closes the task, once."""
    order = received_and_validated()
    done = ProgressRecord(
        order.order_id,
        "order_cancelled",
        "order_cancelled",
        to_status="cancelled",
        reason="cancelled by request",
        actor="carol",
    )
    record_order_progress(done)
    record_order_progress(done)
    task = ReviewTask.objects.get(order=order)
    assert (task.status, task.note, task.decided_by_name) == (ReviewTask.Status.CANCELLED, "cancelled by request", "")
    assert task.decided_at is not None
    order.refresh_from_db()
    assert order.status == "cancelled"


def test_database_constraints_hold_the_invariants():
    order = received_and_validated()
    with pytest.raises(IntegrityError):
        ReviewTask.objects.create(order=order, due_at=ReviewTask.objects.get().due_at)  # second open task
    with pytest.raises(IntegrityError):
        Order.objects.filter(pk=order.pk).update(status="failed")  # failed without a reason
    with pytest.raises(IntegrityError):
        Order.objects.filter(pk=order.pk).update(status="bogus")


def test_order_received_again_by_the_run_that_ended_the_order_is_that_runs_retry_not_a_conflict():
    """A workflow task that ran order_received and the ending's projection, then lost its
    completion (Temporal restarted at that moment: seen in the chaos run's Temporal outage), runs
    again from the start: the same run's order_received must not be refused as a second story.
    Another run of the same workflow id still is (it could charge twice)."""
    import dataclasses

    from temporalio.testing import ActivityEnvironment

    order = receive("ORD-RUN", "   ")
    OrderEvent.objects.create(
        order=order, type="order_failed", source="workflow", to_status="failed", event_key="run-1:order_failed"
    )
    Order.objects.filter(pk=order.pk).update(status="failed", failure_reason="validation failed: The address is empty.")
    request = ReceiveOrderInput("ORD-RUN", "ord-run", "   ", OrderOptions())

    def in_run(run_id: str):
        env = ActivityEnvironment()
        env.info = dataclasses.replace(env.info, workflow_run_id=run_id)
        return env.run(activities.order_received, request)

    in_run("run-1")  # the same run: its retry
    assert Order.objects.get(pk=order.pk).status == "failed"
    with pytest.raises(ApplicationError) as refused:
        in_run("run-2")
    assert refused.value.type == Errors.ORDER_CONFLICT and "has already finished" in refused.value.message
