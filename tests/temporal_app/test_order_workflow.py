"""OrderWorkflow against the real dev server and workers: every signal, every ending."""

from __future__ import annotations

import pytest

from orderweb.models import CarrierLedgerEntry, GatewayLedgerEntry, Order, OrderEvent, Payment
from orderweb.services import order_create
from orderweb.simulators import fault_plan
from reviews.models import ReviewTask
from temporal_app.client import ActionRefused, order_workflow_update
from temporal_app.contracts import (
    ADDRESS_CONTROL_CHARS,
    ADDRESS_EMPTY,
    ADDRESS_TOO_LONG,
    MAX_ADDRESS_LENGTH,
    REVIEW_TIMED_OUT,
    ActionResult,
    AddressChange,
    CancelRequest,
    LineItem,
    RefusalCode,
    ReviewDecision,
    ShippingRetryRequest,
    Signals,
    Updates,
    shipping_workflow_id,
)
from tests.helpers import handle, new_order_id, temporal, wait_for_state, wait_until, wait_until_passed, workflow_status

pytestmark = pytest.mark.temporal


def make_order(**kwargs) -> Order:
    kwargs.setdefault("order_id", new_order_id())
    kwargs.setdefault("address", "1 Test Way, Springfield")
    kwargs.setdefault("line_items", [LineItem("SKU-1", "Widget", 1, "10.00")])
    return order_create(**kwargs)


def signal(order: Order, name: str, *args) -> None:
    h = handle(order.workflow_id)
    temporal(lambda c: h.signal(name, args=list(args)))


def result(order: Order):
    h = handle(order.workflow_id)
    return temporal(lambda c: h.result(), timeout=90)


def charges(order_id: str) -> int:
    return GatewayLedgerEntry.objects.filter(order_ref=order_id, kind="charge").count()


def refunds(order_id: str) -> int:
    return GatewayLedgerEntry.objects.filter(order_ref=order_id, kind="refund").count()


def signals_named(status: dict, name: str) -> list[dict]:
    return [s for s in status["signals"] if s["name"] == name]


# -- review ----------------------------------------------------------------------------------


def test_reject_cancels_order_with_reviewer_and_reason(system):
    order = make_order()
    wait_for_state(order.workflow_id, "awaiting_manual_review")
    signal(order, Signals.COMPLETE_MANUAL_REVIEW, ReviewDecision("reject", "bob", "fraud suspected"))
    res = result(order)
    assert res.status == "cancelled"
    assert res.reason == "rejected in review: fraud suspected"
    order.refresh_from_db()
    assert order.status == Order.Status.CANCELLED
    assert order.cancel_reason == "rejected in review: fraud suspected"
    task = ReviewTask.objects.get(order=order)
    assert (task.status, task.decided_by_name, task.note) == ("rejected", "bob", "fraud suspected")
    assert charges(order.order_id) == 0


def test_review_timeout_cancels_and_expires_task(system):
    order = make_order(review_timeout_seconds=2)
    res = result(order)
    assert (res.status, res.reason) == ("cancelled", REVIEW_TIMED_OUT)
    order.refresh_from_db()
    assert (order.status, order.cancel_reason) == ("cancelled", "review timed out")
    assert ReviewTask.objects.get(order=order).status == ReviewTask.Status.EXPIRED


def test_decide_review_update_refuses_when_not_awaiting_and_applies_once(system):
    order = make_order()
    wait_for_state(order.workflow_id, "awaiting_manual_review")
    first = order_workflow_update(
        order.workflow_id, Updates.DECIDE_REVIEW, ReviewDecision("approve", "alice", action_id="a1")
    )
    assert first.accepted
    # The update answers after the decision is in Postgres.
    assert ReviewTask.objects.get(order=order).status == ReviewTask.Status.APPROVED
    with pytest.raises(ActionRefused) as refused:
        order_workflow_update(order.workflow_id, Updates.DECIDE_REVIEW, ReviewDecision("reject", "bob", "late", "b1"))
    assert refused.value.code in {
        RefusalCode.ALREADY_DECIDED,
        RefusalCode.NOT_AWAITING_REVIEW,
        RefusalCode.WORKFLOW_CLOSED,
    }
    assert result(order).status == "completed"
    assert charges(order.order_id) == 1


