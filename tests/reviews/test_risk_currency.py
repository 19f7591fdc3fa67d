"""Issue 19, item 7: risk rules compare amounts within one currency. The shop's percentile and
the customer's usual amount are taken over orders in the order's own currency, so JPY orders do
not move what a USD order is held against."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from orderweb import activities as order_activities
from orderweb.models import Order
from reviews.activities import order_validated
from reviews.models import RiskAssessment
from temporal_app.contracts import LineItem, OrderOptions, ReceiveOrderInput, ValidateOrderInput

pytestmark = pytest.mark.django_db(transaction=True)


def _old(i: int, *, amount: str, currency: str, email: str, address: str) -> None:
    order = Order.objects.create(
        order_id=f"CUR-{i}",
        workflow_id=f"cur-{i}",
        address=address,
        customer="Ken",
        customer_email=email,
        amount=Decimal(amount),
        currency=currency,
        status="completed",
    )
    Order.objects.filter(pk=order.pk).update(created_at=timezone.now() - timedelta(days=3))


def _rules(order_id: str, *, amount: str, currency: str, email: str) -> set[str]:
    order_activities.order_received(
        ReceiveOrderInput(
            order_id,
            order_id.lower(),
            "5 Yen Street\nOsaka",
            OrderOptions(
                amount=amount,
                customer="Ken",
                customer_email=email,
                currency=currency,
                line_items=[LineItem("SKU-1", "Thing", 1, amount)],
            ),
        )
    )
    order_validated(ValidateOrderInput(order_id, 1_900_000_000.0))
    return {reason["rule"] for reason in RiskAssessment.objects.get(order__order_id=order_id).reasons}


def test_a_customers_usual_amount_is_taken_in_the_orders_currency(settings):
    settings.REVIEW_POLICY = "all"
    # Ken usually pays 40 USD, and has paid in yen too: 6,000 JPY a time.
    for i in range(3):
        _old(i, amount="40.00", currency="USD", email="ken@example.com", address=f"{i} Elsewhere")
    for i in range(3, 9):
        _old(i, amount="6000.00", currency="JPY", email="ken@example.com", address=f"{i} Elsewhere")
    # 400 USD is ten times his usual in dollars; against a median over both currencies (6,000) it
    # looked small, and the rule stayed quiet.
    assert "amount_over_usual" in _rules("CUR-USD-1", amount="400.00", currency="USD", email="ken@example.com")
    # In yen, 7,000 is his usual: nothing to flag (the dollar orders do not drag the median down).
    assert "amount_over_usual" not in _rules("CUR-JPY-1", amount="7000.00", currency="JPY", email="ken@example.com")


def test_the_shops_percentile_is_taken_in_the_orders_currency(settings):
    settings.REVIEW_POLICY = "all"
    for i in range(25):
        _old(100 + i, amount="50.00", currency="USD", email=f"u{i}@example.com", address=f"{i} Dollar Road")
        _old(200 + i, amount="20000.00", currency="JPY", email=f"j{i}@example.com", address=f"{i} Yen Road")
    # 300 USD is far above the shop's dollar orders (50 each); with the yen orders in the sample
    # the 95th percentile was 20,000 and the order passed unflagged.
    assert "amount_over_shop" in _rules("CUR-USD-2", amount="300.00", currency="USD", email="new1@example.com")
    assert "amount_over_shop" not in _rules("CUR-JPY-2", amount="15000.00", currency="JPY", email="new2@example.com")
