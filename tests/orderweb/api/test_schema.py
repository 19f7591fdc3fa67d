"""The OpenAPI document is valid and the API answers as it says (schemathesis, in-process WSGI,
the real database): every operation with generated valid and invalid input, each response
checked against its documented status codes, content type and schema, and never a 5xx.

(The schema is loaded when this module is imported: schemathesis's lazy ``from_fixture`` does
not work with pytest 9.)
"""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from orderweb.api.keys import api_key_create
from orderweb.models import Order

EXAMPLES_PER_OPERATION = 100

schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", get_wsgi_application())
# The bearer key is the test's to give (every call below sends it): schemathesis generates no
# Authorization header of its own, so a negative case cannot be one that only lacked the header
# the call then adds (CI once saw that accepted as "invalid data"). Requests without a key or with
# a bad one are tested in test_orders.py (the 401 tests).
schema.config.generation.update(max_examples=EXAMPLES_PER_OPERATION, with_security_parameters=False)

_MONEY = re.compile(r"^(0|[1-9][0-9]{0,9})(\.[0-9]{1,2})?$")


@schema.hook("map_body")
def total_of_the_lines(context, body):
    """JSON Schema cannot say "total = the sum of the lines"; make generated orders agree, so valid
    ones are created (201) and their responses checked too. Left alone when the lines are not
    well formed (a negative case stays negative; schemathesis revalidates after hooks)."""
    if context.operation is None or context.operation.path != "/api/v1/orders" or not isinstance(body, dict):
        return body
    lines = body.get("line_items")
    if (
        isinstance(body.get("total"), str)
        and isinstance(lines, list)
        and lines
        and all(
            isinstance(line, dict)
            and type(line.get("quantity")) is int
            and isinstance(line.get("unit_price"), str)
            and _MONEY.match(line["unit_price"])
            for line in lines
        )
    ):
        total = sum(Decimal(line["unit_price"]) * line["quantity"] for line in lines)
        if total <= Decimal("9999999999.99"):
            body = {**body, "total": f"{total:.2f}"}
    return body


@schema.hook("map_query")
def a_cursor_the_api_could_have_given(context, query):
    """A cursor is opaque: any string fits the schema, only ours are accepted (400 otherwise,
    tested in test_orders.py). Generated ones become well-formed cursors here."""
    if query and isinstance(query.get("cursor"), str):
        stamp = datetime(2026, 1, 1, tzinfo=UTC).isoformat()
        query = {**query, "cursor": base64.urlsafe_b64encode(f"{stamp}|{len(query['cursor'])}".encode()).decode()}
    return query


LABELLED_ORDER = "SCHEMA-LABELS-1"
LABELS_PATH = "/api/v1/orders/{order_id}/labels"


@schema.hook("map_path_parameters")
def an_order_to_label(context, path_parameters):
    """The labels endpoint on an order that exists (the bearer fixture makes it), so valid
    requests set and remove labels (201, 200) and their answers are checked, not only 404s."""
    if context.operation is not None and context.operation.path == LABELS_PATH and path_parameters:
        return {**path_parameters, "order_id": LABELLED_ORDER}
    return path_parameters


@pytest.fixture
def bearer(db) -> dict[str, str]:
    # As Django's test client does: a request's start and end must not close the test's
    # connection (its transaction holds the test's rows).
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    _, key = api_key_create(
        name="schemathesis", scopes=["create", "read", "act", "label"], rate_limit_per_minute=100000
    )
    Order.objects.get_or_create(
        order_id=LABELLED_ORDER, defaults={"workflow_id": LABELLED_ORDER.lower(), "address": "1 Schema Street"}
    )
    yield {"Authorization": f"Bearer {key}"}
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


# Answers to schema-valid input that only rules beyond JSON Schema explain: a total that is not
# the lines' sum, the contracts' text rules (control characters, a bad IP address), an order id
# (or an Idempotency-Key used before) for another payload, a cursor this API did not give out, a
# date of the right shape that no calendar has (0000-00-00).
SEMANTIC_REFUSALS = {
    "total_mismatch",
    "validation_failed",
    "order_conflict",
    "order_exists",
    "idempotency_key_reused",
    "cursor_invalid",
    "moment_invalid",
}


@schema.parametrize()
@settings(suppress_health_check=list(HealthCheck), deadline=None)
def test_api_matches_its_openapi_document(case, bearer):
    if case.operation.path not in ("/api/v1/orders", LABELS_PATH):
        case.call_and_validate(headers=bearer)
        return
    response = case.call_and_validate(headers=bearer, excluded_checks=[positive_data_acceptance])
    # Case.meta is schemathesis's public view of how the case was generated; without it the
    # check below could not tell positive cases from negative ones, so its absence fails.
    meta = case.meta
    assert meta is not None, "schemathesis gave no generation metadata: positive cases cannot be told apart"
    if meta.generation.mode == GenerationMode.POSITIVE and 400 <= response.status_code < 500:
        # schemathesis's explicit and coverage phases choose their own path parameters (the hook
        # above maps the generated ones): an order id of the right shape that names no order is 404.
        allowed = SEMANTIC_REFUSALS | ({"not_found"} if case.operation.path == LABELS_PATH else set())
        assert response.json()["code"] in allowed, (case.body, response.text)
