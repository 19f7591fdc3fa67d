"""The pages as a person sees them, on a desktop (1280 px) and on a phone (390 px), with real
orders scored by the real rules and run by the real workflows: no page of the review back office
scrolls sideways (document.documentElement.scrollWidth is measured), time left, Claim and Sign out
stay on screen, and the admin's order page shows what staff need. The screenshots go to
test-artifacts/screenshots/layout-*.png."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone
from playwright.sync_api import expect

from orderweb.models import Order
from orderweb.services import order_create
from reviews import services
from reviews.admin import CLAIMED_WARNING, REVIEW_PAGE_LINK
from reviews.models import ReviewTask, RiskAssessment
from temporal_app.contracts import LineItem
from tests.browser.conftest import screenshot
from tests.helpers import new_order_id, wait_for_state, wait_until
from tests.orderweb.test_admin_actions import dispatch_failed_order
from tests.reviews.conftest import PASSWORD, make_user

pytestmark = [pytest.mark.browser, pytest.mark.temporal]

FORWARDER = "Shipito Suite 9921\n1 Warehouse Road\nTorrance, CA 90501\nUnited States"
LONG_NOTE = (
    "Card used from three countries within an hour, the billing address is in Germany, the package "
    "goes to a forwarding warehouse, and the customer's usual basket is a tenth of this one. "
) * 6


def _waiting(order: Order) -> Order:
    wait_for_state(order.workflow_id, "awaiting_manual_review")
    wait_until(lambda: ReviewTask.objects.filter(order=order, status="open").exists(), what="open task")
    return order


def _history(email: str, address: str, amount: str, n: int, age: timedelta) -> None:
    for _ in range(n):
        order = Order.objects.create(
            order_id=new_order_id("HIST"),
            workflow_id=new_order_id("hist").lower(),
            address=address,
            customer="Grace Hopper",
            customer_email=email,
            amount=Decimal(amount),
            status="completed",
        )
        Order.objects.filter(pk=order.pk).update(created_at=timezone.now() - age)


@pytest.fixture
def world(settings, system):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.REVIEW_QUEUE_REFRESH_SECONDS = 2
    settings.REVIEW_POLICY = "all"
    rita = make_user("rita", reviewer=True, staff=True)
    rita.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="orderweb", codename__in=["view_order", "cancel_order", "retry_shipping"]
        )
    )
    bob = make_user("bob", reviewer=True)
    _history("grace@example.com", "7 Navy Yard\nArlington", "40.00", 4, timedelta(days=10))
    _history("other@example.com", FORWARDER, "60.00", 2, timedelta(hours=3))
    risky = _waiting(
        order_create(
            order_id=new_order_id("RISKY"),
            address=FORWARDER,
            customer="Grace Hopper",
            customer_email="grace@example.com",
            billing_address="Karl-Marx-Allee 1\n10178 Berlin\nGermany",
            client_ip="203.0.113.7",
            line_items=[LineItem("GPU-9", "Graphics card", 12, "40.00")],
        )
    )
    plain = []
    for i, name in enumerate(["Ada Lovelace", "Alan Turing", "Edsger Dijkstra", "Barbara Liskov", "Donald Knuth"]):
        plain.append(
            order_create(
                order_id=new_order_id("ORDER"),
                address=f"{10 + i} Market Street\nSpringfield, IL 62701",
                customer=name,
                customer_email=f"{name.split()[0].lower()}@example.com",
                line_items=[LineItem("TEA-01", "Earl Grey tea", 1 + i, "4.50")],
            )
        )
    plain.append(
        order_create(
            order_id=new_order_id("ORDER-LONG-NAMES-AND-ADDRESS"),
            customer="Maximiliane Alexandra Wilhelmina von und zu Hohenzollern",
            customer_email="maximiliane.alexandra.wilhelmina.von.und.zu.hohenzollern@subdomain.example.com",
            address="Apartment 1234, Building C, The Very Long Residential Complex Name\n"
            "Extraordinarilylongstreetnamewithoutspaces 99\nSpringfield, IL 62701",
            line_items=[LineItem("SKU-1", "Thing", 1, "9.99")],
        )
    )
    for order in plain:
        _waiting(order)
    claimed = plain[1]
    services.review_task_claim(order=claimed, user=bob)
    ReviewTask.objects.filter(order=claimed).update(claimed_at=timezone.now() - timedelta(minutes=7))
    decided = plain[2:4]
    assert services.review_decide(
        order=decided[0], user=bob, decision="reject", note=LONG_NOTE, reason_code="suspected_fraud"
    ).accepted
    assert services.review_decide(order=decided[1], user=rita, decision="approve").accepted
    failed = dispatch_failed_order()
    return {"risky": risky, "claimed": claimed, "failed": failed, "long": plain[-1]}


def _log_in(page) -> None:
    page.goto("/accounts/login/?next=/reviews/")
    page.get_by_label("Username").fill("rita")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Review queue")).to_be_visible()


def _width(page) -> int:
    return page.evaluate("document.documentElement.scrollWidth")


_WIDE = """() => { const w = document.documentElement.clientWidth; const out = [];
  for (const el of document.querySelectorAll("body *")) { const r = el.getBoundingClientRect();
    if (r.right > w + 1 || (el.scrollWidth > el.clientWidth + 1 && getComputedStyle(el).overflowX === "visible"))
      out.push(el.tagName + "." + el.className + " " + Math.round(r.right) + "/" + el.scrollWidth + " " +
               (el.textContent || "").trim().slice(0, 40)); }
  return out.slice(0, 8); }"""


def _too_wide(page) -> list[str]:
    """What sticks out to the right: the assertion names it."""
    return page.evaluate(_WIDE)


def _on_screen(page, locator, width: int) -> None:
    box = locator.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, (locator, box)


@pytest.mark.parametrize("width", [1280, 390])
def test_pages_fit_the_screen_and_show_what_matters(page, world, width):
    page.set_viewport_size({"width": width, "height": 900})
    _log_in(page)
    size = "desktop" if width > 500 else "390"
    measured = {}

    # The queue: the riskiest first.
    page.goto("/reviews/?sort=risk")
    first = page.locator("#queue tbody tr[data-order]").first
    expect(first).to_have_attribute("data-order", world["risky"].order_id)
    expect(first.locator(".risk")).to_contain_text("High")
    for locator in (first.locator(".due"), first.locator(".claim-button"), page.get_by_role("button", name="Sign out")):
        expect(locator).to_be_visible()
        _on_screen(page, locator, width)
    measured["queue"] = _width(page), _too_wide(page)
    screenshot(page, f"layout-queue-{size}")

    # The order page: Why review first, with the reasons and their figures.
    page.goto(f"/reviews/orders/{world['risky'].order_id}/?sort=risk")
    why = page.locator("#why-review")
    expect(why).to_contain_text("High risk · 100/100")
    for text in (
        "Ships to a parcel-forwarding service (“Shipito”).",
        "12 units of GPU-9 in one order",
        "3 orders to this address within 24 h",
        "Ships to US, billed in DE.",
        "480.00 USD is 12.0× this customer's usual 40.00 (median of 4 earlier orders",
    ):
        expect(why).to_contain_text(text)
    expect(page.locator("#linked-orders li")).to_have_count(6)  # 4 by email, 2 by the forwarder's address
    expect(page.locator("#workflow-status")).to_have_text("awaiting_manual_review")
    for locator in (page.locator(".approve-form .btn-next"), page.get_by_text("Reject…")):
        _on_screen(page, locator, width)
    measured["order"] = _width(page), _too_wide(page)
    screenshot(page, f"layout-order-{size}")
    page.get_by_text("Reject…").click()
    expect(page.locator(".reject-form")).to_be_visible()
    measured["order, reject open"] = _width(page), _too_wide(page)
    screenshot(page, f"layout-order-reject-{size}")

    # A long order id, name, email and address.
    page.goto(f"/reviews/orders/{world['long'].order_id}/")
    expect(page.locator("#why-review")).to_be_visible()
    measured["order, long values"] = _width(page), _too_wide(page)

    # Recent decisions, with a note of 1,100 characters folded.
    page.goto("/reviews/decided/")
    note = page.locator("details.cut")
    expect(note).to_have_count(1)
    expect(note.locator(".cut-full")).to_be_hidden()
    measured["recent"] = _width(page), _too_wide(page)
    screenshot(page, f"layout-recent-{size}")
    note.locator("summary").click()
    expect(note.locator(".cut-full")).to_be_visible()
    measured["recent, note open"] = _width(page), _too_wide(page)

    # The queue searched: open and decided orders.
    page.goto("/reviews/?q=example.com")
    expect(page.locator("#matches li")).not_to_have_count(0)
    measured["queue, search"] = _width(page), _too_wide(page)

    for name, (scroll_width, offenders) in measured.items():
        assert scroll_width <= width, (name, scroll_width, offenders)
    print(f"\n{width} px: scrollWidth { ({name: w for name, (w, _) in measured.items()}) }")

    # The admin's order page (Django's own layout; measured, not bound by the review pages' rule).
    failed = world["failed"]
    page.goto(f"/admin/orderweb/order/{failed.pk}/change/")
    expect(page.locator("#order-notices")).to_contain_text("Dispatch failed, waiting for staff")
    expect(page.locator("#order-notices")).to_contain_text("The carrier's last error:")
    expect(page.get_by_role("link", name=REVIEW_PAGE_LINK).first).to_be_visible()
    screenshot(page, f"layout-admin-order-{size}")
    print(f"{width} px: admin order page scrollWidth {_width(page)}")


def test_admin_flows_between_the_two_pages(page, world):
    _log_in(page)
    failed, claimed = world["failed"], world["claimed"]
    page.goto("/admin/orderweb/order/")
    row = page.locator(f"#result_list tr:has-text('{failed.order_id}')")
    expect(row.locator(".order-status")).to_have_text("Dispatch failed, waiting for staff")
    row.get_by_role("link", name=failed.order_id).click()
    expect(page.locator(".fieldBox.field-carrier_last_error .readonly")).not_to_have_text("—")
    page.get_by_role("link", name="Retry shipping").click()
    expect(page.locator("td.carrier-error")).not_to_have_text("—")
    screenshot(page, "layout-admin-retry-confirmation")

    # From the admin to the review page and back.
    page.goto(f"/admin/orderweb/order/{claimed.pk}/change/")
    page.get_by_role("link", name=REVIEW_PAGE_LINK).first.click()
    expect(page.locator("h1.order-title")).to_contain_text(claimed.order_id)
    page.get_by_role("link", name="Open in admin").click()
    expect(page.locator("#content h1")).to_contain_text("View order")

    # Cancelling an order a reviewer holds: the confirmation says so first.
    page.get_by_role("link", name="Cancel order").click()
    expect(page.locator("#cancel-warnings")).to_be_visible()
    expect(page.locator(".cancel-warning")).to_contain_text(CLAIMED_WARNING.format(user="bob", ago="7m"))
    screenshot(page, "layout-admin-cancel-warning")
    assert RiskAssessment.objects.filter(order=world["risky"]).get().level == "high"
