"""The queue in Chromium with many orders: urgency at a glance, filters, search, paging, and rows
that arrive and leave by themselves. Postgres only (no workflow behind these rows)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from reviews.models import ReviewTask
from tests.browser.conftest import press, screenshot
from tests.reviews.conftest import PASSWORD, decide_in_db, make_user, make_waiting_order, reason

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def busy_queue(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.REVIEW_QUEUE_REFRESH_SECONDS = 1
    rita = make_user("rita", reviewer=True)
    bob = make_user("bob", reviewer=True)
    customers = [
        "Ada Lovelace",
        "Alan Turing",
        "Grace Hopper",
        "Edsger Dijkstra",
        "Barbara Liskov",
        "Donald Knuth",
        "Margaret Hamilton",
        "Ken Thompson",
    ]
    dues = [timedelta(minutes=-5), timedelta(minutes=25), timedelta(hours=2), timedelta(hours=3, minutes=40)] + [
        timedelta(hours=6 + 2 * i) for i in range(26)
    ]
    orders = []
    for i, due in enumerate(dues):
        claimed = rita if i % 5 == 1 else bob if i % 5 == 3 else None
        orders.append(
            make_waiting_order(
                order_id=f"ORDER-{1000 + i}",
                due_in=due,
                amount=f"{19 + i * 7}.90",
                claimed_by=claimed,
                customer=customers[i % len(customers)],
                address=f"{10 + i} Market Street\nSpringfield, IL 6270{i % 10}",
            )
        )
    return orders


def _log_in(page) -> None:
    page.goto("/accounts/login/?next=/reviews/")
    page.get_by_label("Username").fill("rita")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Review queue")).to_be_visible()


def test_queue_filters_search_paging_and_live_rows(page, busy_queue):
    _log_in(page)
    rows = page.locator("#queue tbody tr")
    expect(rows).to_have_count(25)
    expect(rows.first).to_have_attribute("data-order", "ORDER-1000")
    expect(rows.first.locator(".due")).to_have_text("overdue")
    expect(rows.nth(1).locator(".due")).to_have_class(re.compile("due-urgent"))
    expect(rows.nth(2).locator(".due")).to_have_class(re.compile("due-soon"))
    expect(page.locator('[data-count="all"]')).to_have_text("30")
    screenshot(page, "review-10-busy-queue")

    page.get_by_role("link", name=re.compile("^Mine")).click()
    expect(rows).to_have_count(6)
    expect(page.locator(".claim-cell").first).to_have_text("You")
    page.get_by_role("link", name=re.compile("^Unclaimed")).click()
    expect(page.locator('[data-count="unclaimed"]')).to_have_text("18")
    expect(rows).to_have_count(18)

    page.get_by_role("link", name=re.compile("^All open")).click()
    page.get_by_role("link", name="Next ›").click()
    expect(page.get_by_text("Page 2 of 2")).to_be_visible()
    expect(rows).to_have_count(5)

    page.get_by_label("Search orders").fill("1017")
    page.get_by_role("button", name="Search").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-order", "ORDER-1017")
    screenshot(page, "review-11-search")

    page.get_by_role("link", name="Clear").click()
    expect(rows).to_have_count(25)
    # Another reviewer decides ORDER-1000 (the projection closes its task): it leaves by itself.
    ReviewTask.objects.filter(order=busy_queue[0]).update(
        status="approved", decided_at=timezone.now(), decided_by_name="bob"
    )
    expect(page.locator('tr[data-order="ORDER-1000"]')).to_have_count(0)
    expect(page.locator('[data-count="all"]')).to_have_text("29")
    # And a new one arrives.
    make_waiting_order(order_id="ORDER-NEW", due_in=timedelta(minutes=1), customer="New Customer")
    expect(rows.first).to_have_attribute("data-order", "ORDER-NEW")


def test_refresh_keeps_the_selection_focus_and_scroll(page, busy_queue):
    page.set_viewport_size({"width": 1280, "height": 600})
    _log_in(page)
    rows = page.locator("#queue tbody tr[data-order]")
    expect(rows).to_have_count(25)
    for _ in range(12):
        press(page, "j")
    selected = page.locator("#queue tr.selected")
    expect(selected).to_have_attribute("data-order", "ORDER-1011")
    expect(page.locator("#open-ORDER-1011")).to_be_focused()
    scrolled = page.evaluate("window.scrollY")
    assert scrolled > 0  # the selected row was scrolled into view
    # Something changes in the queue: the refresh swaps the table in.
    make_waiting_order(order_id="ORDER-LATE", due_in=timedelta(days=30))
    expect(page.locator('[data-count="all"]')).to_have_text("31")
    expect(selected).to_have_attribute("data-order", "ORDER-1011")
    expect(page.locator("#open-ORDER-1011")).to_be_focused()
    # The scroll position comes back once the swap settles (htmx:afterSettle), a moment after the
    # counts and the focus: wait for it, as a person's eye would, instead of reading it at once.
    page.wait_for_function(f"window.scrollY === {scrolled}", timeout=5000)
    # The selected order is decided by a colleague: the one now in its place is selected and
    # focused, so the keyboard goes on from there.
    ReviewTask.objects.filter(order__order_id="ORDER-1011").update(
        status="approved", decided_at=timezone.now(), decided_by_name="bob"
    )
    expect(page.locator('tr[data-order="ORDER-1011"]')).to_have_count(0)
    expect(selected).to_have_attribute("data-order", "ORDER-1012")
    expect(page.locator("#open-ORDER-1012")).to_be_focused()
    press(page, "j")
    expect(selected).to_have_attribute("data-order", "ORDER-1013")
    # Enter opens the selected order.
    press(page, "Enter")
    expect(page.locator("h1.order-title")).to_contain_text("ORDER-1013")


def test_risk_filter_sort_and_search_of_decided_orders(page, busy_queue):
    from reviews.models import RiskAssessment

    ReviewTask.objects.filter(order__order_id="ORDER-1020").update(risk_score=85, risk_level="high")
    ReviewTask.objects.filter(order__order_id="ORDER-1005").update(risk_score=40, risk_level="medium")
    RiskAssessment.objects.create(
        order=busy_queue[20],
        score=85,
        level="high",
        reasons=[reason("forwarding_service", 30, "Ships to a parcel-forwarding service.")],
    )
    decide_in_db(busy_queue[3], "rejected", by="bob", reason_code="suspected_fraud")
    _log_in(page)
    rows = page.locator("#queue tbody tr[data-order]")
    page.get_by_label("Sort", exact=True).select_option("risk")  # applies on change
    expect(rows.first).to_have_attribute("data-order", "ORDER-1020")
    expect(rows.first.locator(".risk")).to_have_text("High 85")
    expect(rows.nth(1)).to_have_attribute("data-order", "ORDER-1005")
    page.get_by_label("Risk", exact=True).select_option("high")
    expect(rows).to_have_count(1)
    rows.first.locator(".order-id a").click()
    expect(page.locator("#why-review")).to_contain_text("Ships to a parcel-forwarding service.")
    press(page, "/")  # from the order page: the queue's search, focused
    expect(page.get_by_label("Search orders")).to_be_focused()
    page.keyboard.type("Edsger")  # ORDER-1003 (decided), ORDER-1011, -1019, -1027 (open, not high risk)
    press(page, "Enter")
    expect(page.get_by_text("No open review matches “Edsger”.")).to_be_visible()  # within the view: high risk
    page.get_by_label("Risk", exact=True).select_option("")
    expect(rows).to_have_count(3)
    match = page.locator('#matches li[data-order="ORDER-1003"]')
    expect(match).to_contain_text("review rejected by bob")
    match.get_by_role("link", name="ORDER-1003").click()
    expect(page.locator(".review-outcome")).to_contain_text("Rejected")
    expect(page.locator(".review-outcome .reason-code")).to_have_text("Suspected fraud")


def test_recent_decisions_filters_and_the_full_note(page, busy_queue):
    long_note = "The card was used from three countries within the hour. " * 12 + "END-OF-NOTE"
    decide_in_db(
        busy_queue[0],
        "rejected",
        by="bob",
        reason_code="suspected_fraud",
        note=long_note,
        at=timezone.now() - timedelta(days=3),
    )
    decide_in_db(busy_queue[1], "approved", by="rita")
    decide_in_db(busy_queue[2], "rejected", by="rita", reason_code="out_of_stock")
    _log_in(page)
    page.get_by_role("link", name="Recent decisions").click()
    rows = page.locator("#recent tbody tr[data-order]")
    expect(rows).to_have_count(3)
    assert page.evaluate("document.documentElement.scrollWidth") <= page.viewport_size["width"]
    note = page.locator("#recent details.cut")
    expect(note.locator(".cut-full")).to_be_hidden()
    note.locator("summary").click()  # the full text, one click away
    expect(note.locator(".cut-full")).to_contain_text("END-OF-NOTE")
    page.wait_for_timeout(1500)  # a refresh (every 1 s here) keeps it open
    expect(page.locator("#recent details.cut .cut-full")).to_be_visible()
    page.get_by_label("Decided by", exact=True).select_option("rita")
    expect(rows).to_have_count(2)
    page.get_by_label("Reason", exact=True).select_option("out_of_stock")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-order", "ORDER-1002")
    expect(rows.first.locator(".reason-code")).to_have_text("Out of stock")
    page.get_by_role("link", name="Clear").click()
    page.get_by_label("To", exact=True).fill((timezone.localdate() - timedelta(days=1)).isoformat())
    page.get_by_role("button", name="Apply").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-order", "ORDER-1000")
    page.get_by_role("link", name="Clear").click()
    expect(rows).to_have_count(3)
    press(page, "/")
    expect(page.get_by_label("Search", exact=True)).to_be_focused()
    page.keyboard.type("Alan Turing")
    press(page, "Enter")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-order", "ORDER-1001")
