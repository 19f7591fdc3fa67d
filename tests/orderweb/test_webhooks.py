"""Webhooks: every status change of an order is POSTed to ORDER_WEBHOOK_URL, signed, and retried
by Temporal (WebhookDeliveryWorkflow) until the receiver accepts it or its time is up. The
receiver here is a real HTTP server on a free port."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import transaction
from django.utils import timezone

from orderweb import webhooks
from orderweb.models import Order, OrderEvent, WebhookCursor, WebhookDelivery
from orderweb.services import order_create
from orderweb.webhooks import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    webhook_deliveries_create,
    webhook_signature,
    webhook_signature_valid,
    webhooks_queue,
)
from temporal_app.contracts import LineItem, webhook_workflow_id
from tests.helpers import new_order_id, temporal, wait_for_state, wait_until

SECRET = "test-webhook-secret-0123456789"


class Receiver:
    """Records every POST; answers the planned statuses to the first requests about ``plan_for``
    (an order id), then 200."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.plan: list[int] = []
        self.plan_for = ""
        self.always: int | None = None
        self.lock = threading.Lock()
        self.released = threading.Event()  # hold(): every POST hangs until release()
        self.released.set()
        self.hanging = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if not receiver.released.is_set():
                    with receiver.lock:
                        receiver.hanging += 1
                    receiver.released.wait(300)
                    with receiver.lock:
                        receiver.hanging -= 1
                with receiver.lock:
                    receiver.requests.append((dict(self.headers), body))
                    planned = receiver.plan and json.loads(body).get("order_id") == receiver.plan_for
                    status = receiver.always or (receiver.plan.pop(0) if planned else 200)
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok" if status < 300 else b"not now")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/orders"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def hold(self) -> None:
        self.released.clear()

    def release(self) -> None:
        self.released.set()

    def accepted_bodies(self) -> list[dict]:
        return [json.loads(body) for _, body in self.requests]


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.release()
    r.server.shutdown()
    r.server.server_close()  # later POSTs are refused, not left waiting in the listen backlog


@pytest.fixture
def webhooks_on(settings, receiver):
    settings.ORDER_WEBHOOK_URL = receiver.url
    settings.ORDER_WEBHOOK_SECRET = SECRET
    return settings


def test_the_signature_is_checked_as_a_receiver_would():
    body = b'{"id":"evt_1"}'
    now = int(time.time())
    header = webhook_signature(SECRET, now, body)
    assert webhook_signature_valid(SECRET, header, body)
    assert not webhook_signature_valid(SECRET, header, body + b" ")  # tampered body
    assert not webhook_signature_valid("another-secret-0123456", header, body)
    assert not webhook_signature_valid(SECRET, webhook_signature(SECRET, now - 3600, body), body)  # stale
    assert not webhook_signature_valid(SECRET, "t=x,v1=y", body)


def test_no_url_no_webhooks(db, settings):
    settings.ORDER_WEBHOOK_URL = ""
    Order.objects.create(order_id="W-1", workflow_id="w-1", address="1 Main St")
    assert webhooks_queue() == (0, 0)
    assert not WebhookDelivery.objects.exists()


def _order(order_id: str = "") -> Order:
    order = order_create(
        order_id=order_id or new_order_id("HOOK"),
        address="1 Hook Lane",
        line_items=[LineItem("SKU-1", "Widget", 1, "5.00")],
    )
    wait_for_state(order.workflow_id, "awaiting_manual_review", timeout=60)
    wait_until(
        lambda: Order.objects.filter(pk=order.pk, status="awaiting_manual_review").exists(), what="the projection"
    )
    return order


