"""Deciding for real: Django views -> after commit -> the DecideReview Workflow Update -> the
workflow -> its projection in Postgres. Real Temporal dev server, real workers."""

from __future__ import annotations

import threading
import uuid
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.messages import get_messages
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from devtools.supervise import free_port
from orderweb.models import Order, OrderEvent
from orderweb.services import order_create
from reviews import services, views
from reviews.models import ReviewTask
from temporal_app import client as temporal_client
from temporal_app.contracts import CancelRequest, LineItem, RefusalCode, ReviewDecision, Signals, Updates
from tests.helpers import handle, new_order_id, temporal, wait_for_state, wait_until
from tests.reviews.conftest import client_for

pytestmark = pytest.mark.temporal


def _waiting_order(**kwargs) -> Order:
    order = order_create(
        order_id=new_order_id("REV"),
        address="12 Review Street\nSpringfield",
        line_items=[LineItem("SKU-9", "Gadget", 1, "30.00")],
        **kwargs,
    )
    wait_for_state(order.workflow_id, "awaiting_manual_review")
    wait_until(lambda: ReviewTask.objects.filter(order=order, status="open").exists(), what="open task")
    return order


def _run_to_the_end(order: Order):
    """Wait for the workflow's result: its last projection write is done, so the test database
    can be flushed without racing a worker thread (see tests/conftest.py's `system`)."""
    h = handle(order.workflow_id)
    return temporal(lambda c: h.result())


def _decide(
    client,
    order: Order,
    decision: str,
    note: str = "",
    action_id: str | None = None,
    reason_code: str | None = None,
    **extra,
):
    if reason_code is None:
        reason_code = "suspected_fraud" if decision == "reject" else ""
    return client.post(
        reverse("reviews:decide", args=[order.order_id]),
        {
            "decision": decision,
            "note": note,
            "action_id": action_id or str(uuid.uuid4()),
            "reason_code": reason_code,
            **extra,
        },
    )


def _messages(response) -> list[str]:
    """The messages this request added (not older ones still waiting in the session)."""
    return [str(m) for m in get_messages(response.wsgi_request)._queued_messages]


def test_approve_reaches_completed_and_is_audited(system, reviewer):
    order = _waiting_order()
    response = _decide(client_for(reviewer), order, "approve", "looks fine")
    assert response.status_code == 302 and response.url == reverse("reviews:order", args=[order.order_id])
    assert _messages(response) == [services.DECIDED_APPROVED.format(order_id=order.order_id)]
    # The update answered after the projection: the task is closed already, no waiting needed.
    task = ReviewTask.objects.get(order=order)
    assert task.status == ReviewTask.Status.APPROVED
    assert task.decided_by == reviewer and task.decided_by_name == "alice" and task.note == "looks fine"
    requested = OrderEvent.objects.get(order=order, type="review_decision_requested")
    assert requested.user == reviewer and requested.source == "web"
    assert requested.details["decision"] == "approve"
    assert OrderEvent.objects.filter(order=order, type="review_approved", actor="alice").exists()
    h = handle(order.workflow_id)
    result = temporal(lambda c: h.result())
    assert result.status == "completed"
    order.refresh_from_db()
    assert order.status == Order.Status.COMPLETED


