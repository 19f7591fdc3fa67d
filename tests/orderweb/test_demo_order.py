"""The seed's demo (`manage.py demo_order`), run against the real dev server and workers, reading
what a person reads: its output."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from orderweb.management.commands.demo_order import NEW_ADDRESS, ORDER_EXISTS, STORY_FAILED
from orderweb.models import Order, Payment, Shipment
from tests.helpers import new_order_id

pytestmark = pytest.mark.temporal


def demo(*args: str) -> str:
    out = io.StringIO()
    call_command("demo_order", *args, "--timeout", "60", stdout=out)
    return out.getvalue()


def test_demo_runs_the_seed_story_to_completed(system):
    order_id = new_order_id()
    output = demo("--order-id", order_id)

    lines = [line.split()[1:] for line in output.splitlines() if "  state  " in line]
    assert [words[1] for words in lines] == [
        "started",
        "processing",
        "awaiting_manual_review",
        "manual_review_completed",
        "processing_payment",
        "shipping",
        "completed",
    ]
    assert "signal  UpdateAddress applied: address updated" in output
    assert "signal  CompleteManualReview applied: review decision: approve" in output
    assert "Result    completed, tracking number TRK" in output
    assert f"/namespaces/default/workflows/{order_id.lower()}" in output
    order = Order.objects.get(order_id=order_id)
    assert order.status == Order.Status.COMPLETED
    assert order.address == NEW_ADDRESS
    assert Shipment.objects.get(order=order).status == Shipment.Status.DISPATCHED


def test_demo_cancel_path_ends_cancelled_without_a_charge(system):
    order_id = new_order_id()
    output = demo("--order-id", order_id, "--cancel")
    assert "Result    cancelled (the customer changed their mind)" in output
    assert Order.objects.get(order_id=order_id).status == Order.Status.CANCELLED
    assert not Payment.objects.filter(order__order_id=order_id).exists()


def test_demo_reject_path_ends_cancelled_with_the_reviewers_reason(system):
    order_id = new_order_id()
    output = demo("--order-id", order_id, "--reject")
    assert "Result    cancelled (rejected in review: the address looks made up)" in output
    order = Order.objects.get(order_id=order_id)
    assert order.status == Order.Status.CANCELLED
    assert order.cancel_reason == "rejected in review: the address looks made up"


def test_demo_dispatch_failure_path_shows_the_search_attribute_and_recovers(system):
    order_id = new_order_id()
    output = demo("--order-id", order_id, "--dispatch-failure")
    assert "failure the carrier rejected the pickup request (simulated)" in output
    assert "describe(): OrderStatus = shipping, DispatchFailures = 1" in output
    assert "signal  RetryShipping applied: shipping retried" in output
    assert "Result    completed" in output
    order = Order.objects.get(order_id=order_id)
    assert order.status == Order.Status.COMPLETED
    assert order.dispatch_failures == 1


def test_demo_fails_loudly_when_the_story_does_not_end_as_expected(system):
    order_id = new_order_id()
    with pytest.raises(CommandError) as failure:
        demo("--order-id", order_id, "--address", "   ")  # the workflow's validation fails it
    assert str(failure.value).startswith(STORY_FAILED.format(detail="expected completed, the workflow says failed"))


def test_demo_refuses_an_order_id_that_already_ran(system):
    order_id = new_order_id()
    demo("--order-id", order_id, "--cancel")
    with pytest.raises(CommandError, match=ORDER_EXISTS.format(workflow_id=order_id.lower()).replace("(", r"\(")):
        demo("--order-id", order_id)
