"""Adding an order from the admin goes through order_create, which starts its workflow."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from orderweb.admin import ORDER_CREATED
from orderweb.models import Order, OrderEvent
from orderweb.services import ORDER_ID_EXISTS, ORDER_ID_TAKEN
from temporal_app.contracts import ADDRESS_CONTROL_CHARS, ADDRESS_EMPTY, LINE_DUPLICATE_SKU, ORDER_ID_INVALID
from tests.helpers import new_order_id, wait_for_state
from tests.orderweb.conftest import messages_of

ADD = reverse("admin:orderweb_order_add")


def form_data(order_id: str, **extra) -> dict[str, str]:
    data = {
        "order_id": order_id,
        "customer": "Ada",
        "address": "5 Admin Lane\r\nAdminton",
        "amount": "",
        "lines-TOTAL_FORMS": "3",
        "lines-INITIAL_FORMS": "0",
        "lines-MIN_NUM_FORMS": "0",
        "lines-MAX_NUM_FORMS": "1000",
        "lines-0-sku": "SKU-A",
        "lines-0-name": "Anvil",
        "lines-0-quantity": "2",
        "lines-0-unit_price": "10.00",
        "lines-1-sku": "SKU-B",
        "lines-1-name": "Bolt",
        "lines-1-quantity": "3",
        "lines-1-unit_price": "1.50",
        "lines-2-sku": "",
        "lines-2-name": "",
        "lines-2-quantity": "1",
        "lines-2-unit_price": "0",
    }
    data.update(extra)
    return data


@pytest.mark.temporal
def test_staff_adds_an_order_and_its_workflow_starts(system, client, make_staff):
    user = make_staff("olga", "add_order")
    client.force_login(user)
    page = client.get(ADD).content.decode()
    assert 'name="lines-0-sku"' in page and 'name="order_id"' in page

    order_id = new_order_id("ADMIN")
    response = client.post(ADD, form_data(order_id))
    order = Order.objects.get(order_id=order_id)
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:orderweb_order_change", args=[order.pk])
    assert messages_of(response) == [("success", ORDER_CREATED.format(order_id=order_id))]
    assert order.amount == Decimal("24.50")
    assert order.address == "5 Admin Lane\nAdminton"
    assert (order.source, order.created_by) == ("admin", user)
    assert sorted(order.lines.values_list("sku", "quantity")) == [("SKU-A", 2), ("SKU-B", 3)]
    created = OrderEvent.objects.get(order=order, type="order_created")
    assert (created.user, created.source) == (user, "admin")
    status = wait_for_state(order.workflow_id, "awaiting_manual_review")
    assert status["order_id"] == order_id


@pytest.mark.django_db
def test_add_needs_the_add_permission(client, make_staff):
    client.force_login(make_staff("viewer"))
    assert client.get(ADD).status_code == 403
    assert client.post(ADD, form_data("ADMIN-NOPE")).status_code == 403
    assert not Order.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "changes,error",
    [
        ({"order_id": "bad id!"}, ORDER_ID_INVALID),
        ({"address": "  "}, ADDRESS_EMPTY),
        ({"address": "x\x07y"}, ADDRESS_CONTROL_CHARS),
        ({"lines-1-sku": "SKU-A"}, LINE_DUPLICATE_SKU.format(sku="SKU-A")),
        ({"lines-0-quantity": "0"}, "Ensure this value is greater than or equal to 1."),
        ({"amount": "-1"}, "Ensure this value is greater than or equal to 0."),
    ],
)
def test_add_form_errors_write_nothing(client, make_staff, changes, error):
    client.force_login(make_staff("olga", "add_order"))
    response = client.post(ADD, {**form_data("ADMIN-1"), **changes})
    assert response.status_code == 200
    assert error in response.content.decode().replace("&#x27;", "'")
    assert not Order.objects.exists()


@pytest.mark.django_db
def test_add_refuses_an_existing_order_id(client, make_staff):
    Order.objects.create(order_id="ADMIN-1", workflow_id="admin-1", address="1 Road")
    client.force_login(make_staff("olga", "add_order"))
    response = client.post(ADD, form_data("ADMIN-1"))
    assert response.status_code == 200
    assert ORDER_ID_EXISTS.format(order_id="ADMIN-1") in response.content.decode().replace("&#x27;", "'")
    assert Order.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("order_id", ["admin-1", "Admin-1"])
def test_add_refuses_an_id_that_differs_only_in_case_naming_the_existing_order(client, make_staff, order_id):
    """The form names the order that holds the id (it used to say "already exists" about an id
    that did not)."""
    Order.objects.create(order_id="ADMIN-1", workflow_id="admin-1", address="1 Road")
    client.force_login(make_staff("olga", "add_order"))
    response = client.post(ADD, form_data(order_id))
    assert response.status_code == 200
    page = response.content.decode().replace("&#x27;", "'")
    assert ORDER_ID_TAKEN.format(order_id=order_id, existing="ADMIN-1", workflow_id="admin-1") in page
    assert list(Order.objects.values_list("order_id", flat=True)) == ["ADMIN-1"]


@pytest.mark.django_db
def test_the_service_refuses_an_id_that_differs_only_in_case_with_a_code():
    """order_create, behind every entry point, past the form's check (a race): the database's
    unique index on LOWER(order_id) refuses it, and the error names the existing order."""
    from django.core.exceptions import ValidationError

    from orderweb.services import order_create

    Order.objects.create(order_id="ADMIN-1", workflow_id="admin-1-from-a-client", address="1 Road")
    with pytest.raises(ValidationError) as refused:
        order_create(order_id="admin-1", address="2 Road")
    assert (refused.value.code, refused.value.params) == ("order_id_taken", {"existing_order_id": "ADMIN-1"})
    assert refused.value.messages == [
        ORDER_ID_TAKEN.format(order_id="admin-1", existing="ADMIN-1", workflow_id="admin-1-from-a-client")
    ]
    with pytest.raises(ValidationError) as same:
        order_create(order_id="ADMIN-1", address="2 Road")
    assert same.value.code == "order_exists"
    assert Order.objects.count() == 1


@pytest.mark.django_db
def test_the_database_refuses_ids_that_differ_only_in_case():
    from django.db import IntegrityError, transaction

    Order.objects.create(order_id="RAW-1", workflow_id="raw-1-a", address="1 Road")
    with pytest.raises(IntegrityError, match="order_id_unique_ignoring_case"), transaction.atomic():
        Order.objects.create(order_id="raw-1", workflow_id="raw-1-b", address="1 Road")


@pytest.mark.django_db(transaction=True)
def test_add_when_temporal_is_unreachable_says_so(client, make_staff, settings):
    from devtools.supervise import free_port
    from orderweb.admin import ORDER_SAVED_NOT_STARTED

    settings.TEMPORAL_ADDRESS = f"127.0.0.1:{free_port()}"  # nothing listens there
    settings.TEMPORAL_RPC_TIMEOUT_SECONDS = 2
    client.force_login(make_staff("olga", "add_order"))
    response = client.post(ADD, form_data("ADMIN-OFFLINE"))
    order = Order.objects.get(order_id="ADMIN-OFFLINE")
    assert response["Location"] == reverse("admin:orderweb_order_change", args=[order.pk])
    assert messages_of(response) == [("error", ORDER_SAVED_NOT_STARTED.format(order_id="ADMIN-OFFLINE"))]
    assert order.status == Order.Status.STARTED
