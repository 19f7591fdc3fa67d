"""The benchmark (`manage.py bench_orders`), run against the real dev server and workers,
reading what a person reads: its output; and the workers it starts itself, ready by /readyz."""

from __future__ import annotations

import io
import json
import urllib.request

import pytest
from django.core.management import CommandError, call_command

from devtools.bench import WORKERS_DID_NOT_START, Workers
from devtools.supervise import free_port
from orderweb.models import Order, OrderEvent
from tests.temporal_app.test_run_workers import database_url

pytestmark = pytest.mark.temporal


def test_bench_runs_orders_end_to_end_and_prints_json_last(system):
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "bench_orders",
        "--orders",
        "4",
        "--use-running-workers",
        "--no-progress",
        "--timeout",
        "120",
        stdout=out,
        stderr=err,
    )
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
    assert (
        OrderEvent.objects.filter(
            order__in=bench_orders, type="review_decision_requested", actor="bench-reviewer"
        ).count()
        == 4
    )


# -- the workers bench_orders starts itself: ready when their /readyz says so ---------------------


@pytest.mark.django_db
def test_bench_workers_are_ready_by_their_readyz_and_stop_on_sigint(temporal_server, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", database_url())  # the test database, for the subprocess
    workers = Workers(threads=4)  # two slots each for order-tq and shipping-tq (temporal_app.worker.slot_plan)
    try:
        workers.wait_ready(120)
        with urllib.request.urlopen(workers.ready.url, timeout=10) as response:
            assert (response.status, response.read()) == (200, b"ready: polling order-tq, shipping-tq, webhook-tq\n")
    finally:
        workers.stop()
    assert workers.child.exit_code() == 0, workers.log.read_text()
    assert "workers stopped" in workers.log.read_text()


@pytest.mark.django_db
def test_bench_says_why_its_workers_did_not_start(settings, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", database_url())
    settings.TEMPORAL_ADDRESS = f"127.0.0.1:{free_port()}"  # nothing listens there
    workers = Workers(threads=4)
    try:
        with pytest.raises(CommandError) as refused:
            workers.wait_ready(60)
    finally:
        workers.stop()
    assert str(refused.value).startswith(
        WORKERS_DID_NOT_START.format(
            timeout=60, detail=f"CommandError: Temporal is unreachable at {settings.TEMPORAL_ADDRESS}"
        )
    )
