"""Risk assessment (reviews/risk.py): each rule on its own, the facts from Postgres in at most
two queries, the stored assessment, and what order_validated answers under each policy."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orderweb import activities as order_activities
from orderweb.models import Order, OrderEvent
from reviews import risk
from reviews.activities import order_validated
from reviews.models import ReviewTask, RiskAssessment
from reviews.risk import RiskFacts, RiskThresholds
from temporal_app.contracts import LineItem, OrderOptions, ReceiveOrderInput, ValidateOrderInput

T = RiskThresholds()
KNOWN = RiskFacts(
    amount=Decimal("40.00"),
    customer="ada@example.com",
    address="1 Main St\nSpringfield",
    customer_orders=4,
    customer_orders_in_currency=4,
    customer_median=Decimal("40.00"),
    shop_percentile=Decimal("300.00"),
    shop_sample=500,
    lines=1,
    items=1,
    max_quantity=1,
    max_quantity_sku="SKU-1",
)


def test_an_ordinary_order_of_a_known_customer_matches_no_rule():
    result = risk.risk_evaluate(KNOWN, T)
    assert (result.score, result.level, result.reasons) == (0, "low", [])


# -- one test per rule: it fires with its figures, and it stays quiet just below its threshold --


def test_rule_unknown_customer():
    found = risk.rule_unknown_customer(replace(KNOWN, customer=""), T)
    assert found.rule == "unknown_customer" and found.points == 30
    assert risk.rule_unknown_customer(KNOWN, T) is None


def test_rule_first_order():
    found = risk.rule_first_order(replace(KNOWN, customer_orders=0), T)
    assert found.text == "First order from ada@example.com." and found.figures == {"earlier_orders": 0}
    assert risk.rule_first_order(KNOWN, T) is None
    assert risk.rule_first_order(replace(KNOWN, customer="", customer_orders=0), T) is None  # unknown instead


def test_rule_amount_over_usual():
    found = risk.rule_amount_over_usual(replace(KNOWN, amount=Decimal("120.00")), T)
    assert found.figures == {"amount": "120.00", "usual": "40.00", "ratio": 3.0, "earlier_orders": 4, "factor": 3.0}
    assert "3.0× this customer's usual 40.00" in found.text
    assert risk.rule_amount_over_usual(replace(KNOWN, amount=Decimal("119.99")), T) is None
    # Too few earlier orders to know what is usual.
    assert risk.rule_amount_over_usual(replace(KNOWN, amount=Decimal("500"), customer_orders_in_currency=1), T) is None


def test_rule_amount_over_shop():
    found = risk.rule_amount_over_shop(replace(KNOWN, amount=Decimal("300.01")), T)
    assert found.figures == {"amount": "300.01", "percentile": 0.95, "limit": "300.00", "sample": 500}
    assert "above the shop's 95th percentile of 300.00 (latest 500 orders in USD)" in found.text
    assert risk.rule_amount_over_shop(replace(KNOWN, amount=Decimal("300.00")), T) is None
    # A young shop: too few orders for a percentile to mean anything.
    assert risk.rule_amount_over_shop(replace(KNOWN, amount=Decimal("999"), shop_sample=19), T) is None


def test_rule_address_velocity():
    found = risk.rule_address_velocity(replace(KNOWN, address_recent=2), T)
    assert found.figures == {"orders": 3, "window_hours": 24, "threshold": 3}
    assert found.text == "3 orders to this address within 24 h (flagged from 3)."
    assert risk.rule_address_velocity(replace(KNOWN, address_recent=1), T) is None


def test_rule_customer_velocity():
    found = risk.rule_customer_velocity(replace(KNOWN, customer_recent=3), T)
    assert found.figures["orders"] == 4 and found.points == 25
    assert risk.rule_customer_velocity(replace(KNOWN, customer_recent=1), T) is None
    assert risk.rule_customer_velocity(replace(KNOWN, customer="", customer_recent=9), T) is None


def test_rule_address_changed():
    assert risk.rule_address_changed(replace(KNOWN, address_changes=2), T).text == (
        "The shipping address changed 2 times after the order was placed."
    )
    assert risk.rule_address_changed(KNOWN, T) is None


def test_rule_country_mismatch_only_when_both_countries_are_known():
    shipped = replace(KNOWN, address="Hauptstr. 1\n10115 Berlin\nGermany", billing_address="1 Rue X\nParis, France")
    found = risk.rule_country_mismatch(shipped, T)
    assert found.figures == {"shipping": "DE", "billing": "FR"} and found.text == "Ships to DE, billed in FR."
    assert risk.rule_country_mismatch(replace(shipped, billing_address="Karl-Marx-Allee 2\nBerlin, Germany"), T) is None
    assert risk.rule_country_mismatch(replace(shipped, billing_address=""), T) is None
    # A US state code is not a country: "CA" stays unknown.
    assert risk.address_country("1 Main St\nLos Angeles, CA") == ""
    assert risk.address_country("1 Main St\nToronto ON\nCanada") == "CA"


def test_rule_po_box():
    found = risk.rule_po_box(replace(KNOWN, address="P.O. Box 1234\nSpringfield"), T)
    assert found.figures == {"match": "P.O. Box"}
    assert risk.rule_po_box(replace(KNOWN, address="Packstation 105\nBerlin"), T) is not None
    assert risk.rule_po_box(replace(KNOWN, address="12 Boxwood Lane\nSpringfield"), T) is None


def test_rule_forwarding_service():
    found = risk.rule_forwarding_service(replace(KNOWN, address="Shipito Suite 9921\n1 Warehouse Rd"), T)
    assert found.points == 30 and found.figures == {"match": "Shipito"}
    assert risk.rule_forwarding_service(replace(KNOWN, address="c/o Parcel Forwarding Ltd\nDover"), T) is not None
    assert risk.rule_forwarding_service(KNOWN, T) is None


def test_rule_quantity_spike():
    found = risk.rule_quantity_spike(replace(KNOWN, max_quantity=10, max_quantity_sku="GPU-9"), T)
    assert found.text == "10 units of GPU-9 in one order (flagged from 10)."
    assert risk.rule_quantity_spike(replace(KNOWN, max_quantity=9), T) is None


def test_score_is_the_sum_capped_at_100_and_the_level_follows_the_thresholds():
    medium = risk.risk_evaluate(replace(KNOWN, customer_orders=0, address_recent=2), T)  # 15 + 25
    assert (medium.score, medium.level) == (40, "medium")
    assert [r.rule for r in medium.reasons] == ["address_velocity", "first_order"]  # heaviest first
    everything = replace(
        KNOWN,
        customer="",
        address="Shipito, P.O. Box 1\nGermany",
        billing_address="France",
        address_recent=5,
        address_changes=1,
        max_quantity=50,
        amount=Decimal("9999"),
    )
    assert risk.risk_evaluate(everything, T).score == 100
    assert risk.risk_evaluate(everything, T).level == "high"
    assert risk.risk_level(29, T) == "low" and risk.risk_level(30, T) == "medium" and risk.risk_level(60, T) == "high"


# -- the facts from Postgres, and the activity ----------------------------------------------------

pytestmark_db = pytest.mark.django_db(transaction=True)


def _received(
    order_id: str,
    *,
    address: str = "9 Elm Street\nSpringfield",
    amount: str = "40.00",
    email: str = "ada@example.com",
    customer: str = "Ada",
    lines=None,
    **options,
) -> Order:
    lines = lines or [LineItem("SKU-1", "Thing", 1, amount)]
    order_activities.order_received(
        ReceiveOrderInput(
            order_id,
            order_id.lower(),
            address,
            OrderOptions(amount=amount, customer=customer, customer_email=email, line_items=lines, **options),
        )
    )
    return Order.objects.get(order_id=order_id)


def _history(
    n: int,
    *,
    email="ada@example.com",
    address="9 Elm Street\nSpringfield",
    amount="40.00",
    age=timedelta(days=10),
    start=0,
) -> None:
    for i in range(start, start + n):
        order = Order.objects.create(
            order_id=f"OLD-{i}",
            workflow_id=f"old-{i}",
            address=address,
            customer="Ada",
            customer_email=email,
            amount=Decimal(amount),
            status="completed",
        )
        Order.objects.filter(pk=order.pk).update(created_at=timezone.now() - age)


@pytestmark_db
def test_facts_come_from_postgres_in_two_queries():
    _history(4, email="ADA@example.com")  # the email matches whatever its case
    _history(1, email="someone@else.com", address="9 ELM STREET\nSPRINGFIELD", age=timedelta(hours=2), start=10)
    _history(25, email="x@y.z", address="elsewhere", amount="100.00", age=timedelta(days=1), start=20)
    order = _received("NEW-1", amount="130.00", lines=[LineItem("A", "a", 12, "10.00"), LineItem("B", "b", 1, "10.00")])
    OrderEvent.objects.create(
        order=order,
        type="signal_applied",
        source="signal",
        details={"signal": "UpdateAddress", "old_address": "x", "new_address": "y"},
    )
    with CaptureQueriesContext(connection) as queries:
        facts, stored, _ = risk.risk_facts_gather(order_pk=order.pk, thresholds=T)
    assert len(queries.captured_queries) == 2, [q["sql"] for q in queries.captured_queries]
    assert stored is None
    assert (facts.lines, facts.items, facts.max_quantity, facts.max_quantity_sku) == (2, 13, 12, "A")
    assert facts.address_changes == 1
    assert (facts.customer, facts.customer_orders, facts.customer_median) == ("ada@example.com", 4, Decimal("40.00"))
    assert facts.customer_recent == 0  # all four are ten days old
    assert facts.address_recent == 1  # the other customer's order to the same address, 2 h ago
    assert facts.shop_sample == 30 and facts.shop_percentile == Decimal("100.00")
    found = {r.rule for r in risk.risk_evaluate(facts, T).reasons}
    assert found == {"amount_over_usual", "amount_over_shop", "address_changed", "quantity_spike"}


@pytestmark_db
def test_history_reads_the_latest_orders_of_a_customer_and_an_address_only():
    """A name shared by thousands of orders must cost no more than a new one: the facts come
    from the latest ``history_sample`` earlier orders of the customer and of the address."""
    _history(3, amount="10.00", age=timedelta(days=30))  # the oldest: left out of the sample
    _history(2, amount="50.00", age=timedelta(days=2), start=10)
    _history(1, email="other@example.com", amount="70.00", age=timedelta(hours=1), start=20)  # same address
    order = _received("CAP-1", amount="60.00")
    capped = RiskThresholds(history_sample=3)
    facts, _, _ = risk.risk_facts_gather(order_pk=order.pk, thresholds=capped)
    # The customer's latest 3: 50, 50 and one of the 10s (the address's latest 3 add no more of hers).
    assert (facts.customer_orders, facts.customer_median) == (3, Decimal("50.00"))
    assert facts.address_recent == 1  # the other customer's order an hour ago, to the same address
    facts, _, _ = risk.risk_facts_gather(order_pk=order.pk, thresholds=T)
    assert (facts.customer_orders, facts.customer_median) == (5, Decimal("10.00"))


@pytestmark_db
def test_order_validated_stores_the_assessment_on_the_order_and_the_task(settings):
    settings.REVIEW_POLICY = "all"
    order = _received("NEW-2", email="", customer="")  # nothing to know the customer by
    answer = order_validated(ValidateOrderInput(order.order_id, 1_900_000_000.0))
    assert answer.approved_by_policy == ""  # REVIEW_POLICY=all: a person decides, always
    assessment = RiskAssessment.objects.get(order=order)
    assert (assessment.score, assessment.level) == (30, "medium")
    assert assessment.reasons[0]["rule"] == "unknown_customer" and assessment.reasons[0]["points"] == 30
    task = ReviewTask.objects.get(order=order)
    assert (task.risk_score, task.risk_level, task.amount) == (30, "medium", Decimal("40.00"))
    # A retry (the worker died after the commit) finds the same assessment and answers the same.
    _history(3, email="", address="9 Elm Street\nSpringfield", age=timedelta(hours=1))
    again = order_validated(ValidateOrderInput(order.order_id, 1_900_000_000.0))
    assert again == answer and RiskAssessment.objects.filter(order=order).count() == 1
    assert RiskAssessment.objects.get(order=order).score == 30


@pytestmark_db
def test_review_policy_risky_passes_low_scores_and_names_the_rule(settings):
    settings.REVIEW_POLICY = "risky"
    settings.REVIEW_POLICY_THRESHOLD = 30
    _history(3)
    low = _received("LOW-1")
    answer = order_validated(ValidateOrderInput(low.order_id, 1_900_000_000.0))
    assert answer.approved_by_policy == "REVIEW_POLICY=risky: risk score 0 < 30 (no risk rule matched)"
    first = _received("FIRST-1", email="new@example.com", address="1 New Road\nSpringfield")
    assert order_validated(ValidateOrderInput(first.order_id, 1_900_000_000.0)).approved_by_policy == (
        "REVIEW_POLICY=risky: risk score 15 < 30 (first_order +15)"
    )
    risky = _received("PO-1", email="new2@example.com", address="P.O. Box 9\nSpringfield")
    assert order_validated(ValidateOrderInput(risky.order_id, 1_900_000_000.0)).approved_by_policy == ""  # 15 + 15


@pytestmark_db
def test_order_validated_query_count_is_pinned(settings):
    """The activity runs once per order on the hot path (issue 14 cuts SQL per order): this fails
    when anyone adds a query to it (fewer is welcome). The move to review with its event and the
    task's insert (2, tests/temporal_app/test_costs.py), + 2 for the rules + 1 to store the
    assessment."""
    settings.REVIEW_POLICY = "all"
    _history(5)
    order = _received("COUNT-1")
    with CaptureQueriesContext(connection) as queries:
        order_validated.__wrapped__(ValidateOrderInput(order.order_id, 1_900_000_000.0))
    sql = [q["sql"] for q in queries.captured_queries if q["sql"] not in ("BEGIN", "COMMIT")]
    assert len(sql) <= 5, "\n".join(s[:150] for s in sql)
    assert sum("reviews_riskassessment" in s for s in sql) == 2  # the look-up inside query 1, the INSERT
