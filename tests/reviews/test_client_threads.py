"""The web process's Temporal client: one per process, shared by every request thread.

Many request threads (as a threaded WSGI server runs them) ask for live statuses at once; every
answer is the right order's, all of them went through the one client on the one loop thread,
and the number of TCP connections to Temporal did not grow."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.urls import reverse

from orderweb.services import order_create
from temporal_app import client as temporal_client
from temporal_app.contracts import LineItem
from tests.helpers import new_order_id, wait_for_state
from tests.reviews.conftest import client_for

pytestmark = pytest.mark.temporal


def _connections_to(port: int) -> int:
    """Established TCP connections to ``port`` in this network namespace (/proc/net/tcp*)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if remote_port == port and fields[3] == "01":
                count += 1
    return count


def test_concurrent_requests_share_one_client(system, reviewer):
    orders = []
    for _ in range(4):
        order = order_create(
            order_id=new_order_id("THR"),
            address="5 Thread Lane, Loopville",
            line_items=[LineItem("SKU-T", "Spool", 1, "1.00")],
        )
        orders.append(order)
    for order in orders:
        wait_for_state(order.workflow_id, "awaiting_manual_review")

    port = int(settings.TEMPORAL_ADDRESS.rsplit(":", 1)[1])
    client_thread = temporal_client.client_thread
    client_thread.run(lambda c: _noop())  # make sure the process client is connected
    shared_client, shared_loop = client_thread._client, client_thread._loop
    before = _connections_to(port)
    loop_threads_before = [t.name for t in threading.enumerate()].count("temporal-client")
    seen_threads: set[str] = set()
    lock = threading.Lock()

    def request(i: int) -> tuple[str, str]:
        order = orders[i % len(orders)]
        try:
            response = client_for(reviewer).get(reverse("reviews:order_status", args=[order.order_id]))
            with lock:
                seen_threads.add(threading.current_thread().name)
            return order.order_id, response.content.decode()
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=12, thread_name_prefix="wsgi") as pool:
        answers = list(pool.map(request, range(48)))

    assert len(seen_threads) > 1  # the requests really ran on several threads
    for order_id, html in answers:
        assert 'data-status="awaiting_manual_review"' in html, html
        assert f'data-order="{order_id}"' in html  # the workflow's own answer names its order
        others = [o.order_id for o in orders if o.order_id != order_id]
        assert not any(other in html for other in others)
    assert client_thread._client is shared_client and client_thread._loop is shared_loop
    assert [t.name for t in threading.enumerate()].count("temporal-client") == loop_threads_before
    assert _connections_to(port) <= before  # did not grow (an idle one of the workers' client may close)


async def _noop() -> None:
    return None