def test_an_update_sent_again_with_its_action_id_gets_the_first_answer_and_applies_once(system):
    """As when the first answer was lost (an RPC timeout under load) and the sender tries again:
    the action id is the Update's id, so the second attaches to the first instead of being
    refused as a duplicate, and the workflow applies it once."""
    order = make_order()
    wait_for_state(order.workflow_id, "awaiting_manual_review")
    change = AddressChange("2 Again Rd", "staff", "addr-again")
    first = order_workflow_update(order.workflow_id, Updates.CHANGE_ADDRESS, change)
    again = order_workflow_update(order.workflow_id, Updates.CHANGE_ADDRESS, change)
    assert first.accepted and again == first
    applied = OrderEvent.objects.filter(order=order, type="update_applied", details__action_id="addr-again")
    assert applied.count() == 1
    assert not OrderEvent.objects.filter(order=order, type="update_refused").exists()
    signal(order, Signals.CANCEL_ORDER)


def test_reject_update_needs_a_note(system):
    order = make_order()
    wait_for_state(order.workflow_id, "awaiting_manual_review")
    with pytest.raises(ActionRefused) as refused:
        order_workflow_update(order.workflow_id, Updates.DECIDE_REVIEW, ReviewDecision("reject", "bob", "  "))
    assert refused.value.code == RefusalCode.REJECT_NEEDS_NOTE
    assert workflow_status(order.workflow_id)["workflow_status"] == "awaiting_manual_review"


def test_duplicate_signals_apply_once_and_late_decision_is_refused(system):
    order = make_order()
    wait_for_state(order.workflow_id, "awaiting_manual_review")
    approve = ReviewDecision("approve", "alice", action_id="dup-1")
    signal(order, Signals.COMPLETE_MANUAL_REVIEW, approve)
    signal(order, Signals.COMPLETE_MANUAL_REVIEW, approve)
    assert result(order).status == "completed"
    status = workflow_status(order.workflow_id)
    outcomes = [s["outcome"] for s in signals_named(status, Signals.COMPLETE_MANUAL_REVIEW)]
    assert outcomes == ["applied", "refused"]
    assert signals_named(status, Signals.COMPLETE_MANUAL_REVIEW)[1]["code"] == RefusalCode.DUPLICATE_ACTION
    assert charges(order.order_id) == 1
    refused = OrderEvent.objects.filter(order=order, type="signal_refused")
    assert [e.details["code"] for e in refused] == [RefusalCode.DUPLICATE_ACTION]


def test_early_approval_is_held_until_review(system):
    """An approval sent right after start (as the seed's demo does) is applied at review."""
    order_id = new_order_id()

    async def start_and_approve(client):
        from temporal_app.workflows import OrderWorkflow

        h = await client.start_workflow(
            OrderWorkflow.run, args=[order_id, "9 Early St"], id=order_id.lower(), task_queue="order-tq"
        )
        await h.signal(OrderWorkflow.complete_manual_review)
        return await h.result()

    assert temporal(start_and_approve, timeout=90).status == "completed"
    status = workflow_status(order_id.lower())
    assert signals_named(status, Signals.COMPLETE_MANUAL_REVIEW)[0]["outcome"] == "applied"
    assert [h["state"] for h in status["state_history"]][:3] == ["started", "processing", "awaiting_manual_review"]


def test_early_approval_update_is_held_until_review(system):
    """An Update that arrives while the workflow is still `started` (sent with the start here;
    in production: Postgres already shows the review while a retried first workflow task
    starts again) is held, and answers once the approval is recorded."""
    order_id = new_order_id()

    async def start_and_approve(client):
        from temporal_app.workflows import OrderWorkflow

        h = await client.start_workflow(
            OrderWorkflow.run, args=[order_id, "9 Early St"], id=order_id.lower(), task_queue="order-tq"
        )
        answer = await h.execute_update(
            Updates.DECIDE_REVIEW, ReviewDecision("approve", "alice", action_id="e1"), result_type=ActionResult
        )
        return answer, await h.result()

    answer, res = temporal(start_and_approve, timeout=90)
    assert answer.accepted, answer
    assert res.status == "completed"
    task = ReviewTask.objects.get(order__order_id=order_id)
    assert (task.status, task.decided_by_name) == (ReviewTask.Status.APPROVED, "alice")
    assert charges(order_id) == 1


# -- cancel ----------------------------------------------------------------------------------


