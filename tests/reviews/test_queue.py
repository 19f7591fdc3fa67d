"""The queue and the recent-decisions tab: what a reviewer sees, and what it costs in SQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from orderweb.models import OrderEvent
from reviews.models import ReviewTask
from reviews.selectors import QUEUE_PAGE_SIZE, duration_text, review_deadline
from tests.reviews.conftest import client_for, decide_in_db, make_user, make_waiting_order, reason

pytestmark = pytest.mark.django_db


def _rows(response) -> list[str]:
    """Order ids in the queue table, top to bottom."""
    import re

    return re.findall(r'<tr class="row-\w+" data-order="([^"]+)"', response.content.decode())


def test_oldest_due_first_with_the_columns_a_reviewer_needs(reviewer):
    late = make_waiting_order(
        order_id="Q-LATE",
        due_in=timedelta(hours=20),
        amount="99.50",
        customer="Grace Hopper",
        address="7 Navy Yard\nArlington",
    )
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
        mine.order_id,
        theirs.order_id,
        free.order_id,
    }
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
        status="rejected",
        decided_at=timezone.now(),
        decided_by=reviewer,
        decided_by_name="alice",
        note="suspicious address",
    )
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


# Each page's query count, pinned: session, user, the two permission look-ups, then the page's own.
PINNED = {
    "/reviews/": 7,  # + count, page, tab counts
    "/reviews/?filter=mine": 7,
    "/reviews/?filter=unclaimed": 7,
    "/reviews/?risk=high&sort=risk": 7,
    "/reviews/?sort=amount": 7,
    "/reviews/?q=DB": 9,  # + the matching orders' ids, once; the decided and other orders that match
    "/reviews/decided/": 6,  # + page, reviewers of the filter (no count: "newer / older" paging)
    "/reviews/decided/?q=DB&by=alice&reason=other&since=2020-01-01&until=2099-12-31": 7,  # + the ids
}


@pytest.mark.parametrize("url", list(PINNED))
def test_query_count_does_not_grow_with_rows(reviewer, url):
    bob = make_user("bob", reviewer=True)
    client = client_for(reviewer)
    make_waiting_order(claimed_by=bob, risk=(70, "high", []))
    t = make_waiting_order(claimed_by=reviewer, risk=(10, "low", []))
    decide_in_db(t, "rejected", reason_code="other")
    make_waiting_order(claimed_by=reviewer, risk=(65, "high", []))
    make_waiting_order(risk=(80, "high", []))  # (an empty page costs one query less: Django skips an empty slice)
    few = _queue_queries(client, url)
    for i in range(30):
        o = make_waiting_order(claimed_by=(reviewer, bob, None)[i % 3], risk=(60 + i, "high", []))
        if i % 2:
            decide_in_db(o, ("approved", "rejected")[i % 4 == 1], reason_code="other")
    many = _queue_queries(client, url)
    assert many == few == PINNED[url]


def test_order_page_query_count_does_not_grow_with_events_or_history(reviewer):
    """session, user, 2 permissions, order (with its risk), lines, events, review task, the
    customer's other orders, the previous and the next order of the queue, its outcome labels
    (issue 21): 12."""
    order = make_waiting_order(email="ada@example.com", risk=(40, "medium", [reason("first_order", 15, "First order")]))
    client = client_for(reviewer)
    url = reverse("reviews:order", args=[order.order_id])
    few = _queue_queries(client, url)
    OrderEvent.objects.bulk_create(
        [
            OrderEvent(
                order=order,
                type="signal_applied",
                source="signal",
                actor="ops",
                details={"signal": "UpdateAddress", "old_address": f"old {i}", "new_address": f"new {i}"},
            )
            for i in range(20)
        ]
    )
    for _ in range(12):
        make_waiting_order(email="ADA@example.com")
    many_response = client.get(url)
    assert "new 19" in many_response.content.decode()  # the address history shows the changes
    assert _queue_queries(client, url) == few == 12


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
            status="approved", decided_at=now - timedelta(minutes=i), decided_by_name="alice"
        )
        orders.append(order)
    client = client_for(reviewer)
    first = client.get(reverse("reviews:recent")).content.decode()
    second = client.get(reverse("reviews:recent"), {"page": 2}).content.decode()
    assert orders[0].order_id in first and orders[-1].order_id not in first
    assert "Older ›" in first and "‹ Newer" not in first
    assert orders[-1].order_id in second and orders[0].order_id not in second
    assert "‹ Newer" in second and "Older ›" not in second
    assert client.get(reverse("reviews:recent"), {"page": "junk"}).status_code == 200


# -- risk, sorting, search ----------------------------------------------------------------------


def test_risk_column_filter_and_sorts(reviewer):
    low = make_waiting_order(order_id="R-LOW", due_in=timedelta(hours=1), amount="500.00", risk=(10, "low", []))
    high = make_waiting_order(order_id="R-HIGH", due_in=timedelta(hours=3), amount="20.00", risk=(85, "high", []))
    mid = make_waiting_order(order_id="R-MID", due_in=timedelta(hours=2), amount="90.00", risk=(45, "medium", []))
    none = make_waiting_order(order_id="R-NONE", due_in=timedelta(hours=4), amount="60.00")  # not assessed
    client = client_for(reviewer)
    html = client.get(reverse("reviews:queue")).content.decode()
    assert '<span class="risk risk-high" title="Risk score 85 of 100">High <span class="risk-score">85</span>' in html
    assert _rows(client.get(reverse("reviews:queue"))) == ["R-LOW", "R-MID", "R-HIGH", "R-NONE"]
    assert _rows(client.get(reverse("reviews:queue"), {"sort": "risk"})) == ["R-HIGH", "R-MID", "R-LOW", "R-NONE"]
    assert _rows(client.get(reverse("reviews:queue"), {"sort": "amount"})) == ["R-LOW", "R-MID", "R-NONE", "R-HIGH"]
    assert _rows(client.get(reverse("reviews:queue"), {"risk": "high"})) == ["R-HIGH"]
    assert _rows(client.get(reverse("reviews:queue"), {"risk": "medium", "filter": "unclaimed"})) == ["R-MID"]
    assert len(_rows(client.get(reverse("reviews:queue"), {"risk": "bogus", "sort": "bogus"}))) == 4
    # The order links carry the view, so that "next" on the order page follows it.
    assert (
        f'href="/reviews/orders/{high.order_id}/?risk=high"'
        in client.get(reverse("reviews:queue"), {"risk": "high"}).content.decode()
    )
    assert low and mid and none


@pytest.mark.parametrize("sort", ["due", "risk", "amount"])
def test_next_and_previous_walk_the_queue_in_its_order(reviewer, sort):
    """The keyset behind "& next", j and k: walking forward visits the decidable rows in the
    queue's own order, ties and unassessed rows included; walking back visits them reversed."""
    from reviews.selectors import QueueView, review_first, review_neighbour

    bob = make_user("bob", reviewer=True)
    specs = [
        (1, "50.00", (30, "medium")),
        (2, "50.00", (30, "medium")),
        (2, "80.00", None),
        (3, "10.00", (90, "high")),
        (4, "80.00", (30, "medium")),
        (5, "5.00", None),
        (6, "99.00", (10, "low")),
    ]
    for i, (hours, amount, risk) in enumerate(specs):
        make_waiting_order(
            order_id=f"W-{i}",
            due_in=timedelta(hours=hours),
            amount=amount,
            risk=(risk[0], risk[1], []) if risk else None,
        )
    make_waiting_order(order_id="W-BOB", due_in=timedelta(hours=2, minutes=30), claimed_by=bob)  # not decidable
    view = QueueView(sort=sort)
    client = client_for(reviewer)
    listed = [o for o in _rows(client.get(reverse("reviews:queue"), {"sort": sort})) if o != "W-BOB"]
    walked = [review_first(user=reviewer, view=view)]
    while True:
        task = ReviewTask.objects.get(order__order_id=walked[-1])
        following = review_neighbour(user=reviewer, view=view, task=task)
        if following is None:
            break
        walked.append(following)
    assert walked == listed
    back = [walked[-1]]
    while True:
        previous = review_neighbour(
            user=reviewer, view=view, task=ReviewTask.objects.get(order__order_id=back[-1]), forward=False
        )
        if previous is None:
            break
        back.append(previous)
    assert back == list(reversed(listed))


