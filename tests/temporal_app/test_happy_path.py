from decimal import Decimal

import pytest

from orderweb.models import CarrierLedgerEntry, GatewayLedgerEntry, Order, OrderEvent, Payment, Shipment
from orderweb.services import order_create
from reviews.models import ReviewTask
from temporal_app.contracts import LineItem, ReviewDecision, Signals
from temporal_app.workflows import OrderWorkflow
from tests.helpers import handle, new_order_id, temporal, wait_for_state

pytestmark = pytest.mark.temporal


def test_order_created_by_service_runs_to_completed(system):
    order_id = new_order_id()
    order = order_create(
        order_id=order_id,
        address="1 Test Way, Springfield",
        line_items=[LineItem("SKU-1", "Widget", 2, "12.50")],
    )
    wait_for_state(order.workflow_id, "awaiting_manual_review")
    order.refresh_from_db()
    assert order.status == Order.Status.AWAITING_MANUAL_REVIEW
    assert order.amount == Decimal("25.00")
    task = ReviewTask.objects.get(order=order)
    assert task.status == ReviewTask.Status.OPEN

    h = handle(order.workflow_id)
    temporal(lambda c: h.signal(Signals.COMPLETE_MANUAL_REVIEW, ReviewDecision(reviewer="alice")))
    result = temporal(lambda c: h.result())
    assert result.status == "completed"

    order.refresh_from_db()
    assert order.status == Order.Status.COMPLETED
    task.refresh_from_db()
    assert task.status == ReviewTask.Status.APPROVED
    assert task.decided_by_name == "alice"
    assert GatewayLedgerEntry.objects.filter(order_ref=order_id, kind="charge").count() == 1
    assert Payment.objects.get(order=order, kind="charge").amount == Decimal("25.00")
    assert CarrierLedgerEntry.objects.filter(order_ref=order_id).count() == 1
    shipment = Shipment.objects.get(order=order)
    assert shipment.status == Shipment.Status.DISPATCHED
    assert shipment.tracking_number == result.tracking_number
    statuses = list(OrderEvent.objects.filter(order=order).exclude(to_status="").values_list("to_status", flat=True))
    assert statuses == [
        "started",
        "processing",
        "awaiting_manual_review",
        "manual_review_completed",
        "processing_payment",
        "shipping",
        "completed",
    ]


def test_seed_two_argument_start_creates_its_own_order(system):
    """The seed's client code, as written (with args= for the two arguments)."""
    order_id = new_order_id()
    workflow_id = order_id.lower()

    async def seed_story(client):
        h = await client.start_workflow(
            OrderWorkflow.run,
            args=[order_id, "123 Main St, City, State 12345"],
            id=workflow_id,
            task_queue="order-tq",
        )
        await h.signal(OrderWorkflow.update_address, "New Address 1, City")
        await h.signal(OrderWorkflow.complete_manual_review)
        status = await h.query(OrderWorkflow.get_status)
        result = await h.result()
        history = await h.fetch_history()
        description = await h.describe()
        return status, result, history, description

    status, result, history, description = temporal(seed_story)
    assert status["order_id"] == order_id
    assert status["workflow_status"] in {
        s
        for s in (
            "started",
            "processing",
            "awaiting_manual_review",
            "manual_review_completed",
            "processing_payment",
            "shipping",
            "completed",
        )
    }
    assert result.status == "completed"
    assert len(history.events) > 10
    assert description.status.name == "COMPLETED"
    order = Order.objects.get(order_id=order_id)
    assert order.status == Order.Status.COMPLETED
    assert order.address == "New Address 1, City"
    assert order.source == "temporal-client"