@pytest.mark.temporal
def test_status_changes_are_posted_signed_once_each_and_retried(system, receiver, webhooks_on):
    order_id = new_order_id("HOOK")
    receiver.plan, receiver.plan_for = [500, 503], order_id  # down for this order's first two attempts
    order = _order(order_id)
    webhooks_queue()  # the workers' sweep does the same every few seconds
    deliveries = wait_until(
        lambda: (
            (rows := list(WebhookDelivery.objects.filter(event__order=order)))
            and all(d.status == "sent" for d in rows)
            and rows
        ),
        timeout=60,
        what="every delivery of the order sent",
    )
    # Only this order's requests count (a straggling write of an earlier test's workflow is
    # another status change, which would be sent too).
    receiver.requests = [(h, body) for h, body in receiver.requests if json.loads(body)["order_id"] == order.order_id]
    bodies = receiver.accepted_bodies()
    # Each status change once, in a 2xx answer; the two refused attempts were retried.
    sent = {b["id"] for b in bodies}
    assert len(receiver.requests) == len(deliveries) + 2, [(b["id"], b["to_status"]) for b in bodies]
    assert {f"evt_{d.event_id}" for d in deliveries} == sent
    assert sum(d.attempts for d in deliveries) == len(deliveries) + 2
    assert {b["to_status"] for b in bodies} >= {"started", "processing", "awaiting_manual_review"}
    assert all(b["order_id"] == order.order_id and b["type"] == "order.status_changed" for b in bodies)
    for headers, body in receiver.requests:
        assert webhook_signature_valid(SECRET, headers[SIGNATURE_HEADER], body)
        assert headers[EVENT_ID_HEADER] == json.loads(body)["id"]
    # Another sweep starts nothing, and once every delivery's workflow has ended nothing more can
    # be sent: no request of this order came after the ones counted.
    count = len(receiver.requests)
    assert webhooks_queue() == (0, 0)
    for delivery in deliveries:
        temporal(lambda c, pk=delivery.pk: c.get_workflow_handle(webhook_workflow_id(pk)).result())
    assert len([body for _, body in receiver.requests if json.loads(body)["order_id"] == order.order_id]) == count


@pytest.mark.temporal
def test_a_receiver_that_keeps_refusing_is_given_up_with_its_answer(system, receiver, webhooks_on):
    webhooks_on.ORDER_WEBHOOK_GIVE_UP_SECONDS = 3
    receiver.always = 503
    order = _order()
    webhooks_queue()
    rows = wait_until(
        lambda: (
            (rows := list(WebhookDelivery.objects.filter(event__order=order)))
            and all(d.status == "failed" for d in rows)
            and rows
        ),
        timeout=60,
        what="every delivery given up",
    )
    assert all(d.attempts >= 2 and d.last_status_code == 503 for d in rows)
    assert all(
        d.last_error == f"Gave up after {d.attempts} attempt(s): The receiver answered HTTP 503: not now"
        and d.sent_at is None
        for d in rows
    ), [d.last_error for d in rows]


# -- at least once, whatever the outage or the backlog (issue 19, item 2) ---------------------------


def _status_changes(count: int, *, age: timedelta = timedelta(0), prefix: str = "LATE") -> list[OrderEvent]:
    """``count`` status changes of one order, written as if ``age`` ago, in one transaction: the
    workers' own sweep (every few seconds, in this process) sees them only as they are meant to be."""
    with transaction.atomic():
        order = Order.objects.create(
            order_id=new_order_id(prefix), workflow_id=new_order_id(prefix).lower(), address="1 Hook Lane"
        )
        rows = [
            OrderEvent.objects.create(
                order=order,
                type=OrderEvent.Type.STATUS_CHANGED,
                source="workflow",
                from_status="started",
                to_status="processing",
                event_key=f"test:{n}",
            )
            for n in range(count)
        ]
        OrderEvent.objects.filter(pk__in=[r.pk for r in rows]).update(created_at=timezone.now() - age)
    return rows


def _all_sent_once(receiver: Receiver, rows: list[OrderEvent], timeout: float = 90) -> Counter:
    """Until every one of ``rows`` was accepted by the receiver; returns how often each was POSTed."""
    wanted = {f"evt_{row.pk}" for row in rows}

    def received() -> Counter:
        return Counter(body["id"] for body in receiver.accepted_bodies() if body["id"] in wanted)

    wait_until(
        lambda: (
            set(received()) == wanted
            and WebhookDelivery.objects.filter(event__in=rows, status="sent").count() == len(rows)
        ),
        timeout=timeout,
        what=f"{len(rows)} status changes accepted by the receiver",
    )
    return received()


