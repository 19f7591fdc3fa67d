"""The workflow's boundary against the real dev server and workers: whatever a client sends, no
workflow task fails; bad input is refused and recorded, or ends the order `failed` before any
charge; internal messages cannot be forged; Temporal's own cancel is a cancellation; a fault no
retry can fix after a charge ends in a refund."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from django.db import connection
from temporalio.api.enums.v1 import EventType

from orderweb.models import GatewayLedgerEntry, Order, OrderEvent, RefusedStart, Shipment
from orderweb.services import order_create
from orderweb.simulators import fault_plan
from reviews.models import ReviewTask
from temporal_app.client import ActionRefused, order_workflow_update
from temporal_app.contracts import (
    ADDRESS_EMPTY,
    ADDRESS_TOO_LONG,
    MAX_ADDRESS_LENGTH,
    MAX_ORDER_ID_LENGTH,
    ORDER_TASK_QUEUE,
    SHIPPING_TASK_QUEUE,
    TEMPORAL_ACTOR,
    ActionResult,
    LineItem,
    RefusalCode,
    ReviewDecision,
    Signals,
    Updates,
    shipping_workflow_id,
)
from temporal_app.workflows.boundary import ADDRESS_MISSING, TOO_MANY_ARGUMENTS
from tests.helpers import new_order_id, temporal, wait_for_state, wait_until, workflow_status

pytestmark = pytest.mark.temporal


def start(
    args: list, workflow_id: str | None = None, task_queue: str = ORDER_TASK_QUEUE, workflow: str = "OrderWorkflow"
):
    """Start a workflow by name with raw arguments, as any client can, and return its result."""
    workflow_id = workflow_id or new_order_id("RAW").lower()

    async def run(client):
        handle = await client.start_workflow(workflow, args=args, id=workflow_id, task_queue=task_queue)
        return await handle.result()

    return SimpleNamespace(**temporal(run, timeout=90))


def signal(workflow_id: str, name: str, *args) -> None:
    temporal(lambda c: c.get_workflow_handle(workflow_id).signal(name, args=list(args)))


def waiting_order() -> Order:
    order = order_create(
        order_id=new_order_id("EDGE"), address="1 Edge Road", line_items=[LineItem("SKU-1", "Widget", 1, "10.00")]
    )
    wait_for_state(order.workflow_id, "awaiting_manual_review")
    return order


def charges(order_id: str) -> int:
    return GatewayLedgerEntry.objects.filter(order_ref=order_id, kind="charge").count()


def refunds(order_id: str) -> int:
    return GatewayLedgerEntry.objects.filter(order_ref=order_id, kind="refund").count()


def refused_messages(workflow_id: str, count: int) -> list[dict]:
    status = wait_until(
        lambda: (s := workflow_status(workflow_id)) and len(s["signals"]) >= count and s,
        what=f"{count} messages recorded",
    )
    return [s for s in status["signals"] if s["outcome"] == "refused"]


# -- the start ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        [],
        [123],
        [None, "1 Main St"],
        ["", "1 Main St"],
        ["X" * 65, "1 Main St"],
        ["A\x00B", "1 Main St"],
        [{"order_id": "X"}, "1 Main St"],
        ["ORDER 1", "1 Main St"],
    ],
    ids=["no-args", "int-id", "none-id", "empty-id", "65-chars", "nul", "dict", "space"],
)
def test_a_start_without_a_usable_order_id_is_refused_and_recorded(system, args):
    workflow_id = new_order_id("REFUSED").lower()
    result = start(args, workflow_id)
    assert result.status == "failed" and result.reason.startswith("the start was refused: ")
    refused = RefusedStart.objects.get(workflow_id=workflow_id)
    assert refused.reason in result.reason and refused.arguments
    assert not Order.objects.filter(workflow_id=workflow_id).exists()


def test_a_decision_sent_with_a_refused_start_is_answered_and_the_workflow_ends(system):
    """An Update delivered with the start (update-with-start: in the first workflow task, before
    run() begins) passes its validator while the order is `started`; once the start is refused,
    it must be answered, not held for a review that never comes (found by the boundary fuzz: the
    workflow waited for the handler, and the handler for the review)."""
    workflow_id = new_order_id("REFUSED").lower()

    async def update_with_start(client):
        from temporalio.client import WithStartWorkflowOperation
        from temporalio.common import WorkflowIDConflictPolicy

        operation = WithStartWorkflowOperation(
            "OrderWorkflow",
            args=[],
            id=workflow_id,
            task_queue=ORDER_TASK_QUEUE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        )
        answer = await client.execute_update_with_start_workflow(
            Updates.DECIDE_REVIEW,
            ReviewDecision("approve", "alice", action_id="r1"),
            start_workflow_operation=operation,
            result_type=ActionResult,
        )
        handle = await operation.workflow_handle()
        return answer, await handle.result()

    answer, result = temporal(update_with_start, timeout=60)
    assert (answer.accepted, answer.code) == (False, RefusalCode.ALREADY_FINISHED.value), answer
    assert result["status"] == "failed" and result["reason"].startswith("the start was refused: ")


@pytest.mark.parametrize(
    "args, reason",
    [
        ([], ADDRESS_MISSING),
        ([None], ADDRESS_EMPTY),
        ([5], ADDRESS_EMPTY),
        ([{"street": "1 Main"}], ADDRESS_EMPTY),
        (["1 Main St\x00"], "The address contains control characters."),
        (["x" * 10_000], ADDRESS_TOO_LONG.format(max=MAX_ADDRESS_LENGTH)),
        (["1 Main St", "options"], "The options (third argument) could not be read"),
        (["1 Main St", {"amount": "NaN"}], "The amount must be a number"),
        (["1 Main St", {"review_timeout_seconds": -1}], "review_timeout_seconds must be"),
        (["1 Main St", None, "extra"], TOO_MANY_ARGUMENTS.format(count=4)),
    ],
    ids=["one-arg", "none", "int", "dict", "nul", "10kB", "options-text", "nan-amount", "negative-timeout", "4-args"],
)
def test_a_bad_start_fails_the_order_at_validation_before_any_charge(system, args, reason):
    order_id = new_order_id("BADSTART")
    result = start([order_id, *args])
    assert result.status == "failed" and result.reason.startswith("validation failed: ")
    assert reason in result.reason
    order = Order.objects.get(order_id=order_id)
    assert (order.status, order.failure_reason) == ("failed", result.reason)
    assert len(order.address) <= MAX_ADDRESS_LENGTH  # what Postgres shows is storable evidence
    assert not ReviewTask.objects.filter(order=order).exists() and charges(order_id) == 0


MEGABYTE = 1024 * 1024


def largest_event_after_the_start(workflow_id: str) -> int:
    """The size of the largest history event but the start itself (which holds what was sent)."""

    async def run(client):
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        return max(event.ByteSize() for event in history.events[1:])

    return temporal(run)


@pytest.mark.parametrize(
    "args, sent",
    [
        (["{order_id}", "x" * MEGABYTE], "The address sent had 1,048,576 characters."),
        (
            [
                "{order_id}",
                "1 Main St",
                {"line_items": [{"sku": "S" * MEGABYTE, "name": "", "quantity": 1, "unit_price": "1.00"}]},
            ],
            "Line item 'SSSS",
        ),
        (["O" * MEGABYTE, "1 Main St"], "It had 1,048,576 characters."),
    ],
    ids=["address", "sku", "order-id"],
)
def test_a_refused_megabyte_is_not_kept_by_the_workflow(system, args, sent):
    """The workflow keeps only what it accepted: a refused megabyte is cut to the limits in its
    state (get_status, the activities' inputs) and the reason says how much was sent."""
    order_id = new_order_id("MEGA")
    workflow_id = order_id.lower()
    args = [order_id if arg == "{order_id}" else arg for arg in args]
    result = start(args, workflow_id)
    assert result.status == "failed" and sent in result.reason, result.reason
    status = workflow_status(workflow_id)
    assert len(json.dumps(status)) < 5_000, {key: len(str(value)) for key, value in status.items()}
    assert sent in status["reason"]
    assert len(status["address"]) <= MAX_ADDRESS_LENGTH + 1 and len(status["order_id"]) <= MAX_ORDER_ID_LENGTH + 1
    assert largest_event_after_the_start(workflow_id) < 10_000


def test_the_workflow_postgres_and_the_carrier_hold_the_same_normalised_address(system):
    order_id = new_order_id("NORM")

    async def run(client):
        handle = await client.start_workflow(
            "OrderWorkflow",
            args=[order_id, "  1 Main St \n\n  Springfield  "],
            id=order_id.lower(),
            task_queue=ORDER_TASK_QUEUE,
        )
        await handle.signal(Signals.COMPLETE_MANUAL_REVIEW)
        return await handle.result()

    assert temporal(run, timeout=90)["status"] == "completed"
    order = Order.objects.get(order_id=order_id)
    assert order.address == "1 Main St\nSpringfield" == workflow_status(order.workflow_id)["address"]
    assert Shipment.objects.get(order=order).address == order.address


# -- malformed messages -------------------------------------------------------------------------------


def test_malformed_signals_are_refused_recorded_and_the_order_carries_on(system):
    order = waiting_order()
    signal(order.workflow_id, Signals.COMPLETE_MANUAL_REVIEW, "approve", "twice")
    signal(order.workflow_id, Signals.UPDATE_ADDRESS)
    signal(order.workflow_id, Signals.UPDATE_ADDRESS, 42)
    signal(order.workflow_id, Signals.CANCEL_ORDER, "not a request")
    signal(order.workflow_id, Signals.CANCEL_ORDER, [1, 2])
    signal(order.workflow_id, Signals.RETRY_SHIPPING, {"action_id": "x" * 500})
    refused = refused_messages(order.workflow_id, 6)
    assert [r["code"] for r in refused] == [RefusalCode.MALFORMED] * 6
    assert refused[0]["message"].startswith("CompleteManualReview could not be read")
    wait_until(
        lambda: OrderEvent.objects.filter(order=order, type="signal_refused").count() == 6,
        what="the six refusals in Postgres",
    )
    assert workflow_status(order.workflow_id)["workflow_status"] == "awaiting_manual_review"
    signal(order.workflow_id, Signals.COMPLETE_MANUAL_REVIEW)
    assert temporal(lambda c: c.get_workflow_handle(order.workflow_id).result()).get("status") == "completed"


@pytest.mark.parametrize(
    "update, args",
    [
        (Updates.DECIDE_REVIEW, ["approve"]),
        (Updates.DECIDE_REVIEW, [{"decision": 1}]),
        (Updates.CHANGE_ADDRESS, []),
        (Updates.REQUEST_CANCEL, [{"reason": 5}]),
        (Updates.REQUEST_CANCEL, [{}, {}]),
    ],
    ids=["decide-text", "decide-int", "address-none", "cancel-int-reason", "cancel-two"],
)
def test_malformed_updates_are_refused_with_their_code(system, update, args):
    order = waiting_order()

    async def send(client):
        return await client.get_workflow_handle(order.workflow_id).execute_update(update, args=args)

    with pytest.raises(Exception) as refused:
        temporal(send)
    cause = refused.value.cause
    assert (cause.type, cause.details[0]) == ("ActionRefused", RefusalCode.MALFORMED)
    assert workflow_status(order.workflow_id)["workflow_status"] == "awaiting_manual_review"


# -- internal messages ---------------------------------------------------------------------------------


def test_a_forged_shipping_report_is_refused_and_changes_nothing(system):
    order = waiting_order()
    signal(order.workflow_id, Signals.SHIPPING_REPORT, {"kind": "dispatch_failed", "message": "forged"})
    [refused] = refused_messages(order.workflow_id, 1)
    assert (refused["name"], refused["code"]) == (Signals.SHIPPING_REPORT, RefusalCode.NOT_FROM_CHILD)
    status = workflow_status(order.workflow_id)
    assert (status["dispatch_failures"], status["awaiting_shipping_retry"]) == (0, False)
    # Staff's retry is refused with its code: the forged report set nothing to retry.
    with pytest.raises(ActionRefused) as retry:
        order_workflow_update(order.workflow_id, Updates.RETRY_SHIPPING, {"actor": "staff"})
    assert retry.value.code == RefusalCode.NOT_DISPATCH_FAILED
    signal(order.workflow_id, Signals.COMPLETE_MANUAL_REVIEW)
    wait_for_state(order.workflow_id, "completed")
    wait_until(lambda: Order.objects.filter(pk=order.pk, status="completed").exists(), what="the ending in Postgres")
    order.refresh_from_db()
    assert order.dispatch_failures == 0


def test_a_report_that_does_not_quote_the_childs_secret_is_refused_while_shipping(system):
    order = waiting_order()
    fault_plan(target="carrier_dispatched", order_ref=order.order_id, times=3)
    signal(order.workflow_id, Signals.COMPLETE_MANUAL_REVIEW)
    wait_until(lambda: workflow_status(order.workflow_id)["awaiting_shipping_retry"], what="the real report")
    child = temporal(lambda c: c.get_workflow_handle(shipping_workflow_id(order.workflow_id)).describe())
    # Even with the child's run id, a report without the secret is not the child's.
    signal(
        order.workflow_id,
        Signals.SHIPPING_REPORT,
        {"kind": "ack", "action_id": "a-1", "accepted": True, "run_id": child.run_id},
    )
    refused = refused_messages(order.workflow_id, 2)
    assert [r["code"] for r in refused] == [RefusalCode.NOT_FROM_CHILD]
    assert workflow_status(order.workflow_id)["dispatch_failures"] == 1


def test_a_forged_instruction_to_the_shipping_child_is_ignored(system):
    order = waiting_order()
    fault_plan(target="carrier_dispatched", order_ref=order.order_id, times=3)
    signal(order.workflow_id, Signals.COMPLETE_MANUAL_REVIEW)
    wait_until(lambda: workflow_status(order.workflow_id)["awaiting_shipping_retry"], what="the dispatch failure")
    child_id = shipping_workflow_id(order.workflow_id)
    signal(child_id, Signals.SHIPPING_CANCEL, {"token": "guess", "reason": "forged"})
    signal(child_id, Signals.SHIPPING_ADDRESS, {"token": "", "address": "Elsewhere 1"})
    ignored = wait_until(
        lambda: (s := workflow_status(child_id)["ignored_messages"]) and len(s) == 2 and s,
        what="both instructions ignored",
    )
    assert {i["code"] for i in ignored} == {RefusalCode.NOT_FROM_PARENT}
    status = workflow_status(child_id)
    assert (status["cancelled"], status["address"]) == (False, "1 Edge Road")
    order_workflow_update(order.workflow_id, Updates.RETRY_SHIPPING, {"actor": "staff"})
    wait_for_state(order.workflow_id, "completed")


def test_the_shipping_childs_ignored_messages_are_bounded(system):
    """A client that floods a shipping child with foreign signals does not grow its state: the
    latest MAX_MESSAGES_KEPT are kept for get_status, the rest counted (each is in the history)."""
    from temporal_app.workflows.record import MAX_MESSAGES_KEPT

    order = waiting_order()
    fault_plan(target="carrier_dispatched", order_ref=order.order_id, times=3)
    signal(order.workflow_id, Signals.COMPLETE_MANUAL_REVIEW)
    wait_until(lambda: workflow_status(order.workflow_id)["awaiting_shipping_retry"], what="the dispatch failure")
    child_id = shipping_workflow_id(order.workflow_id)
    flood = MAX_MESSAGES_KEPT + 15

    async def send(client):
        h = client.get_workflow_handle(child_id)
        for n in range(flood):
            await h.signal(Signals.SHIPPING_CANCEL, {"token": f"guess-{n}", "reason": "forged"})

    temporal(send, timeout=120)
    status = wait_until(
        lambda: (s := workflow_status(child_id))["ignored_messages_not_shown"] == 15 and s,
        what="every forged signal counted",
        timeout=60,
    )
    assert len(status["ignored_messages"]) == MAX_MESSAGES_KEPT
    assert status["cancelled"] is False
    order_workflow_update(order.workflow_id, Updates.RETRY_SHIPPING, {"actor": "staff"})
    wait_for_state(order.workflow_id, "completed")


def test_a_shipping_workflow_started_by_anyone_else_ships_nothing(system):
    order = waiting_order()
    result = start(
        [{"order_id": order.order_id, "parent_workflow_id": order.workflow_id, "address": "Thief St"}],
        workflow="ShippingWorkflow",
        task_queue=SHIPPING_TASK_QUEUE,
    )
    assert result.status == "failed" and "child of the OrderWorkflow" in result.reason
    assert not Shipment.objects.filter(order=order).exists()


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["webhook-1"],
        [{"delivery_id": "1"}],
        [{"delivery_id": 0}],
        [{"delivery_id": 1, "give_up_after_seconds": -5}],
        [{"delivery_id": 1}, "extra"],
    ],
)
def test_a_webhook_delivery_started_with_anything_but_a_delivery_ends_refused(system, args):
    """Only the workers' sweep starts deliveries; any other start ends at once, sending nothing."""

    async def run(client):
        handle = await client.start_workflow(
            "WebhookDeliveryWorkflow", args=args, id=new_order_id("HOOK").lower(), task_queue=ORDER_TASK_QUEUE
        )
        return await handle.result(), [event.event_type async for event in handle.fetch_history_events()]

    result, history = temporal(run)
    assert result == "refused"
    assert EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED not in history