def test_search_by_customer_email_or_address_and_decided_orders_with_links(reviewer):
    make_waiting_order(order_id="S-1", customer="Grace Hopper", address="7 Navy Yard\nArlington")
    make_waiting_order(order_id="S-2", customer="Alan Turing", email="alan@bletchley.example", address="Bletchley Park")
    done = make_waiting_order(order_id="S-OLD", customer="Grace Hopper", address="7 Navy Yard\nArlington")
    decide_in_db(done, "rejected", by="bob", reason_code="suspected_fraud")
    client = client_for(reviewer)
    assert _rows(client.get(reverse("reviews:queue"), {"q": "hopper"})) == ["S-1"]
    assert _rows(client.get(reverse("reviews:queue"), {"q": "NAVY yard"})) == ["S-1"]
    assert _rows(client.get(reverse("reviews:queue"), {"q": "bletchley.example"})) == ["S-2"]
    html = client.get(reverse("reviews:queue"), {"q": "hopper"}).content.decode()
    assert "Other orders matching “hopper”" in html
    assert f'<a class="order-id" href="/reviews/orders/{done.order_id}/">{done.order_id}</a>' in html
    assert "review rejected by bob" in html
    # A decided order alone still answers the search, with its link.
    html = client.get(reverse("reviews:queue"), {"q": "S-OLD"}).content.decode()
    assert "No open review matches" in html and f'href="/reviews/orders/{done.order_id}/"' in html
    assert "No decided or other orders match." in client.get(reverse("reviews:queue"), {"q": "zzzz"}).content.decode()