def test_cancel_while_awaiting_review(system):
    order = make_order()
    wait_for_state(order.workflow_id, "awaiting_manual_review")
    signal(order, Signals.CANCEL_ORDER)  # no argument, as in the seed
    res = result(order)
    assert (res.status, res.reason) == ("cancelled", "cancelled by request")
    order.refresh_from_db()
    assert order.status == "cancelled"
    assert ReviewTask.objects.get(order=order).status == ReviewTask.Status.CANCELLED
    assert charges(order.order_id) == 0 and refunds(order.order_id) == 0


def test_cancel_before_review_from_start(system):
    order_id = new_order_id()

    async def start_and_cancel(client):
        from temporal_app.workflows import OrderWorkflow

        h = await client.start_workflow(
            OrderWorkflow.run, args=[order_id, "9 Early St"], id=order_id.lower(), task_queue="order-tq"
        )
        await h.signal(OrderWorkflow.cancel_order, CancelRequest("changed my mind", "carol"))
        return await h.result()

    res = temporal(start_and_cancel, timeout=60)
    assert (res.status, res.reason) == ("cancelled", "changed my mind")
    order = Order.objects.get(order_id=order_id)
    assert order.status == "cancelled"
    assert charges(order_id) == 0
    # The early signal is audited on the row its workflow created (after creating it).
    applied = OrderEvent.objects.get(order=order, type="signal_applied")
    assert (applied.actor, applied.details["signal"]) == ("carol", "CancelOrder")


def test_cancel_during_payment_refunds_exactly_once(system):
    order = make_order()
    fault_plan(target="payment_charged", order_ref=order.order_id, times=2)  # ~3 s of retries
    wait_for_state(order.workflow_id, "awaiting_manual_review")
    signal(order, Signals.COMPLETE_MANUAL_REVIEW)
    wait_for_state(order.workflow_id, "processing_payment")
    outcome = order_workflow_update(
        order.workflow_id, Updates.REQUEST_CANCEL, CancelRequest("customer called", "dave", "c1")
    )
    assert outcome.accepted and outcome.workflow_status == "cancelled"
    res = result(order)
    assert res.status == "cancelled"
    assert res.reason == "customer called (payment refunded)"
    assert charges(order.order_id) == 1 and refunds(order.order_id) == 1
    refund = GatewayLedgerEntry.objects.get(order_ref=order.order_id, kind="refund")
    assert refund.refunds.idempotency_key == f"order:{order.order_id}:charge"
    assert Payment.objects.filter(order=order).count() == 2


def test_cancel_after_completion_is_refused(system):
    order = make_order()
    wait_for_state(order.workflow_id, "awaiting_manual_review")
    signal(order, Signals.COMPLETE_MANUAL_REVIEW)
    assert result(order).status == "completed"
    with pytest.raises(ActionRefused):
        order_workflow_update(order.workflow_id, Updates.REQUEST_CANCEL, CancelRequest("too late", "eve"))
    assert refunds(order.order_id) == 0


def test_cancel_while_dispatch_in_flight_is_refused_and_recorded(system):
    order = make_order()
    fault_plan(target="carrier_dispatched", order_ref=order.order_id, times=1)  # dispatch retries once
    wait_for_state(order.workflow_id, "awaiting_manual_review")
    signal(order, Signals.COMPLETE_MANUAL_REVIEW)
    wait_until(
        lambda: (
            order.__class__.objects.filter(pk=order.pk, shipment__isnull=False).exists()
            and not CarrierLedgerEntry.objects.filter(order_ref=order.order_id).exists()
        ),
        what="dispatch to be under way",
    )
    signal(order, Signals.CANCEL_ORDER, CancelRequest("stop it", "frank"))
    assert result(order).status == "completed"
    status = workflow_status(order.workflow_id)
    refused = signals_named(status, "CancelRefused")
    assert refused and refused[0]["code"] == RefusalCode.CANCEL_TOO_LATE
    assert OrderEvent.objects.filter(
        order=order, type="signal_refused", details__code=RefusalCode.CANCEL_TOO_LATE
    ).exists()
    assert refunds(order.order_id) == 0


def history_events(workflow_id: str) -> list:
    async def history(client):
        return [e async for e in client.get_workflow_handle(workflow_id).fetch_history_events()]

    return temporal(history)


