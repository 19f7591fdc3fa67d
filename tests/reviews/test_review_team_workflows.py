"""Four eyes and bulk decisions through the review back office, for real: the views and services,
after commit the DecideReview Update, the workflow, its projection. Real dev server, real workers."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.messages import get_messages
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from orderweb.models import Order, OrderEvent
from orderweb.services import order_create
from reviews import services
from reviews.models import ReviewTask
from temporal_app.contracts import FIRST_OF_TWO_APPROVALS, LineItem, RefusalCode
from tests.helpers import handle, new_order_id, temporal, wait_for_state, wait_until
from tests.reviews.conftest import client_for, make_user

pytestmark = pytest.mark.temporal


def _waiting(amount: str = "30.00") -> Order:
    order_id = new_order_id("TEAM")
    order = order_create(
        order_id=order_id,
        address=f"{order_id} Team Street\nSpringfield",
        line_items=[LineItem("SKU-T", "Team widget", 1, amount)],
    )
    wait_for_state(order.workflow_id, "awaiting_manual_review")
    wait_until(lambda: ReviewTask.objects.filter(order=order, status="open").exists(), what="open task")
    return order


def _result(order: Order):
    h = handle(order.workflow_id)
    return temporal(lambda c: h.result(), timeout=90)


def _messages(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)._queued_messages]


@pytest.fixture
def four_eyes(settings):
    settings.REVIEW_FOUR_EYES_AMOUNT = "1000.00"
    return settings


def _decide(client, order: Order, decision: str = "approve", then: str = "", **extra):
    return client.post(
        reverse("reviews:decide", args=[order.order_id]),
        {
            "decision": decision,
            "note": extra.pop("note", ""),
            "action_id": str(uuid.uuid4()),
            "reason_code": extra.pop("reason_code", ""),
            "then": then,
            **extra,
        },
    )


def test_four_eyes_through_the_review_pages(system, four_eyes):
    alice, bob = make_user("alice", reviewer=True), make_user("bob", reviewer=True)
    order = _waiting("1500.00")
    other = _waiting("20.00")  # the next order of the queue
    response = _decide(client_for(alice), order, note="customer known to us", then="next")
    assert _messages(response) == [
        services.DECIDED_FIRST_OF_TWO.format(
            order_id=order.order_id, rule="amount 1500.00 ≥ REVIEW_FOUR_EYES_AMOUNT 1000.00"
        )
    ]
    # "& next" went on to the next order: the first approver is never offered this one again.
    assert response.url == reverse("reviews:order", args=[other.order_id])
    task = ReviewTask.objects.get(order=order)
    assert (task.status, task.first_approval_by, task.first_approval_note) == ("open", "alice", "customer known to us")
    assert task.claimed_by is None  # given back: the order is free for a colleague
    released = OrderEvent.objects.get(order=order, type=OrderEvent.Type.REVIEW_RELEASED)
    assert released.actor == "alice" and released.message == services.FIRST_APPROVAL_RELEASED
    assert Order.objects.get(pk=order.pk).status == "awaiting_manual_review"

    again = _decide(client_for(alice), order)
    assert _messages(again) == [services.REFUSED_SAME_REVIEWER.format(order_id=order.order_id)]
    refused = OrderEvent.objects.get(order=order, type=OrderEvent.Type.REVIEW_DECISION_REFUSED)
    assert refused.details["code"] == RefusalCode.SAME_REVIEWER

    second = _decide(client_for(bob), order)
    assert _messages(second) == [services.DECIDED_APPROVED.format(order_id=order.order_id)]
    assert _result(order).status == "completed"
    task.refresh_from_db()
    assert (task.status, task.first_approval_by, task.decided_by_name) == ("approved", "alice", "bob")


def test_a_bulk_approval_answers_one_line_per_order(system, four_eyes):
    alice, bob = make_user("alice", reviewer=True), make_user("bob", reviewer=True)
    plain, large, held = _waiting(), _waiting("2000.00"), _waiting()
    ReviewTask.objects.filter(order=held).update(claimed_by=bob, claimed_at=timezone.now())
    batch = str(uuid.uuid4())
    ids = [plain.order_id, large.order_id, held.order_id, "NO-SUCH-ORDER", plain.order_id]  # a repeat is one
    lines = services.review_decide_bulk(order_ids=ids, user=alice, decision="approve", batch_id=batch)
    answers = {line.order_id: (line.status, line.code) for line in lines}
    assert [line.order_id for line in lines] == ids[:4]
    assert answers == {
        plain.order_id: ("applied", ""),
        large.order_id: ("applied", FIRST_OF_TWO_APPROVALS),  # one approval, never two
        held.order_id: ("refused", services.CLAIMED_BY_OTHER),
        "NO-SUCH-ORDER": ("refused", "not_found"),
    }
    assert "claimed by bob" in next(line.message for line in lines if line.order_id == held.order_id)
    assert _result(plain).status == "completed"
    assert ReviewTask.objects.get(order=large).first_approval_by == "alice"
    # Each order went the single decision's way: its own request row, and its own answer.
    for order in (plain, large, held):
        assert OrderEvent.objects.filter(
            order=order, type=OrderEvent.Type.REVIEW_DECISION_REQUESTED, actor="alice"
        ).count() == (0 if order is held else 1)
    assert OrderEvent.objects.filter(order=held, type=OrderEvent.Type.REVIEW_DECISION_REFUSED).count() == 1
    # The same form again (a double click): nothing applies twice.
    again = services.review_decide_bulk(order_ids=ids, user=alice, decision="approve", batch_id=batch)
    assert {line.order_id: line.code for line in again}[large.order_id] == RefusalCode.DUPLICATE_ACTION
    assert ReviewTask.objects.get(order=large).status == "open"
    temporal(lambda c: c.get_workflow_handle(held.workflow_id).terminate("test done"))
    temporal(lambda c: c.get_workflow_handle(large.workflow_id).terminate("test done"))


def test_the_bulk_page_rejects_with_one_reason_and_shows_the_answers(system):
    alice = make_user("alice", reviewer=True)
    orders = [_waiting(), _waiting()]
    client = client_for(alice)
    queue = client.get(reverse("reviews:queue")).content.decode()
    assert 'id="bulk-form"' in queue and queue.count('class="bulk-select"') == 2
    batch = str(uuid.uuid4())
    response = client.post(
        reverse("reviews:bulk"),
        {
            "orders": [o.order_id for o in orders],
            "decision": "reject",
            "reason_code": "suspected_fraud",
            "note": "same card, two names",
            "batch_id": batch,
            "queue": "sort=risk",
        },
    )
    assert response.status_code == 302 and response.url == reverse("reviews:bulk_result", args=[batch])
    assert _messages(response) == ["Bulk reject: 2 applied."]
    page = client.get(response.url).content.decode()
    assert page.count('data-status="applied"') == 2 and "2 applied" in page and 'href="/reviews/?sort=risk"' in page
    for order in orders:
        assert _result(order).status == "cancelled"
        assert ReviewTask.objects.get(order=order).reason_code == "suspected_fraud"


@pytest.mark.parametrize(
    "data, message",
    [
        ({"orders": []}, services.BULK_NONE_SELECTED),
        ({"orders": [f"O-{i}" for i in range(51)]}, services.BULK_TOO_MANY.format(max=50, count=51)),
        ({"orders": ["O-1"], "decision": "reject"}, services.REJECT_REASON_REQUIRED),
    ],
)
def test_bulk_input_is_checked_before_anything_is_sent(db, data, message):
    alice = make_user("alice", reviewer=True)
    post = {"decision": "approve", "batch_id": str(uuid.uuid4()), **data}
    response = client_for(alice).post(reverse("reviews:bulk"), post)
    assert response.status_code == 302 and message in _messages(response)
    assert not OrderEvent.objects.exists()
    with pytest.raises(ValidationError):
        services.review_decide_bulk(
            order_ids=data["orders"], user=alice, decision=post["decision"], batch_id=post["batch_id"]
        )
