"""POST/GET /api/v1/orders and GET /api/v1/orders/{id}, authentication, scopes, rate limits and
every error, against the real database. The test's transaction never commits, so no workflow
starts here (tests/orderweb/api/test_workflows.py runs them for real)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orderweb.api import errors
from orderweb.api.keys import api_key_revoke
from orderweb.models import ApiIdempotencyKey, ApiKey, ApiOrderRequest, Order, OrderEvent
from temporal_app.contracts import ADDRESS_CONTROL_CHARS, CLIENT_IP_INVALID, EMAIL_INVALID
from tests.orderweb.api.conftest import ApiClient, assert_problem, order_payload

pytestmark = pytest.mark.django_db


# -- creating ---------------------------------------------------------------------------------------


def test_create_saves_the_whole_order_through_order_create(api_client):
    payload = order_payload()
    response = api_client.post("/orders", payload)
    assert response.status_code == 201, response.content
    body = response.json()
    order = Order.objects.get(order_id=payload["order_id"])
    assert (order.source, order.status, order.amount, order.currency) == ("api", "started", Decimal("25.00"), "EUR")
    assert (order.customer, order.customer_email) == ("Ada Lovelace", "ada@example.com")
    assert order.address == "1 Main St\nSpringfield" and order.billing_address == "2 Bill Rd\nSpringfield"
    assert (order.client_ip, order.user_agent) == ("203.0.113.7", "shop/1.0")
    assert sorted(order.lines.values_list("sku", "quantity", "unit_price")) == [
        ("SKU-1", 2, Decimal("12.25")),
        ("SKU-2", 1, Decimal("0.50")),
    ]
    created = OrderEvent.objects.get(order=order)
    assert (created.type, created.actor, created.source, created.user) == (
        "order_created",
        "shop-frontend",
        "api",
        None,
    )
    assert ApiOrderRequest.objects.get(order=order).api_key.name == "shop-frontend"
    # The answer: amounts as strings with the currency, the timeline with its labels.
    assert body["total"] == "25.00" and body["currency"] == "EUR"
    assert body["line_items"][0] == {
        "sku": "SKU-1",
        "name": "Widget",
        "quantity": 2,
        "unit_price": "12.25",
        "line_total": "24.50",
    }
    assert [(e["type"], e["label"], e["actor"]) for e in body["timeline"]] == [
        ("order_created", "Order created", "shop-frontend")
    ]
    assert body["warnings"] == [] and body["review"] is None and body["tracking_number"] is None


def _no_floats(value) -> None:
    assert not isinstance(value, float), value
    if isinstance(value, dict):
        for item in value.values():
            _no_floats(item)
    if isinstance(value, list):
        for item in value:
            _no_floats(item)


def test_no_float_anywhere_in_an_answer(api_client):
    """Checked on real answers (an error's {code, message, details} has no number at all)."""
    payload = order_payload()
    created = api_client.post("/orders", payload)
    detail = api_client.get(f"/orders/{payload['order_id']}")
    listed = api_client.get("/orders")
    assert (created.status_code, detail.status_code, listed.status_code) == (201, 200, 200)
    for body in (created.json(), detail.json()):
        assert (body["order_id"], body["total"], body["line_items"][1]["unit_price"]) == (
            payload["order_id"],
            "25.00",
            "0.50",
        )
        _no_floats(body)
    assert [item["order_id"] for item in listed.json()["items"]] == [payload["order_id"]]
    _no_floats(listed.json())


@pytest.mark.parametrize(
    "change",
    [
        {"total": 25.0},
        {"total": 25},
        {"line_items": [{"sku": "SKU-1", "quantity": 2.0, "unit_price": "12.50"}]},
        {"line_items": [{"sku": "SKU-1", "quantity": 2, "unit_price": 12.5}]},
    ],
)
def test_numbers_for_money_or_float_quantities_are_refused(api_client, change):
    body = assert_problem(api_client.post("/orders", order_payload(**change)), 422, errors.VALIDATION_FAILED)
    assert body["details"]["errors"][0]["field"].startswith(("body.total", "body.line_items.0."))
    assert not Order.objects.exists()


def test_the_same_order_again_answers_the_existing_one(api_client):
    payload = order_payload()
    first = api_client.post("/orders", payload)
    again = api_client.post("/orders", payload)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["order_id"] == payload["order_id"]
    assert Order.objects.count() == 1 and OrderEvent.objects.count() == 1


def test_the_same_order_from_another_client_is_still_one_order(api_client, make_api_client):
    payload = order_payload()
    assert api_client.post("/orders", payload).status_code == 201
    assert make_api_client("create").post("/orders", payload).status_code == 200
    assert Order.objects.count() == 1


def test_the_same_id_with_another_payload_is_a_conflict_naming_the_fields(api_client):
    payload = order_payload()
    api_client.post("/orders", payload)
    changed = {
        **payload,
        "shipping_address": "9 Elsewhere",
        "currency": "USD",
        "customer": {**payload["customer"], "email": "other@example.com"},
    }
    body = assert_problem(api_client.post("/orders", changed), 409, errors.ORDER_CONFLICT)
    assert body["details"]["differing_fields"] == ["currency", "customer.email", "shipping_address"]
    assert "currency, customer.email, shipping_address" in body["message"]
    assert Order.objects.get().currency == "EUR"


def test_an_equivalent_payload_is_the_same_order(api_client):
    """What the rules normalise (blank lines and spaces in an address) is the same order."""
    payload = order_payload()
    api_client.post("/orders", payload)
    same = {
        **payload,
        "shipping_address": "  1 Main St \n\n Springfield ",
        "billing_address": "2 Bill Rd\r\nSpringfield",
    }
    assert api_client.post("/orders", same).status_code == 200


def test_an_order_created_elsewhere_is_a_conflict(api_client):
    Order.objects.create(order_id="ADMIN-1", workflow_id="admin-1", address="1 Main St", source="admin")
    body = assert_problem(api_client.post("/orders", order_payload("ADMIN-1")), 409, errors.ORDER_EXISTS)
    assert body["details"] == {"order_id": "ADMIN-1", "source": "admin"}


def test_an_id_that_differs_only_in_case_is_a_conflict_naming_the_existing_order(api_client):
    """CASE-Probe1 and case-probe1 would run as one workflow: the second is 409 with a code, not a
    500 (it was Order.DoesNotExist, issue 19), with the same payload or another."""
    first = order_payload("CASE-Probe1")
    assert api_client.post("/orders", first).status_code == 201
    for payload in ({**first, "order_id": "case-probe1"}, order_payload("CASE-PROBE1")):
        body = assert_problem(api_client.post("/orders", payload), 409, errors.ORDER_ID_TAKEN)
        assert body["details"] == {"order_id": payload["order_id"], "existing_order_id": "CASE-Probe1"}
        assert "'CASE-Probe1'" in body["message"]
    assert list(Order.objects.values_list("order_id", flat=True)) == ["CASE-Probe1"]
    # The refused requests left nothing behind, and the same id in its own case still answers.
    assert api_client.post("/orders", first).status_code == 200


def test_an_id_that_maps_to_another_orders_workflow_is_a_conflict(api_client):
    """An outside client's order whose workflow id is what this id would run as."""
    Order.objects.create(order_id="FROM-CLIENT", workflow_id="shop-77", address="1 Main St", source="temporal-client")
    body = assert_problem(api_client.post("/orders", order_payload("SHOP-77")), 409, errors.ORDER_ID_TAKEN)
    assert body["details"]["existing_order_id"] == "FROM-CLIENT"


def test_total_must_be_the_sum_of_the_lines(api_client):
    body = assert_problem(api_client.post("/orders", order_payload(total="20.00")), 422, errors.TOTAL_MISMATCH)
    assert body["message"] == "The total 20.00 EUR does not match the line items, which add up to 25.00 EUR."
    assert (body["details"]["total"], body["details"]["lines_total"]) == ("20.00", "25.00")
    assert not Order.objects.exists()


@pytest.mark.parametrize(
    "change,field,message",
    [
        ({"shipping_address": "1 Main\x07St"}, "shipping_address", ADDRESS_CONTROL_CHARS),
        ({"customer": {"name": "Ada", "email": "ada\x00@example.com"}}, "customer.email", EMAIL_INVALID),
        ({"client": {"ip": "999.1.1.1"}}, "client.ip", CLIENT_IP_INVALID),
    ],
)
def test_the_contracts_rules_answer_422_naming_the_field(api_client, change, field, message):
    body = assert_problem(api_client.post("/orders", order_payload(**change)), 422, errors.VALIDATION_FAILED)
    assert body["details"]["errors"] == [{"field": field, "message": message}]
    assert not Order.objects.exists()


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"order_id": "X"},
        order_payload(extra_field=1),
        order_payload(order_id="bad id"),
        order_payload(line_items=[]),
        order_payload(currency="usd"),
        order_payload(total="1.001"),
    ],
)
def test_schema_errors_are_422_with_the_fields(api_client, payload):
    body = assert_problem(api_client.post("/orders", payload), 422, errors.VALIDATION_FAILED)
    assert body["details"]["errors"] and all(e["field"].startswith("body") for e in body["details"]["errors"])