# -- Temporal's own cancel -----------------------------------------------------------------------------


def test_a_cancel_requested_in_temporal_cancels_the_order_like_cancel_order(system):
    order = waiting_order()
    temporal(lambda c: c.get_workflow_handle(order.workflow_id).cancel())
    result = temporal(lambda c: c.get_workflow_handle(order.workflow_id).result())
    assert result["status"] == "cancelled" and result["reason"].startswith("cancelled in Temporal by ")
    order.refresh_from_db()
    assert (order.status, order.cancel_reason) == ("cancelled", result["reason"])
    assert ReviewTask.objects.get(order=order).status == ReviewTask.Status.CANCELLED
    requested = OrderEvent.objects.get(order=order, type="temporal_cancel_requested")
    ended = OrderEvent.objects.get(order=order, type="order_cancelled")
    assert requested.actor == ended.actor == TEMPORAL_ACTOR
    assert requested.created_at <= ended.created_at


def test_a_cancel_requested_in_temporal_after_the_charge_refunds(system):
    order = waiting_order()
    fault_plan(target="carrier_dispatched", order_ref=order.order_id, times=3)
    signal(order.workflow_id, Signals.COMPLETE_MANUAL_REVIEW)
    wait_until(lambda: workflow_status(order.workflow_id)["awaiting_shipping_retry"], what="the dispatch failure")
    temporal(lambda c: c.get_workflow_handle(order.workflow_id).cancel())
    result = temporal(lambda c: c.get_workflow_handle(order.workflow_id).result())
    assert result["status"] == "cancelled" and result["reason"].endswith("(payment refunded)")
    assert charges(order.order_id) == refunds(order.order_id) == 1
    child = temporal(lambda c: c.get_workflow_handle(shipping_workflow_id(order.workflow_id)).result())
    assert child["status"] == "cancelled"


