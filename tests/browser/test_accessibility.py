"""axe-core (WCAG 2.1 A and AA) over the pages reviewers and staff use, at 1280 and 390 px: no
serious or critical violation on any of them. Each page's findings are kept in
test-artifacts/axe/<page>-<width>.json. The orders: one run by its real workflow to review (the
order page asks it for its live status), the rest written straight into Postgres as the
activities leave them (every risk level, claimed, approved, rejected with a long note).

New pages join with one line: ``assert_no_serious_axe_violations(page)`` (tests/browser/axe.py).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.sync_api import expect

from orderweb.services import order_create
from reviews.models import ReviewTask
from temporal_app.contracts import LineItem
from tests.browser.axe import axe_violations, describe, serious_axe_violations
from tests.browser.conftest import press
from tests.browser.test_review_layout import LONG_NOTE, _log_in
from tests.helpers import new_order_id, wait_for_state, wait_until
from tests.reviews.conftest import decide_in_db, make_user, make_waiting_order, reason

pytestmark = [pytest.mark.browser, pytest.mark.temporal]


@pytest.fixture
def world(settings, system):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.REVIEW_QUEUE_REFRESH_SECONDS = 2
    make_user("rita", reviewer=True, superuser=True)
    bob = make_user("bob", reviewer=True)
    risky = order_create(
        order_id=new_order_id("AXE"),
        address="1 Warehouse Road\nTorrance, CA 90501",
        customer="Grace Hopper",
        customer_email="grace@example.com",
        line_items=[LineItem("GPU-9", "Graphics card", 12, "40.00")],
    )
    wait_for_state(risky.workflow_id, "awaiting_manual_review")
    wait_until(lambda: ReviewTask.objects.filter(order=risky, status="open").exists(), what="open task")
    make_waiting_order(
        risk=(85, "high", [reason("forwarder", 40, "Ships to a parcel-forwarding service.")]),
        customer="Alan Turing",
        email="alan@example.com",
        due_in=timedelta(minutes=20),
    )
    make_waiting_order(
        risk=(45, "medium", [reason("new_customer", 20, "First order of this customer.")]),
        claimed_by=bob,
        due_in=timedelta(hours=3),
    )
    make_waiting_order(risk=(5, "low", []), customer="Ada Lovelace", email="ada@example.com")
    decide_in_db(
        make_waiting_order(risk=(60, "high", [])), "rejected", by="bob", note=LONG_NOTE, reason_code="suspected_fraud"
    )
    decide_in_db(make_waiting_order(email="barbara@example.com"), "approved", by="rita")
    return {"risky": risky}


def _pages(page, world):
    """(name, how to get there): each leaves the page ready to be checked."""
    risky = world["risky"]

    def order_page():
        page.goto(f"/reviews/orders/{risky.order_id}/")
        expect(page.locator("#workflow-status")).to_have_text("awaiting_manual_review")

    def reject_open():
        page.get_by_text("Reject…").click()
        expect(page.locator(".reject-form")).to_be_visible()

    def shortcuts_dialog():
        page.goto("/reviews/")
        press(page, "?")
        expect(page.locator("#shortcuts")).to_be_visible()

    return [
        ("queue", lambda: page.goto("/reviews/?sort=risk")),
        ("queue-search", lambda: page.goto("/reviews/?q=example.com")),
        ("shortcuts-dialog", shortcuts_dialog),
        ("order", order_page),
        ("order-reject-open", reject_open),
        ("recent", lambda: page.goto("/reviews/decided/")),
        ("settings", lambda: page.goto("/preferences/")),
        ("admin-order-list", lambda: page.goto("/admin/orderweb/order/")),
        ("admin-order", lambda: page.goto(f"/admin/orderweb/order/{risky.pk}/change/")),
    ]


@pytest.mark.parametrize("width", [1280, 390])
def test_no_serious_axe_violation_on_any_page(page, world, width):
    page.set_viewport_size({"width": width, "height": 900})
    found: dict[str, list] = {}
    counts: dict[str, dict[str, int]] = {}

    page.goto("/accounts/login/?next=/reviews/")
    found["login"] = serious_axe_violations(page, name=f"login-{width}")
    counts["login"] = _by_impact(axe_violations(page))
    _log_in(page)
    for name, go in _pages(page, world):
        go()
        found[name] = serious_axe_violations(page, name=f"{name}-{width}")
        counts[name] = _by_impact(axe_violations(page))

    print(f"\naxe at {width} px (violations by impact): " + "; ".join(f"{n} {c or 'none'}" for n, c in counts.items()))
    failing = {name: violations for name, violations in found.items() if violations}
    assert not failing, "\n\n".join(f"{name} at {width} px:\n{describe(v)}" for name, v in failing.items())


def _by_impact(violations: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for violation in violations:
        counts[violation["impact"]] = counts.get(violation["impact"], 0) + 1
    return counts
