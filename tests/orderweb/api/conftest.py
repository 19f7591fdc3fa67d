"""Fixtures for the HTTP API: keys with chosen scopes, a client that sends one, a valid order."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from orderweb.api.keys import api_key_create

API = "/api/v1"


class ApiClient:
    """Django's test client with a bearer key; JSON in, response out."""

    def __init__(self, key: str = "", name: str = "") -> None:
        self.key = key
        self.name = name
        self.client = Client()

    def _headers(self, headers: dict[str, str] | None) -> dict[str, str]:
        base = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        return {**base, **(headers or {})}

    def get(self, path: str, headers: dict[str, str] | None = None, **params: Any):
        return self.client.get(f"{API}{path}", params, headers=self._headers(headers))

    def post(self, path: str, body: Any = None, headers: dict[str, str] | None = None, raw: str | bytes | None = None):
        data = raw if raw is not None else json.dumps(body)
        return self.client.post(f"{API}{path}", data, content_type="application/json", headers=self._headers(headers))


@pytest.fixture
def make_api_client(db) -> Callable[..., ApiClient]:
    def make(*scopes: str, name: str = "", rate_limit: int | None = None) -> ApiClient:
        name = name or f"client-{uuid.uuid4().hex[:6]}"
        _, key = api_key_create(name=name, scopes=scopes or ("create", "read", "act"), rate_limit_per_minute=rate_limit)
        return ApiClient(key, name)

    return make


@pytest.fixture
def api_client(make_api_client) -> ApiClient:
    return make_api_client("create", "read", "act", name="shop-frontend")


def order_payload(order_id: str | None = None, **changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "order_id": order_id or f"API-{uuid.uuid4().hex[:10].upper()}",
        "customer": {"name": "Ada Lovelace", "email": "ada@example.com"},
        "shipping_address": "1 Main St\nSpringfield",
        "billing_address": "2 Bill Rd\nSpringfield",
        "line_items": [
            {"sku": "SKU-1", "name": "Widget", "quantity": 2, "unit_price": "12.25"},
            {"sku": "SKU-2", "name": "Bolt", "quantity": 1, "unit_price": "0.50"},
        ],
        "currency": "EUR",
        "total": "25.00",
        "client": {"ip": "203.0.113.7", "user_agent": "shop/1.0"},
    }
    payload.update(changes)
    return payload


def assert_problem(response, status: int, code: str) -> dict[str, Any]:
    """An error answer: its status, JSON ``{code, message, details}`` and the code expected."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"code", "message", "details"}, body
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["details"], dict)
    return body