def test_the_shipping_child_cancelled_in_temporal_cancels_and_refunds_the_order(system):
    order = waiting_order()
    fault_plan(target="carrier_dispatched", order_ref=order.order_id, times=3)
    signal(order.workflow_id, Signals.COMPLETE_MANUAL_REVIEW)
    wait_until(lambda: workflow_status(order.workflow_id)["awaiting_shipping_retry"], what="the dispatch failure")
    temporal(lambda c: c.get_workflow_handle(shipping_workflow_id(order.workflow_id)).cancel())
    result = temporal(lambda c: c.get_workflow_handle(order.workflow_id).result())
    assert result["status"] == "cancelled"
    assert result["reason"] == "the shipping workflow was cancelled in Temporal (payment refunded)"
    assert charges(order.order_id) == refunds(order.order_id) == 1


def test_a_terminated_shipping_child_is_settled_from_the_carriers_ledger(system):
    order = waiting_order()
    fault_plan(target="carrier_dispatched", order_ref=order.order_id, times=3)
    signal(order.workflow_id, Signals.COMPLETE_MANUAL_REVIEW)
    wait_until(lambda: workflow_status(order.workflow_id)["awaiting_shipping_retry"], what="the dispatch failure")
    temporal(lambda c: c.get_workflow_handle(shipping_workflow_id(order.workflow_id)).terminate("operator"))
    result = temporal(lambda c: c.get_workflow_handle(order.workflow_id).result())
    assert result["status"] == "failed"
    assert "shipping workflow stopped (terminated) before the package was dispatched" in result["reason"]
    assert charges(order.order_id) == refunds(order.order_id) == 1


