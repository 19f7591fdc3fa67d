"""The queue in Chromium with many orders: urgency at a glance, filters, search, paging, and rows
that arrive and leave by themselves. Postgres only (no workflow behind these rows)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from reviews.models import ReviewTask
from tests.browser.conftest import screenshot
from tests.reviews.conftest import PASSWORD, make_user, make_waiting_order

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def busy_queue(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.REVIEW_QUEUE_REFRESH_SECONDS = 1
    rita = make_user("rita", reviewer=True)
    bob = make_user("bob", reviewer=True)
    customers = ["Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra", "Barbara Liskov",
                 "Donald Knuth", "Margaret Hamilton", "Ken Thompson"]
    dues = [timedelta(minutes=-5), timedelta(minutes=25), timedelta(hours=2), timedelta(hours=3, minutes=40)] + [
        timedelta(hours=6 + 2 * i) for i in range(26)]
    orders = []
    for i, due in enumerate(dues):
        claimed = rita if i % 5 == 1 else bob if i % 5 == 3 else None
        orders.append(make_waiting_order(
            order_id=f"ORDER-{1000 + i}", due_in=due, amount=f"{19 + i * 7}.90", claimed_by=claimed,
            customer=customers[i % len(customers)], address=f"{10 + i} Market Street\nSpringfield, IL 6270{i % 10}",
        ))
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
        status="approved", decided_at=timezone.now(), decided_by_name="bob")
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
        page.keyboard.press("j")
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
    assert page.evaluate("window.scrollY") == scrolled
    # The selected order is decided by a colleague: the one now in its place is selected and
    # focused, so the keyboard goes on from there.
    ReviewTask.objects.filter(order__order_id="ORDER-1011").update(
        status="approved", decided_at=timezone.now(), decided_by_name="bob")
    expect(page.locator('tr[data-order="ORDER-1011"]')).to_have_count(0)
    expect(selected).to_have_attribute("data-order", "ORDER-1012")
    expect(page.locator("#open-ORDER-1012")).to_be_focused()
    page.keyboard.press("j")
    expect(selected).to_have_attribute("data-order", "ORDER-1013")
    # Enter opens the selected order.
    page.keyboard.press("Enter")
    expect(page.locator("h1.order-title")).to_contain_text("ORDER-1013")