def test_a_cancel_reason_code_outside_the_list_is_422_naming_the_field(api_client):
    """The codes are the admin's (CancelReason); the schema lists them and refuses the rest."""
    order = Order.objects.create(
        order_id=f"CODE-{uuid.uuid4().hex[:6]}",
        workflow_id=f"code-{uuid.uuid4().hex}",
        address="1 Main St",
        status="awaiting_manual_review",
    )
    body = assert_problem(
        api_client.post(f"/orders/{order.order_id}/cancel", {"reason": "x", "reason_code": "whim"}),
        422,
        errors.VALIDATION_FAILED,
    )
    assert [e["field"] for e in body["details"]["errors"]] == ["body.reason_code"]
    assert not OrderEvent.objects.filter(order=order).exists()


@pytest.mark.parametrize("raw", ["{", "[]", "null", '"x"', b"\xff\xfe", "1e999999"])
def test_a_body_that_is_not_a_json_object_is_a_client_error(api_client, raw):
    response = api_client.post("/orders", raw=raw)
    assert response.status_code in (400, 422)
    assert response.json()["code"] in (errors.MALFORMED_JSON, errors.VALIDATION_FAILED)


# -- Idempotency-Key --------------------------------------------------------------------------------


def test_an_idempotency_key_replays_the_first_response(api_client):
    payload = order_payload()
    first = api_client.post("/orders", payload, headers={"Idempotency-Key": "req-1"})
    Order.objects.filter(order_id=payload["order_id"]).update(status="processing")  # it moved on meanwhile
    replay = api_client.post("/orders", payload, headers={"Idempotency-Key": "req-1"})
    assert (first.status_code, replay.status_code) == (201, 201)
    assert replay["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first
    assert replay.json() == first.json() and replay.json()["status"] == "started"
    assert ApiIdempotencyKey.objects.count() == 1 and Order.objects.count() == 1


def test_an_idempotency_key_with_another_payload_is_a_conflict(api_client):
    api_client.post("/orders", order_payload("API-K1"), headers={"Idempotency-Key": "req-1"})
    body = assert_problem(
        api_client.post("/orders", order_payload("API-K2"), headers={"Idempotency-Key": "req-1"}),
        409,
        errors.IDEMPOTENCY_KEY_REUSED,
    )
    assert body["details"] == {"idempotency_key": "req-1", "differing_fields": ["order_id"]}
    assert list(Order.objects.values_list("order_id", flat=True)) == ["API-K1"]


def test_idempotency_keys_belong_to_their_client(api_client, make_api_client):
    """Another client's key of the same name is another key: it answers by the order id rules."""
    api_client.post("/orders", order_payload("API-K1"), headers={"Idempotency-Key": "req-1"})
    other = make_api_client("create")
    assert other.post("/orders", order_payload("API-K2"), headers={"Idempotency-Key": "req-1"}).status_code == 201
    assert ApiIdempotencyKey.objects.count() == 2


def test_fingerprints_are_keyed_hashes_not_bare_digests(api_client, settings):
    """What is stored for a field cannot be found by hashing guesses: without SECRET_KEY, the
    SHA-256 of the email (or of any field) is not what the row holds."""
    import hashlib
    import hmac
    import json

    payload = order_payload()
    api_client.post("/orders", payload, headers={"Idempotency-Key": "req-keyed"})
    stored = [ApiOrderRequest.objects.get().fingerprint, ApiIdempotencyKey.objects.get().fingerprint]
    for field, value in (("customer.email", "ada@example.com"), ("total", "25.00"), ("client.ip", "203.0.113.7")):
        bare = hashlib.sha256(json.dumps(value).encode()).hexdigest()[:32]
        for fingerprint in stored:
            assert fingerprint[field] != bare
            # HMAC-SHA256 of the digest, under a key derived from SECRET_KEY (Django's salted_hmac).
            key = hashlib.sha256(("orderweb.api.fingerprint" + settings.SECRET_KEY).encode()).digest()
            assert fingerprint[field] == hmac.new(key, bare.encode(), hashlib.sha256).hexdigest()[:32]


def test_a_rotated_secret_key_still_recognises_earlier_requests(api_client, settings):
    """SECRET_KEY rotated, the old one in SECRET_KEY_FALLBACKS: a repeat is still the same order
    (200, and the same key's replay), and another payload is still a conflict."""
    payload = order_payload()
    assert api_client.post("/orders", payload, headers={"Idempotency-Key": "req-rot"}).status_code == 201
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-secret-key-" + "x" * 40
    assert api_client.post("/orders", payload).status_code == 200
    assert api_client.post("/orders", payload, headers={"Idempotency-Key": "req-rot"})["Idempotent-Replayed"] == "true"
    assert_problem(api_client.post("/orders", {**payload, "currency": "USD"}), 409, errors.ORDER_CONFLICT)
    settings.SECRET_KEY_FALLBACKS = []
    assert_problem(api_client.post("/orders", payload), 409, errors.ORDER_CONFLICT)  # the control


def test_an_expired_idempotency_key_may_be_used_again(api_client, settings):
    settings.API_IDEMPOTENCY_KEY_HOURS = 24
    api_client.post("/orders", order_payload("API-OLD"), headers={"Idempotency-Key": "req-1"})
    ApiIdempotencyKey.objects.update(created_at=timezone.now() - timedelta(hours=25))
    again = api_client.post("/orders", order_payload("API-NEW"), headers={"Idempotency-Key": "req-1"})
    assert again.status_code == 201 and "Idempotent-Replayed" not in again
    assert list(ApiIdempotencyKey.objects.values_list("order__order_id", flat=True)) == ["API-NEW"]


@pytest.mark.django_db(transaction=True)
def test_the_purge_deletes_expired_keys_only_and_runs_in_several_processes_at_once(make_api_client, settings):
    """Four purges at once (every worker process runs one), over more rows than one batch: each
    expired key deleted exactly once between them, none waits for another, the fresh keys stay."""
    import threading

    from django.db import connections

    from orderweb.api.services import api_idempotency_keys_purge
    from tests.reviews.conftest import make_waiting_order

    settings.API_IDEMPOTENCY_KEY_HOURS = 24
    client = make_api_client("create")
    api_key = ApiKey.objects.get(name=client.name)
    # The keys' orders are rows only: a workflow started here could still be writing when the
    # test's flush truncates the tables, and deadlock it.
    order = make_waiting_order(order_id="API-PURGE-0")
    ApiIdempotencyKey.objects.bulk_create(
        [
            ApiIdempotencyKey(
                api_key=api_key, key=f"keep-{n}", fingerprint={}, status_code=201, response={}, order=order
            )
            for n in range(3)
        ]
    )
    old = timezone.now() - timedelta(hours=30)
    ApiIdempotencyKey.objects.bulk_create(
        [
            ApiIdempotencyKey(
                api_key=api_key, key=f"old-{n}", fingerprint={}, status_code=201, response={}, order=order
            )
            for n in range(250)
        ]
    )
    ApiIdempotencyKey.objects.filter(key__startswith="old-").update(created_at=old)
    counts: list[int] = []
    start = threading.Barrier(4)

    def purge() -> None:
        start.wait()
        try:
            counts.append(api_idempotency_keys_purge(batch=20))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=purge) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(counts) == 250 and len(counts) == 4
    assert sorted(ApiIdempotencyKey.objects.values_list("key", flat=True)) == ["keep-0", "keep-1", "keep-2"]
    assert api_idempotency_keys_purge() == 0


