"""Tracing (temporal_app/tracing.py): one trace from a reviewer's POST, through the DecideReview
Update and the workflow task that handles it, to the payment_charged activity and its SQL.

Tracing is on for this test only (an in-memory exporter), with its own dev server and workers:
the session's workers run untraced, as production does without OTEL_EXPORTER_OTLP_ENDPOINT."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from django.db import connection
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from orderweb.models import Order
from orderweb.services import order_create
from reviews.models import ReviewTask
from temporal_app import tracing
from temporal_app.contracts import LineItem
from temporal_app.logs import JsonFormatter, OrderContextFilter
from tests.conftest import ARTIFACTS, WorkerThread, wait_for_database_quiet
from tests.helpers import new_order_id, temporal, wait_for_state, wait_until
from tests.reviews.conftest import client_for, make_user
from tests.reviews.test_decide import _decide

pytestmark = pytest.mark.temporal


@pytest.fixture
def traced(own_temporal) -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.configure(exporter=exporter)
    connection.close()  # psycopg's instrumentation traces the connections opened from now on
    workers = WorkerThread(threads=8)  # its client connects now, with the tracing interceptors
    workers.start()
    try:
        workers.ready.wait(30)
        if workers.error is not None:
            raise workers.error
        yield exporter
    finally:
        workers.stop()
        wait_for_database_quiet()
        tracing.disable()
        connection.close()  # the rest of the session's tests use untraced connections


def statement(span) -> str:
    return str(span.attributes.get("db.statement") or span.attributes.get("db.query.text") or "")


def ancestry(span, by_id) -> list:
    chain = [span]
    while chain[-1].parent is not None and chain[-1].parent.span_id in by_id:
        chain.append(by_id[chain[-1].parent.span_id])
    return chain


def tree(spans, by_id, root) -> list[str]:
    children: dict[int, list] = {}
    for span in spans:
        if span.parent is not None:
            children.setdefault(span.parent.span_id, []).append(span)
    lines = []

    def walk(span, depth):
        label = span.name + (f"  [{statement(span)[:90]}]" if statement(span) else "")
        lines.append(f"{'  ' * depth}{label}  ({(span.end_time - span.start_time) / 1e6:.1f} ms)")
        for child in sorted(children.get(span.context.span_id, []), key=lambda s: s.start_time):
            walk(child, depth + 1)

    walk(root, 0)
    return lines


def test_one_trace_runs_from_the_reviewers_post_to_the_charges_sql(traced):
    exporter = traced
    reviewer = make_user("trace-reviewer", reviewer=True)
    order = order_create(
        order_id=new_order_id("TRACE"), address="1 Trace Terrace", line_items=[LineItem("SKU-1", "Widget", 1, "5.00")]
    )
    wait_for_state(order.workflow_id, "awaiting_manual_review")
    wait_until(lambda: ReviewTask.objects.filter(order=order, status="open").exists(), what="the open task")
    exporter.clear()

    response = _decide(client_for(reviewer), order, "approve")
    assert response.status_code == 302
    temporal(lambda client: client.get_workflow_handle(order.workflow_id).result())
    wait_until(lambda: Order.objects.filter(pk=order.pk, status="completed").exists(), what="the ending")

    spans = exporter.get_finished_spans()
    by_id = {span.context.span_id: span for span in spans}
    charge = [span for span in spans if 'INSERT INTO "orderweb_payment"' in statement(span)]
    assert len(charge) == 1, [statement(s) for s in spans]
    chain = ancestry(charge[0], by_id)
    names = [span.name for span in chain]
    # The parent chain, from the charge's SQL up to the reviewer's POST.
    assert names[1:] == [
        "RunActivity:payment_charged",
        "StartActivity:payment_charged",
        "HandleUpdate:DecideReview",
        "StartWorkflowUpdate:DecideReview",
        "POST reviews/orders/<str:order_id>/decide/",
    ], names
    post = chain[-1]
    assert post.parent is None and post.attributes["http.method"] == "POST"
    assert len({span.context.trace_id for span in chain}) == 1

    # The charge's other statements (the order's move, the gateway's ledger) are in it too, and
    # so are the web's own (the decision's audit row) under the POST.
    def statements_under(span) -> list[str]:
        return [statement(s) for s in spans if s.parent is not None and s.parent.span_id == span.context.span_id]

    assert any('INSERT INTO "orderweb_gatewayledgerentry"' in sql for sql in statements_under(chain[1]))
    assert any('"orderweb_orderevent"' in sql for sql in statements_under(post)), statements_under(post)

    lines = tree(spans, by_id, post)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "trace-approval.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def test_log_lines_carry_the_trace_and_span_ids(traced):
    from opentelemetry import trace

    record = logging.makeLogRecord({"msg": "inside a span", "name": "orderweb.test"})
    with trace.get_tracer("test").start_as_current_span("outer") as span:
        OrderContextFilter().filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert line["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert line["span_id"] == format(span.get_span_context().span_id, "016x")

    outside = logging.makeLogRecord({"msg": "no span", "name": "orderweb.test"})
    OrderContextFilter().filter(outside)
    assert "trace_id" not in json.loads(JsonFormatter().format(outside))


def test_spans_go_over_otlp_http_when_the_endpoint_is_set_and_nowhere_otherwise(tmp_path):
    """As an operator runs it: a process with OTEL_EXPORTER_OTLP_ENDPOINT exports its spans to
    that collector (here devtools/otlp_sink.py); one without installs nothing."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from devtools.supervise import PortReady, free_port, wait_ready
    from tests.temporal_app.test_run_workers import database_url

    root = Path(__file__).resolve().parents[2]
    port = free_port()
    sink = subprocess.Popen(
        [sys.executable, "-m", "devtools.otlp_sink", str(port)], cwd=root, stdout=subprocess.PIPE, text=True
    )
    try:
        wait_ready(PortReady("127.0.0.1", port), 30, sink)
        probe = (
            "from django.db import connection; connection.cursor().execute('SELECT 1'); "
            "from temporal_app import tracing; tracing.flush(); "
            "print('tracing', tracing.enabled(), len(tracing.client_interceptors()))"
        )
        base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        base.update(DEBUG="1", DATABASE_URL=database_url())
        runs = {}
        for name, extra in (("off", {}), ("on", {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"})):
            done = subprocess.run(
                [sys.executable, "manage.py", "shell", "-c", probe],
                cwd=root,
                env={**base, **extra},
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, done.stderr
            runs[name] = done.stdout
        assert "tracing False 0" in runs["off"]
        assert "tracing True 2" in runs["on"]
    finally:
        sink.send_signal(signal.SIGINT)
        out, _ = sink.communicate(timeout=30)
    received = int(out.split("received ")[1].split(" spans")[0])
    assert received >= 1, out  # the probe's SELECT 1 (and only the "on" process could send any)
