"""A staff user cancels an order from the admin in real Chromium, against real workflows."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from orderweb.actions import CANCEL_DONE
from orderweb.models import Order
from tests.browser.conftest import screenshot
from tests.orderweb.conftest import PASSWORD, finish, make_staff, place_order  # noqa: F401 (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.temporal]


# make_staff: the fixture imported above, requested by name (pytest's way), not a redefinition.
def test_staff_cancels_an_order_in_the_admin(system, page, make_staff):  # noqa: F811
    make_staff("stella", "cancel_order")
    order = place_order()

    page.goto("/admin/login/?next=/admin/orderweb/order/")
    page.fill("#id_username", "stella")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#result_list")).to_contain_text(order.order_id)
    expect(page.locator(f"#result_list tr:has-text('{order.order_id}') .order-status")).to_have_text(
        "Awaiting manual review"
    )

    page.click(f"#result_list a:text('{order.order_id}')")
    page.click("a.order-action:text('Cancel order')")
    expect(page.locator("#content h1")).to_have_text(f"Cancel order {order.order_id}")
    page.get_by_label("Customer request").check()
    page.fill("#id_reason", "customer called to cancel")
    screenshot(page, "admin-cancel-confirmation")
    page.click("input[type=submit][value='Yes, cancel the order']")

    expect(page.locator(".messagelist .success")).to_have_text(
        CANCEL_DONE.format(order_id=order.order_id, reason="customer called to cancel")
    )
    expect(page.locator(".fieldBox.field-status_shown .readonly")).to_have_text("Cancelled")
    expect(page.locator(".fieldBox.field-cancel_reason .readonly")).to_have_text("customer called to cancel")
    expect(page.locator(".fieldBox.field-cancel_reason_label .readonly")).to_have_text(
        "Customer request (customer_request)"
    )
    expect(page.locator("table.order-timeline")).to_contain_text("Cancellation requested")
    expect(page.locator("a.order-action")).to_have_count(0)  # nothing left to do with it
    screenshot(page, "admin-order-cancelled")

    assert finish(order).status == "cancelled"
    order.refresh_from_db()
    assert order.status == Order.Status.CANCELLED