def test_a_workflow_task_retried_with_one_more_signal_writes_each_event_once(system):
    """The cancel's workflow task runs its projection writes, then fails because the approval
    arrived before it completed; the retried task handles both signals.
    Each write is keyed by what it records, so the retry neither repeats the ending nor loses the
    refused approval's audit row."""
    from django.db import transaction
    from temporalio.api.enums.v1 import EventType

    order = make_order()
    wait_for_state(order.workflow_id, "awaiting_manual_review")
    with transaction.atomic():
        # Hold the order's row: the projection writes of the cancel's workflow task wait here.
        Order.objects.select_for_update().get(pk=order.pk)
        signal(order, Signals.CANCEL_ORDER, CancelRequest("stop", "ivy", "cancel-1"))
        wait_until(
            lambda: any(
                e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED
                for e in history_events(order.workflow_id)[-2:]
            ),
            what="the cancel's workflow task",
        )
        signal(order, Signals.COMPLETE_MANUAL_REVIEW, ReviewDecision("approve", "ann", "", "approve-1"))
    assert result(order).status == "cancelled"
    failed = [e for e in history_events(order.workflow_id) if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED]
    assert failed, "the scenario did not happen: no workflow task failed"
    events = OrderEvent.objects.filter(order=order)
    assert events.filter(to_status="cancelled").count() == 1
    refused = events.get(type="signal_refused")
    assert (refused.actor, refused.details["action_id"]) == ("ann", "approve-1")
    assert events.filter(type="signal_applied", details__action_id="cancel-1").count() == 1


# -- payment ---------------------------------------------------------------------------------


def test_transient_payment_failures_are_retried_with_one_charge(system):
    order = make_order()
    fault_plan(target="payment_charged", order_ref=order.order_id, times=2)
    wait_for_state(order.workflow_id, "awaiting_manual_review")
    signal(order, Signals.COMPLETE_MANUAL_REVIEW)
    assert result(order).status == "completed"
    assert charges(order.order_id) == 1
    assert Payment.objects.get(order=order, kind="charge").status == "succeeded"


def test_payment_decline_fails_the_order(system):
    order = make_order()
    fault_plan(target="payment_charged", order_ref=order.order_id, mode="decline")
    wait_for_state(order.workflow_id, "awaiting_manual_review")
    signal(order, Signals.COMPLETE_MANUAL_REVIEW)
    res = result(order)
    assert res.status == "failed"
    assert res.reason == "payment declined: the card was declined (simulated gateway)"
    order.refresh_from_db()
    assert (order.status, order.failure_reason) == ("failed", res.reason)
    assert charges(order.order_id) == 0
    assert Payment.objects.get(order=order).status == "declined"


# -- shipping --------------------------------------------------------------------------------


def dispatch_failures_attribute(workflow_id: str) -> int:
    from temporal_app.client import DISPATCH_FAILURES_KEY

    async def describe(client):
        return await client.get_workflow_handle(workflow_id).describe()

    return temporal(describe).typed_search_attributes.get(DISPATCH_FAILURES_KEY)


def fail_dispatch_until_reported(order: Order) -> None:
    fault_plan(target="carrier_dispatched", order_ref=order.order_id, times=3)  # all 3 attempts
    wait_for_state(order.workflow_id, "awaiting_manual_review")
    signal(order, Signals.COMPLETE_MANUAL_REVIEW)
    wait_until(
        lambda: workflow_status(order.workflow_id)["awaiting_shipping_retry"],
        timeout=30,
        what="the dispatch failure to reach the parent",
    )
    # The workflow's state moves first; its projection follows (a local activity's write).
    wait_until(
        lambda: Order.objects.filter(pk=order.pk, dispatch_failures__gte=1).exists(),
        timeout=30,
        what="the dispatch failure to reach Postgres",
    )


def test_dispatch_failure_notifies_parent_and_retry_ships(system):
    order = make_order()
    fail_dispatch_until_reported(order)
    assert dispatch_failures_attribute(order.workflow_id) == 1
    order.refresh_from_db()
    assert (order.status, order.dispatch_failures) == ("shipping", 1)
    assert order.shipment.status == "dispatch_failed"
    outcome = order_workflow_update(order.workflow_id, Updates.RETRY_SHIPPING, ShippingRetryRequest("staff", "r1"))
    assert outcome.accepted
    res = result(order)
    assert res.status == "completed" and res.tracking_number
    assert CarrierLedgerEntry.objects.filter(order_ref=order.order_id).count() == 1
    order.refresh_from_db()
    assert order.shipment.status == "dispatched"