@pytest.mark.parametrize("key", ["", "x" * 256, "é"])
def test_a_malformed_idempotency_key_is_400(api_client, key):
    response = api_client.post("/orders", order_payload(), headers={"Idempotency-Key": key})
    assert_problem(response, 400, errors.BAD_REQUEST)
    assert not Order.objects.exists()


# -- reading -----------------------------------------------------------------------------------------


def test_an_order_with_its_review_outcome_tracking_and_attention(api_client):
    payload = order_payload()
    api_client.post("/orders", payload)
    order = Order.objects.get(order_id=payload["order_id"])
    now = timezone.now()
    Order.objects.filter(pk=order.pk).update(
        status="cancelled",
        cancel_reason="rejected in review: fraud",
        cancel_reason_code="suspected_fraud",
        attention_reason="workflow terminated",
        attention_since=now,
    )
    OrderEvent.objects.create(
        order=order,
        type="order_cancelled",
        source="workflow",
        actor="rita",
        from_status="awaiting_manual_review",
        to_status="cancelled",
        message="rejected",
        details={"review_outcome": "rejected", "note": "fraud", "reason_code": "suspected_fraud"},
    )
    body = api_client.get(f"/orders/{order.order_id}").json()
    assert body["status"] == "cancelled" and body["status_label"] == "Cancelled"
    assert body["reasons"] == {
        "cancel_reason": "rejected in review: fraud",
        "cancel_reason_code": "suspected_fraud",
        "failure_reason": "",
    }
    assert body["review"]["outcome"] == "rejected" and body["review"]["decided_by"] == "rita"
    assert body["review"]["reason_code"] == "suspected_fraud"
    assert body["attention"]["flagged"] is True and body["attention"]["reason"] == "workflow terminated"
    assert [e["label"] for e in body["timeline"]] == ["Order created", "Order cancelled"]


