"""Fixtures for the staff admin: staff users with chosen permissions, and orders run by real
workflows (with the `system` fixture)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages

from orderweb.models import Order
from orderweb.services import order_create
from temporal_app.contracts import LineItem
from tests.helpers import handle, new_order_id, temporal, wait_for_state, wait_until

PASSWORD = "staff-Password-123"


@pytest.fixture
def make_staff(django_user_model) -> Callable[..., object]:
    """make_staff("alice", "cancel_order") -> a staff user who may view orders and do that."""

    def make(username: str = "staff", *codenames: str):
        user = django_user_model.objects.create_user(username, password=PASSWORD, is_staff=True)
        user.user_permissions.set(
            Permission.objects.filter(content_type__app_label="orderweb", codename__in=["view_order", *codenames])
        )
        return django_user_model.objects.get(pk=user.pk)  # fresh permission cache

    return make


def messages_of(response) -> list[tuple[str, str]]:
    """The messages a person would see on the next page; reading them consumes them, as that
    page would (they travel in a cookie between requests)."""
    told = [(m.level_tag, m.message) for m in get_messages(response.wsgi_request)]
    response.client.cookies.pop("messages", None)
    return told


def place_order(state: str = "awaiting_manual_review", **kwargs) -> Order:
    """An order created by the service and run by its real workflow up to ``state``."""
    order = order_create(
        order_id=kwargs.pop("order_id", new_order_id()),
        address=kwargs.pop("address", "1 Test Way\nSpringfield"),
        line_items=kwargs.pop("line_items", [LineItem("SKU-1", "Widget", 2, "12.50")]),
        **kwargs,
    )
    wait_for_state(order.workflow_id, state)
    wait_until(lambda: Order.objects.filter(pk=order.pk, status=state).exists(), what=f"projection {state}")
    order.refresh_from_db()
    return order


def approve(order: Order) -> None:
    h = handle(order.workflow_id)
    temporal(lambda c: h.signal("CompleteManualReview"))


def finish(order: Order):
    h = handle(order.workflow_id)
    return temporal(lambda c: h.result())
