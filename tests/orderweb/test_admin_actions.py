"""Staff actions against real workflows (the `system` fixture: Temporal dev server + workers).

Each test acts through the admin as a staff user would, then checks what the person was told,
what the workflow did, and what Postgres holds."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from orderweb.actions import (
    ADDRESS_DONE,
    ADDRESS_REFUSED,
    CANCEL_DONE,
    CANCEL_REFUSED,
    NO_ANSWER,
    RETRY_DONE,
    RETRY_REFUSED,
)
from orderweb.models import CarrierLedgerEntry, GatewayLedgerEntry, Order, OrderEvent, Payment, Shipment
from orderweb.simulators import fault_plan
from reviews.models import ReviewTask
from temporal_app.client import TEMPORAL_UNAVAILABLE
from temporal_app.contracts import RefusalCode, refusal
from tests.helpers import wait_for_state, wait_until, workflow_status
from tests.orderweb.conftest import approve, finish, messages_of, place_order

pytestmark = pytest.mark.temporal

CHANGELIST = reverse("admin:orderweb_order_changelist")


def url(name: str, order: Order) -> str:
    return reverse(f"admin:orderweb_order_{name}", args=[order.pk])


def admin_events(order: Order) -> list[tuple[str, str, str]]:
    return [
        (e.type, e.actor, e.message)
        for e in OrderEvent.objects.filter(order=order, source=OrderEvent.Source.ADMIN).order_by("pk")
    ]


def dispatch_failed_order(times: int = 100) -> Order:
    """An order whose carrier dispatch exhausted its retries and that now waits for staff."""
    order = place_order()
    fault_plan(target="carrier_dispatched", order_ref=order.order_id, times=times)
    approve(order)
    wait_until(
        lambda: workflow_status(order.workflow_id)["awaiting_shipping_retry"], timeout=30, what="dispatch to fail"
    )
    wait_until(
        lambda: Shipment.objects.filter(order=order, status=Shipment.Status.DISPATCH_FAILED).exists(),
        what="dispatch failure projected",
    )
    order.refresh_from_db()
    return order


def test_cancel_one_order_from_its_page(system, client, make_staff):
    order = place_order()
    user = make_staff("carol", "cancel_order")
    client.force_login(user)
    assert client.get(url("cancel", order)).status_code == 200  # confirmation first

    response = client.post(
        url("cancel", order), {"reason": "customer changed their mind", "reason_code": "customer_request"}
    )
    assert response.status_code == 302 and response["Location"] == url("change", order)
    assert messages_of(response) == [
        ("success", CANCEL_DONE.format(order_id=order.order_id, reason="customer changed their mind"))
    ]
    order.refresh_from_db()  # the projection is there when the person sees the next page
    assert order.status == Order.Status.CANCELLED
    assert order.cancel_reason == "customer changed their mind"
    assert order.cancel_reason_code == "customer_request"
    assert finish(order).status == "cancelled"
    assert admin_events(order) == [("cancel_requested", "carol", "cancellation requested: customer changed their mind")]
    requested = OrderEvent.objects.get(order=order, type="cancel_requested")
    assert requested.user == user and requested.from_status == "awaiting_manual_review"
    final = OrderEvent.objects.get(order=order, to_status="cancelled")
    assert final.actor == "carol"  # the workflow names who cancelled
    assert ReviewTask.objects.get(order=order).status == ReviewTask.Status.CANCELLED
    signals = workflow_status(order.workflow_id)["signals"]
    assert [(s["name"], s["actor"], s["outcome"]) for s in signals] == [("RequestCancel", "carol", "applied")]


def test_cancel_a_selection_refuses_the_finished_one_precisely(system, client, make_staff):
    first, second, finished = place_order(), place_order(), place_order()
    client.force_login(make_staff("dave", "cancel_order"))
    response = client.post(url("cancel", finished), {"reason": "duplicate order", "reason_code": "other"})
    assert messages_of(response)[0][0] == "success"
    finished.refresh_from_db()
    assert finished.status == Order.Status.CANCELLED

    selection = [first.pk, second.pk, finished.pk]
    page = client.post(CHANGELIST, {"action": "cancel_selected", "_selected_action": selection, "index": 0})
    assert page.status_code == 200 and "Yes, cancel 3 orders" in page.content.decode()
    response = client.post(
        CHANGELIST,
        {
            "action": "cancel_selected",
            "_selected_action": selection,
            "post": "yes",
            "reason": "warehouse closed",
            "reason_code": "out_of_stock",
        },
    )
    assert response.status_code == 302
    told = set(messages_of(response))
    assert ("success", CANCEL_DONE.format(order_id=first.order_id, reason="warehouse closed")) in told
    assert ("success", CANCEL_DONE.format(order_id=second.order_id, reason="warehouse closed")) in told
    already = CANCEL_REFUSED.format(
        order_id=finished.order_id, message=refusal(RefusalCode.ALREADY_FINISHED, state="cancelled").message
    )
    assert ("error", already) in told
    assert len(told) == 3
    for order in (first, second):
        order.refresh_from_db()
        assert (order.status, order.cancel_reason) == ("cancelled", "warehouse closed")
    finished.refresh_from_db()
    assert finished.cancel_reason == "duplicate order"  # untouched
    assert [t for t, _, _ in admin_events(finished)] == ["cancel_requested", "cancel_requested", "cancel_refused"]


def test_change_address_reaches_the_workflow(system, client, make_staff):
    order = place_order()
    client.force_login(make_staff("erin", "change_order_address"))
    response = client.post(url("address", order), {"address": "  22 New Street\r\n Newtown  "})
    assert response.status_code == 302 and response["Location"] == url("change", order)
    assert messages_of(response) == [("success", ADDRESS_DONE.format(order_id=order.order_id))]
    assert workflow_status(order.workflow_id)["address"] == "22 New Street\nNewtown"
    order.refresh_from_db()
    assert order.address == "22 New Street\nNewtown"
    assert order.status == Order.Status.AWAITING_MANUAL_REVIEW  # nothing else moved
    requested = OrderEvent.objects.get(order=order, type="address_change_requested")
    assert requested.details["old_address"] == "1 Test Way\nSpringfield"
    assert requested.details["requested_address"] == "22 New Street\nNewtown"
    applied = OrderEvent.objects.get(order=order, type="update_applied")
    assert applied.actor == "erin" and applied.details["signal"] == "ChangeAddress"

    # The same address again: the workflow's validator refuses at once, with its own words.
    response = client.post(url("address", order), {"address": "22 New Street\nNewtown"})
    assert response["Location"] == url("address", order)
    assert messages_of(response) == [
        (
            "error",
            ADDRESS_REFUSED.format(order_id=order.order_id, message=refusal(RefusalCode.ADDRESS_UNCHANGED).message),
        )
    ]

    approve(order)
    assert finish(order).status == "completed"
    assert Shipment.objects.get(order=order).address == "22 New Street\nNewtown"


def test_shipped_order_refuses_cancel_and_address_change(system, client, make_staff):
    order = place_order()
    approve(order)
    assert finish(order).status == "completed"
    client.force_login(make_staff("frank", "cancel_order", "change_order_address"))

    page = client.get(url("address", order)).content.decode()
    assert 'id="address-too-late"' in page  # the form says so before anyone types
    response = client.post(url("address", order), {"address": "9 Too Late Road"})
    assert messages_of(response) == [
        (
            "error",
            ADDRESS_REFUSED.format(order_id=order.order_id, message=refusal(RefusalCode.ADDRESS_TOO_LATE).message),
        )
    ]
    response = client.post(url("cancel", order), {"reason": "too slow", "reason_code": "customer_request"})
    assert messages_of(response) == [
        ("error", CANCEL_REFUSED.format(order_id=order.order_id, message=refusal(RefusalCode.CANCEL_TOO_LATE).message))
    ]
    order.refresh_from_db()
    assert (order.status, order.address, order.cancel_reason) == ("completed", "1 Test Way\nSpringfield", "")
    assert [t for t, _, _ in admin_events(order)] == [
        "address_change_requested",
        "address_change_refused",
        "cancel_requested",
        "cancel_refused",
    ]
    assert GatewayLedgerEntry.objects.filter(order_ref=order.order_id, kind="refund").count() == 0


def test_retry_is_refused_when_dispatch_did_not_fail(system, client, make_staff):
    order = place_order()
    client.force_login(make_staff("gina", "retry_shipping"))
    response = client.post(url("retry_shipping", order))
    assert messages_of(response) == [
        (
            "error",
            RETRY_REFUSED.format(order_id=order.order_id, message=refusal(RefusalCode.NOT_DISPATCH_FAILED).message),
        )
    ]
    assert [t for t, _, _ in admin_events(order)] == ["shipping_retry_requested", "shipping_retry_refused"]
    assert workflow_status(order.workflow_id)["workflow_status"] == "awaiting_manual_review"


def test_retry_shipping_after_a_dispatch_failure(system, client, make_staff):
    order = dispatch_failed_order(times=3)  # fails all 3 attempts, then the carrier recovers
    assert order.dispatch_failures == 1
    # While it waits, staff fix the address: the shipping child takes it for the next attempt.
    client.force_login(make_staff("gus", "change_order_address"))
    response = client.post(url("address", order), {"address": "7 Reachable Road\nSpringfield"})
    assert messages_of(response) == [("success", ADDRESS_DONE.format(order_id=order.order_id))]

    client.force_login(make_staff("hank", "retry_shipping"))
    page = client.get(url("change", order)).content.decode()
    assert url("retry_shipping", order) in page and "Cancel and refund" not in page  # no cancel perm

    page = client.post(CHANGELIST, {"action": "retry_shipping_selected", "_selected_action": [order.pk], "index": 0})
    assert page.status_code == 200 and "Yes, retry shipping" in page.content.decode()
    response = client.post(
        CHANGELIST, {"action": "retry_shipping_selected", "_selected_action": [order.pk], "post": "yes"}
    )
    assert messages_of(response) == [("success", RETRY_DONE.format(order_id=order.order_id))]
    assert finish(order).status == "completed"
    shipment = Shipment.objects.get(order=order)
    assert shipment.status == Shipment.Status.DISPATCHED and shipment.tracking_number
    carrier = CarrierLedgerEntry.objects.get(order_ref=order.order_id)
    assert carrier.address == "7 Reachable Road\nSpringfield"
    retried = OrderEvent.objects.get(order=order, type="update_applied", details__signal="RequestShippingRetry")
    assert retried.actor == "hank"


def test_cancel_and_refund_a_dispatch_failed_order(system, client, make_staff):
    order = dispatch_failed_order()
    client.force_login(make_staff("ivy", "cancel_order"))
    page = client.post(
        CHANGELIST, {"action": "cancel_and_refund_selected", "_selected_action": [order.pk], "index": 0}
    ).content.decode()
    assert "Cancel, then refund the payment" in page
    response = client.post(
        CHANGELIST,
        {
            "action": "cancel_and_refund_selected",
            "_selected_action": [order.pk],
            "post": "yes",
            "reason": "carrier cannot reach the address",
            "reason_code": "undeliverable_address",
        },
    )
    expected = "carrier cannot reach the address (payment refunded)"
    assert messages_of(response) == [("success", CANCEL_DONE.format(order_id=order.order_id, reason=expected))]
    order.refresh_from_db()
    assert order.status == Order.Status.CANCELLED
    refund = Payment.objects.get(order=order, kind=Payment.Kind.REFUND)
    assert refund.amount == Decimal("25.00")
    assert GatewayLedgerEntry.objects.filter(order_ref=order.order_id, kind="refund").count() == 1
    assert Shipment.objects.get(order=order).status != Shipment.Status.DISPATCHED

    # Retrying it now is refused: the order is finished.
    client.force_login(make_staff("jack", "retry_shipping"))
    response = client.post(url("retry_shipping", order))
    assert messages_of(response) == [
        (
            "error",
            RETRY_REFUSED.format(
                order_id=order.order_id, message=refusal(RefusalCode.ALREADY_FINISHED, state="cancelled").message
            ),
        )
    ]


def test_temporal_unreachable_is_told_and_nothing_changes(system, client, make_staff, settings):
    from devtools.supervise import free_port

    order = place_order()
    client.force_login(make_staff("kim", "cancel_order"))
    real_address = settings.TEMPORAL_ADDRESS
    settings.TEMPORAL_ADDRESS = f"127.0.0.1:{free_port()}"  # nothing listens there
    settings.TEMPORAL_RPC_TIMEOUT_SECONDS = 2
    response = client.post(url("cancel", order), {"reason": "try it", "reason_code": "other"})
    ((level, message),) = messages_of(response)
    assert level == "error"
    prefix = CANCEL_REFUSED.format(order_id=order.order_id, message="")
    assert message.startswith(prefix + TEMPORAL_UNAVAILABLE.split("{")[0])
    assert message.endswith("Nothing was changed; try again in a moment.")
    assert [t for t, _, _ in admin_events(order)] == ["cancel_requested", "cancel_unanswered"]
    order.refresh_from_db()
    assert order.status == Order.Status.AWAITING_MANUAL_REVIEW
    settings.TEMPORAL_ADDRESS = real_address  # the workflow never heard of it
    assert wait_for_state(order.workflow_id, "awaiting_manual_review")["cancel_requested"] is False


def test_workflow_that_does_not_answer_is_told_honestly(system, client, make_staff, settings):
    """An Update that reaches Temporal but gets no answer (here: no worker polls the workflow's
    queue) may still apply later, so the admin must not say "nothing changed"."""
    from temporal_app.workflows import OrderWorkflow
    from tests.helpers import new_order_id, temporal

    order_id = new_order_id("NOWORKER")
    order = Order.objects.create(
        order_id=order_id,
        workflow_id=order_id.lower(),
        address="1 Quiet Road",
        status=Order.Status.AWAITING_MANUAL_REVIEW,
    )
    temporal(
        lambda c: c.start_workflow(
            OrderWorkflow.run, args=[order_id, "1 Quiet Road"], id=order.workflow_id, task_queue="nobody-polls-this-tq"
        )
    )
    settings.TEMPORAL_RPC_TIMEOUT_SECONDS = 2
    client.force_login(make_staff("lee", "cancel_order"))
    response = client.post(url("cancel", order), {"reason": "hello?", "reason_code": "other"})
    assert messages_of(response) == [("error", NO_ANSWER.format(order_id=order_id, seconds=2))]
    assert [t for t, _, _ in admin_events(order)] == ["cancel_requested", "cancel_unanswered"]
    order.refresh_from_db()
    assert order.status == Order.Status.AWAITING_MANUAL_REVIEW


def _bulk_cancel(client, orders: list[Order], reason: str = "warehouse closed"):
    return client.post(
        CHANGELIST,
        {
            "action": "cancel_selected",
            "_selected_action": [o.pk for o in orders],
            "post": "yes",
            "reason": reason,
            "reason_code": "out_of_stock",
        },
    )


def test_a_bulk_cancel_sends_its_updates_several_at_a_time(system, client, make_staff, monkeypatch):
    """Each cancel answers only once its order has ended: one after another, N orders took N
    times that. They go out together (orderweb.actions.BULK_CONCURRENCY at a time), each through
    workflow_action_send, and each order's answer is reported."""
    import threading

    from orderweb import actions

    orders = [place_order() for _ in range(4)]
    lock, together = threading.Lock(), threading.Event()
    in_flight = peak = 0
    real = actions.order_workflow_update

    def watched(*args, **kwargs):
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
            if in_flight >= 2:
                together.set()
        together.wait(5)  # one at a time, this waits in vain and the peak stays 1
        try:
            return real(*args, **kwargs)
        finally:
            with lock:
                in_flight -= 1

    monkeypatch.setattr(actions, "order_workflow_update", watched)
    client.force_login(make_staff("bulk", "cancel_order"))
    response = _bulk_cancel(client, orders)
    assert 2 <= peak <= actions.BULK_CONCURRENCY
    assert sorted(messages_of(response)) == sorted(
        ("success", CANCEL_DONE.format(order_id=o.order_id, reason="warehouse closed")) for o in orders
    )
    assert set(Order.objects.filter(pk__in=[o.pk for o in orders]).values_list("status", flat=True)) == {"cancelled"}