@pytest.mark.temporal
def test_status_changes_made_while_the_workers_were_down_past_the_lookback_are_all_sent(system, receiver, webhooks_on):
    webhooks_on.ORDER_WEBHOOK_LOOKBACK_SECONDS = 60
    webhooks_queue()  # webhooks are configured: the first sweep
    # The workers are down for two hours (past the lookback, and past the hour the sweep used to
    # look back on every run): status changes of that time wait, as written then.
    rows = _status_changes(5, age=timedelta(hours=2))
    made, started = webhooks_queue()  # the workers are back
    assert (made, started) == (5, 5)
    sent = _all_sent_once(receiver, rows)
    assert set(sent.values()) == {1}, sent
    # The mark moved past them (they are older than the settle time): the next sweeps skip them.
    assert WebhookCursor.objects.get(url=receiver.url).event_id >= max(r.pk for r in rows)
    assert webhooks_queue() == (0, 0)


@pytest.mark.temporal
def test_a_backlog_larger_than_one_batch_is_drained_by_one_sweep(system, receiver, webhooks_on, monkeypatch):
    monkeypatch.setattr(webhooks, "SWEEP_BATCH", 7)
    webhooks_queue()
    rows = _status_changes(23)
    webhooks_queue()  # one sweep: every status change gets its delivery and its workflow
    assert WebhookDelivery.objects.filter(event__in=rows, workflow_started_at__isnull=False).count() == 23
    sent = _all_sent_once(receiver, rows)
    assert set(sent.values()) == {1}, sent


@pytest.mark.django_db
def test_a_status_change_that_commits_after_a_later_one_is_still_sent(settings):
    """Ids are taken at insert, rows seen at commit: the sweep must not move its mark past an id
    whose transaction is still open. Shown here by writing an event with a smaller id after the
    sweep saw the later ones."""
    settings.ORDER_WEBHOOK_URL = "http://127.0.0.1:9/hooks/commit-order"
    webhook_deliveries_create()
    first, late, last = _status_changes(3)
    saved = {f.attname: getattr(late, f.attname) for f in OrderEvent._meta.concrete_fields}
    late.delete()  # not committed yet when the sweep runs
    assert webhook_deliveries_create() == 2
    OrderEvent.objects.create(**saved)  # ... and now it is, with its smaller id
    assert webhook_deliveries_create() == 1
    assert WebhookDelivery.objects.filter(event_id=saved["id"]).exists()
    # Once they are older than the settle time, the mark moves past them, and only then.
    assert WebhookCursor.objects.get(url=settings.ORDER_WEBHOOK_URL).event_id < first.pk
    OrderEvent.objects.filter(pk__in=[first.pk, saved["id"], last.pk]).update(
        created_at=timezone.now() - timedelta(seconds=settings.ORDER_WEBHOOK_SETTLE_SECONDS + 1)
    )
    assert webhook_deliveries_create() == 0
    assert WebhookCursor.objects.get(url=settings.ORDER_WEBHOOK_URL).event_id == last.pk


# -- a slow receiver holds up nothing else (issue 19, item 3) --------------------------------------


@pytest.mark.temporal
def test_a_receiver_that_hangs_holds_up_no_order(system, receiver, webhooks_on, monkeypatch):
    from tests.orderweb.conftest import approve, place_order

    monkeypatch.setattr(webhooks, "SEND_TIMEOUT_SECONDS", 600)  # it hangs for good, not for 10 s
    webhooks_queue()
    receiver.hold()
    # More deliveries than any worker of the test's has threads (16 shared by the order and
    # shipping workers, before they had pools of their own), each one hanging.
    _status_changes(40, prefix="HANG")
    webhooks_queue()
    wait_until(lambda: receiver.hanging >= 4, what="deliveries hanging at the receiver")
    # Orders go on: received, validated, reviewed, charged and shipped, each step written to
    # Postgres by the workers, while every delivery the webhook worker took still hangs.
    order = place_order()
    approve(order)
    wait_until(
        lambda: Order.objects.filter(pk=order.pk, status="completed").exists(),
        timeout=60,
        what="the order completed in Postgres",
    )
    assert not receiver.released.is_set() and receiver.hanging >= 4
    assert not any(body.get("order_id") == order.order_id for body in receiver.accepted_bodies())
    receiver.release()
    wait_until(lambda: receiver.hanging == 0, what="the held deliveries answered")
