"""The queue and the recent-decisions tab: what a reviewer sees, and what it costs in SQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from reviews.models import ReviewTask
from reviews.selectors import QUEUE_PAGE_SIZE, duration_text, review_deadline
from tests.reviews.conftest import client_for, make_user, make_waiting_order

pytestmark = pytest.mark.django_db


def _rows(response) -> list[str]:
    """Order ids in the queue table, top to bottom."""
    import re

    return re.findall(r'<tr class="row-\w+" data-order="([^"]+)"', response.content.decode())


def test_oldest_due_first_with_the_columns_a_reviewer_needs(reviewer):
    late = make_waiting_order(order_id="Q-LATE", due_in=timedelta(hours=20), amount="99.50",
                              customer="Grace Hopper", address="7 Navy Yard\nArlington")
    soon = make_waiting_order(order_id="Q-SOON", due_in=timedelta(minutes=30))
    mid = make_waiting_order(order_id="Q-MID", due_in=timedelta(hours=3), claimed_by=make_user("bob", reviewer=True))
    response = client_for(reviewer).get(reverse("reviews:queue"))
    assert _rows(response) == [soon.order_id, mid.order_id, late.order_id]
    html = response.content.decode()
    assert "Grace Hopper" in html and "7 Navy Yard" in html and "99.50" in html
    assert '<span class="due due-urgent"' in html  # 30 minutes left: red
    assert '<span class="due due-soon"' in html  # 3 hours left: amber
    assert '<span class="pill">bob</span>' in html
    assert 'data-count="all">3<' in html and 'data-count="unclaimed">2<' in html and 'data-count="mine">0<' in html


def test_filters_mine_and_unclaimed(reviewer):
    bob = make_user("bob", reviewer=True)
    mine = make_waiting_order(claimed_by=reviewer)
    theirs = make_waiting_order(claimed_by=bob)
    free = make_waiting_order()
    client = client_for(reviewer)
    assert _rows(client.get(reverse("reviews:queue"), {"filter": "mine"})) == [mine.order_id]
    assert _rows(client.get(reverse("reviews:queue"), {"filter": "unclaimed"})) == [free.order_id]
    assert set(_rows(client.get(reverse("reviews:queue"), {"filter": "all"}))) == {
        mine.order_id, theirs.order_id, free.order_id}
    assert len(_rows(client.get(reverse("reviews:queue"), {"filter": "bogus"}))) == 3


def test_search_by_order_id(reviewer):
    make_waiting_order(order_id="ORDER-ABC123")
    make_waiting_order(order_id="ORDER-XYZ789")
    client = client_for(reviewer)
    assert _rows(client.get(reverse("reviews:queue"), {"q": "abc1"})) == ["ORDER-ABC123"]
    response = client.get(reverse("reviews:queue"), {"q": "nothing-like-it"})
    assert _rows(response) == []
    assert "No open review matches" in response.content.decode()


def test_closed_reviews_leave_the_queue_and_show_in_recent_decisions(reviewer):
    open_order = make_waiting_order()
    decided = make_waiting_order()
    ReviewTask.objects.filter(order=decided).update(
        status="rejected", decided_at=timezone.now(), decided_by=reviewer, decided_by_name="alice",
        note="suspicious address")
    client = client_for(reviewer)
    assert _rows(client.get(reverse("reviews:queue"))) == [open_order.order_id]
    recent = client.get(reverse("reviews:recent")).content.decode()
    assert decided.order_id in recent and open_order.order_id not in recent
    assert "suspicious address" in recent and "alice" in recent and "Rejected" in recent
    mine = client.get(reverse("reviews:recent"), {"mine": "1"}).content.decode()
    assert decided.order_id in mine


def test_pagination(reviewer):
    orders = [make_waiting_order(due_in=timedelta(hours=1 + i)) for i in range(QUEUE_PAGE_SIZE + 3)]
    client = client_for(reviewer)
    first = client.get(reverse("reviews:queue"))
    second = client.get(reverse("reviews:queue"), {"page": 2})
    assert _rows(first) == [o.order_id for o in orders[:QUEUE_PAGE_SIZE]]
    assert _rows(second) == [o.order_id for o in orders[QUEUE_PAGE_SIZE:]]
    assert "Page 2 of 2" in second.content.decode()
    assert _rows(client.get(reverse("reviews:queue"), {"page": "999"})) == _rows(second)


def test_htmx_poll_gets_only_the_partial(reviewer):
    order = make_waiting_order()
    response = client_for(reviewer).get(reverse("reviews:queue"), {"filter": "all"}, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="queue"')
    assert "<html" not in html and order.order_id in html
    assert 'hx-trigger="every 5s"' in html and 'hx-get="/reviews/?filter=all"' in html


def _queue_queries(client, url) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200
    return len(ctx.captured_queries)


@pytest.mark.parametrize("url", ["/reviews/", "/reviews/?filter=mine", "/reviews/?filter=unclaimed",
                                 "/reviews/?q=DB", "/reviews/decided/"])
def test_query_count_does_not_grow_with_rows(reviewer, url):
    bob = make_user("bob", reviewer=True)
    client = client_for(reviewer)
    make_waiting_order(claimed_by=bob)
    t = make_waiting_order(claimed_by=reviewer)
    ReviewTask.objects.filter(order=t).update(status="approved", decided_at=timezone.now(), decided_by_name="alice")
    make_waiting_order(claimed_by=reviewer)
    make_waiting_order()  # (an empty page costs one query less: Django skips an empty slice)
    few = _queue_queries(client, url)
    for i in range(30):
        o = make_waiting_order(claimed_by=(reviewer, bob, None)[i % 3])
        if i % 2:
            ReviewTask.objects.filter(order=o).update(status="approved", decided_at=timezone.now(),
                                                      decided_by=reviewer, decided_by_name="alice")
    many = _queue_queries(client, url)
    assert many == few
    # session, user, the two permission lookups, count, page, tab counts
    assert many <= 7


def test_order_page_query_count_does_not_grow_with_events(reviewer):
    from orderweb.models import OrderEvent

    order = make_waiting_order()
    client = client_for(reviewer)
    url = reverse("reviews:order", args=[order.order_id])
    few = _queue_queries(client, url)
    OrderEvent.objects.bulk_create(
        [OrderEvent(order=order, type="signal_applied", source="signal", actor="ops",
                    details={"signal": "UpdateAddress", "old_address": f"old {i}", "new_address": f"new {i}"})
         for i in range(20)])
    many_response = client.get(url)
    assert "new 19" in many_response.content.decode()  # the address history shows the changes
    assert _queue_queries(client, url) == few


def test_deadline_levels_and_texts():
    now = timezone.now()
    assert review_deadline(due_at=now - timedelta(seconds=1), now=now).level == "overdue"
    assert review_deadline(due_at=now - timedelta(seconds=1), now=now).text == "overdue"
    assert review_deadline(due_at=now + timedelta(minutes=59), now=now).level == "urgent"
    assert review_deadline(due_at=now + timedelta(hours=3), now=now).level == "soon"
    assert review_deadline(due_at=now + timedelta(hours=5), now=now).level == "ok"
    assert duration_text(timedelta(seconds=42)) == "42s"
    assert duration_text(timedelta(minutes=12, seconds=5)) == "12m"
    assert duration_text(timedelta(hours=3, minutes=20)) == "3h 20m"
    assert duration_text(timedelta(days=2, hours=4)) == "2d 4h"


def test_recent_decisions_page_newer_and_older(reviewer):
    from reviews.selectors import RECENT_PAGE_SIZE

    now = timezone.now()
    orders = []
    for i in range(RECENT_PAGE_SIZE + 2):
        order = make_waiting_order()
        ReviewTask.objects.filter(order=order).update(
            status="approved", decided_at=now - timedelta(minutes=i), decided_by_name="alice")
        orders.append(order)
    client = client_for(reviewer)
    first = client.get(reverse("reviews:recent")).content.decode()
    second = client.get(reverse("reviews:recent"), {"page": 2}).content.decode()
    assert orders[0].order_id in first and orders[-1].order_id not in first
    assert "Older ›" in first and "‹ Newer" not in first
    assert orders[-1].order_id in second and orders[0].order_id not in second
    assert "‹ Newer" in second and "Older ›" not in second
    assert client.get(reverse("reviews:recent"), {"page": "junk"}).status_code == 200
