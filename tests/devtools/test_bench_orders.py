"""The benchmark (`manage.py bench_orders`), run against the real dev server and workers,
reading what a person reads: its output."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

from orderweb.models import Order, OrderEvent

pytestmark = pytest.mark.temporal


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