def test_retry_shipping_signal_is_refused_when_nothing_failed(system):
    order = make_order()
    wait_for_state(order.workflow_id, "awaiting_manual_review")
    signal(order, Signals.RETRY_SHIPPING)
    wait_until(
        lambda: signals_named(workflow_status(order.workflow_id), Signals.RETRY_SHIPPING),
        what="the retry signal to be recorded",
    )
    entry = signals_named(workflow_status(order.workflow_id), Signals.RETRY_SHIPPING)[0]
    assert (entry["outcome"], entry["code"]) == ("refused", RefusalCode.NOT_DISPATCH_FAILED)


def test_cancel_after_dispatch_failure_cancels_child_and_refunds(system):
    order = make_order()
    fail_dispatch_until_reported(order)
    signal(order, Signals.CANCEL_ORDER, CancelRequest("carrier unreachable", "grace"))
    res = result(order)
    assert res.status == "cancelled"
    assert res.reason == "carrier unreachable (payment refunded)"
    assert charges(order.order_id) == 1 and refunds(order.order_id) == 1
    assert CarrierLedgerEntry.objects.filter(order_ref=order.order_id).count() == 0

    async def child_result(client):
        return await client.get_workflow_handle(shipping_workflow_id(order.workflow_id)).result()

    assert temporal(child_result)["status"] == "cancelled"


# -- address ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad_address, message",
    [
        ("", ADDRESS_EMPTY),
        ("   \n ", ADDRESS_EMPTY),
        ("x" * (MAX_ADDRESS_LENGTH + 1), ADDRESS_TOO_LONG.format(max=MAX_ADDRESS_LENGTH)),
        ("1 Main St\x00", ADDRESS_CONTROL_CHARS),
        ("1 Main St\x1b[31m", ADDRESS_CONTROL_CHARS),
    ],
    ids=["empty", "blank", "too-long", "nul", "escape"],
)
def test_bad_address_is_refused_and_recorded_and_old_address_stays(system, bad_address, message):
    order = make_order()
    wait_for_state(order.workflow_id, "awaiting_manual_review")
    signal(order, Signals.UPDATE_ADDRESS, bad_address)
    wait_until(
        lambda: signals_named(workflow_status(order.workflow_id), Signals.UPDATE_ADDRESS),
        what="the address signal to be recorded",
    )
    status = workflow_status(order.workflow_id)
    entry = signals_named(status, Signals.UPDATE_ADDRESS)[0]
    assert (entry["outcome"], entry["code"], entry["message"]) == ("refused", RefusalCode.ADDRESS_INVALID, message)
    assert status["address"] == "1 Test Way, Springfield"
    with pytest.raises(ActionRefused) as refused:
        order_workflow_update(order.workflow_id, Updates.CHANGE_ADDRESS, AddressChange(bad_address, "staff"))
    assert (refused.value.code, refused.value.message) == (RefusalCode.ADDRESS_INVALID, message)
    wait_until(
        lambda: OrderEvent.objects.filter(order=order, type="signal_refused").exists(),
        what="the refusal to be projected",
    )
    assert OrderEvent.objects.get(order=order, type="signal_refused").message == message
    order.refresh_from_db()
    assert order.address == "1 Test Way, Springfield"


def test_address_update_before_review_and_during_shipping_reaches_the_carrier(system):
    order = make_order()
    wait_for_state(order.workflow_id, "awaiting_manual_review")
    first = order_workflow_update(
        order.workflow_id, Updates.CHANGE_ADDRESS, AddressChange("2 New Rd", "staff", "addr-1")
    )
    assert first.accepted
    order.refresh_from_db()
    assert order.address == "2 New Rd"
    fail_dispatch_until_reported(order)  # now shipping, child waiting for a retry
    second = order_workflow_update(
        order.workflow_id, Updates.CHANGE_ADDRESS, AddressChange("3 Final Ave", "staff", "addr-2")
    )
    assert second.accepted
    order_workflow_update(order.workflow_id, Updates.RETRY_SHIPPING, ShippingRetryRequest("staff"))
    assert result(order).status == "completed"
    assert CarrierLedgerEntry.objects.get(order_ref=order.order_id).address == "3 Final Ave"
    order.refresh_from_db()
    assert order.address == "3 Final Ave"


