"""Prometheus (issue 21): review decisions by outcome, outcome labels by kind, read from Postgres
at scrape time."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone

from orderweb.models import OrderLabel
from reviews.models import ReviewTask
from tests.orderweb.test_operations import _metric
from tests.reviews.conftest import make_waiting_order

pytestmark = pytest.mark.django_db


def _scrape(settings) -> str:
    settings.METRICS_TOKEN = "tok"
    return Client(HTTP_AUTHORIZATION="Bearer tok").get("/metrics").content.decode()


def _close(status: str, by: str = ""):
    order = make_waiting_order()
    ReviewTask.objects.filter(order=order).update(status=status, decided_at=timezone.now(), decided_by_name=by)
    return order


def test_decisions_by_outcome_and_labels_by_kind(settings):
    before = _scrape(settings)
    for status, by in [
        ("approved", "alice"),
        ("approved", "bob"),
        ("rejected", "alice"),
        ("expired", ""),
        ("approved", "policy"),
        ("cancelled", ""),
        ("stopped", ""),
    ]:
        order = _close(status, by)
    make_waiting_order()  # open: not a decision
    OrderLabel.objects.create(order=order, label="chargeback", actor="a", source="api")
    OrderLabel.objects.create(
        order=order, label="fraud_confirmed", actor="a", source="api", removed_at=timezone.now(), removed_by="b"
    )
    after = _scrape(settings)

    def moved(name: str) -> float:
        return _metric(after, name) - _metric(before, name)

    assert "# TYPE orderweb_review_decisions_total counter" in after
    assert "# TYPE orderweb_order_labels_total counter" in after
    assert moved('orderweb_review_decisions_total{outcome="approved"}') == 2
    assert moved('orderweb_review_decisions_total{outcome="approved_by_policy"}') == 1
    assert moved('orderweb_review_decisions_total{outcome="rejected"}') == 1
    assert moved('orderweb_review_decisions_total{outcome="expired"}') == 1
    assert moved('orderweb_review_decisions_total{outcome="cancelled"}') == 1
    assert moved('orderweb_review_decisions_total{outcome="stopped"}') == 1
    assert moved('orderweb_order_labels_total{label="chargeback"}') == 1
    assert moved('orderweb_order_labels_total{label="fraud_confirmed"}') == 1  # set once, removed since
    assert moved('orderweb_order_labels_standing{label="fraud_confirmed"}') == 0
    assert moved('orderweb_order_labels_standing{label="chargeback"}') == 1
    assert _metric(after, 'orderweb_order_labels_total{label="genuine_confirmed"}') == 0
    assert _metric(after, "orderweb_business_metrics_up") == 1
