"""The review team's rules, enforced by the order's workflow (DESIGN.md rule 13): escalation,
expiry by risk level, four eyes. Real dev server and workers, with review timeouts of seconds
(the time-skipping test server cannot be downloaded here)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core import mail
from temporalio.api.enums.v1 import EventType

from orderweb.models import GatewayLedgerEntry, Order, OrderEvent
from orderweb.services import order_create
from reviews.models import ReviewTask
from temporal_app.client import ActionRefused, order_workflow_update
from temporal_app.contracts import (
    FIRST_OF_TWO_APPROVALS,
    REVIEW_TIMED_OUT,
    AddressChange,
    LineItem,
    RefusalCode,
    ReviewDecision,
    Signals,
    Updates,
)
from tests.helpers import handle, new_order_id, temporal, wait_for_state, wait_for_status, wait_until

pytestmark = pytest.mark.temporal


def make_order(amount: str = "10.00", **kwargs) -> Order:
    kwargs.setdefault("order_id", new_order_id("RULE"))
    kwargs.setdefault("address", f"{kwargs['order_id']} Rule Street\nSpringfield")  # no address velocity
    return order_create(line_items=[LineItem("SKU-R", "Rule widget", 1, amount)], **kwargs)


def result(order: Order):
    h = handle(order.workflow_id)
    return temporal(lambda c: h.result(), timeout=90)


def history(workflow_id: str) -> list:
    async def events(client):
        return [e async for e in client.get_workflow_handle(workflow_id).fetch_history_events()]

    return temporal(events)


def event_names(workflow_id: str) -> list[str]:
    names = []
    for event in history(workflow_id):
        name = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            name += ":" + event.activity_task_scheduled_event_attributes.activity_type.name
        names.append(name)
    return names


def signal(order: Order, *args) -> None:
    h = handle(order.workflow_id)
    temporal(lambda c: h.signal(Signals.COMPLETE_MANUAL_REVIEW, args=list(args)))


@pytest.fixture
def escalation(settings):
    settings.REVIEW_ESCALATE_AFTER = 0.3
    settings.REVIEW_ESCALATION_EMAILS = ["leads@example.com", "night-lead@example.com"]
    return settings


# -- escalation ----------------------------------------------------------------------------------


def test_an_undecided_review_escalates_once_then_expires(system, escalation):
    # Escalated after 3 s; the rest of the timeout (7 s) leaves a loaded machine time to escalate.
    order = make_order(review_timeout_seconds=10)
    task = wait_until(
        lambda: ReviewTask.objects.filter(order=order, escalated_at__isnull=False).first(),
        timeout=30,
        what="the escalation",
    )
    assert task.status == ReviewTask.Status.OPEN  # escalated before it expired
    escalated = OrderEvent.objects.get(order=order, type=OrderEvent.Type.REVIEW_ESCALATED)
    assert escalated.details["told"] == ["leads@example.com", "night-lead@example.com"]
    assert "emailed leads@example.com, night-lead@example.com" in escalated.message
    # The email went through Django's email framework (locmem in tests), once the escalation committed.
    sent = wait_until(lambda: [m for m in mail.outbox if order.order_id in m.subject], what="the email")
    assert len(sent) == 1 and sent[0].to == ["leads@example.com", "night-lead@example.com"]
    assert f"/reviews/orders/{order.order_id}/" in sent[0].body
    status = wait_for_status(order.workflow_id, lambda s: s["review_escalated_at"], "say it escalated")
    assert status["review_escalates_at"] and status["review_timeout_action"] == "expire"

    res = result(order)
    assert (res.status, res.reason) == ("cancelled", REVIEW_TIMED_OUT)
    task.refresh_from_db()
    assert task.status == ReviewTask.Status.EXPIRED and task.escalated_at is not None
    names = event_names(order.workflow_id)
    # One timer to the escalation, then the rest of the timeout: two in all, one escalation.
    assert names.count("TIMER_STARTED") == 2 and names.count("TIMER_FIRED") == 2
    assert names.count("ACTIVITY_TASK_SCHEDULED:review_escalated") == 1
    assert OrderEvent.objects.filter(order=order, type=OrderEvent.Type.REVIEW_ESCALATED).count() == 1

    # Temporal's visibility finds it by the new search attribute.
    async def escalated_ids(client):
        query = f'ReviewEscalated = true AND WorkflowId = "{order.workflow_id}"'
        return [w.id async for w in client.list_workflows(query)]

    wait_until(lambda: temporal(escalated_ids) == [order.workflow_id], what="ReviewEscalated=true in visibility")


def test_a_decision_before_the_escalation_cancels_it(system, escalation):
    order = make_order(review_timeout_seconds=60)
    wait_for_state(order.workflow_id, "awaiting_manual_review")
    order_workflow_update(order.workflow_id, Updates.DECIDE_REVIEW, ReviewDecision("approve", "alice"))
    assert result(order).status == "completed"
    names = event_names(order.workflow_id)
    assert names.count("TIMER_STARTED") == 1 and names.count("TIMER_CANCELED") == 1
    assert "ACTIVITY_TASK_SCHEDULED:review_escalated" not in names
    assert not ReviewTask.objects.get(order=order).escalated_at
    assert not [m for m in mail.outbox if order.order_id in m.subject]


def test_an_address_change_does_not_reset_the_escalation(system, escalation):
    order = make_order(review_timeout_seconds=12)
    wait_for_state(order.workflow_id, "awaiting_manual_review")
    order_workflow_update(
        order.workflow_id, Updates.CHANGE_ADDRESS, AddressChange("3 Moved Road\nSpringfield", "staff")
    )
    wait_until(
        lambda: ReviewTask.objects.filter(order=order, escalated_at__isnull=False).exists(),
        timeout=30,
        what="the escalation",
    )
    names = event_names(order.workflow_id)
    escalated = names.index("ACTIVITY_TASK_SCHEDULED:review_escalated")
    # The address change was taken while the escalation's timer ran: the timer was neither
    # cancelled nor started again before it fired.
    assert "WORKFLOW_EXECUTION_UPDATE_ACCEPTED" in names[:escalated]
    assert names[:escalated].count("TIMER_STARTED") == 1 and "TIMER_CANCELED" not in names[:escalated]
    temporal(lambda c: c.get_workflow_handle(order.workflow_id).terminate("test done"))


# -- expiry by risk level ------------------------------------------------------------------------


def test_the_timeout_approves_as_policy_where_the_risk_level_says_so(system, settings):
    # An order without a customer scores 30 ("unknown customer"): medium risk.
    settings.REVIEW_TIMEOUT_ACTION_MEDIUM = "approve"
    settings.REVIEW_ESCALATE_AFTER = 0
    order = make_order(review_timeout_seconds=2)
    res = result(order)
    assert res.status == "completed"
    task = ReviewTask.objects.get(order=order)
    assert (task.status, task.decided_by_name, task.timeout_action) == ("approved", "policy", "approve")
    assert "REVIEW_TIMEOUT_ACTION_MEDIUM=approve" in task.note
    approved = OrderEvent.objects.get(order=order, type=OrderEvent.Type.REVIEW_APPROVED)
    assert approved.actor == "policy" and "review timed out" in approved.details["note"]
    assert GatewayLedgerEntry.objects.filter(order_ref=order.order_id, kind="charge").count() == 1
    # A level left at "expire" still expires.
    low = make_order(review_timeout_seconds=2, customer="Ada Known")  # 15 points: low
    assert result(low).status == "cancelled"
    assert ReviewTask.objects.get(order=low).status == ReviewTask.Status.EXPIRED


# -- four eyes -----------------------------------------------------------------------------------


@pytest.fixture
def four_eyes(settings):
    settings.REVIEW_FOUR_EYES_AMOUNT = "100.00"
    return settings


def test_four_eyes_needs_two_different_people(system, four_eyes):
    order = make_order("150.00")
    wait_for_state(order.workflow_id, "awaiting_manual_review")
    task = ReviewTask.objects.get(order=order)
    assert (task.approvals_required, task.four_eyes_rule) == (2, "amount 150.00 ≥ REVIEW_FOUR_EYES_AMOUNT 100.00")

    first = order_workflow_update(
        order.workflow_id, Updates.DECIDE_REVIEW, ReviewDecision("approve", "alice", "looks fine", "fe-1")
    )
    assert first.accepted and first.code == FIRST_OF_TWO_APPROVALS
    assert first.message == "Approved, 1 of 2: waiting for a second reviewer."
    task.refresh_from_db()  # answered once projected
    assert (task.status, task.first_approval_by, task.first_approval_note) == ("open", "alice", "looks fine")
    with pytest.raises(ActionRefused) as again:
        order_workflow_update(order.workflow_id, Updates.DECIDE_REVIEW, ReviewDecision("approve", "alice", "", "fe-2"))
    assert again.value.code == RefusalCode.SAME_REVIEWER
    status = wait_for_status(order.workflow_id, lambda s: s["review_approvals_required"] == 2, "show four eyes")
    assert status["workflow_status"] == "awaiting_manual_review"
    assert [a["reviewer"] for a in status["review_approvals"]] == ["alice"]

    second = order_workflow_update(
        order.workflow_id, Updates.DECIDE_REVIEW, ReviewDecision("approve", "bob", "", "fe-3")
    )
    assert second.accepted and not second.code
    assert result(order).status == "completed"
    task.refresh_from_db()
    assert (task.status, task.first_approval_by, task.decided_by_name) == ("approved", "alice", "bob")
    approved = OrderEvent.objects.get(order=order, type=OrderEvent.Type.REVIEW_APPROVED)
    assert [a["reviewer"] for a in approved.details["approvals"]] == ["alice", "bob"]
    assert (
        OrderEvent.objects.filter(order=order, type=OrderEvent.Type.REVIEW_PARTLY_APPROVED, actor="alice").count() == 1
    )
    assert GatewayLedgerEntry.objects.filter(order_ref=order.order_id, kind="charge").count() == 1


def test_four_eyes_counts_anonymous_clients_as_one_and_a_rejection_ends_it(system, four_eyes):
    order = make_order("150.00")
    wait_for_state(order.workflow_id, "awaiting_manual_review")
    signal(order)  # the seed's signal: approve, no reviewer -> "temporal-client"
    signal(order)  # the same anonymous client again: not a second person
    status = wait_for_status(order.workflow_id, lambda s: len(s["signals"]) >= 2, "take both signals")
    assert [a["reviewer"] for a in status["review_approvals"]] == ["temporal-client"]
    assert [s["code"] for s in status["signals"] if s["outcome"] == "refused"] == [RefusalCode.SAME_REVIEWER]
    assert status["workflow_status"] == "awaiting_manual_review"
    # The first approver may still reject: a rejection by either reviewer ends the review.
    signal(order, ReviewDecision("reject", "", "second thoughts"))
    res = result(order)
    assert res.status == "cancelled" and res.reason == "rejected in review: second thoughts"
    assert GatewayLedgerEntry.objects.filter(order_ref=order.order_id).count() == 0


def test_an_approval_held_before_review_becomes_the_first_of_two(system, four_eyes):
    """An approval that reaches the workflow before the order is validated is held; when the
    rules say four eyes, it counts as the first approval, and its Update is answered so."""
    order = make_order("500.00")
    first = order_workflow_update(
        order.workflow_id, Updates.DECIDE_REVIEW, ReviewDecision("approve", "early-alice", "", "held-1")
    )
    assert first.accepted and first.code == FIRST_OF_TWO_APPROVALS
    wait_until(
        lambda: ReviewTask.objects.filter(order=order, first_approval_by="early-alice").exists(),
        what="the first approval's projection",
    )
    order_workflow_update(order.workflow_id, Updates.DECIDE_REVIEW, ReviewDecision("approve", "bob", "", "held-2"))
    assert result(order).status == "completed"


def _at_once(*calls):
    import threading

    answers: list = [None] * len(calls)

    def run(i, call):
        try:
            answers[i] = call()
        except ActionRefused as err:
            answers[i] = err

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


@pytest.mark.parametrize("amount, ending", [("500.00", "completed"), ("50.00", "completed")])
def test_two_peoples_approvals_held_before_review(system, four_eyes, amount, ending):
    """Two people approve (by Update) before the workflow reached review, where the rules become
    known: on a four-eyes order both count; on another, the first decides and the other is
    refused as already decided. Either way, one answer says what happened to each."""
    order = make_order(amount)
    answers = _at_once(
        lambda: order_workflow_update(
            order.workflow_id, Updates.DECIDE_REVIEW, ReviewDecision("approve", "ann", "", "h-a")
        ),
        lambda: order_workflow_update(
            order.workflow_id, Updates.DECIDE_REVIEW, ReviewDecision("approve", "ben", "", "h-b")
        ),
    )
    assert result(order).status == ending
    accepted = [a for a in answers if not isinstance(a, ActionRefused) and a.accepted]
    refused = [a.code if isinstance(a, ActionRefused) else a.code for a in answers if a not in accepted]
    task = ReviewTask.objects.get(order=order)
    if amount == "500.00":
        assert len(accepted) == 2 and sorted(a.code for a in accepted) == ["", FIRST_OF_TWO_APPROVALS]
        assert "Approved, 1 of 2: waiting for a second reviewer." in [a.message for a in accepted]
        assert {task.first_approval_by, task.decided_by_name} == {"ann", "ben"}
    else:
        assert len(accepted) == 1 and refused == [RefusalCode.ALREADY_DECIDED]
        assert task.decided_by_name in ("ann", "ben") and not task.first_approval_by


def test_orders_below_the_thresholds_need_one_approval(system, four_eyes):
    order = make_order("99.99")
    wait_for_state(order.workflow_id, "awaiting_manual_review")
    answer = order_workflow_update(order.workflow_id, Updates.DECIDE_REVIEW, ReviewDecision("approve", "alice"))
    assert answer.accepted and not answer.code
    assert result(order).status == "completed"
    task = ReviewTask.objects.get(order=order)
    assert (task.approvals_required, task.first_approval_by, task.decided_by_name) == (1, "", "alice")
    assert not OrderEvent.objects.filter(order=order, type=OrderEvent.Type.REVIEW_PARTLY_APPROVED).exists()


def test_four_eyes_by_risk_level_and_no_policy_stands_in_for_it(system, settings):
    settings.REVIEW_FOUR_EYES_LEVELS = ["medium"]
    settings.REVIEW_TIMEOUT_ACTION_MEDIUM = "approve"  # four eyes wins: the order expires
    settings.REVIEW_ESCALATE_AFTER = 0
    order = make_order(review_timeout_seconds=3)  # unknown customer: medium risk
    wait_for_state(order.workflow_id, "awaiting_manual_review")
    task = ReviewTask.objects.get(order=order)
    assert (task.approvals_required, task.timeout_action) == (2, "expire")
    assert task.four_eyes_rule == "medium risk (REVIEW_FOUR_EYES_LEVELS=medium)"
    assert result(order).status == "cancelled"
    assert ReviewTask.objects.get(order=order).status == ReviewTask.Status.EXPIRED
    assert Decimal(task.amount) == Decimal("10.00")


def test_an_update_aborted_by_the_workflow_closing_is_told_as_closed_not_missing():
    """Seen in the chaos run's approve_reject_cancel: the rejection ended the order while the
    cancel's Update was on its way, and the server answered NOT_FOUND "workflow update was aborted
    by closing workflow"; that is a closed workflow (a cancel refused because the order already
    ended), not one Temporal never had."""
    from temporal_app.client import workflow_closed_message

    assert workflow_closed_message("workflow update was aborted by closing workflow")
    assert workflow_closed_message("workflow execution already completed")
    assert not workflow_closed_message("workflow not found for ID: order-1")