# -- faults no retry can fix ---------------------------------------------------------------------------


def test_a_data_error_after_the_charge_ends_in_a_refund_not_a_retry_loop(system):
    """A package that Postgres refuses to record (here: a trigger raising SQLSTATE 22001, the
    error a too-long value gives) cannot ship: the step gives up at once, the order fails and
    the customer is refunded."""
    with connection.cursor() as cursor:
        cursor.execute("""
            CREATE FUNCTION test_refuse_shipment() RETURNS trigger AS $$
            BEGIN
              RAISE EXCEPTION 'value too long (simulated)' USING ERRCODE = '22001';
            END $$ LANGUAGE plpgsql;
            CREATE TRIGGER test_refuse_shipment BEFORE INSERT ON orderweb_shipment
              FOR EACH ROW EXECUTE FUNCTION test_refuse_shipment();
        """)
    try:
        order = waiting_order()
        signal(order.workflow_id, Signals.COMPLETE_MANUAL_REVIEW)
        result = temporal(lambda c: c.get_workflow_handle(order.workflow_id).result(), timeout=60)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(
                "DROP TRIGGER test_refuse_shipment ON orderweb_shipment; DROP FUNCTION test_refuse_shipment();"
            )
    assert result["status"] == "failed"
    assert "the package could not be prepared: DataError" in result["reason"]
    assert result["reason"].endswith("(payment refunded)")
    assert charges(order.order_id) == refunds(order.order_id) == 1
    order.refresh_from_db()
    assert order.status == "failed"