def test_detail_is_three_queries_after_the_key(api_client):
    payload = order_payload()
    api_client.post("/orders", payload)
    api_client.get(f"/orders/{payload['order_id']}")  # last_used_at written once a minute at most
    with CaptureQueriesContext(connection) as queries:
        assert api_client.get(f"/orders/{payload['order_id']}").status_code == 200
    # key lookup, rate-limit upsert, then order+shipment, lines, events
    assert len(queries) == 5, [q["sql"] for q in queries]


def test_unknown_order_is_404(api_client):
    body = assert_problem(api_client.get("/orders/NOPE-1"), 404, errors.NOT_FOUND)
    assert body["details"] == {"order_id": "NOPE-1"}


def _make_orders(count: int) -> list[Order]:
    start = timezone.now() - timedelta(hours=1)
    orders = []
    for i in range(count):
        order = Order.objects.create(
            order_id=f"LIST-{i:03d}",
            workflow_id=f"list-{i:03d}",
            address="1 Main St",
            status="cancelled" if i % 3 == 0 else "processing",
            cancel_reason="x",
        )
        Order.objects.filter(pk=order.pk).update(updated_at=start + timedelta(seconds=i // 2))  # ties in pairs
        orders.append(order)
    return orders


def test_pages_follow_updated_at_then_id_and_are_stable_under_inserts(api_client):
    _make_orders(7)
    first = api_client.get("/orders", limit=3).json()
    assert [o["order_id"] for o in first["items"]] == ["LIST-000", "LIST-001", "LIST-002"] and first["has_more"]
    # New orders arrive (they are the newest changes) and an early one is touched meanwhile.
    Order.objects.create(order_id="LIST-NEW", workflow_id="list-new", address="1 Main St")
    Order.objects.filter(order_id="LIST-001").update(updated_at=timezone.now())
    second = api_client.get("/orders", limit=3, cursor=first["next_cursor"]).json()
    assert [o["order_id"] for o in second["items"]] == ["LIST-003", "LIST-004", "LIST-005"]
    third = api_client.get("/orders", limit=3, cursor=second["next_cursor"]).json()
    assert [o["order_id"] for o in third["items"]] == ["LIST-006", "LIST-NEW", "LIST-001"]
    last = api_client.get("/orders", limit=3, cursor=third["next_cursor"]).json()
    assert last == {"items": [], "next_cursor": third["next_cursor"], "has_more": False}


def test_filters_by_status_and_updated_since(api_client):
    orders = _make_orders(6)
    cancelled = api_client.get("/orders", status="cancelled").json()["items"]
    assert [o["order_id"] for o in cancelled] == ["LIST-000", "LIST-003"]
    since = Order.objects.get(pk=orders[4].pk).updated_at.isoformat().replace("+00:00", "Z")
    recent = api_client.get("/orders", updated_since=since).json()["items"]
    assert [o["order_id"] for o in recent] == ["LIST-004", "LIST-005"]


@pytest.mark.parametrize(
    "params,code",
    [
        ({"status": "lost"}, errors.BAD_REQUEST),
        ({"limit": "0"}, errors.BAD_REQUEST),
        ({"limit": "101"}, errors.BAD_REQUEST),
        ({"limit": "1.5"}, errors.BAD_REQUEST),
        ({"updated_since": "2026-11-30"}, errors.BAD_REQUEST),
        ({"updated_since": "1700000000"}, errors.BAD_REQUEST),
        ({"updated_since": "2026-02-30T00:00:00Z"}, errors.MOMENT_INVALID_CODE),
        ({"updated_since": "0001-01-01T00:00:00+01:00"}, errors.MOMENT_INVALID_CODE),
        ({"cursor": "not-a-cursor"}, errors.CURSOR_INVALID),
        ({"cursor": "MjAyNnwx"}, errors.CURSOR_INVALID),
        ({"stauts": "cancelled"}, errors.BAD_REQUEST),
    ],
)
def test_bad_list_parameters_are_400(api_client, params, code):
    assert_problem(api_client.get("/orders", **params), 400, code)


# -- keys, scopes, rate limits -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "header", [None, "", "Basic dXNlcjpwYXNz", "Bearer", "Bearer nonsense", "Bearer ow_00000000_" + "A" * 43]
)
def test_no_valid_key_is_401(db, header):
    client = ApiClient()
    response = client.get("/orders", headers={"Authorization": header} if header is not None else None)
    body = assert_problem(response, 401, errors.UNAUTHENTICATED)
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert body["message"] in (errors.MISSING_KEY, errors.INVALID_KEY)


def test_a_key_with_a_wrong_secret_is_401(api_client):
    prefix = api_client.key.split("_")[1]
    forged = ApiClient(f"ow_{prefix}_{'B' * 43}")
    assert_problem(forged.get("/orders"), 401, errors.UNAUTHENTICATED)


def test_a_revoked_key_is_401(api_client):
    assert api_client.get("/orders").status_code == 200
    api_key_revoke(api_key=ApiKey.objects.get(name="shop-frontend"))
    assert_problem(api_client.get("/orders"), 401, errors.UNAUTHENTICATED)


def test_a_session_is_not_a_key(admin_client):
    """A signed-in superuser's cookie gets nothing from the API (so CSRF does not apply to it)."""
    response = admin_client.post("/api/v1/orders", order_payload(), content_type="application/json")
    assert_problem(response, 401, errors.UNAUTHENTICATED)
    assert not Order.objects.exists()


@pytest.mark.parametrize(
    "scopes,method,path,needed",
    [
        (("read",), "post", "/orders", "create"),
        (("create",), "get", "/orders", "read"),
        (("create",), "get", "/orders/X", "read"),
        (("read", "create"), "post", "/orders/X/cancel", "act"),
        (("read", "create"), "post", "/orders/X/address", "act"),
        (("read", "create", "act"), "post", "/orders/X/labels", "label"),
    ],
)
def test_each_endpoint_needs_its_scope(make_api_client, scopes, method, path, needed):
    client = make_api_client(*scopes)
    response = getattr(client, method)(path, order_payload()) if method == "post" else client.get(path)
    body = assert_problem(response, 403, errors.FORBIDDEN)
    assert body["details"]["required_scope"] == needed
    assert not Order.objects.exists()


def test_the_rate_limit_answers_429_with_retry_after(make_api_client):
    client = make_api_client("read", rate_limit=3)
    answers = [client.get("/orders") for _ in range(4)]
    assert [r.status_code for r in answers] == [200, 200, 200, 429]
    assert [r["RateLimit-Remaining"] for r in answers[:3]] == ["2", "1", "0"]
    body = assert_problem(answers[3], 429, errors.RATE_LIMITED)
    assert 1 <= int(answers[3]["Retry-After"]) <= 60 and body["details"]["limit"] == 3
    # Per key: another client is not limited by this one.
    assert make_api_client("read", rate_limit=3).get("/orders").status_code == 200


def test_last_used_is_recorded(api_client):
    assert ApiKey.objects.get(name="shop-frontend").last_used_at is None
    api_client.get("/orders")
    assert ApiKey.objects.get(name="shop-frontend").last_used_at is not None


def test_keys_are_stored_hashed(api_client):
    row = ApiKey.objects.get(name="shop-frontend")
    assert api_client.key not in (row.key_hash, row.prefix) and len(row.key_hash) == 64
    assert api_client.key.startswith(f"ow_{row.prefix}_")


def test_api_key_create_prints_the_key_alone_on_its_last_line(db, capsys):
    call_command("api_key_create", "warehouse", "--scope", "read", "--scope", "act")
    lines = capsys.readouterr().out.strip().splitlines()
    key = lines[-1]
    row = ApiKey.objects.get(name="warehouse")
    assert row.scopes == ["read", "act"] and key.startswith(f"ow_{row.prefix}_") and " " not in key
    assert ApiClient(key).get("/orders").status_code == 200


def test_api_key_create_refuses_a_taken_name(db):
    from django.core.management.base import CommandError

    call_command("api_key_create", "warehouse")
    with pytest.raises(CommandError, match="already exists"):
        call_command("api_key_create", "warehouse")


# -- errors from outside the endpoints ----------------------------------------------------------------


def test_unknown_paths_methods_and_nul_are_json(api_client):
    assert_problem(api_client.get("/nothing-here"), 404, errors.NOT_FOUND)
    response = api_client.client.delete("/api/v1/orders", headers=api_client._headers(None))
    assert_problem(response, 405, errors.METHOD_NOT_ALLOWED)
    assert "GET" in response["Allow"]
    assert_problem(api_client.get("/orders/A%00B"), 400, errors.BAD_REQUEST)


def test_the_openapi_document_and_the_docs_page_work_offline(client):
    document = client.get("/api/v1/openapi.json").json()
    assert document["openapi"].startswith("3.") and "/api/v1/orders/{order_id}/cancel" in document["paths"]
    page = client.get("/api/v1/docs").content.decode()
    assert "/static/ninja/swagger-ui-bundle.js" in page and "cdn" not in page.lower()
    from django.contrib.staticfiles import finders

    assert finders.find("ninja/swagger-ui-bundle.js")  # served with the app's static files


def test_the_rate_counter_table_is_unlogged(db):
    """No WAL flush for a counter nobody needs after a crash (migration 0007, docs/api.md)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT relpersistence FROM pg_class WHERE relname = 'orderweb_apiratewindow'")
        assert cursor.fetchone() == ("u",)