def test_reject_with_reason_cancels_the_order(system, reviewer):
    order = _waiting_order()
    response = _decide(
        client_for(reviewer), order, "reject", "address is a parcel locker", reason_code="undeliverable_address"
    )
    assert _messages(response) == [
        services.DECIDED_REJECTED.format(
            order_id=order.order_id, reason="Undeliverable address: address is a parcel locker"
        )
    ]
    order.refresh_from_db()
    assert order.status == Order.Status.CANCELLED
    assert order.cancel_reason == "rejected in review: address is a parcel locker"
    assert order.cancel_reason_code == "undeliverable_address"
    task = ReviewTask.objects.get(order=order)
    assert task.status == ReviewTask.Status.REJECTED and task.decided_by == reviewer
    assert task.reason_code == "undeliverable_address"
    requested = OrderEvent.objects.get(order=order, type="review_decision_requested")
    assert requested.details["reason_code"] == "undeliverable_address"


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_a_temporal_clients_decision_naming_a_reviewer_is_kept_as_a_name_only(system, reviewer, decision):
    """Any Temporal client can write any name into CompleteManualReview: the task keeps the name,
    but links an account only where our own action path recorded that person asking."""
    order = _waiting_order()
    # Even an action id that our path never recorded, or one of another order's, vouches for no one.
    h = handle(order.workflow_id)
    temporal(
        lambda c: h.signal(
            Signals.COMPLETE_MANUAL_REVIEW, ReviewDecision(decision, "alice", "from a script", "script-1", "other")
        )
    )
    task = wait_until(
        lambda: ReviewTask.objects.exclude(status="open").filter(order=order).first(), what="the task closed"
    )
    assert (task.status, task.decided_by_name, task.decided_by) == (
        "approved" if decision == "approve" else "rejected",
        "alice",
        None,
    )
    _run_to_the_end(order)


def test_reject_with_a_code_alone_records_its_label(system, reviewer):
    order = _waiting_order()
    response = _decide(client_for(reviewer), order, "reject", reason_code="out_of_stock")
    assert _messages(response) == [services.DECIDED_REJECTED.format(order_id=order.order_id, reason="Out of stock")]
    order.refresh_from_db()
    assert (order.cancel_reason, order.cancel_reason_code) == ("rejected in review: Out of stock", "out_of_stock")


def test_reject_without_a_valid_reason_is_refused_before_temporal(system, reviewer):
    order = _waiting_order()
    client = client_for(reviewer)
    cases = [
        ("", "   ", services.REJECT_REASON_REQUIRED),
        ("other", "  ", services.REJECT_OTHER_NEEDS_NOTE),
        (
            "bogus",
            "why",
            services.REJECT_REASON_UNKNOWN.format(
                code="bogus", codes="suspected_fraud, customer_request, undeliverable_address, out_of_stock, other"
            ),
        ),
    ]
    for code, note, message in cases:
        response = _decide(client, order, "reject", note, reason_code=code)
        assert response.status_code == 302
        assert _messages(response) == [message]
    # The service says the same to a caller that skips the form.
    with pytest.raises(ValidationError) as err:
        services.review_decide(order=order, user=reviewer, decision="reject", note="no code")
    assert err.value.messages == [services.REJECT_REASON_REQUIRED]
    assert wait_for_state(order.workflow_id, "awaiting_manual_review")["signals"] == []
    assert not OrderEvent.objects.filter(order=order, type__startswith="review_decision").exists()


def test_double_submit_of_one_form_applies_once(system, reviewer):
    order = _waiting_order()
    client, action_id = client_for(reviewer), str(uuid.uuid4())
    first = _decide(client, order, "approve", action_id=action_id)
    second = _decide(client, order, "approve", action_id=action_id)
    assert _messages(first) == [services.DECIDED_APPROVED.format(order_id=order.order_id)]
    assert _messages(second) == [services.DECISION_DUPLICATE.format(order_id=order.order_id)]
    assert OrderEvent.objects.filter(order=order, type="review_decision_requested").count() == 1
    assert _run_to_the_end(order).status == "completed"
    status = wait_for_state(order.workflow_id, "completed")
    assert [s["name"] for s in status["signals"]] == [Updates.DECIDE_REVIEW]


