"""The order list and page: constant query counts, filters, search, read-only, permissions.

These need no workflow: the rows are the projection, written here directly as test data."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from orderweb.models import Order, OrderEvent, OrderLine, Payment, Shipment
from reviews.models import ReviewTask
from temporal_app.contracts import shipping_workflow_id
from tests.orderweb.conftest import messages_of

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:orderweb_order_changelist")


def make_orders(count: int, *, start: int = 0) -> list[Order]:
    orders = []
    for i in range(start, start + count):
        order = Order.objects.create(
            order_id=f"LIST-{i:04d}",
            workflow_id=f"list-{i:04d}",
            address=f"{i} List Street",
            amount=Decimal("10.00") + i,
            status=Order.Status.AWAITING_MANUAL_REVIEW,
            dispatch_failures=i % 3,
            customer=f"customer {i}",
        )
        ReviewTask.objects.create(order=order, due_at=timezone.now() + timedelta(hours=1))
        OrderLine.objects.create(order=order, sku="SKU-1", quantity=1, unit_price=Decimal("10.00"))
        orders.append(order)
    return orders


def changelist_queries(client, **params) -> tuple[int, str]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(CHANGELIST, params)
    assert response.status_code == 200
    return len(queries), response.content.decode()


def test_changelist_query_count_does_not_grow_with_rows(client, make_staff, django_assert_max_num_queries):
    client.force_login(make_staff("lister", "cancel_order", "retry_shipping", "change_order_address"))
    make_orders(5)
    five, html = changelist_queries(client)
    assert html.count('class="order-status order-status-') == 5

    make_orders(45, start=5)
    with django_assert_max_num_queries(five):
        response = client.get(CHANGELIST)
    assert response.content.decode().count('class="order-status order-status-') == 50
    fifty, _ = changelist_queries(client)
    assert fifty == five, (five, fifty)
    # session, user, permissions, counts, date hierarchy, filter values, the rows: 10 measured.
    assert five <= 10
    # The same with a filter and a search on.
    filtered, _ = changelist_queries(client, status="awaiting_manual_review", q="List", dispatch="failed")
    assert filtered <= five + 1


def test_changelist_shows_status_amount_review_state_and_failures(client, make_staff):
    client.force_login(make_staff())
    order = make_orders(1)[0]
    Order.objects.filter(pk=order.pk).update(dispatch_failures=2)
    html = client.get(CHANGELIST).content.decode()
    assert "LIST-0000" in html
    assert "Awaiting manual review" in html
    assert "10.00" in html
    assert ">Open<" in html  # the review task's state
    assert '<td class="field-dispatch_failures">2</td>' in html


def test_changelist_filters_and_search(client, make_staff):
    client.force_login(make_staff())
    orders = make_orders(3)  # dispatch_failures 0, 1, 2
    Order.objects.filter(pk=orders[2].pk).update(status=Order.Status.SHIPPING)
    Shipment.objects.create(
        order=orders[2], status=Shipment.Status.DISPATCH_FAILED, address="x", idempotency_key="order:LIST-0002:ship"
    )

    def listed(**params) -> set[str]:
        html = client.get(CHANGELIST, params).content.decode()
        return {o.order_id for o in orders if f">{o.order_id}<" in html}

    assert listed(dispatch="failed") == {"LIST-0001", "LIST-0002"}
    assert listed(dispatch="waiting") == {"LIST-0002"}
    assert listed(dispatch="never") == {"LIST-0000"}
    assert listed(status="shipping") == {"LIST-0002"}
    assert listed(q="1 List Street") == {"LIST-0001"}
    assert listed(q="LIST-0002") == {"LIST-0002"}
    today = timezone.now()
    assert listed(created_at__year=today.year, created_at__month=today.month, created_at__day=today.day) == {
        "LIST-0000",
        "LIST-0001",
        "LIST-0002",
    }


def test_order_page_is_read_only_with_lines_timeline_and_temporal_links(client, make_staff, settings):
    settings.TEMPORAL_UI_URL = "http://temporal-ui.example"
    user = make_staff("viewer")
    client.force_login(user)
    order = make_orders(1)[0]
    Order.objects.filter(pk=order.pk).update(status=Order.Status.SHIPPING)
    Payment.objects.create(
        order=order,
        kind="charge",
        status="succeeded",
        amount=Decimal("10.00"),
        idempotency_key="order:LIST-0000:charge",
        provider_reference="ch_1",
    )
    Shipment.objects.create(order=order, address="0 List Street", idempotency_key="order:LIST-0000:ship")
    OrderEvent.objects.create(
        order=order,
        type="status_changed",
        actor="system",
        source="workflow",
        from_status="payment",
        to_status="shipping",
    )
    OrderEvent.objects.create(
        order=order,
        type="address_change_requested",
        user=user,
        source="admin",
        details={"old_address": "0 List Street", "new_address": "9 New Road"},
    )

    response = client.get(reverse("admin:orderweb_order_change", args=[order.pk]))
    html = response.content.decode()
    assert response.status_code == 200
    assert 'name="_save"' not in html and "<textarea" not in html  # nothing to edit
    assert "SKU-1" in html  # line item
    assert "ch_1" in html  # payment
    assert "order:LIST-0000:ship" in html  # shipment
    assert "payment → shipping" in html
    assert "0 List Street → 9 New Road" in html and ">viewer<" in html and ">Admin<" in html
    assert 'href="http://temporal-ui.example/namespaces/default/workflows/list-0000"' in html
    child = shipping_workflow_id("list-0000")
    assert f'href="http://temporal-ui.example/namespaces/default/workflows/{child}"' in html

    # A POST to the page changes nothing.
    response = client.post(
        reverse("admin:orderweb_order_change", args=[order.pk]), {"address": "hacked", "status": "completed"}
    )
    assert response.status_code == 403
    order.refresh_from_db()
    assert (order.status, order.address) == (Order.Status.SHIPPING, "0 List Street")


def test_order_page_offers_only_permitted_actions(client, make_staff):
    order = make_orders(1)[0]
    url = reverse("admin:orderweb_order_change", args=[order.pk])
    client.force_login(make_staff("plain"))
    html = client.get(url).content.decode()
    assert "Cancel order" not in html and "Change address" not in html

    client.force_login(make_staff("canceller", "cancel_order", "change_order_address"))
    html = client.get(url).content.decode()
    assert reverse("admin:orderweb_order_cancel", args=[order.pk]) in html
    assert reverse("admin:orderweb_order_address", args=[order.pk]) in html
    assert "Retry shipping" not in html  # its dispatch has not failed


def test_order_cannot_be_deleted_or_edited(client, make_staff, admin_user):
    order = make_orders(1)[0]
    client.force_login(admin_user)
    assert client.post(reverse("admin:orderweb_order_delete", args=[order.pk]), {"post": "yes"}).status_code == 403
    response = client.post(CHANGELIST, {"action": "delete_selected", "_selected_action": [order.pk], "index": 0})
    assert Order.objects.filter(pk=order.pk).exists()
    assert ("warning", "No action selected.") in messages_of(response)


@pytest.mark.parametrize("model", ["payment", "shipment", "orderevent", "gatewayledgerentry", "carrierledgerentry"])
def test_workflow_rows_are_read_only(client, admin_user, model):
    client.force_login(admin_user)
    assert client.get(reverse(f"admin:orderweb_{model}_changelist")).status_code == 200
    assert client.get(reverse(f"admin:orderweb_{model}_add")).status_code == 403


def test_review_tasks_are_read_only(client, admin_user):
    client.force_login(admin_user)
    order = make_orders(1)[0]
    task = ReviewTask.objects.get(order=order)
    assert client.get(reverse("admin:reviews_reviewtask_changelist")).status_code == 200
    assert client.get(reverse("admin:reviews_reviewtask_add")).status_code == 403
    response = client.post(reverse("admin:reviews_reviewtask_change", args=[task.pk]), {"status": "approved"})
    assert response.status_code == 403
    task.refresh_from_db()
    assert task.status == ReviewTask.Status.OPEN


def _waiting_after_failed_dispatch(order: Order, error: str = "carrier refused: address not served") -> None:
    Order.objects.filter(pk=order.pk).update(status=Order.Status.SHIPPING, dispatch_failures=2)
    Shipment.objects.create(
        order=order,
        status=Shipment.Status.DISPATCH_FAILED,
        address="x",
        last_error=error,
        idempotency_key=f"order:{order.order_id}:ship",
    )


def test_dispatch_failed_and_waiting_shows_as_such_with_the_carriers_error(client, make_staff):
    from orderweb.admin import DISPATCH_WAITING, DISPATCH_WAITING_NOTICE

    client.force_login(make_staff("watcher", "retry_shipping"))
    waiting, shipping = make_orders(2)
    _waiting_after_failed_dispatch(waiting)
    Order.objects.filter(pk=shipping.pk).update(status=Order.Status.SHIPPING)
    html = client.get(CHANGELIST).content.decode()
    row = html.split(f">{waiting.order_id}<")[1].split("</tr>")[0]
    assert f">{DISPATCH_WAITING}</span>" in row
    other = html.split(f">{shipping.order_id}<")[1].split("</tr>")[0]
    assert ">Shipping</span>" in other and DISPATCH_WAITING not in other

    page = client.get(reverse("admin:orderweb_order_change", args=[waiting.pk])).content.decode()
    notice = DISPATCH_WAITING_NOTICE.format(failures=2, plural="s")
    assert (
        f'<li class="errornote">{notice} The carrier&#x27;s last error: carrier refused: address not served</li>'
        in page
    )
    assert "field-carrier_last_error" in page
    assert f"Shipping: {DISPATCH_WAITING.lower()}" in page  # the status itself says it, not just "Shipping"
    retry = client.get(reverse("admin:orderweb_order_retry_shipping", args=[waiting.pk])).content.decode()
    assert '<td class="carrier-error">carrier refused: address not served</td>' in retry


def test_admin_shows_event_labels_not_codes(client, admin_user):
    client.force_login(admin_user)
    order = make_orders(1)[0]
    OrderEvent.objects.create(order=order, type="review_decision_requested", actor="rita", source="web")
    OrderEvent.objects.create(
        order=order,
        type="update_applied",
        actor="stella",
        source="admin",
        details={"signal": "ChangeAddress", "old_address": "a", "new_address": "b"},
    )
    listing = client.get(reverse("admin:orderweb_orderevent_changelist")).content.decode()
    assert ">Decision sent<" in listing and ">ChangeAddress applied<" in listing
    assert ">review_decision_requested<" not in listing
    page = client.get(reverse("admin:orderweb_order_change", args=[order.pk])).content.decode()
    assert "<td>Decision sent</td>" in page and "review_decision_requested" not in page


def test_cancel_reason_codes_show_and_filter_in_the_order_list(client, make_staff):
    client.force_login(make_staff())
    fraud, asked, none = make_orders(3)
    Order.objects.filter(pk=fraud.pk).update(
        status="cancelled", cancel_reason="x", cancel_reason_code="suspected_fraud"
    )
    Order.objects.filter(pk=asked.pk).update(
        status="cancelled", cancel_reason="x", cancel_reason_code="customer_request"
    )
    Order.objects.filter(pk=none.pk).update(status="cancelled", cancel_reason="x")
    html = client.get(CHANGELIST, {"cancel_reason": "suspected_fraud"}).content.decode()
    assert fraud.order_id in html and asked.order_id not in html and none.order_id not in html
    assert none.order_id in client.get(CHANGELIST, {"cancel_reason": "none"}).content.decode()
    page = client.get(reverse("admin:orderweb_order_change", args=[fraud.pk])).content.decode()
    assert "Suspected fraud (suspected_fraud)" in page


def test_admin_index_names_every_model_in_plain_english(admin_client):
    """Django adds an 's' to a model's name unless told otherwise: "Webhook deliverys"."""
    html = admin_client.get(reverse("admin:index")).content.decode()
    assert "Webhook deliveries" in html
    assert not re.search(r"[^aeiou]ys<", html), re.findall(r">([^<]*[^aeiou]ys)<", html)