def test_invalid_address_at_start_fails_validation(system):
    order_id = new_order_id()

    async def start(client):
        from temporal_app.workflows import OrderWorkflow

        h = await client.start_workflow(
            OrderWorkflow.run, args=[order_id, "  "], id=order_id.lower(), task_queue="order-tq"
        )
        return await h.result()

    res = temporal(start, timeout=60)
    assert res.status == "failed"
    assert res.reason == f"validation failed: {ADDRESS_EMPTY}"
    order = Order.objects.get(order_id=order_id)
    assert order.status == "failed" and order.failure_reason == res.reason


def test_cancel_pending_when_payment_is_declined_reports_the_real_ending(system):
    order = make_order()
    fault_plan(target="payment_charged", order_ref=order.order_id, mode="decline")
    wait_for_state(order.workflow_id, "awaiting_manual_review")
    # Approve and cancel land in the same workflow task: the decline (in the payment activity)
    # or the cancel wins; either way the answer names the real ending.
    signal(order, Signals.COMPLETE_MANUAL_REVIEW)
    wait_until_passed(order.workflow_id, "processing_payment")
    try:
        outcome = order_workflow_update(order.workflow_id, Updates.REQUEST_CANCEL, CancelRequest("stop", "ivy"))
    except ActionRefused as refused:  # the order had already failed when the update arrived
        assert refused.code in {RefusalCode.ALREADY_FINISHED, RefusalCode.WORKFLOW_CLOSED}
    else:
        assert (outcome.accepted, outcome.workflow_status, outcome.code) == (
            False,
            "failed",
            RefusalCode.ALREADY_FINISHED,
        )
    assert result(order).status == "failed"
    assert charges(order.order_id) == 0


def test_payment_that_gives_up_after_the_gateway_charged_is_refunded(system):
    """The gateway charged, then every attempt to record it failed until the step gave up: the
    order fails and the customer gets the money back (found at the gateway by its key)."""
    from django.db import connection

    from orderweb.models import OrderEvent
    from temporal_app.contracts import OrderOptions

    with connection.cursor() as cursor:
        cursor.execute("""
            CREATE FUNCTION test_block_charge_record() RETURNS trigger AS $$
            BEGIN
              IF NEW.event_key = 'payment:charged' THEN
                RAISE EXCEPTION 'simulated outage while recording the charge';
              END IF;
              RETURN NEW;
            END $$ LANGUAGE plpgsql;
            CREATE TRIGGER test_block_charge_record BEFORE INSERT ON orderweb_orderevent
              FOR EACH ROW EXECUTE FUNCTION test_block_charge_record();
        """)
    try:
        order_id = new_order_id()

        async def story(client):
            from temporal_app.workflows import OrderWorkflow

            h = await client.start_workflow(
                OrderWorkflow.run,
                args=[order_id, "7 Gateway St", OrderOptions(amount="30.00", payment_attempts=2)],
                id=order_id.lower(),
                task_queue="order-tq",
            )
            await h.signal(OrderWorkflow.complete_manual_review)
            return await h.result()

        res = temporal(story, timeout=90)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(
                "DROP TRIGGER test_block_charge_record ON orderweb_orderevent;DROP FUNCTION test_block_charge_record();"
            )
    assert res.status == "failed"
    assert res.reason.startswith("payment could not be processed:")
    assert res.reason.endswith("(payment refunded)")
    assert charges(order_id) == 1 and refunds(order_id) == 1
    kinds = sorted(Payment.objects.filter(order__order_id=order_id).values_list("kind", flat=True))
    assert kinds == ["charge", "refund"]
    assert OrderEvent.objects.filter(order__order_id=order_id, type="payment_refunded").count() == 1


