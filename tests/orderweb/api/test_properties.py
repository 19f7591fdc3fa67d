"""No input of any shape gets a 500 from the API (hypothesis, the real database): arbitrary JSON
and mutations of a valid order as bodies, arbitrary headers (Authorization, Idempotency-Key,
Content-Type), arbitrary paths and query strings under /api/v1/. Every answer is JSON; every
error is ``{code, message, details}``; a refused create writes nothing.

Django's test client re-raises a view's exception, so a 500 fails the test with its traceback.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from orderweb.models import Order, OrderEvent, OrderLine
from tests.orderweb.api.conftest import API, order_payload

FIXTURE_OK = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow], deadline=None)

# Text as clients send it: any code point that JSON can carry (lone surrogates included, as \ud800
# escapes), and the shapes that broke systems before.
nasty_text = st.one_of(
    st.text(max_size=80),
    st.sampled_from(
        [
            "",
            " ",
            "\x00",
            "\ud800",
            "\u202e",
            "1e999",
            "NaN",
            "-0",
            "9" * 40,
            "0.001",
            "1,5",
            "' OR 1=1 --",
            "<script>",
            "Ω" * 300,
            "a" * 5000,
        ]
    ),
)
json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    nasty_text,
)
json_values = st.recursive(
    json_leaf,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=5)),
    max_leaves=12,
)

FIELDS = ["order_id", "customer", "shipping_address", "billing_address", "line_items", "currency", "total", "client"]
NESTED = {"customer": ["name", "email"], "client": ["ip", "user_agent"]}
LINE_FIELDS = ["sku", "name", "quantity", "unit_price"]


@st.composite
def mutated_orders(draw) -> dict:
    """A valid order with some fields (top-level, nested, in a line) replaced or dropped."""
    payload = order_payload(draw(st.sampled_from(["PROP-1", "PROP-2"])))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        where = draw(st.sampled_from(["top", "nested", "line"]))
        value = draw(json_values)
        drop = draw(st.booleans()) and draw(st.booleans())
        if where == "top":
            name = draw(st.sampled_from(FIELDS + ["unexpected"]))
            target = payload
        elif where == "nested":
            parent = draw(st.sampled_from(list(NESTED)))
            if not isinstance(payload.get(parent), dict):
                continue
            name, target = draw(st.sampled_from(NESTED[parent])), payload[parent]
        else:
            if not isinstance(payload.get("line_items"), list) or not payload["line_items"]:
                continue
            name, target = draw(st.sampled_from(LINE_FIELDS)), payload["line_items"][0]
            if not isinstance(target, dict):
                continue
        if drop:
            target.pop(name, None)
        else:
            target[name] = value
    return payload


def _json_or_raw(draw_value) -> bytes:
    return draw_value if isinstance(draw_value, bytes) else json.dumps(draw_value).encode()


def _check_answer(response) -> dict:
    assert response.status_code < 500, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    if response.status_code >= 400:
        assert set(body) == {"code", "message", "details"} and body["code"] and body["message"], body
    return body


def _counts() -> tuple[int, int, int]:
    return Order.objects.count(), OrderEvent.objects.count(), OrderLine.objects.count()


@pytest.mark.django_db
@settings(FIXTURE_OK, max_examples=250)
@given(body=st.one_of(mutated_orders(), json_values, st.binary(max_size=64)))
@example(body=order_payload("PROP-NUL", shipping_address="1 Main\x00St"))
@example(body=order_payload("PROP-SUR", customer={"name": "\ud800", "email": "a@b.co"}))
@example(body=order_payload("PROP-SUR2", customer={"name": "Ada", "email": "\ud800@b.co"}))
@example(body=order_payload("PROP-NUL-EMAIL", customer={"name": "Ada", "email": "a\x00@b.co"}))  # was a 500
@example(body=order_payload("PROP-UA", client={"ip": "::1", "user_agent": "\x00"}))
@example(body=order_payload("PROP-BIG", line_items=[{"sku": "S", "quantity": 2**31, "unit_price": "1.00"}]))
@example(
    body=order_payload(
        "PROP-SUM", total="9999999999.99", line_items=[{"sku": "A", "quantity": 2, "unit_price": "9999999999.99"}]
    )
)
@example(body=b"\xff")
def test_any_create_body_is_answered_without_a_server_error(api_client, body):
    before = _counts()
    response = api_client.post("/orders", raw=_json_or_raw(body))
    answer = _check_answer(response)
    if response.status_code == 201:
        assert Order.objects.filter(order_id=answer["order_id"]).count() == 1
    elif response.status_code >= 400:
        assert _counts() == before, "a refused create wrote something"


header_values = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=300),
    st.sampled_from(
        [
            "",
            "Bearer",
            "Bearer ",
            "bearer x",
            "Bearer ow_",
            "Basic Og==",
            "Bearer ow_00000000_" + "A" * 43,
            "Bearer " + "ow_" * 1000,
        ]
    ),
)


@pytest.mark.django_db
@settings(FIXTURE_OK, max_examples=150)
@given(
    authorization=st.one_of(st.none(), header_values),
    idempotency_key=st.one_of(st.none(), header_values),
    content_type=st.sampled_from(
        [
            "application/json",
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "",
            "application/json; charset=latin-1",
        ]
    ),
    use_real_key=st.booleans(),
)
def test_any_headers_are_answered_without_a_server_error(
    api_client, authorization, idempotency_key, content_type, use_real_key
):
    headers = {}
    if use_real_key:
        headers["Authorization"] = f"Bearer {api_client.key}"
    elif authorization is not None:
        headers["Authorization"] = authorization
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    response = api_client.client.post(
        f"{API}/orders", json.dumps(order_payload("PROP-H")), content_type=content_type, headers=headers
    )
    _check_answer(response)


segments = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20),
    st.sampled_from(["orders", "cancel", "address", "..", ".", "%00", "%2F", "openapi.json"]),
)


@pytest.mark.django_db
@settings(FIXTURE_OK, max_examples=150)
@given(
    parts=st.lists(segments, min_size=0, max_size=4),
    query=st.dictionaries(
        st.sampled_from(["status", "updated_since", "cursor", "limit", "x", ""]),
        st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40),
        max_size=3,
    ),
    method=st.sampled_from(["get", "post", "put", "patch", "delete", "head", "options"]),
    body=st.one_of(json_values, mutated_orders()),
)
@example(parts=["orders", "X", "cancel"], query={}, method="post", body={"reason": "x", "reason_code": "\x00"})
@example(parts=["orders", "X" * 500, "address"], query={}, method="post", body={"address": "\ud800"})
@example(parts=["orders"], query={"updated_since": "9999-12-31T23:59:59-23:59"}, method="get", body=None)
def test_any_path_query_and_method_are_answered_without_a_server_error(api_client, parts, query, method, body):
    path = "/".join(part if part.startswith("%") else quote(part, safe="") for part in parts)
    url = f"{API}/{path}"
    if method in ("get", "head", "delete", "options"):
        response = getattr(api_client.client, method)(url, query, headers=api_client._headers(None))
    else:
        response = getattr(api_client.client, method)(
            url,
            json.dumps(body),
            content_type="application/json",
            headers=api_client._headers(None),
            QUERY_STRING="&".join(f"{quote(k)}={quote(v)}" for k, v in query.items()),
        )
    if url in (f"{API}/openapi.json", f"{API}/docs") or method == "head":
        assert response.status_code < 500
        return
    _check_answer(response) if response.content else None
    assert response.status_code < 500
