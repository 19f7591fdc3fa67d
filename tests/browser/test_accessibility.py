"""axe-core (WCAG 2.1 A and AA) over the pages reviewers and staff use, at 1280 and 390 px, with
real orders run by the real workflows (test_review_layout's world): no serious or critical
violation on any of them. Each page's findings are kept in test-artifacts/axe/<page>-<width>.json.

New pages join with one line: ``assert_no_serious_axe_violations(page)`` (tests/browser/axe.py).
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.axe import axe_violations, describe, serious_axe_violations
from tests.browser.conftest import press
from tests.browser.test_review_layout import _log_in, world  # noqa: F401 (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.temporal]


def _pages(page, world):  # noqa: F811 (the fixture)
    """(name, how to get there): each leaves the page ready to be checked."""
    risky, failed = world["risky"], world["failed"]

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

    def admin_order():
        page.goto(f"/admin/orderweb/order/{failed.pk}/change/")
        expect(page.locator("#order-notices")).to_be_visible()

    return [
        ("queue", lambda: page.goto("/reviews/?sort=risk")),
        ("queue-search", lambda: page.goto("/reviews/?q=example.com")),
        ("shortcuts-dialog", shortcuts_dialog),
        ("order", order_page),
        ("order-reject-open", reject_open),
        ("recent", lambda: page.goto("/reviews/decided/")),
        ("settings", lambda: page.goto("/preferences/")),
        ("admin-order-list", lambda: page.goto("/admin/orderweb/order/")),
        ("admin-order", admin_order),
        ("admin-risky-order", lambda: page.goto(f"/admin/orderweb/order/{risky.pk}/change/")),
    ]


@pytest.mark.parametrize("width", [1280, 390])
def test_no_serious_axe_violation_on_any_page(page, world, width):  # noqa: F811 (the fixture)
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