def test_cancel_during_a_dispatch_that_then_fails_cancels_and_refunds(system):
    """A cancel that reaches the child mid-dispatch stands once that dispatch fails: the order is
    cancelled and refunded (it must not wait for a retry nobody may send)."""
    order = make_order()
    fault_plan(target="carrier_dispatched", order_ref=order.order_id, times=100)
    wait_for_state(order.workflow_id, "awaiting_manual_review")
    signal(order, Signals.COMPLETE_MANUAL_REVIEW)
    wait_until(
        lambda: Order.objects.filter(pk=order.pk, shipment__isnull=False).exists(), what="dispatch to be under way"
    )
    outcome = order_workflow_update(
        order.workflow_id, Updates.REQUEST_CANCEL, CancelRequest("no stock", "judy", "c-mid")
    )
    assert (outcome.accepted, outcome.workflow_status) == (True, "cancelled")
    res = result(order)
    assert (res.status, res.reason) == ("cancelled", "no stock (payment refunded)")
    assert charges(order.order_id) == 1 and refunds(order.order_id) == 1
    assert CarrierLedgerEntry.objects.filter(order_ref=order.order_id).count() == 0


def test_decision_update_right_after_the_review_task_appears_is_applied(system):
    """The review task (and the row's awaiting_manual_review) is committed by order_validated a
    moment before the workflow itself reaches review; a reviewer acting in that moment wins."""
    order = make_order()
    wait_until(lambda: ReviewTask.objects.filter(order=order).exists(), what="the review task")
    outcome = order_workflow_update(order.workflow_id, Updates.DECIDE_REVIEW, ReviewDecision("approve", "kim"))
    assert outcome.accepted
    assert result(order).status == "completed"


def test_reusing_a_finished_orders_workflow_id_runs_nothing_twice(system):
    """A seed-style start with the id of a finished order (no id-reuse policy) is refused by its
    first activity: no second review, no charge, and the row keeps its ending."""
    order = make_order()
    wait_for_state(order.workflow_id, "awaiting_manual_review")
    signal(order, Signals.CANCEL_ORDER)
    assert result(order).status == "cancelled"

    async def start_again(client):
        from temporal_app.workflows import OrderWorkflow

        h = await client.start_workflow(
            OrderWorkflow.run, args=[order.order_id, "1 Test Way"], id=order.workflow_id, task_queue="order-tq"
        )
        return await h.result()

    second = temporal(start_again, timeout=60)
    assert second.status == "failed"
    assert second.reason == f"Order {order.order_id} has already finished (cancelled); an order runs once."
    order.refresh_from_db()
    assert (order.status, order.cancel_reason) == ("cancelled", "cancelled by request")
    assert ReviewTask.objects.filter(order=order).count() == 1
    assert charges(order.order_id) == 0


def test_a_second_workflow_cannot_take_an_existing_order(system):
    order = make_order()
    wait_for_state(order.workflow_id, "awaiting_manual_review")

    async def hijack(client):
        from temporal_app.workflows import OrderWorkflow

        h = await client.start_workflow(
            OrderWorkflow.run,
            args=[order.order_id, "Elsewhere 1"],
            id=f"{order.workflow_id}-other",
            task_queue="order-tq",
        )
        return await h.result()

    other = temporal(hijack, timeout=60)
    assert (other.status, other.reason) == (
        "failed",
        f"Order {order.order_id} belongs to workflow {order.workflow_id}.",
    )
    assert workflow_status(order.workflow_id)["workflow_status"] == "awaiting_manual_review"


def test_an_outside_clients_start_with_an_id_in_another_case_is_refused_naming_the_order(system):
    """The same path as the API's and the admin's refusal: the workflow fails saying which order
    holds the id, and the existing order and its workflow are untouched."""
    from orderweb.services import ORDER_ID_TAKEN

    order = make_order(order_id=new_order_id("CASE"))
    wait_for_state(order.workflow_id, "awaiting_manual_review")
    other_id = order.order_id.lower()

    async def start(client):
        from temporal_app.workflows import OrderWorkflow

        h = await client.start_workflow(
            OrderWorkflow.run, args=[other_id, "Elsewhere 1"], id=f"{order.workflow_id}-lower", task_queue="order-tq"
        )
        return await h.result()

    other = temporal(start, timeout=60)
    assert (other.status, other.reason) == (
        "failed",
        ORDER_ID_TAKEN.format(order_id=other_id, existing=order.order_id, workflow_id=order.workflow_id),
    )
    assert list(Order.objects.filter(order_id__iexact=other_id).values_list("order_id", flat=True)) == [order.order_id]
    assert workflow_status(order.workflow_id)["workflow_status"] == "awaiting_manual_review"