# -- recent decisions -----------------------------------------------------------------------------


def _recent_rows(response) -> list[str]:
    import re

    return re.findall(r'<tr data-order="([^"]+)"', response.content.decode())


def test_recent_decisions_search_dates_reviewer_reason_and_outcome(reviewer):
    bob = make_user("bob", reviewer=True)
    # Noon today, local time: "two hours ago" stays today at any hour the test runs.
    now = timezone.localtime().replace(hour=12, minute=0, second=0, microsecond=0)
    a = make_waiting_order(order_id="D-A", customer="Grace Hopper")
    decide_in_db(a, "approved", by="alice", at=now - timedelta(days=3))
    b = make_waiting_order(order_id="D-B", address="Shipito Suite 9\nTorrance")
    decide_in_db(
        b, "rejected", by="bob", reason_code="suspected_fraud", note="card from 3 countries", at=now - timedelta(days=1)
    )
    c = make_waiting_order(order_id="D-C")
    decide_in_db(c, "rejected", by="alice", reason_code="out_of_stock", at=now)
    d = make_waiting_order(order_id="D-D")
    decide_in_db(
        d,
        "approved",
        by="policy",
        note="approved by policy: REVIEW_POLICY=risky: risk score 0 < 30",
        at=now - timedelta(hours=2),
    )
    client = client_for(reviewer)
    url = reverse("reviews:recent")
    assert _recent_rows(client.get(url)) == ["D-C", "D-D", "D-B", "D-A"]
    assert _recent_rows(client.get(url, {"q": "hopper"})) == ["D-A"]
    assert _recent_rows(client.get(url, {"q": "shipito"})) == ["D-B"]
    assert _recent_rows(client.get(url, {"q": "3 countries"})) == []  # not the note: reason codes say why
    assert _recent_rows(client.get(url, {"by": "bob"})) == ["D-B"]
    assert _recent_rows(client.get(url, {"by": "policy"})) == ["D-D"]
    assert _recent_rows(client.get(url, {"reason": "out_of_stock"})) == ["D-C"]
    assert _recent_rows(client.get(url, {"outcome": "rejected"})) == ["D-C", "D-B"]
    day = lambda delta: (timezone.localdate() - timedelta(days=delta)).isoformat()  # noqa: E731
    assert _recent_rows(client.get(url, {"since": day(1), "until": day(1)})) == ["D-B"]
    assert _recent_rows(client.get(url, {"since": day(1)})) == ["D-C", "D-D", "D-B"]
    assert _recent_rows(client.get(url, {"until": day(2)})) == ["D-A"]
    html = client.get(url).content.decode()
    assert '<span class="pill reason-code" data-code="suspected_fraud">Suspected fraud</span>' in html
    assert '<option value="bob">bob</option>' in html and '<option value="policy">policy</option>' in html
    # A filter it cannot read is dropped and said, the rest still applies.
    response = client.get(url, {"since": "yesterday", "by": "bob"}, follow=True)
    assert _recent_rows(response) == ["D-B"]
    assert "Ignored a filter that was not understood: since: Enter a date as YYYY-MM-DD." in response.content.decode()
    # The filters survive paging and the Everyone / Mine tabs.
    assert 'href="?mine=1&amp;by=bob"' in client.get(url, {"by": "bob"}).content.decode()
    assert bob


def test_recent_decisions_cut_long_notes_with_the_full_text_one_click_away(reviewer):
    order = make_waiting_order(order_id="D-LONG")
    long_note = "word " * 300 + "THE-END"
    decide_in_db(order, "rejected", reason_code="other", note=long_note)
    html = client_for(reviewer).get(reverse("reviews:recent")).content.decode()
    assert '<details class="cut"' in html and "THE-END" in html  # in the folded full text
    summary = html.split('<details class="cut"')[1].split("</summary>")[0]
    assert "THE-END" not in summary and "…" in summary


# -- the order page --------------------------------------------------------------------------------