def test_two_reviewers_race_to_decide_the_same_order(system, reviewer, reviewer2):
    """Both click at the same moment, one approving, one rejecting: exactly one decision is
    applied, the other reviewer is told precisely why theirs was not."""
    order = _waiting_order()
    barrier = threading.Barrier(2)
    responses: dict[str, object] = {}

    def decide(user, decision, note):
        try:
            client = client_for(user)
            barrier.wait()
            responses[user.username] = _decide(client, order, decision, note)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=decide, args=(reviewer, "approve", "")),
        threading.Thread(target=decide, args=(reviewer2, "reject", "duplicate order")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    msgs = {name: _messages(r) for name, r in responses.items()}
    task = ReviewTask.objects.get(order=order)
    winner = task.decided_by_name
    loser = "bob" if winner == "alice" else "alice"
    assert task.status in (ReviewTask.Status.APPROVED, ReviewTask.Status.REJECTED)
    assert len(msgs[winner]) == 1 and msgs[winner][0].startswith(order.order_id)
    assert msgs[loser] in (
        [services.DECISION_CLAIMED_BY_OTHER.format(order_id=order.order_id, user=winner)],
        [services.REFUSED_ALREADY_DECIDED.format(order_id=order.order_id, outcome=task.status, who=winner)],
    ), msgs
    h = handle(order.workflow_id)
    status = temporal(lambda c: h.query("get_status"))
    applied = [s for s in status["signals"] if s["outcome"] == "applied"]
    assert [s["actor"] for s in applied] == [winner]
    assert OrderEvent.objects.filter(order=order, type="review_decision_refused", actor=loser).exists()
    assert _run_to_the_end(order).status in ("completed", "cancelled")


def test_stale_page_after_the_order_was_cancelled(system, reviewer):
    """The reviewer opened the order, staff cancelled it meanwhile, the reviewer clicks approve."""
    order = _waiting_order()
    page = client_for(reviewer).get(reverse("reviews:order", args=[order.order_id]))
    assert b"Approve" in page.content
    h = handle(order.workflow_id)
    temporal(lambda c: h.execute_update(Updates.REQUEST_CANCEL, CancelRequest("customer called", "staffer")))
    response = _decide(client_for(reviewer), order, "approve")
    assert _messages(response) == [services.REFUSED_CANCELLED.format(order_id=order.order_id, reason="customer called")]
    assert temporal(lambda c: h.result()).status == "cancelled"
    refused = OrderEvent.objects.get(order=order, type="review_decision_refused")
    assert refused.user == reviewer and refused.message == _messages(response)[0]


def _reopen_task_as_if_projection_lagged(order: Order) -> None:
    """Put the task back to open, as Postgres looks in the moment before the workflow's projection
    lands: the only way to make the Temporal-side refusal deterministic in a test."""
    ReviewTask.objects.filter(order=order).update(
        status="open", decided_at=None, decided_by=None, decided_by_name="", claimed_by=None, claimed_at=None
    )


def test_workflow_refuses_when_cancelled_before_postgres_knows(system, reviewer):
    order = _waiting_order()
    h = handle(order.workflow_id)
    temporal(lambda c: h.signal(Signals.CANCEL_ORDER, CancelRequest("fraud check failed", "staffer")))
    wait_for_state(order.workflow_id, "cancelled")
    wait_until(lambda: Order.objects.get(pk=order.pk).status == "cancelled", what="projection")
    _reopen_task_as_if_projection_lagged(order)
    response = _decide(client_for(reviewer), order, "approve")
    assert _messages(response) == [
        services.REFUSED_CANCELLED.format(order_id=order.order_id, reason="fraud check failed")
    ]
    refused = OrderEvent.objects.get(order=order, type="review_decision_refused")
    assert refused.details["code"] in (RefusalCode.WORKFLOW_CLOSED, RefusalCode.NOT_AWAITING_REVIEW)


def test_workflow_refuses_when_already_decided_by_an_outside_client(system, reviewer):
    order = _waiting_order()
    h = handle(order.workflow_id)
    # An outside client keeps the workflow open for payment: block that by deciding and checking
    # before it completes is racy, so decide with a reject (the workflow ends) and reopen the task.
    temporal(lambda c: h.signal(Signals.COMPLETE_MANUAL_REVIEW, ReviewDecision("reject", "ops-bot", "dup", "")))
    wait_until(lambda: ReviewTask.objects.get(order=order).status == "rejected", what="projection")
    response = _decide(client_for(reviewer), order, "approve")
    assert _messages(response) == [
        services.REFUSED_ALREADY_DECIDED.format(order_id=order.order_id, outcome="rejected", who="ops-bot")
    ]


def test_timed_out_review(system, reviewer):
    order = _waiting_order(review_timeout_seconds=2)
    wait_for_state(order.workflow_id, "cancelled", timeout=20)
    wait_until(lambda: ReviewTask.objects.get(order=order).status == "expired", what="expired task")
    response = _decide(client_for(reviewer), order, "approve")
    assert _messages(response) == [services.REFUSED_TIMED_OUT.format(order_id=order.order_id)]
    # And when Postgres has not caught up yet, the workflow's refusal says the same.
    _reopen_task_as_if_projection_lagged(order)
    response = _decide(client_for(reviewer), order, "approve")
    assert _messages(response) == [services.REFUSED_TIMED_OUT.format(order_id=order.order_id)]


def test_claimed_by_someone_else(system, reviewer, reviewer2):
    order = _waiting_order()
    client_for(reviewer2).post(reverse("reviews:claim", args=[order.order_id]))
    response = _decide(client_for(reviewer), order, "approve")
    assert _messages(response) == [services.DECISION_CLAIMED_BY_OTHER.format(order_id=order.order_id, user="bob")]
    assert wait_for_state(order.workflow_id, "awaiting_manual_review")["signals"] == []


@contextmanager
def temporal_outage():
    """A real outage: a fresh process client pointed at a port where nothing listens. Restored on
    exit, so the fixtures' own clean-up reaches the real server again."""
    real_thread = temporal_client.client_thread
    with override_settings(TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}", TEMPORAL_RPC_TIMEOUT_SECONDS=3):
        temporal_client.client_thread = temporal_client._ClientThread()
        try:
            yield
        finally:
            temporal_client.client_thread = real_thread


def test_temporal_outage_shows_a_clear_error_then_the_retry_goes_through(system, reviewer):
    order = _waiting_order()
    client = client_for(reviewer)
    with temporal_outage():
        response = _decide(client, order, "approve")
        [message] = _messages(response)
        assert message == services.DECISION_UNCONFIRMED.format(
            order_id=order.order_id, address=settings.TEMPORAL_ADDRESS
        )
        unanswered = OrderEvent.objects.get(order=order, type="review_decision_unanswered")
        assert unanswered.user == reviewer and unanswered.details["code"] == "temporal_unreachable"
        # The claim the decision took is given back: colleagues see the order free again.
        task = ReviewTask.objects.get(order=order)
        assert (task.status, task.claimed_by) == ("open", None)
        # The order page still renders from Postgres, and the live panel says Temporal is down.
        page = client.get(reverse("reviews:order", args=[order.order_id]))
        assert page.status_code == 200 and b"Approve" in page.content
        live = client.get(reverse("reviews:order_status", args=[order.order_id]))
        assert views.LIVE_STATUS_UNAVAILABLE.format(address=settings.TEMPORAL_ADDRESS) in live.content.decode()
    # Nothing was lost: the order still waits, and deciding again (a new form) goes through.
    assert wait_for_state(order.workflow_id, "awaiting_manual_review")["signals"] == []
    retried = _decide(client, order, "approve")
    assert _messages(retried) == [services.DECIDED_APPROVED.format(order_id=order.order_id)]
    assert _run_to_the_end(order).status == "completed"
    assert wait_for_state(order.workflow_id, "completed")["review_decision"] == "approve"


def test_order_page_shows_live_status_and_temporal_link(system, reviewer):
    order = _waiting_order()
    client = client_for(reviewer)
    page = client.get(reverse("reviews:order", args=[order.order_id])).content.decode()
    assert temporal_client.workflow_ui_url(order.workflow_id) in page
    assert "Gadget" in page and "12 Review Street" in page
    live = client.get(reverse("reviews:order_status", args=[order.order_id]), HTTP_HX_REQUEST="true")
    assert live.status_code == 200 and 'data-status="awaiting_manual_review"' in live.content.decode()
    _decide(client, order, "approve")
    assert _run_to_the_end(order).status == "completed"
    finished = client.get(reverse("reviews:order_status", args=[order.order_id]), HTTP_HX_REQUEST="true")
    assert finished.status_code == 286  # htmx: stop polling
    assert 'data-status="completed"' in finished.content.decode()


def test_approve_and_next_goes_to_the_next_order_of_the_queue(system, reviewer):
    first = _waiting_order()
    second = _waiting_order()
    ReviewTask.objects.filter(order=second).update(
        due_at=ReviewTask.objects.get(order=first).due_at + timedelta(hours=1)
    )
    client = client_for(reviewer)
    response = _decide(client, first, "approve", then="next")
    assert response.status_code == 302 and response.url == reverse("reviews:order", args=[second.order_id])
    assert _messages(response) == [services.DECIDED_APPROVED.format(order_id=first.order_id)]
    # The last one: back to the queue, which says nothing else waits.
    response = _decide(client, second, "reject", then="next", queue="sort=risk")
    assert response.url == reverse("reviews:queue") + "?sort=risk"
    assert _messages(response)[-1] == views.QUEUE_DONE.format(view=" (as filtered)")
    assert _run_to_the_end(first).status == "completed"
    assert _run_to_the_end(second).status == "cancelled"


def test_a_refused_decision_stays_on_the_order_to_say_why(system, reviewer, reviewer2):
    order = _waiting_order()
    _waiting_order()
    client_for(reviewer2).post(reverse("reviews:claim", args=[order.order_id]))
    response = _decide(client_for(reviewer), order, "approve", then="next")
    assert response.url == reverse("reviews:order", args=[order.order_id])


def test_live_status_says_when_the_order_left_review_and_who_decided(system, reviewer, reviewer2):
    order = _waiting_order()
    client = client_for(reviewer)
    url = reverse("reviews:order_status", args=[order.order_id])
    assert 'id="left-review"' not in client.get(url, HTTP_HX_REQUEST="true").content.decode()
    _decide(client_for(reviewer2), order, "approve")
    html = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert 'id="left-review"' in html
    assert "This order has left review: approved by bob at " in html
    # When Postgres lags behind the workflow, the workflow's own answer says it.
    _reopen_task_as_if_projection_lagged(order)
    html = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "This order has left review: its workflow is" in html
    assert _run_to_the_end(order).status == "completed"


def test_one_address_change_is_one_entry_on_the_order_page(system, reviewer):
    """Staff change the address once through the admin's service, then try the same address
    again: the request and the workflow's applied Update, then the request and its refusal, are
    the audit trail, and the page lists one change."""
    from django.contrib.auth.models import User

    from orderweb.actions import order_address_change

    order = _waiting_order()
    staff = User.objects.create_user("stella", is_staff=True)
    assert order_address_change(order=order, address="99 New Road\nSpringfield", acting_user=staff).accepted
    refused = order_address_change(order=order, address="99 New Road\nSpringfield", acting_user=staff)
    assert not refused.accepted  # the same address again: refused, and not a change
    page = client_for(reviewer).get(reverse("reviews:order", args=[order.order_id])).content.decode()
    history = page.split('id="address-history"')[1].split("</section>")[0]
    assert history.count("<li>") == 1
    assert "99 New Road" in history and "12 Review Street" in history
    assert "The shipping address changed once after the order was placed." in page
    # Each attempt is on the audit trail once: the request, then the workflow's answer.
    assert list(
        OrderEvent.objects.filter(order=order, actor="stella")
        .order_by("created_at", "pk")
        .values_list("type", flat=True)
    ) == ["address_change_requested", "update_applied", "address_change_requested", "address_change_refused"]


@pytest.mark.django_db
def test_the_lock_message_reads_the_task_and_its_order_together_not_the_pages_earlier_read():
    """The status poll read the order, then the workflow closed the task and cancelled the order
    (one transaction), then the poll read the task: the message said "cancelled (order cancelled)"
    without the reason (seen in CI: test_the_panel_locks_when_staff_cancel_the_order)."""
    from tests.reviews.conftest import make_waiting_order

    order = make_waiting_order()
    read_earlier = Order.objects.get(pk=order.pk)
    ReviewTask.objects.filter(order=order).update(status=ReviewTask.Status.CANCELLED, decided_at=timezone.now())
    Order.objects.filter(pk=order.pk).update(status="cancelled", cancel_reason="customer called")
    message = views._left_review_message(read_earlier, None)
    assert "cancelled (order cancelled) (customer called)" in message
    assert "It is now cancelled" in message