def test_unstorable_input_from_an_outside_client_fails_validation_clearly(system):
    """Line items or an amount that the database cannot hold must not make order_received fail
    forever: the order is created without them and fails validation, saying why."""
    from temporal_app.contracts import OrderOptions

    order_id = new_order_id()
    options = OrderOptions(line_items=[LineItem("X" * 80, "too long a SKU", 1, "1.00")], amount="-5")

    async def start(client):
        from temporal_app.workflows import OrderWorkflow

        h = await client.start_workflow(
            OrderWorkflow.run, args=[order_id, "1 Input Rd", options], id=order_id.lower(), task_queue="order-tq"
        )
        return await h.result()

    res = temporal(start, timeout=60)
    assert res.status == "failed"
    assert res.reason.startswith("validation failed: Line item")
    assert "The amount must be a number" in res.reason
    order = Order.objects.get(order_id=order_id)
    assert (order.status, order.lines.count()) == ("failed", 0)


# -- search attributes -----------------------------------------------------------------------


def status_upserts(workflow_id: str) -> list[dict[str, str]]:
    """The search attributes each UpsertWorkflowSearchAttributes event of the history set."""
    from temporalio.api.enums.v1 import EventType

    upserts = []
    for event in history_events(workflow_id):
        if event.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
            upserts.append(
                {name: payload.data.decode() for name, payload in fields.items() if name != "TemporalChangeVersion"}
            )
    return [u for u in upserts if u]


def test_search_attributes_are_published_where_an_order_can_rest(system):
    """Our start carries OrderStatus and DispatchFailures, so the workflow upserts only the
    states worth filtering on in the Web UI (each upsert is a history event and a visibility
    write): every state an order can rest in, and the ending; not the two that last only within
    one workflow task."""
    order = make_order()
    wait_for_state(order.workflow_id, "awaiting_manual_review")
    signal(order, Signals.COMPLETE_MANUAL_REVIEW)
    assert result(order).status == "completed"
    assert [u["OrderStatus"] for u in status_upserts(order.workflow_id)] == [
        '"awaiting_manual_review"',
        '"processing_payment"',
        '"shipping"',
        '"completed"',
    ]


def test_an_outside_clients_start_gets_both_search_attributes(system):
    """The seed's start passes no search attributes: the workflow sets both at once."""
    from temporal_app.client import DISPATCH_FAILURES_KEY, ORDER_STATUS_KEY

    order_id = new_order_id()

    async def start(client):
        from temporal_app.workflows import OrderWorkflow

        await client.start_workflow(
            OrderWorkflow.run, args=[order_id, "1 Seed Street, City"], id=order_id.lower(), task_queue="order-tq"
        )

    temporal(start)
    wait_for_state(order_id.lower(), "awaiting_manual_review")
    assert status_upserts(order_id.lower())[0] == {"OrderStatus": '"started"', "DispatchFailures": "0"}

    def published():
        async def describe(client):
            return await client.get_workflow_handle(order_id.lower()).describe()

        attributes = temporal(describe).typed_search_attributes
        return (attributes.get(ORDER_STATUS_KEY), attributes.get(DISPATCH_FAILURES_KEY))

    wait_until(lambda: published() == ("awaiting_manual_review", 0), what="the search attributes to show the review")


def test_reason_codes_reach_the_order_and_the_review_task(system):
    """A rejection's and a cancellation's reason code travel with the decision to Postgres, for
    reports and filters; the note or reason stays the words people read."""
    rejected = make_order()
    wait_for_state(rejected.workflow_id, "awaiting_manual_review")
    signal(
        rejected,
        Signals.COMPLETE_MANUAL_REVIEW,
        ReviewDecision("reject", "bob", "card used in three countries", reason_code="suspected_fraud"),
    )
    assert result(rejected).status == "cancelled"
    rejected.refresh_from_db()
    task = ReviewTask.objects.get(order=rejected)
    assert (rejected.cancel_reason_code, task.reason_code) == ("suspected_fraud", "suspected_fraud")

    cancelled = make_order()
    wait_for_state(cancelled.workflow_id, "awaiting_manual_review")
    order_workflow_update(
        cancelled.workflow_id,
        Updates.REQUEST_CANCEL,
        CancelRequest("customer changed their mind", "staff", "c-code", "customer_request"),
    )
    cancelled.refresh_from_db()
    assert (cancelled.cancel_reason, cancelled.cancel_reason_code) == (
        "customer changed their mind",
        "customer_request",
    )