def test_a_bulk_cancel_with_no_worker_answering_reports_every_order_without_waiting_for_each(
    system, client, make_staff, settings, monkeypatch
):
    """No worker polls these orders' queue (as when run_workers is down). The first Updates wait
    their timeout; the status query that follows finds no worker, and the rest are not sent at
    all (each reported as such), so the request does not take N times the timeout."""
    from orderweb import actions
    from orderweb.actions import CANCEL_REFUSED
    from temporal_app import client as temporal_client
    from temporal_app.workflows import OrderWorkflow
    from tests.helpers import new_order_id, temporal

    settings.TEMPORAL_RPC_TIMEOUT_SECONDS = 2
    settings.TEMPORAL_QUERY_TIMEOUT_SECONDS = 1
    settings.TEMPORAL_WORKERS_RECHECK_SECONDS = 600
    orders = []
    for _ in range(actions.BULK_CONCURRENCY + 4):
        order_id = new_order_id("NOWORKER")
        orders.append(
            Order.objects.create(
                order_id=order_id,
                workflow_id=order_id.lower(),
                address="1 Quiet Road",
                status=Order.Status.AWAITING_MANUAL_REVIEW,
            )
        )
        temporal(
            lambda c, o=orders[-1]: c.start_workflow(
                OrderWorkflow.run, args=[o.order_id, o.address], id=o.workflow_id, task_queue="nobody-polls-this-tq"
            )
        )
    sent, real = [], actions.order_workflow_update

    def counted(workflow_id, *args):
        try:
            return real(workflow_id, *args)
        except temporal_client.TemporalUnavailable as err:
            sent.append(not err.remembered)
            raise

    monkeypatch.setattr(actions, "order_workflow_update", counted)
    client.force_login(make_staff("bulk2", "cancel_order"))
    told = messages_of(_bulk_cancel(client, orders))
    assert len(told) == len(orders) and all(level == "error" for level, _ in told)
    for order in orders:  # each order's answer, in words that name it
        [message] = [m for _, m in told if order.order_id in m]
        assert message.startswith(
            CANCEL_REFUSED.format(order_id=order.order_id, message="")
        ) or message == NO_ANSWER.format(order_id=order.order_id, seconds=2)
    assert len(sent) == len(orders) and 1 <= sum(sent) <= actions.BULK_CONCURRENCY  # the rest: not sent
    not_sent = [m for _, m in told if "workers of task queue order-tq are not answering" in m]
    assert len(not_sent) == len(orders) - sum(sent)
    events = OrderEvent.objects.filter(order__in=orders, type="cancel_unanswered")
    assert sorted(e.details["code"] for e in events) == sorted(
        ["no_answer"] * sum(sent) + ["workers_not_answering"] * (len(orders) - sum(sent))
    )
