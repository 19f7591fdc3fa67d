"""The leads' risk pages in Chromium at 1280 and 390 px: the Lists page, a draft's edit page, a
backtest's result, and an order a block entry sent to high risk; axe finds nothing serious on
any of them, nothing sticks out sideways, and each is photographed (SHOTS, for people to look at)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import expect

from orderweb import activities as order_activities
from reviews.activities import order_validated
from reviews.risk_services import risk_list_entry_add, risk_policy_draft
from temporal_app.contracts import LineItem, OrderOptions, ReceiveOrderInput, ValidateOrderInput
from tests.browser.axe import describe, serious_axe_violations
from tests.browser.test_review_layout import _WIDE
from tests.reviews.conftest import PASSWORD
from tests.reviews.test_backtest import _fixture, first_policy
from tests.reviews.test_risk_lists import lead

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SHOTS = Path(os.environ.get("RISK_SHOTS", "/work/shots/h21b"))


@pytest.fixture
def world(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.REVIEW_POLICY = "risky"
    first_policy()
    boss = lead("lea")
    _fixture()
    risk_policy_draft(user=boss)
    risk_list_entry_add(
        user=boss,
        kind="block",
        field="address",
        value="13 Chargeback Close\nLeeds",
        reason="chargeback on BT-B, card reported stolen",
    )
    risk_list_entry_add(
        user=boss,
        kind="allow",
        field="email",
        value="grace@example.com",
        reason="long-standing customer, verified by phone",
    )
    order_id = "LIST-HIT-1"
    order_activities.order_received(
        ReceiveOrderInput(
            order_id,
            order_id.lower(),
            "13 Chargeback Close\nLeeds",
            OrderOptions(
                amount="89.00",
                customer="Mallory",
                customer_email="mallory@example.com",
                line_items=[LineItem("SKU-1", "Thing", 1, "89.00")],
            ),
        )
    )
    order_validated(ValidateOrderInput(order_id, 1_900_000_000.0))
    return {"order_id": order_id}


def _log_in(page) -> None:
    page.goto("/accounts/login/?next=/reviews/lists/")
    page.get_by_label("Username").fill("lea")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Allow and block lists")).to_be_visible()


# What sticks out to the right, outside a deliberate scroll region (the backtest's rule table
# scrolls sideways on a phone, in a focusable region).
_WIDE_OUTSIDE_SCROLLERS = _WIDE.replace(
    'for (const el of document.querySelectorAll("body *")) {',
    'for (const el of document.querySelectorAll("body *")) { if (el.closest(".scroll-x")) continue;',
)


def _too_wide(page) -> list[str]:
    return page.evaluate(_WIDE_OUTSIDE_SCROLLERS)


def _check(page, name: str, width: int) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)
    violations = serious_axe_violations(page, name=f"{name}-{width}")
    assert not violations, f"{name} at {width} px:\n{describe(violations)}"
    assert not _too_wide(page), (name, width, _too_wide(page))


@pytest.mark.parametrize("width", [1280, 390])
def test_the_risk_pages_work_and_pass_axe(page, world, width):
    page.set_viewport_size({"width": width, "height": 900})
    _log_in(page)

    # The Lists page: add an entry, see it.
    page.get_by_label("List", exact=True).select_option("block")
    page.get_by_label("Matches the").select_option("ip")
    page.get_by_label("Value").fill("203.0.113.9")
    page.get_by_label("Reason").first.fill("card testing from this address")
    page.get_by_role("button", name="Add to the list").click()
    expect(page.locator("#messages")).to_contain_text("203.0.113.9 is on the block list (client ip) from now on.")
    page.goto("/reviews/lists/")
    expect(page.locator("#live-entries tr[data-entry]")).to_have_count(3)
    _check(page, "lists", width)

    # The order a block entry changed: high risk, the entry's reason; the lead's list panel.
    page.goto(f"/reviews/orders/{world['order_id']}/")
    why = page.locator("#why-review")
    expect(why).to_contain_text("On the block list: address, added by lea on")
    expect(why).to_contain_text("chargeback on BT-B, card reported stolen")
    expect(page.locator("#order-list-entries li")).to_have_count(1)
    _check(page, "order-blocked", width)

    # A draft: edit it (a wrong value is refused in place), then backtest it.
    page.goto("/reviews/policy/v2/")
    page.get_by_label("PO box or locker").fill("30")
    page.get_by_label("Review from score").fill("20")
    page.get_by_label("On the block list").fill("10")
    page.get_by_role("button", name="Save the draft").click()
    expect(page.locator("#e-points_block_list")).to_contain_text("at least 60 points")
    page.get_by_label("On the block list").fill("100")
    page.get_by_role("button", name="Save the draft").click()
    expect(page.locator("#messages")).to_contain_text("Draft v2 saved.")
    # Checked as it loads (base.html's messages list, role="status" on a <ul>, is axe's "listitem"
    # finding on every page that opens with a message: not this page's own).
    page.goto("/reviews/policy/v2/")
    expect(page.get_by_label("PO box or locker")).to_have_value("30")
    _check(page, "policy-draft", width)
    page.get_by_role("button", name="Run a backtest").click()
    expect(page.get_by_role("heading", name="Backtest of v2 against the active v1")).to_be_visible()
    expect(page.locator('[data-figure="would_review"]')).to_have_text("5")
    expect(page.locator('[data-figure="caught"]')).to_have_text("2")
    expect(page.locator("#bt-rules tr[data-rule=po_box]")).to_contain_text("PO box or locker")
    _check(page, "backtest", width)
