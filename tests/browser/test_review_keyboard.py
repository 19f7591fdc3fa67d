"""A reviewer works through the queue from the keyboard in real Chromium, against the live
server, the real Temporal dev server and workers: ten orders decided, eight approved and two
rejected with a reason, counting the keypresses and the seconds (written to
test-artifacts/keyboard-review.json); the shortcuts are listed on the page; and the decision
panel locks itself when a colleague or staff ends the review while the page is open."""

from __future__ import annotations

import json
import re
import time

import pytest
from playwright.sync_api import expect

from orderweb.actions import order_cancel
from orderweb.models import Order
from orderweb.services import order_create
from reviews import services
from reviews.models import ReviewTask
from tests.browser.conftest import SCREENSHOTS, press, screenshot
from tests.helpers import handle, new_order_id, temporal, wait_for_state, wait_until
from tests.reviews.conftest import PASSWORD, make_user

pytestmark = [pytest.mark.browser, pytest.mark.temporal]

FIGURES = SCREENSHOTS.parent / "keyboard-review.json"


@pytest.fixture
def reviewer(settings, system):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.REVIEW_QUEUE_REFRESH_SECONDS = 1
    settings.REVIEW_POLICY = "all"
    return make_user("rita", reviewer=True)


def _log_in(page, username: str = "rita") -> None:
    page.goto("/accounts/login/?next=/reviews/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Review queue")).to_be_visible()


def _waiting_orders(count: int) -> list[Order]:
    orders = []
    for i in range(count):
        orders.append(
            order_create(
                order_id=new_order_id("KEY"),
                address=f"{i + 1} Keyboard Lane\nSpringfield",
                customer=f"Customer {i}",
                customer_email=f"customer{i}@example.com",
                amount="25.00",
            )
        )
    for order in orders:
        wait_for_state(order.workflow_id, "awaiting_manual_review")
        wait_until(lambda o=order: ReviewTask.objects.filter(order=o, status="open").exists(), what="open task")
    return orders


def _finish(orders: list[Order]) -> list[str]:
    results = []
    for order in orders:
        h = handle(order.workflow_id)
        results.append(temporal(lambda c, h=h: h.result()).status)
    return results


def test_ten_orders_reviewed_from_the_keyboard(page, reviewer):
    orders = _waiting_orders(10)
    due_order = [
        t.order.order_id
        for t in ReviewTask.objects.filter(status="open").select_related("order").order_by("due_at", "id")
    ]
    reject_at = {3, 7}  # the 4th and the 8th are rejected, with "Undeliverable address" (3)
    _log_in(page)
    expect(page.locator("#queue tbody tr[data-order]")).to_have_count(10)

    keys: list[str] = []

    def count(key: str) -> None:
        keys.append(key)
        press(page, key)  # once the page's script listens: a person cannot press faster

    title = page.locator("h1.order-title")
    started = time.monotonic()
    count("j")  # select the first order of the queue
    expect(page.locator("#queue tr.selected")).to_have_attribute("data-order", due_order[0])
    count("Enter")  # open it
    for i, order_id in enumerate(due_order):
        expect(title).to_contain_text(order_id, timeout=20_000)
        expect(page.locator("#review-panel")).to_have_attribute("data-open", "1")
        if i in reject_at:
            count("r")
            expect(page.locator(".reject-form")).to_be_visible()
            count("3")
            expect(page.locator(".reject-form input[value=undeliverable_address]")).to_be_checked()
            count("Enter")
        else:
            count("a")
        if i + 1 < len(due_order):
            # "& next" opened the next order, once the workflow took the decision.
            expect(title).to_contain_text(due_order[i + 1], timeout=20_000)
    expect(page.get_by_role("heading", name="Review queue")).to_be_visible()
    expect(page.get_by_text("That was the last order in your queue")).to_be_visible()
    seconds = time.monotonic() - started
    screenshot(page, "review-20-keyboard-queue-done")

    decided = {t.order.order_id: t for t in ReviewTask.objects.select_related("order")}
    assert [decided[o].status for o in due_order] == ["rejected" if i in reject_at else "approved" for i in range(10)]
    assert {decided[due_order[i]].reason_code for i in reject_at} == {"undeliverable_address"}
    assert all(decided[o].decided_by_name == "rita" for o in due_order)
    assert len(keys) == 2 + 8 * 1 + 2 * 3, keys
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    FIGURES.write_text(
        json.dumps(
            {
                "orders": 10,
                "approved": 8,
                "rejected": 2,
                "keypresses": len(keys),
                "keys": keys,
                "seconds": round(seconds, 2),
            },
            indent=2,
        )
    )
    print(f"\nkeyboard review: 10 orders, {len(keys)} keypresses, {seconds:.1f} s: {' '.join(keys)}")
    assert sorted(_finish(orders)) == ["cancelled"] * 2 + ["completed"] * 8


