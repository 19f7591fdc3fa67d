"""A person's settings in real Chromium: the single-key shortcuts turned off from the page (and
remembered), never acting while the focus is in a text field; times in the browser's own zone
(Intl API), overridable on the settings page, with UTC on hover, on the review pages and in the
admin. Screenshots: test-artifacts/screenshots/settings-*.png."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from playwright.sync_api import expect

from orderweb.models import Order, OrderEvent
from reviews.models import ReviewTask
from tests.browser.conftest import press, screenshot
from tests.browser.test_review_keyboard import _log_in, _waiting_orders, reviewer  # noqa: F401 (fixture)
from tests.reviews.conftest import decide_in_db, make_waiting_order

pytestmark = [pytest.mark.browser, pytest.mark.temporal]

COUNT_SUBMITS = """() => { window.submits = 0;
  document.addEventListener("submit", () => { window.submits += 1; }, true); }"""


def _submits(page) -> int:
    """Forms submitted since COUNT_SUBMITS (a decision or a claim is a form; both submit at once)."""
    return page.evaluate("window.submits")


def test_single_key_shortcuts_can_be_turned_off_and_stay_off(page, reviewer):  # noqa: F811 (the fixture)
    order, _ = _waiting_orders(2)
    _log_in(page)
    press(page, "j")  # on: j selects the first row
    expect(page.locator("#queue tr.selected")).to_have_count(1)

    page.locator(".key-hints + .shortcuts-switch").get_by_role("button", name="Turn them off").click()
    expect(page.locator("#messages")).to_contain_text("Single-key shortcuts are off.")
    expect(page.get_by_role("status").and_(page.locator("#messages"))).to_have_text("Single-key shortcuts are off.")
    expect(page.locator("html[data-keys=off]")).to_have_count(1)
    expect(page.locator(".key-hints")).to_have_count(0)
    for key in "jk?":
        page.keyboard.press(key)
    expect(page.locator("#queue tr.selected")).to_have_count(0)
    expect(page.locator("#shortcuts")).not_to_be_visible()
    screenshot(page, "settings-shortcuts-off-queue")

    page.goto(f"/reviews/orders/{order.order_id}/")
    expect(page.locator("html[data-keys=off]")).to_have_count(1)  # remembered on the next page
    page.evaluate(COUNT_SUBMITS)
    for key in "arc":
        page.keyboard.press(key)
    assert _submits(page) == 0  # neither approved nor claimed
    expect(page.locator(".reject-details")).not_to_have_attribute("open", "")
    expect(page.get_by_role("button", name=re.compile("Approve & next"))).to_have_text(  # no "a" shown on it
        "Approve & next", use_inner_text=True
    )
    screenshot(page, "settings-shortcuts-off-order")

    # Back on, from the settings page: letters typed in a field still only type.
    page.get_by_role("link", name=re.compile("^Settings")).click()
    expect(page.get_by_label("Single-key shortcuts on the review pages (a, r, c, j, k, /, ?)")).not_to_be_checked()
    page.get_by_label("Single-key shortcuts on the review pages (a, r, c, j, k, /, ?)").check()
    page.get_by_role("button", name="Save").click()
    expect(page.locator("html[data-keys=on]")).to_have_count(1)
    expect(page).to_have_url(re.compile(rf"/reviews/orders/{order.order_id}/$"))
    page.evaluate(COUNT_SUBMITS)
    page.get_by_label("Note (optional)").click()
    page.keyboard.type("arc jk")
    expect(page.get_by_label("Note (optional)")).to_have_value("arc jk")
    assert _submits(page) == 0

    page.goto("/reviews/")
    expect(page.locator("html[data-keys=on]")).to_have_count(1)
    page.locator("[data-search]").click()
    page.keyboard.type("jk")
    expect(page.locator("[data-search]")).to_have_value("jk")
    page.evaluate("""() => { const d = document.createElement("div"); d.id = "editable";
        d.contentEditable = "true"; document.querySelector("main").append(d); }""")
    page.locator("#editable").click()
    page.keyboard.type("jkc?")
    expect(page.locator("#editable")).to_have_text("jkc?")
    expect(page.locator("#queue tr.selected")).to_have_count(0)
    expect(page.locator("#shortcuts")).not_to_be_visible()
    task = ReviewTask.objects.get(order=order)
    assert (task.status, task.claimed_by_id) == ("open", None)


DECIDED = datetime(2026, 1, 15, 1, 4, 5, tzinfo=UTC)


def test_times_in_the_browsers_zone_overridable_with_utc_on_hover(chromium, live_server, reviewer):  # noqa: F811
    reviewer.is_staff = reviewer.is_superuser = True
    reviewer.save()
    order = make_waiting_order(order_id="TZ-BERLIN", customer="Lise Meitner", address="Kaiser-Wilhelm-Str. 1\nBerlin")
    decide_in_db(order, "rejected", by="rita", at=DECIDED, reason_code="suspected_fraud", note="Card from abroad.")
    Order.objects.filter(pk=order.pk).update(created_at=DECIDED)
    OrderEvent.objects.filter(order=order).update(created_at=DECIDED)
    context = chromium.new_context(base_url=live_server.url, timezone_id="Europe/Berlin")
    context.set_default_timeout(20_000)
    page = context.new_page()
    try:
        _log_in(page)
        page.goto("/reviews/decided/")
        when = page.locator(f'tr[data-order="{order.order_id}"] time')
        # The browser's zone reached the session (on the login page, or this page reloads once).
        expect(when).to_have_text("Jan 15, 02:04")
        expect(when).to_have_attribute("title", "2026-01-15 01:04:05 UTC")
        expect(when).to_have_attribute("datetime", "2026-01-15T01:04:05Z")
        screenshot(page, "settings-berlin-recent")

        page.goto(f"/reviews/orders/{order.order_id}/")
        expect(page.locator(".review-outcome time")).to_have_text("2026-01-15 02:04:05 CET")
        expect(page.locator(".timeline time").first).to_have_text("2026-01-15 02:04:05")
        screenshot(page, "settings-berlin-order")

        page.goto(f"/admin/orderweb/order/{order.pk}/change/")
        expect(page.locator(".fieldBox.field-created time")).to_have_text("2026-01-15 02:04:05")
        expect(page.locator(".fieldBox.field-created time")).to_have_attribute("title", "2026-01-15 01:04:05 UTC")
        expect(page.locator("#user-tools")).to_contain_text("(times in Europe/Berlin)")
        screenshot(page, "settings-berlin-admin-order")
        page.goto("/admin/orderweb/order/")
        expect(page.locator(f'tr:has-text("{order.order_id}") td.field-created_at time')).to_have_text(
            "2026-01-15 02:04:05"
        )

        # Chosen on the settings page: New York, whatever the browser says.
        page.goto("/reviews/decided/")
        page.get_by_role("link", name=re.compile("^Settings")).click()
        page.get_by_label("Time zone").select_option("America/New_York")
        page.get_by_role("button", name="Save").click()
        expect(page).to_have_url(re.compile(r"/reviews/decided/$"))
        expect(when).to_have_text("Jan 14, 20:04")
        screenshot(page, "settings-new-york-recent")
        # Given back to the browser: Berlin again.
        page.get_by_role("link", name=re.compile("^Settings")).click()
        page.get_by_label("Time zone").select_option("")
        page.get_by_role("button", name="Save").click()
        expect(when).to_have_text("Jan 15, 02:04")
    finally:
        context.close()
