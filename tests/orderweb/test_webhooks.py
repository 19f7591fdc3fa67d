"""Webhooks: every status change of an order is POSTed to ORDER_WEBHOOK_URL, signed, and retried
by Temporal (WebhookDeliveryWorkflow) until the receiver accepts it or its time is up. The
receiver here is a real HTTP server on a free port."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from orderweb.models import Order, WebhookDelivery
from orderweb.services import order_create
from orderweb.webhooks import (
    EVENT_ID_HEADER, SIGNATURE_HEADER, webhook_signature, webhook_signature_valid, webhooks_queue,
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
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
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

    def accepted_bodies(self) -> list[dict]:
        return [json.loads(body) for _, body in self.requests]


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


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
    order = order_create(order_id=order_id or new_order_id("HOOK"), address="1 Hook Lane",
                         line_items=[LineItem("SKU-1", "Widget", 1, "5.00")])
    wait_for_state(order.workflow_id, "awaiting_manual_review", timeout=60)
    wait_until(lambda: Order.objects.filter(pk=order.pk, status="awaiting_manual_review").exists(),
               what="the projection")
    return order


@pytest.mark.temporal
def test_status_changes_are_posted_signed_once_each_and_retried(system, receiver, webhooks_on):
    order_id = new_order_id("HOOK")
    receiver.plan, receiver.plan_for = [500, 503], order_id  # down for this order's first two attempts
    order = _order(order_id)
    webhooks_queue()  # the workers' sweep does the same every few seconds
    deliveries = wait_until(lambda: (rows := list(WebhookDelivery.objects.filter(event__order=order)))
                            and all(d.status == "sent" for d in rows) and rows, timeout=60,
                            what="every delivery of the order sent")
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
    rows = wait_until(lambda: (rows := list(WebhookDelivery.objects.filter(event__order=order)))
                      and all(d.status == "failed" for d in rows) and rows, timeout=60,
                      what="every delivery given up")
    assert all(d.attempts >= 2 and d.last_status_code == 503 for d in rows)
    assert all(d.last_error == f"Gave up after {d.attempts} attempt(s): The receiver answered HTTP 503: not now"
               and d.sent_at is None for d in rows), [d.last_error for d in rows]
