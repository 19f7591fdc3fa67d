"""A reviewer in real Chromium against the live server, real Temporal and real workers: log in,
see the order arrive without reloading, claim, approve, and watch the order complete; reject
with a reason; and a stale page that meets an order cancelled meanwhile."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from orderweb.services import order_create
from reviews import services
from temporal_app.contracts import CancelRequest, LineItem, Updates
from tests.browser.conftest import screenshot
from tests.helpers import handle, new_order_id, temporal, wait_for_state
from tests.reviews.conftest import PASSWORD, make_user

pytestmark = [pytest.mark.browser, pytest.mark.temporal]


@pytest.fixture
def reviewer_login(settings, system):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.REVIEW_QUEUE_REFRESH_SECONDS = 1
    make_user("rita", reviewer=True)
    return "rita"


def _log_in(page, username: str) -> None:
    page.goto("/reviews/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/reviews/"))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Review queue")).to_be_visible()


def _run_to_the_end(order) -> str:
    """The workflow's result: its last projection write is done before the database is flushed."""
    h = handle(order.workflow_id)
    return temporal(lambda c: h.result()).status


def _new_order(**kwargs):
    return order_create(
        order_id=new_order_id("WEB"),
        address="221B Baker Street\nLondon NW1 6XE",
        customer="Mrs Hudson",
        line_items=[LineItem("TEA-01", "Earl Grey tea", 3, "4.50"), LineItem("PIPE-2", "Briar pipe", 1, "38.00")],
        **kwargs,
    )


def test_reviewer_logs_in_claims_approves_and_sees_completed(page, reviewer_login):
    page.goto("/reviews/")
    screenshot(page, "review-01-login")
    _log_in(page, reviewer_login)
    expect(page.get_by_text("Nothing to review")).to_be_visible()

    order = _new_order()
    row = page.locator(f'tr[data-order="{order.order_id}"]')
    expect(row).to_be_visible()  # arrived by htmx polling, no reload
    expect(row).to_contain_text("Mrs Hudson")
    expect(row).to_contain_text("51.50")
    expect(row.locator(".claim-cell")).to_have_text("Unclaimed")
    screenshot(page, "review-02-queue-order-arrived")

    row.get_by_role("button", name="Claim").click()
    expect(page.get_by_role("status").filter(has_text=f"You claimed {order.order_id}.")).to_be_visible()
    expect(page.locator("#claimed-by")).to_have_text("You")
    expect(page.locator("#workflow-status")).to_have_text("awaiting_manual_review")
    expect(page.get_by_text("Earl Grey tea")).to_be_visible()
    screenshot(page, "review-03-order-claimed")

    page.locator(".approve-form textarea").fill("Known customer, fine.")
    page.get_by_role("button", name="Approve", exact=True).click()
    expect(
        page.get_by_role("status").filter(has_text=services.DECIDED_APPROVED.format(order_id=order.order_id))
    ).to_be_visible()
    expect(page.locator("#workflow-status")).to_have_text("completed", timeout=30_000)
    expect(page.locator(".review-outcome")).to_contain_text("Approved")
    screenshot(page, "review-04-order-completed")

    page.get_by_role("link", name="Review queue", exact=True).click()
    expect(page.locator(f'tr[data-order="{order.order_id}"]')).to_have_count(0)
    page.get_by_role("link", name="Recent decisions").click()
    decided = page.locator(f'tr[data-order="{order.order_id}"]')
    expect(decided).to_contain_text("Approved")
    expect(decided).to_contain_text("rita")
    screenshot(page, "review-05-recent-decisions")
    assert _run_to_the_end(order) == "completed"


def test_reviewer_rejects_with_a_reason(page, reviewer_login):
    _log_in(page, reviewer_login)
    order = _new_order()
    page.locator(f'tr[data-order="{order.order_id}"] .order-id a').click()
    expect(page.locator("#workflow-status")).to_have_text("awaiting_manual_review")
    # Reject opens a confirmation: the reason, the consequence, then the confirm button.
    page.get_by_text("Reject…").click()
    reject = page.locator(".reject-form")
    expect(reject.get_by_text("Rejecting cancels the order")).to_be_visible()
    reject.get_by_role("button", name="Reject", exact=True).click()
    # A reason code is required: the browser does not send the form without one.
    expect(reject.locator("input[name=reason_code]:invalid")).to_have_count(5)
    reject.get_by_role("radio", name="Other").check()
    reject.get_by_role("button", name="Reject", exact=True).click()
    # "Other" needs words: the note became required.
    expect(reject.locator("textarea:invalid")).to_have_count(1)
    reject.get_by_role("radio", name="Undeliverable address").check()
    reject.locator("textarea").fill("Address is a known drop point")
    reject.get_by_role("button", name="Reject", exact=True).click()
    expect(
        page.get_by_role("status").filter(
            has_text=services.DECIDED_REJECTED.format(
                order_id=order.order_id, reason="Undeliverable address: Address is a known drop point"
            )
        )
    ).to_be_visible()
    expect(page.locator("#workflow-status")).to_have_text("cancelled")
    expect(page.locator("#live-status")).to_contain_text("rejected in review: Address is a known drop point")
    expect(page.locator(".review-outcome .reason-code")).to_have_text("Undeliverable address")
    screenshot(page, "review-06-order-rejected")
    assert _run_to_the_end(order) == "cancelled"


