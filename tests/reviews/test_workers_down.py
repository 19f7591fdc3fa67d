"""The review pages when no worker answers (issue 19): they answer from Postgres at once, say
plainly that the live status is unavailable, and do not make every poll wait for the workers.

"The workers are stopped" is an order whose workflow runs on a task queue nobody polls: Temporal
is up and holds the workflow, and no worker will ever answer its queries or Updates, exactly as
for every order while run_workers is down. The session's own workers keep running for the other
tests. The load case (20 reviewers for a minute with the workers really stopped) is
``bench_reviewers --workers-down 60``; its figures are in docs/benchmarks.md.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from orderweb import actions
from orderweb.models import Order, OrderEvent
from reviews import services
from reviews.models import ReviewTask
from temporal_app import client as temporal_client
from temporal_app.workflows import OrderWorkflow
from tests.helpers import temporal, wait_until
from tests.reviews.conftest import client_for, make_waiting_order

pytestmark = pytest.mark.temporal

NOBODY_POLLS = "nobody-polls-this-tq"


def _order_no_worker_answers() -> Order:
    """An order waiting for review (row and open task, as the activities leave them) whose
    workflow no worker will ever run."""
    order = make_waiting_order(order_id=f"DOWN-{uuid.uuid4().hex[:8].upper()}")
    temporal(
        lambda c: c.start_workflow(
            OrderWorkflow.run, args=[order.order_id, order.address], id=order.workflow_id, task_queue=NOBODY_POLLS
        )
    )
    return order


@contextlib.contextmanager
def calls_to_temporal() -> Iterator[list[str]]:
    """The requests this process sends to Temporal (every one goes through client_thread.run)."""
    sent: list[str] = []
    real = temporal_client.client_thread.run

    def counted(fn, timeout=None):
        sent.append(threading.current_thread().name)
        return real(fn, timeout)

    temporal_client.client_thread.run = counted
    try:
        yield sent
    finally:
        temporal_client.client_thread.run = real


def _status(client, order: Order):
    return client.get(reverse("reviews:order_status", args=[order.order_id]), HTTP_HX_REQUEST="true")


@pytest.fixture
def no_worker_answers(settings):
    settings.TEMPORAL_QUERY_TIMEOUT_SECONDS = 1
    settings.TEMPORAL_WORKERS_RECHECK_SECONDS = 600  # this test decides when the pause ends


def test_the_live_status_answers_from_postgres_and_only_one_poll_waits(system, reviewer, no_worker_answers):
    order = _order_no_worker_answers()
    client = client_for(reviewer)
    with calls_to_temporal() as sent:
        first = _status(client, order)
        polls = [_status(client, order) for _ in range(20)]  # four reviewers' pages for 25 s
    page = first.content.decode()
    assert first.status_code == 200
    assert "Live status unavailable: the order workers are not answering (since " in page
    assert 'role="status"' in page and 'data-unavailable="1"' in page  # said in words, announced
    assert "From Postgres:" in page and "Awaiting manual review" in page
    assert all(p.status_code == 200 and b"Live status unavailable: the order workers" in p.content for p in polls)
    assert len(sent) == 1  # one query waited; the other 20 polls were answered from memory
    # The order page itself reads Postgres only.
    assert client.get(reverse("reviews:order", args=[order.order_id])).status_code == 200


def test_a_decision_while_no_worker_answers_is_not_sent_and_says_so(system, reviewer, no_worker_answers):
    order = _order_no_worker_answers()
    client = client_for(reviewer)
    _status(client, order)  # the page's first poll notices
    with calls_to_temporal() as sent:
        response = client.post(
            reverse("reviews:decide", args=[order.order_id]),
            {"decision": "approve", "note": "", "action_id": str(uuid.uuid4()), "reason_code": ""},
        )
    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        services.DECISION_NOT_SENT.format(order_id=order.order_id)
    ]
    assert sent == []  # no Update waited for a worker
    unanswered = OrderEvent.objects.get(order=order, type="review_decision_unanswered")
    assert (unanswered.user, unanswered.details["code"]) == (reviewer, actions.Unanswered.WORKERS_DOWN)
    task = ReviewTask.objects.get(order=order)
    assert (task.status, task.claimed_by) == ("open", None)  # the claim the decision took is given back


def test_after_the_pause_one_request_asks_again_and_an_answer_ends_it(system, reviewer, settings):
    from tests.reviews.test_decide import _waiting_order

    settings.TEMPORAL_QUERY_TIMEOUT_SECONDS = 1
    settings.TEMPORAL_WORKERS_RECHECK_SECONDS = 5
    down = _order_no_worker_answers()
    running = _waiting_order()  # a real workflow, run by the session's workers
    client = client_for(reviewer)
    assert b"the order workers are not answering" in _status(client, down).content
    # One task queue, one set of workers: for the next few seconds every order's panel says so.
    assert b"the order workers are not answering" in _status(client, running).content
    # Then a poll asks again; the running order's workflow answers, and the memory is gone.
    wait_until(
        lambda: b'data-status="awaiting_manual_review"' in _status(client, running).content,
        what="the running order's live status back",
        timeout=30,
    )
    assert temporal_client.worker_silence.known() is None
    with calls_to_temporal() as sent:
        assert b"the order workers are not answering" in _status(client, down).content
    assert len(sent) == 1  # asked again, not remembered
