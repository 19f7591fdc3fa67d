"""Outcome labels over the API (issue 21): POST /api/v1/orders/{id}/labels sets or removes one,
idempotently, with the ``label`` scope, on the order's timeline and as a webhook event."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from orderweb.api import errors
from orderweb.models import ApiIdempotencyKey, Order, OrderEvent, OrderLabel, WebhookDelivery
from orderweb.webhooks import webhook_body
from tests.orderweb.api.conftest import assert_problem

pytestmark = pytest.mark.django_db


@pytest.fixture
def labeller(make_api_client):
    return make_api_client("read", "label", name="payments-service")


@pytest.fixture
def order(db) -> Order:
    return Order.objects.create(order_id="LBL-1", workflow_id="lbl-1", address="1 Label Lane", status="completed")


def _post(client, body, order_id="LBL-1", **headers):
    return client.post(f"/orders/{order_id}/labels", body, headers=headers or None)


def test_a_label_is_set_once_with_who_and_from_where(labeller, order):
    response = _post(labeller, {"label": "chargeback", "note": "dispute opened", "source_reference": "CB-42"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["outcome"] == "added" and body["order_id"] == "LBL-1"
    assert [
        (label["label"], label["actor"], label["source"], label["source_reference"]) for label in body["labels"]
    ] == [("chargeback", "payments-service", "api", "CB-42")]
    again = _post(labeller, {"label": "chargeback", "note": "dispute opened", "source_reference": "CB-42"})
    assert again.status_code == 200 and again.json()["outcome"] == "already_set"
    assert OrderLabel.objects.filter(order=order).count() == 1
    event = OrderEvent.objects.get(order=order, type=OrderEvent.Type.LABEL_ADDED)
    assert (event.actor, event.source, event.details["label"], event.details["source_reference"]) == (
        "payments-service",
        "api",
        "chargeback",
        "CB-42",
    )
    assert event.message == "labelled chargeback (CB-42): dispute opened"


def test_remove_keeps_the_history_and_the_kind_can_be_set_again(labeller, order):
    _post(labeller, {"label": "fraud_confirmed"})
    removed = _post(labeller, {"label": "fraud_confirmed", "remove": True, "note": "customer proved it was them"})
    assert removed.status_code == 200 and removed.json()["outcome"] == "removed"
    assert removed.json()["labels"] == []
    [row] = removed.json()["history"]
    assert row["removed_by"] == "payments-service" and row["removed_at"]
    assert _post(labeller, {"label": "fraud_confirmed", "remove": True}).json()["outcome"] == "not_set"
    assert _post(labeller, {"label": "fraud_confirmed"}).status_code == 201
    assert OrderLabel.objects.filter(order=order).count() == 2
    assert OrderLabel.objects.filter(order=order, removed_at__isnull=True).count() == 1
    types = list(OrderEvent.objects.filter(order=order).values_list("type", flat=True))
    assert types == ["label_added", "label_removed", "label_added"]
    assert OrderEvent.objects.get(type="label_removed").details["removed_note"] == "customer proved it was them"


def test_the_database_holds_one_active_label_per_kind(order):
    OrderLabel.objects.create(order=order, label="chargeback", actor="a", source="admin")
    with pytest.raises(IntegrityError), transaction.atomic():
        OrderLabel.objects.create(order=order, label="chargeback", actor="b", source="api")
    OrderLabel.objects.create(order=order, label="genuine_confirmed", actor="b", source="api")  # another kind


def test_an_idempotency_key_replays_the_first_answer_and_refuses_another_request(labeller, order):
    first = _post(labeller, {"label": "chargeback"}, **{"Idempotency-Key": "lab-1"})
    _post(labeller, {"label": "chargeback", "remove": True})  # it changed meanwhile
    replay = _post(labeller, {"label": "chargeback"}, **{"Idempotency-Key": "lab-1"})
    assert (first.status_code, replay.status_code) == (201, 201)
    assert replay["Idempotent-Replayed"] == "true" and replay.json() == first.json()
    body = assert_problem(
        _post(labeller, {"label": "genuine_confirmed"}, **{"Idempotency-Key": "lab-1"}),
        409,
        errors.IDEMPOTENCY_KEY_REUSED,
    )
    assert body["details"]["differing_fields"] == ["label"]
    assert ApiIdempotencyKey.objects.count() == 1
    assert not OrderLabel.objects.filter(label="genuine_confirmed").exists()


def test_a_key_used_to_create_an_order_is_not_replayed_as_a_label(make_api_client, order):
    from tests.orderweb.api.conftest import order_payload

    client = make_api_client("create", "label")
    assert client.post("/orders", order_payload(), headers={"Idempotency-Key": "k"}).status_code == 201
    assert_problem(
        _post(client, {"label": "chargeback"}, **{"Idempotency-Key": "k"}), 409, errors.IDEMPOTENCY_KEY_REUSED
    )


def test_the_label_scope_is_needed(make_api_client, order):
    body = assert_problem(
        _post(make_api_client("read", "act", "create"), {"label": "chargeback"}), 403, errors.FORBIDDEN
    )
    assert body["details"]["required_scope"] == "label"
    assert not OrderLabel.objects.exists()


@pytest.mark.parametrize(
    "body,field",
    [
        ({"label": "stolen"}, "body.label"),
        ({"label": "chargeback", "colour": "red"}, "body.colour"),
        ({"label": "chargeback", "source_reference": "CB\n1"}, "body.source_reference"),
        ({"label": "chargeback", "note": "x" * 2001}, "body.note"),
        ({}, "body.label"),
    ],
)
def test_a_bad_request_is_422_naming_the_field(labeller, order, body, field):
    answer = assert_problem(_post(labeller, body), 422, errors.VALIDATION_FAILED)
    assert field in [e["field"] for e in answer["details"]["errors"]], answer
    assert not OrderLabel.objects.exists()


def test_an_unknown_order_is_404(labeller, db):
    assert_problem(_post(labeller, {"label": "chargeback"}, order_id="NOPE"), 404, errors.NOT_FOUND)


def test_each_change_sends_a_webhook_event(labeller, order, settings):
    settings.ORDER_WEBHOOK_URL = "http://127.0.0.1:9/hooks"
    _post(labeller, {"label": "chargeback", "source_reference": "CB-7"})
    _post(labeller, {"label": "chargeback"})  # standing: no second event
    _post(labeller, {"label": "chargeback", "remove": True})
    deliveries = list(WebhookDelivery.objects.select_related("event__order").order_by("pk"))
    bodies = [webhook_body(d.event) for d in deliveries]
    assert [b["type"] for b in bodies] == ["order.labelled", "order.label_removed"]
    assert bodies[0]["label"] == {"label": "chargeback", "note": "", "source_reference": "CB-7", "removed": False}
    assert bodies[1]["label"]["removed"] is True and bodies[0]["order_id"] == "LBL-1"
    assert all(d.workflow_started_at is None for d in deliveries)  # the workers' sweep starts them


def test_labels_show_in_the_orders_timeline(labeller, order):
    _post(labeller, {"label": "genuine_confirmed", "note": "called the customer"})
    timeline = labeller.get("/orders/LBL-1").json()["timeline"]
    assert [(t["type"], t["label"], t["actor"], t["source"]) for t in timeline] == [
        ("label_added", "Label set", "payments-service", "api")
    ]


@pytest.mark.django_db(transaction=True)
def test_two_clients_setting_the_same_label_at_once_make_one_label_and_one_event():
    """Committed transactions on two connections: the order's row lock makes the second wait, then
    find the first's label (without it, the unique constraint would answer one of them 500)."""
    import threading

    from django.db import connection

    from orderweb.labels import order_label_set

    order = Order.objects.create(order_id="LBL-RACE", workflow_id="lbl-race", address="1 Race Road")
    barrier = threading.Barrier(2)
    answers, errors_seen = [], []

    def set_label(name: str) -> None:
        try:
            barrier.wait(timeout=10)
            answers.append(order_label_set(order=order, label="chargeback", source="api", actor=name).changed)
        except Exception as err:  # noqa: BLE001 - the test reports any
            errors_seen.append(err)
        finally:
            connection.close()

    threads = [threading.Thread(target=set_label, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors_seen and sorted(answers) == [False, True]
    assert OrderLabel.objects.filter(order=order).count() == 1
    assert OrderEvent.objects.filter(order=order, type="label_added").count() == 1