def test_stale_page_shows_why_the_decision_did_not_apply(page, reviewer_login, settings):
    _log_in(page, reviewer_login)
    order = _new_order()
    wait_for_state(order.workflow_id, "awaiting_manual_review")
    # Stale: its live panel does not ask again meanwhile (asking, it would lock the page first:
    # tests/browser/test_review_keyboard.py).
    settings.REVIEW_QUEUE_REFRESH_SECONDS = 600
    page.goto(f"/reviews/orders/{order.order_id}/")
    expect(page.locator("#workflow-status")).to_have_text("awaiting_manual_review")
    expect(page.get_by_role("button", name="Approve", exact=True)).to_be_visible()
    h = handle(order.workflow_id)
    temporal(lambda c: h.execute_update(Updates.REQUEST_CANCEL, CancelRequest("customer called", "staffer")))
    page.get_by_role("button", name="Approve", exact=True).click()
    refused = services.REFUSED_CANCELLED.format(order_id=order.order_id, reason="customer called")
    expect(page.locator("#messages")).to_have_text(refused)
    expect(page.get_by_role("status").and_(page.locator("#messages"))).to_have_text(refused)  # said aloud
    expect(page.get_by_role("button", name="Approve", exact=True)).to_have_count(0)
    screenshot(page, "review-07-stale-page-refused")
    assert _run_to_the_end(order) == "cancelled"


def test_temporal_outage_is_explained_and_loses_nothing(page, reviewer_login):
    from tests.reviews.test_decide import temporal_outage

    _log_in(page, reviewer_login)
    order = _new_order()
    wait_for_state(order.workflow_id, "awaiting_manual_review")
    with temporal_outage():
        page.goto(f"/reviews/orders/{order.order_id}/")
        expect(page.locator("#live-status")).to_contain_text("Live status unavailable: Temporal at")
        page.get_by_role("button", name="Approve", exact=True).click()
        expect(page.locator("#messages")).to_contain_text(f"The decision for {order.order_id} could not be confirmed")
        expect(page.get_by_role("button", name="Approve", exact=True)).to_be_visible()  # still open: nothing lost
        screenshot(page, "review-08-temporal-outage")
    # Temporal is back: the live panel recovers by itself, and the decision goes through.
    expect(page.locator("#workflow-status")).to_have_text("awaiting_manual_review")
    page.get_by_role("button", name="Approve", exact=True).click()
    expect(page.locator("#workflow-status")).to_have_text("completed", timeout=30_000)
    assert _run_to_the_end(order) == "completed"


def test_with_no_worker_answering_the_page_answers_from_postgres_and_says_so(page, reviewer_login, settings):
    """The workers stopped (here: the order's workflow is on a queue nobody polls): the order
    page still shows the order, and its live panel says in words, announced, that the live
    status is unavailable, beside what Postgres holds. At a desktop and at a phone's width."""
    from tests.reviews.test_workers_down import _order_no_worker_answers

    settings.TEMPORAL_QUERY_TIMEOUT_SECONDS = 1
    order = _order_no_worker_answers()
    _log_in(page, reviewer_login)
    page.goto(f"/reviews/orders/{order.order_id}/")
    panel = page.locator("#live-status")
    expect(panel.get_by_role("status")).to_contain_text("Live status unavailable: the order workers are not answering")
    expect(panel).to_contain_text("From Postgres: Awaiting manual review")
    expect(page.get_by_role("heading", level=1)).to_contain_text(order.order_id)
    screenshot(page, "review-09-workers-down")
    page.set_viewport_size({"width": 390, "height": 844})
    expect(panel.get_by_role("status")).to_be_visible()
    screenshot(page, "review-10-workers-down-phone")
