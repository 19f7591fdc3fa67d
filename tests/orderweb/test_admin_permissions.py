"""Each staff action needs its own permission, and its confirmation page comes before anything
happens. Nothing here reaches Temporal: a refused or unconfirmed request must not."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from orderweb.actions import (
    CANCEL_REASON_OTHER_NEEDS_TEXT,
    CANCEL_REASON_REQUIRED,
    CANCEL_REASON_TOO_LONG,
    NOT_DISPATCH_FAILED,
)
from orderweb.models import Order, OrderEvent, Payment
from temporal_app.contracts import (
    ADDRESS_CONTROL_CHARS,
    ADDRESS_EMPTY,
    ADDRESS_TOO_LONG,
    MAX_ADDRESS_LENGTH,
    RefusalCode,
    refusal,
)
from tests.orderweb.conftest import messages_of

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:orderweb_order_changelist")
ACTIONS = {
    "cancel_selected": "cancel_order",
    "cancel_and_refund_selected": "cancel_order",
    "retry_shipping_selected": "retry_shipping",
}
VIEWS = {"cancel": "cancel_order", "address": "change_order_address", "retry_shipping": "retry_shipping"}


@pytest.fixture
def order() -> Order:
    return Order.objects.create(
        order_id="PERM-1",
        workflow_id="perm-1",
        address="1 Perm Road",
        amount=Decimal("25.00"),
        status=Order.Status.AWAITING_MANUAL_REVIEW,
    )


def action_choices(client) -> set[str]:
    html = client.get(CHANGELIST).content.decode()
    return {name for name in ACTIONS if f'value="{name}"' in html}


@pytest.mark.parametrize("action,perm", ACTIONS.items())
def test_list_action_needs_its_permission(client, make_staff, order, action, perm):
    client.force_login(make_staff("without", *(p for p in ACTIONS.values() if p != perm)))
    assert action not in action_choices(client)
    response = client.post(CHANGELIST, {"action": action, "_selected_action": [order.pk], "index": 0})
    assert response.status_code == 302
    assert ("warning", "No action selected.") in messages_of(response)
    # Even a forged confirmation is not run.
    client.post(
        CHANGELIST,
        {
            "action": action,
            "_selected_action": [order.pk],
            "post": "yes",
            "reason": "x",
            "reason_code": "customer_request",
        },
    )
    assert not OrderEvent.objects.filter(order=order).exists()

    client.force_login(make_staff("with", perm))
    assert action in action_choices(client)
    response = client.post(CHANGELIST, {"action": action, "_selected_action": [order.pk], "index": 0})
    assert response.status_code == 200  # the confirmation page, nothing done yet
    assert "PERM-1" in response.content.decode()
    assert not OrderEvent.objects.filter(order=order).exists()


@pytest.mark.parametrize("view,perm", VIEWS.items())
def test_order_action_page_needs_its_permission(client, make_staff, order, view, perm):
    url = reverse(f"admin:orderweb_order_{view}", args=[order.pk])
    client.force_login(make_staff("without", *(p for p in VIEWS.values() if p != perm)))
    assert client.get(url).status_code == 403
    assert (
        client.post(url, {"reason": "x", "reason_code": "customer_request", "address": "2 Other Road"}).status_code
        == 403
    )
    assert not OrderEvent.objects.filter(order=order).exists()

    client.force_login(make_staff("with", perm))
    assert client.get(url).status_code == 200


def test_action_pages_need_staff_login(client, order):
    url = reverse("admin:orderweb_order_cancel", args=[order.pk])
    response = client.post(url, {"reason": "x"})
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_cancel_selection_confirmation_lists_orders_refunds_and_asks_a_reason(client, make_staff, order):
    other = Order.objects.create(
        order_id="PERM-2", workflow_id="perm-2", address="2 Perm Road", status=Order.Status.SHIPPING
    )
    done = Order.objects.create(
        order_id="PERM-3",
        workflow_id="perm-3",
        address="3 Perm Road",
        status=Order.Status.CANCELLED,
        cancel_reason="earlier",
    )
    Payment.objects.create(
        order=other, kind="charge", status="succeeded", amount=Decimal("5.00"), idempotency_key="order:PERM-2:charge"
    )
    client.force_login(make_staff("canceller", "cancel_order"))
    selection = [order.pk, other.pk, done.pk]
    response = client.post(CHANGELIST, {"action": "cancel_selected", "_selected_action": selection, "index": 0})
    html = response.content.decode()
    assert response.status_code == 200
    assert "these 3 orders" in html
    assert "Cancel, then refund the payment" in html  # PERM-2 was charged
    assert "Already cancelled: will be refused" in html
    assert 'name="reason"' in html and 'name="post" value="yes"' in html and "csrfmiddlewaretoken" in html
    for pk in selection:
        assert f'name="_selected_action" value="{pk}"' in html

    assert 'name="reason_code"' in html
    # Confirming without a reason shows the page again with the error; nothing is recorded.
    response = client.post(
        CHANGELIST, {"action": "cancel_selected", "_selected_action": selection, "post": "yes", "reason": "  "}
    )
    assert response.status_code == 200
    assert "Choose a reason." in response.content.decode()
    response = client.post(
        CHANGELIST,
        {
            "action": "cancel_selected",
            "_selected_action": selection,
            "post": "yes",
            "reason": "  ",
            "reason_code": "other",
        },
    )
    assert CANCEL_REASON_OTHER_NEEDS_TEXT in response.content.decode()
    response = client.post(
        CHANGELIST,
        {
            "action": "cancel_selected",
            "_selected_action": selection,
            "post": "yes",
            "reason": "x" * 501,
            "reason_code": "other",
        },
    )
    assert "Ensure this value has at most 500 characters" in response.content.decode()
    assert not OrderEvent.objects.exists()


def test_cancel_reason_rules(client, make_staff, order):
    from django.core.exceptions import ValidationError

    from orderweb.forms import CancelForm

    assert CancelForm({"reason": "why"}).errors["reason_code"] == ["Choose a reason."]
    assert CancelForm({"reason": " ", "reason_code": "other"}).errors["reason"] == [CANCEL_REASON_OTHER_NEEDS_TEXT]
    assert CancelForm({"reason": "a\x07b", "reason_code": "other"}).errors["reason"] == [
        "The reason contains control characters."
    ]
    assert CancelForm({"reason": "line one\r\nline two", "reason_code": "other"}).is_valid()
    # Without words of their own, the code's label is the reason recorded.
    form = CancelForm({"reason": "", "reason_code": "out_of_stock"})
    assert form.is_valid() and form.cleaned_data["reason"] == "Out of stock"
    # The service checks the code too, for callers that skip the form.
    from orderweb.actions import validate_cancel_reason_code

    with pytest.raises(ValidationError) as err:
        validate_cancel_reason_code("bogus")
    assert err.value.code == "reason_code_unknown"
    with pytest.raises(ValidationError) as err:
        validate_cancel_reason_code("other", "Other")
    assert err.value.messages == [CANCEL_REASON_OTHER_NEEDS_TEXT]
    assert validate_cancel_reason_code("") == ""  # a client that sends no code

    from orderweb.actions import validate_cancel_reason

    with pytest.raises(ValidationError) as err:
        validate_cancel_reason("")
    assert err.value.messages == [CANCEL_REASON_REQUIRED]
    with pytest.raises(ValidationError) as err:
        validate_cancel_reason("x" * 501)
    assert err.value.messages == [CANCEL_REASON_TOO_LONG]


def test_single_cancel_page_is_a_confirmation(client, make_staff, order):
    client.force_login(make_staff("canceller", "cancel_order"))
    url = reverse("admin:orderweb_order_cancel", args=[order.pk])
    html = client.get(url).content.decode()
    assert "Are you sure you want to cancel this order?" in html
    assert 'name="_selected_action"' not in html  # posts to its own page
    response = client.post(url, {"reason": ""})
    assert response.status_code == 200 and "Choose a reason." in response.content.decode()
    assert not OrderEvent.objects.exists()


@pytest.mark.parametrize(
    "address,error",
    [
        ("", "This field is required."),
        ("   \n  ", ADDRESS_EMPTY),
        ("x" * (MAX_ADDRESS_LENGTH + 1), ADDRESS_TOO_LONG.format(max=MAX_ADDRESS_LENGTH)),
        ("1 Road\x00City", "Null characters are not allowed."),  # Django refuses NUL first
        ("1 Road\x1b[31mCity", ADDRESS_CONTROL_CHARS),
    ],
)
def test_address_form_rejects_bad_addresses_before_asking_the_workflow(client, make_staff, order, address, error):
    client.force_login(make_staff("clerk", "change_order_address"))
    url = reverse("admin:orderweb_order_address", args=[order.pk])
    page = client.get(url).content.decode()
    assert "1 Perm Road" in page and 'name="address"' in page
    response = client.post(url, {"address": address})
    assert response.status_code == 200
    assert error in response.content.decode().replace("&#x27;", "'")
    assert not OrderEvent.objects.exists()
    order.refresh_from_db()
    assert order.address == "1 Perm Road"


def test_address_page_says_too_late_after_dispatch(client, make_staff, order):
    Order.objects.filter(pk=order.pk).update(status=Order.Status.COMPLETED)
    client.force_login(make_staff("clerk", "change_order_address"))
    html = client.get(reverse("admin:orderweb_order_address", args=[order.pk])).content.decode()
    assert 'id="address-too-late"' in html
    assert refusal(RefusalCode.ADDRESS_TOO_LATE).message.replace("'", "&#x27;") in html
    assert 'value="Change the address" disabled' in html


def test_cancel_and_refund_leaves_orders_that_did_not_fail_dispatch(client, make_staff, order):
    client.force_login(make_staff("canceller", "cancel_order"))
    response = client.post(
        CHANGELIST,
        {
            "action": "cancel_and_refund_selected",
            "_selected_action": [order.pk],
            "post": "yes",
            "reason": "carrier cannot deliver",
            "reason_code": "undeliverable_address",
        },
    )
    assert response.status_code == 302
    assert messages_of(response) == [("error", NOT_DISPATCH_FAILED.format(order_id="PERM-1"))]
    assert not OrderEvent.objects.exists()
