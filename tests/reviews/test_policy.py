"""REVIEW_POLICY end to end, with the real Temporal dev server and workers: under ``risky`` an
order below the threshold is approved by the actor "policy" (the audit names the rule and its
figures), a risky one waits for a person; under ``all`` (the default) every order waits."""

from __future__ import annotations

import pytest

from orderweb.models import Order, OrderEvent
from orderweb.services import order_create
from reviews.models import ReviewTask, RiskAssessment
from temporal_app.contracts import POLICY_ACTOR, LineItem
from tests.helpers import handle, new_order_id, temporal, wait_for_state, wait_until

pytestmark = pytest.mark.temporal


def _order(address: str = "4 Quiet Lane\nSpringfield", email: str = "regular@example.com") -> Order:
    return order_create(
        order_id=new_order_id("POL"),
        address=address,
        customer="Regular Customer",
        customer_email=email,
        line_items=[LineItem("SKU-P", "Thing", 1, "20.00")],
    )


def _result(order: Order):
    h = handle(order.workflow_id)
    return temporal(lambda c: h.result())


def test_risky_policy_approves_low_risk_orders_as_policy_and_holds_risky_ones(system, settings):
    settings.REVIEW_POLICY = "risky"
    settings.REVIEW_POLICY_THRESHOLD = 30
    # A first order from a known customer scores 15 (first_order): below 30, it goes through.
    passed = _order()
    assert _result(passed).status == "completed"
    task = ReviewTask.objects.get(order=passed)
    assert (task.status, task.decided_by_name, task.decided_by_id) == ("approved", POLICY_ACTOR, None)
    rule = "REVIEW_POLICY=risky: risk score 15 < 30 (first_order +15)"
    assert task.note == f"approved by policy: {rule}"
    assert RiskAssessment.objects.get(order=passed).approved_by_policy == rule
    approved = OrderEvent.objects.get(order=passed, type=OrderEvent.Type.REVIEW_APPROVED)
    assert approved.actor == POLICY_ACTOR and rule in approved.details["note"]

    # A PO box on top of a first order: 30, not below the threshold, so a person decides.
    held = _order(address="P.O. Box 77\nSpringfield", email="other@example.com")
    wait_for_state(held.workflow_id, "awaiting_manual_review")
    wait_until(lambda: ReviewTask.objects.filter(order=held, status="open").exists(), what="open task")
    assert RiskAssessment.objects.get(order=held).score == 30
    assert wait_for_state(held.workflow_id, "awaiting_manual_review")["review_decision"] is None


def test_default_policy_all_keeps_every_order_for_a_person(system, settings):
    settings.REVIEW_POLICY = "all"
    order = _order(email="someone@example.com")
    wait_for_state(order.workflow_id, "awaiting_manual_review")
    wait_until(lambda: ReviewTask.objects.filter(order=order, status="open").exists(), what="open task")
    assert RiskAssessment.objects.get(order=order).approved_by_policy == ""