def test_shortcuts_are_shown_on_the_page_and_listed_by_question_mark(page, reviewer):
    [order] = _waiting_orders(1)
    _log_in(page)
    expect(page.locator(".key-hints")).to_contain_text("j/k move")
    press(page, "?")
    dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("approve, then open the next order")
    screenshot(page, "review-21-shortcuts")
    press(page, "Escape")
    expect(dialog).to_be_hidden()
    press(page, "/")
    expect(page.get_by_label("Search orders")).to_be_focused()
    page.keyboard.type(order.order_id[-6:])
    press(page, "Enter")
    expect(page.locator("#queue tbody tr[data-order]")).to_have_count(1)
    press(page, "Escape")  # leave the field: the keys work again
    press(page, "j")
    press(page, "c")  # claim the selected order: its page opens, claimed
    expect(page.locator("#claimed-by")).to_have_text("You")
    expect(page.locator(".key-hints").first).to_contain_text("approve & next")
    press(page, "r")
    expect(page.locator(".reject-form")).to_be_visible()
    press(page, "Escape")  # nothing rejected
    expect(page.locator(".reject-form")).to_be_hidden()
    assert ReviewTask.objects.get(order=order).status == "open"


def _open_with_reviewer(page, order: Order) -> None:
    _log_in(page)
    page.goto(f"/reviews/orders/{order.order_id}/")
    expect(page.locator("#workflow-status")).to_have_text("awaiting_manual_review")
    expect(page.get_by_role("button", name="Approve", exact=True)).to_be_enabled()


def test_the_panel_locks_when_a_colleague_decides(page, reviewer):
    bob = make_user("bob", reviewer=True)
    [order] = _waiting_orders(1)
    _open_with_reviewer(page, order)
    outcome = services.review_decide(order=order, user=bob, decision="approve")
    assert outcome.accepted
    lock = page.locator("#review-lock")
    expect(lock).to_be_visible(timeout=10_000)
    expect(lock).to_contain_text(re.compile(r"This order has left review: approved by bob at [0-9:]+\. It is now"))
    expect(page.get_by_role("button", name="Approve", exact=True)).to_be_disabled()
    expect(page.locator(".approve-form .btn-next")).to_be_disabled()
    expect(page.locator("#order-status")).not_to_have_text("Awaiting manual review")
    screenshot(page, "review-22-locked-after-colleague")
    # The shortcuts do nothing on a locked page.
    url = page.url
    press(page, "a")
    press(page, "r")
    expect(page.locator(".reject-form")).to_be_hidden()
    assert page.url == url
    assert _finish([order]) == ["completed"]


def test_the_panel_locks_when_staff_cancel_the_order(page, reviewer):
    staff = make_user("stella", staff=True)
    [order] = _waiting_orders(1)
    _open_with_reviewer(page, order)
    page.get_by_text("Reject…").click()  # in the middle of rejecting
    page.get_by_role("radio", name="Suspected fraud").check()
    assert order_cancel(
        order=order, reason="customer called", reason_code="customer_request", acting_user=staff
    ).accepted
    expect(page.locator("#review-lock")).to_contain_text("This order has left review: cancelled", timeout=10_000)
    expect(page.locator("#review-lock")).to_contain_text("customer called")
    expect(page.locator(".reject-form .btn-stay")).to_be_disabled()
    expect(page.locator(".reject-form")).to_be_hidden()  # the half-made rejection folded away
    assert _finish([order]) == ["cancelled"]
