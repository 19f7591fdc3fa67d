"""A team in real Chromium against the live server, real Temporal and workers: two reviewers and a
lead take a four-eyes order through; a bulk approval of ten with one refused; the claim's
warning before it lapses, and keeping it; the new pages at 1280 and 390 px, none scrolling
sideways and none with a serious or critical axe finding (the bulk queue and its result, the
escalated view, a lead's order page with notes, the claim's warning). Screenshots:
test-artifacts/screenshots/team-*.png."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission
from playwright.sync_api import expect

from orderweb.models import Order
from orderweb.services import order_create
from reviews import services
from reviews.models import ReviewTask
from temporal_app.contracts import LineItem
from tests.browser.axe import assert_no_serious_axe_violations
from tests.browser.conftest import press, screenshot
from tests.helpers import handle, new_order_id, temporal, wait_for_state, wait_until
from tests.reviews.conftest import PASSWORD, make_user

pytestmark = [pytest.mark.browser, pytest.mark.temporal]

WIDTHS = [1280, 390]


def _size(width: int) -> str:
    return "desktop" if width > 500 else "390"


def _waiting(amount: str = "24.00", **kwargs) -> Order:
    order_id = new_order_id(kwargs.pop("prefix", "TEAM"))
    order = order_create(
        order_id=order_id,
        address=f"{order_id[-4:]} Team Street\nSpringfield, IL 62701",
        customer=kwargs.pop("customer", "Ada Lovelace"),
        customer_email=kwargs.pop("email", ""),
        line_items=[LineItem("TEA-01", "Earl Grey tea", 1, amount)],
        **kwargs,
    )
    wait_for_state(order.workflow_id, "awaiting_manual_review")
    wait_until(lambda: ReviewTask.objects.filter(order=order, status="open").exists(), what="open task")
    return order


def _lead(username: str):
    user = make_user(username, reviewer=True)
    group, _ = Group.objects.get_or_create(name="review_lead")
    group.permissions.add(Permission.objects.get(codename="lead_review"))
    user.groups.add(group)
    return user


def _log_in(chromium, live_server, username: str, width: int = 1280):
    context = chromium.new_context(base_url=live_server.url, viewport={"width": width, "height": 900})
    context.set_default_timeout(20_000)
    page = context.new_page()
    page.goto("/accounts/login/?next=/reviews/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Review queue")).to_be_visible()
    return context, page


def _fits(page, width: int, name: str) -> None:
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= width, (name, scroll_width)


@pytest.fixture
def team(settings, system):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.REVIEW_QUEUE_REFRESH_SECONDS = 2
    settings.REVIEW_FOUR_EYES_AMOUNT = "1000.00"
    return {"alice": make_user("alice", reviewer=True), "bob": make_user("bob", reviewer=True), "lena": _lead("lena")}


def test_two_reviewers_and_a_lead_take_a_four_eyes_order_through(chromium, live_server, team):
    large = _waiting("1500.00", prefix="LARGE", customer="Grace Hopper", email="grace@example.com")
    # Alice approves first: 1 of 2, her claim is given back, her page says why it still waits.
    alice_context, alice = _log_in(chromium, live_server, "alice")
    alice.goto(f"/reviews/orders/{large.order_id}/")
    expect(alice.locator("#four-eyes-badge")).to_have_text("Four eyes")
    expect(alice.locator("#approvals")).to_contain_text("0 of 2")
    alice.locator(".approve-form textarea").fill("Known customer, usual address.")
    alice.locator(".approve-form .btn-stay").click()
    expect(alice.locator(".message-success")).to_contain_text("your approval is recorded, 1 of 2")
    expect(alice.locator("#approvals")).to_contain_text("1 of 2")
    expect(alice.locator("#waiting-second")).to_contain_text("It still waits for a second approval from someone else")
    expect(alice.locator(".approve-form")).to_have_count(0)
    for width in WIDTHS:
        alice.set_viewport_size({"width": width, "height": 900})
        _fits(alice, width, "order, first approver")
        screenshot(alice, f"team-four-eyes-order-1-of-2-{_size(width)}")
        assert_no_serious_axe_violations(alice, name=f"team-four-eyes-order-1-of-2-{_size(width)}")
        alice.goto("/reviews/")
        row = alice.locator(f"#queue tr[data-order='{large.order_id}']")
        expect(row.locator(".pill-four-eyes")).to_have_text("1 of 2 · alice")
        _fits(alice, width, "queue, 1 of 2")
        screenshot(alice, f"team-four-eyes-queue-1-of-2-{_size(width)}")
        assert_no_serious_axe_violations(alice, name=f"team-four-eyes-queue-1-of-2-{_size(width)}")
        alice.goto(f"/reviews/orders/{large.order_id}/")
    alice_context.close()

    # Bob claims it, then leaves it.
    bob_context, bob = _log_in(chromium, live_server, "bob")
    bob.goto(f"/reviews/orders/{large.order_id}/")
    expect(bob.locator("#approvals")).to_contain_text("approved by alice")
    bob.locator("#review-panel .claim-button").click()
    expect(bob.locator("#claimed-by")).to_contain_text("You")
    bob_context.close()

    # The lead hands it to herself and gives the second approval: paid and shipped.
    lead_context, lead = _log_in(chromium, live_server, "lena")
    lead.goto(f"/reviews/orders/{large.order_id}/")
    expect(lead.locator("#claimed-by")).to_contain_text("bob")
    lead.locator("#reassign-to").select_option("lena")
    lead.locator("#reassign").click()
    expect(lead.locator(".message-success")).to_contain_text(f"{large.order_id} is now lena's to review.")
    lead.locator(".approve-form .btn-stay").click()
    expect(lead.locator(".message-success")).to_contain_text("approved. Payment and shipping follow")
    h = handle(large.workflow_id)
    assert temporal(lambda c: h.result()).status == "completed"
    lead.reload()
    expect(lead.locator("#first-approval")).to_contain_text("First approval (four eyes) by alice")
    lead_context.close()
    task = ReviewTask.objects.get(order=large)
    assert (task.first_approval_by, task.decided_by_name) == ("alice", "lena")


@pytest.mark.parametrize("width", WIDTHS)
def test_a_bulk_approval_of_ten_with_one_refused(chromium, live_server, team, width):
    orders = [_waiting(prefix="BULK") for _ in range(10)]
    held = orders[4]
    services.review_task_claim(order=held, user=team["bob"])
    context, page = _log_in(chromium, live_server, "alice", width)
    expect(page.locator("#queue tbody tr[data-order]")).to_have_count(10)
    expect(page.locator("#bulk-approve")).to_be_disabled()
    # From the keyboard: j selects the first row, x ticks it and ticks it off again.
    press(page, "j")
    press(page, "x")
    expect(page.locator("#bulk-count")).to_have_text("1 order selected.")
    expect(page.locator("#bulk-approve")).to_be_enabled()
    press(page, "x")
    expect(page.locator("#bulk-count")).to_have_text("No order selected.")
    page.locator("#select-all").check()
    expect(page.locator("#bulk-count")).to_have_text("10 orders selected.")
    # The table refreshes itself (every 2 s here): the ticks survive it.
    page.evaluate("() => new Promise(done => document.addEventListener('htmx:afterSettle', done, {once: true}))")
    expect(page.locator("#queue input.bulk-select:checked")).to_have_count(10)
    _fits(page, width, "queue with a selection")
    screenshot(page, f"team-bulk-queue-{_size(width)}")
    assert_no_serious_axe_violations(page, name=f"team-bulk-queue-{_size(width)}")
    page.locator("#bulk-approve").click()
    expect(page.get_by_role("heading", name="Bulk approve: 10 orders")).to_be_visible()
    expect(page.locator(".messages")).to_contain_text("Bulk approve: 9 applied, 1 refused.")
    expect(page.locator("#bulk-lines tr[data-status=applied]")).to_have_count(9)
    refused = page.locator(f"#bulk-lines tr[data-order='{held.order_id}']")
    expect(refused).to_have_attribute("data-status", "refused")
    expect(refused).to_contain_text("claimed by bob")
    _fits(page, width, "bulk result")
    screenshot(page, f"team-bulk-result-{_size(width)}")
    assert_no_serious_axe_violations(page, name=f"team-bulk-result-{_size(width)}")
    context.close()
    for order in orders:
        if order is not held:
            wait_until(lambda o=order: Order.objects.filter(pk=o.pk, status="completed").exists(), what="completed")


def test_the_claim_warns_before_it_lapses_and_can_be_kept(chromium, live_server, team, settings):
    # A 30-second claim, warned 27 s before: the warning comes 3 s after claiming.
    settings.REVIEW_CLAIM_TIMEOUT_MINUTES = 0.5
    settings.REVIEW_CLAIM_WARN_MINUTES = 0.45
    order = _waiting(prefix="CLAIM")
    context, page = _log_in(chromium, live_server, "alice")
    page.goto(f"/reviews/orders/{order.order_id}/")
    page.locator("#review-panel .claim-button").click()
    expect(page.locator("#claimed-by")).to_contain_text("You")
    warning = page.locator("#claim-warning")
    expect(warning).to_have_attribute("role", "status")
    expect(warning).to_contain_text(f"Your claim on {order.order_id} lapses at", timeout=15_000)
    expect(page.locator("#extend-claim")).to_be_visible()
    expect(page.locator(".claim-countdown")).to_contain_text("left")
    screenshot(page, "team-claim-warning-desktop")
    assert_no_serious_axe_violations(page, name="team-claim-warning-desktop")
    before = ReviewTask.objects.get(order=order).claimed_at
    page.locator("#extend-claim").click()
    expect(warning).to_contain_text(f"Your claim on {order.order_id} now lasts until")
    expect(page.locator("#claim-timer")).to_be_hidden()
    assert ReviewTask.objects.get(order=order).claimed_at > before
    # Left alone, it warns again, then lapses: the page says so and still offers to keep it.
    expect(warning).to_contain_text("Your claim lapsed at", timeout=45_000)
    expect(page.locator("#extend-claim")).to_be_visible()
    context.close()


@pytest.mark.parametrize("width", WIDTHS)
def test_the_escalated_view_and_a_leads_order_page_fit(chromium, live_server, team, settings, width):
    settings.REVIEW_ESCALATE_AFTER = 0.02  # a 120 s review escalates after 2.4 s
    settings.REVIEW_ESCALATION_EMAILS = ["leads@example.com"]
    escalated = _waiting(
        prefix="LATE", review_timeout_seconds=120, customer="Edsger Dijkstra", email="edsger@example.com"
    )
    _waiting(prefix="CALM")
    wait_until(
        lambda: ReviewTask.objects.filter(order=escalated, escalated_at__isnull=False).exists(),
        timeout=30,
        what="the escalation",
    )
    services.review_task_claim(order=escalated, user=team["bob"])
    from orderweb.services import order_note_add

    order_note_add(order=escalated, user=team["alice"], text="Phoned the customer twice, no answer.", source="web")
    context, page = _log_in(chromium, live_server, "lena", width)
    page.locator("#escalated-tab").click()
    expect(page.locator("#queue tbody tr[data-order]")).to_have_count(1)
    expect(page.locator(".pill-escalated")).to_have_text("Escalated")
    _fits(page, width, "escalated view")
    screenshot(page, f"team-escalated-view-{_size(width)}")
    assert_no_serious_axe_violations(page, name=f"team-escalated-view-{_size(width)}")
    page.goto(f"/reviews/orders/{escalated.order_id}/")
    expect(page.locator("#escalated-at")).to_contain_text("to the review leads")
    expect(page.locator("#notes")).to_contain_text("Phoned the customer twice")
    expect(page.locator("#reassign-to")).to_be_visible()
    _fits(page, width, "order page, lead")
    screenshot(page, f"team-order-lead-{_size(width)}")
    assert_no_serious_axe_violations(page, name=f"team-order-lead-{_size(width)}")
    context.close()
    temporal(lambda c: c.get_workflow_handle(escalated.workflow_id).terminate("test done"))
