"""Issue 21 in Chromium, at 1280 and 390 px: the leads' insights (figures, chart, CSV link) and an
order labelled from its review page with htmx (set, shown, removed, in the timeline), each page
checked by axe and photographed (test-artifacts/screenshots, and SHOTS_DIR when set)."""

from __future__ import annotations

import os
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, Permission
from django.utils import timezone
from playwright.sync_api import expect

from orderweb.models import OrderEvent, OrderLabel
from reviews.models import ReviewTask
from tests.browser.axe import assert_no_serious_axe_violations
from tests.browser.conftest import screenshot
from tests.browser.test_review_team import WIDTHS, _fits, _log_in, _size
from tests.reviews.conftest import make_user, make_waiting_order, reason

pytestmark = [pytest.mark.browser, pytest.mark.temporal]


def _shot(page, name: str) -> None:
    path = screenshot(page, name)
    if os.environ.get("SHOTS_DIR"):
        Path(os.environ["SHOTS_DIR"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(os.environ["SHOTS_DIR"]) / path.name)


def _lead(username: str):
    user = make_user(username, reviewer=True)
    group, _ = Group.objects.get_or_create(name="review_lead")
    group.permissions.add(
        Permission.objects.get(codename="lead_review"),
        Permission.objects.get(codename="add_orderlabel", content_type__app_label="orderweb"),
    )
    user.groups.add(group)
    return user


def _decided(status: str, by: str, days_ago: int, minutes: int, *, label: str = "", claimed=None, escalated=False):
    order = make_waiting_order()
    decided = timezone.now().replace(hour=10, minute=0) - timedelta(days=days_ago)
    ReviewTask.objects.filter(order=order).update(
        status=status,
        created_at=decided - timedelta(minutes=minutes),
        decided_at=decided,
        decided_by_name=by,
        claimed_by=claimed,
        claimed_at=decided if claimed else None,
        escalated_at=decided - timedelta(minutes=1) if escalated else None,
    )
    if label:
        OrderLabel.objects.create(order=order, label=label, actor="payments-service", source="api")
    return order


@pytest.fixture
def leads(settings, system):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.REVIEW_QUEUE_REFRESH_SECONDS = 2
    lena = _lead("lena")
    make_user("alice", reviewer=True)
    bob = make_user("bob", reviewer=True)
    # Two weeks of decisions: alice quick and busy, bob slower, a few timeouts and escalations.
    for day in range(14):
        for i in range(3 + day % 4):
            _decided(
                "approved" if i % 3 else "rejected",
                "alice",
                day,
                4 + 7 * i,
                label="chargeback" if (day, i) == (3, 1) else "genuine_confirmed" if (day, i) == (5, 0) else "",
            )
        _decided("approved", "bob", day, 90 + 40 * (day % 5), escalated=day % 6 == 0)
        if day % 4 == 0:
            _decided("expired", "", day, 24 * 60, claimed=bob)
    return {"lena": lena}


@pytest.mark.parametrize("width", WIDTHS)
def test_the_leads_insights_at_both_widths(chromium, live_server, leads, width):
    context, page = _log_in(chromium, live_server, "lena", width)
    page.get_by_role("link", name="Insights").click()
    expect(page.get_by_role("heading", name="Team insights")).to_be_visible()
    expect(page.locator("#team-decisions")).to_have_text(
        str(ReviewTask.objects.filter(status__in=["approved", "rejected"]).count())
    )
    expect(page.locator("#team-bad-approvals")).to_have_text("1")
    expect(page.locator("#team-genuine-rejections")).to_have_text("1")
    expect(page.locator("#insights-chart")).to_be_visible()
    expect(page.locator("#reviewers-table tbody tr[data-reviewer]")).to_have_count(2)
    assert "format=csv" in page.locator("#insights-csv").get_attribute("href")
    _fits(page, width, "insights")
    assert_no_serious_axe_violations(page, name=f"insights-{width}")
    _shot(page, f"insights-{_size(width)}")
    page.get_by_text("The chart's figures, day by day").click()
    expect(page.locator("#daily-table tbody tr")).to_have_count(30)
    assert_no_serious_axe_violations(page, name=f"insights-daily-{width}")
    page.get_by_role("link", name="7 days").click()
    expect(page.locator(".page-head .muted")).to_contain_text("to")
    with page.expect_download() as download:
        page.locator("#insights-csv").click()
    assert download.value.suggested_filename.startswith("review-insights-")
    context.close()


@pytest.mark.parametrize("width", WIDTHS)
def test_a_lead_labels_an_order_in_place_and_removes_the_label(chromium, live_server, leads, width):
    order = make_waiting_order(
        risk=(70, "high", [reason("forwarder", 40, "Ships to a parcel-forwarding service.")]),
        customer="Grace Hopper",
        email="grace@example.com",
    )
    ReviewTask.objects.filter(order=order).update(status="approved", decided_at=timezone.now(), decided_by_name="alice")
    context, page = _log_in(chromium, live_server, "lena", width)
    page.goto(f"/reviews/orders/{order.order_id}/")
    page.evaluate("window.__stayed = true")  # gone if the page reloads: the panel must swap in place
    panel = page.locator("#labels")
    panel.get_by_role("radio", name="Chargeback").check()
    panel.get_by_role("textbox", name="Reference").fill("CB-2026-0042")
    panel.get_by_role("textbox", name="Note").fill("Issuer dispute: card reported stolen.")
    panel.get_by_role("button", name="Set label").click()
    expect(page.locator("#label-message")).to_have_text(f"{order.order_id} is labelled chargeback.")
    expect(page.locator("#current-labels [data-label=chargeback]")).to_contain_text("CB-2026-0042")
    assert page.evaluate("window.__stayed === true")
    assert_no_serious_axe_violations(page, name=f"label-set-{width}")
    _shot(page, f"label-set-{_size(width)}")  # the panel's answer, in place
    assert OrderLabel.objects.get(order=order).actor == "lena"
    page.reload()  # the title's pill and the timeline, as a colleague opening the page sees them
    expect(page.locator("h1 .label-chargeback")).to_have_text("Chargeback")
    expect(page.locator(".timeline")).to_contain_text("Label set")
    _fits(page, width, "labelled order")
    assert_no_serious_axe_violations(page, name=f"labelled-order-{width}")
    _shot(page, f"labelled-order-{_size(width)}")
    page.locator("#labels").get_by_role("button", name="Remove the label Chargeback").click()
    expect(page.locator("#label-message")).to_have_text(f"The label chargeback was removed from {order.order_id}.")
    expect(page.locator("#current-labels li")).to_have_count(0)
    expect(page.locator(".label-history")).to_contain_text("removed by lena")
    assert_no_serious_axe_violations(page, name=f"label-removed-{width}")
    assert list(OrderEvent.objects.filter(order=order, type__startswith="label").values_list("type", flat=True)) == [
        "label_added",
        "label_removed",
    ]
    context.close()
