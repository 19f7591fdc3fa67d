"""The seed's demo (`manage.py demo_order`) and the benchmark (`manage.py bench_orders`), run
against the real dev server and workers, reading what a person reads: their output."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command

from orderweb.models import Order, OrderEvent, Payment, Shipment
from temporal_app.management.commands.demo_order import NEW_ADDRESS, ORDER_EXISTS, STORY_FAILED
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
        "started", "processing", "awaiting_manual_review", "manual_review_completed",
        "processing_payment", "shipping", "completed",
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


def test_bench_runs_orders_end_to_end_and_prints_json_last(system):
    out, err = io.StringIO(), io.StringIO()
    call_command("bench_orders", "--orders", "4", "--use-running-workers", "--no-progress", "--timeout", "120",
                 stdout=out, stderr=err)
    result = json.loads(out.getvalue().strip().splitlines()[-1])
    assert result["orders"] == 4 and result["completed"] == 4
    assert result["orders_per_s"] > 0 and result["seconds"] > 0
    assert result["approve_to_charged_ms"]["p50"] > 0
    assert result["approve_to_charged_ms"]["p95"] >= result["approve_to_charged_ms"]["p50"]
    assert set(result) >= {"orders", "seconds", "orders_per_s", "approve_to_charged_ms", "peak_worker_rss_mb"}
    bench_orders = Order.objects.filter(order_id__startswith="BENCH-")
    assert bench_orders.count() == 4
    assert set(bench_orders.values_list("status", flat=True)) == {"completed"}
    # Approved through the review UI's path: the reviewer's request is audited on each order.
    assert OrderEvent.objects.filter(order__in=bench_orders, type="review_decision_requested",
                                     actor="bench-reviewer").count() == 4