def test_order_page_leads_with_why_review_then_history_and_address_changes(reviewer):
    from reviews.models import RiskAssessment

    reasons = [
        reason("forwarding_service", 30, "Ships to a parcel-forwarding service (“Shipito”).", match="Shipito"),
        reason("address_velocity", 25, "3 orders to this address within 24 h (flagged from 3).", orders=3),
    ]
    order = make_waiting_order(order_id="O-1", email="grace@example.com", risk=(55, "medium", reasons))
    earlier = make_waiting_order(order_id="O-EARLIER", email="GRACE@example.com")
    decide_in_db(earlier, "rejected", by="bob", reason_code="suspected_fraud")
    make_waiting_order(order_id="O-STRANGER", email="someone@else.example", address="9 Elsewhere\nShelbyville")
    # One applied change, plus the request and a refused repeat that must not show as changes.
    OrderEvent.objects.create(
        order=order,
        type="address_change_requested",
        source="admin",
        actor="stella",
        details={"old_address": "1 Review Road", "requested_address": "2 New Road"},
    )
    OrderEvent.objects.create(
        order=order,
        type="update_applied",
        source="admin",
        actor="stella",
        details={"signal": "ChangeAddress", "old_address": "1 Review Road", "new_address": "2 New Road"},
    )
    OrderEvent.objects.create(
        order=order,
        type="update_refused",
        source="admin",
        actor="stella",
        details={"signal": "ChangeAddress", "requested_address": "2 New Road"},
    )
    html = client_for(reviewer).get(reverse("reviews:order", args=[order.order_id])).content.decode()
    assert html.index('id="why-review"') < html.index('id="review-panel"') < html.index("<h2>Items</h2>")
    assert "Medium risk · 55/100" in html
    assert "+30</span> Ships to a parcel-forwarding service (“Shipito”)." in html
    # The address changed after the assessment: the page says so, as the rule would.
    assert "The shipping address changed once after the order was placed." in html
    assert "since the assessment" in html
    assert html.count('<div class="new">') == 1  # one entry for one applied change
    linked_html = html.split('id="linked-orders"')[1].split("</section>")[0]
    assert "O-EARLIER" in linked_html and "review rejected by bob" in linked_html and "Suspected fraud" in linked_html
    assert "same email · same shipping address" in linked_html
    assert "O-STRANGER" not in linked_html
    assert RiskAssessment.objects.get(order=order).score == 55  # the stored assessment is left as it was


def test_order_page_explains_an_order_without_risk_reasons(reviewer):
    plain = make_waiting_order(order_id="O-PLAIN", risk=(0, "low", []))
    old = make_waiting_order(order_id="O-OLD", customer="")
    client = client_for(reviewer)
    assert (
        "No risk rule matched this order"
        in client.get(reverse("reviews:order", args=[plain.order_id])).content.decode()
    )
    html = client.get(reverse("reviews:order", args=[old.order_id])).content.decode()
    assert "This order was not assessed" in html
    assert "Unknown customer: no name or email came with the order." in html


def test_order_page_moves_through_the_queue_and_links_to_the_admin(reviewer):
    from django.contrib.auth.models import Permission

    first = make_waiting_order(order_id="N-1", due_in=timedelta(hours=1), risk=(10, "low", []))
    second = make_waiting_order(order_id="N-2", due_in=timedelta(hours=2), risk=(90, "high", []))
    client = client_for(reviewer)
    html = client.get(reverse("reviews:order", args=[first.order_id])).content.decode()
    assert '<a href="/reviews/orders/N-2/" id="next-order"' in html and 'id="previous-order"' not in html
    html = client.get(reverse("reviews:order", args=[first.order_id]), {"sort": "risk"}).content.decode()
    assert '<a href="/reviews/orders/N-2/?sort=risk" id="previous-order"' in html and 'id="next-order"' not in html
    assert 'name="queue" value="sort=risk"' in html  # the decision forms carry the view
    assert 'id="admin-link"' not in html  # a reviewer who is not staff
    reviewer.is_staff = True
    reviewer.save()
    reviewer.user_permissions.add(Permission.objects.get(codename="view_order"))
    html = client_for(reviewer).get(reverse("reviews:order", args=[second.order_id])).content.decode()
    assert f'href="/admin/orderweb/order/{second.pk}/change/" id="admin-link"' in html


def test_a_search_too_broad_says_so(reviewer, monkeypatch):
    from reviews import selectors

    monkeypatch.setattr(selectors, "SEARCH_LIMIT", 2)
    for i in range(3):
        make_waiting_order(order_id=f"BROAD-{i}", customer="Broad Match")
    client = client_for(reviewer)
    html = client.get(reverse("reviews:queue"), {"q": "broad"}).content.decode()
    assert "More than 2 orders match “broad”: only the latest 2 were searched." in html
    assert len(_rows(client.get(reverse("reviews:queue"), {"q": "broad"}))) == 2
    assert "More than 2 orders match" not in client.get(reverse("reviews:queue"), {"q": "BROAD-1"}).content.decode()
