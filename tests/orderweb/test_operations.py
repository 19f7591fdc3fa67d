"""The web app's operational endpoints: /healthz, /readyz (orderweb/health.py), /metrics
(orderweb/metrics.py) and the Temporal Web UI's codec endpoint (orderweb/codec_server.py)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone
from temporalio.converter import DataConverter

from devtools.supervise import free_port
from orderweb.models import Order
from reviews.models import ReviewTask
from temporal_app.codec import FernetPayloadCodec, key_id

ROOT = Path(__file__).resolve().parents[2]


# -- health ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_healthz_answers_any_host_over_plain_http(settings):
    settings.DEBUG = False
    settings.SECURE_SSL_REDIRECT = True
    settings.ALLOWED_HOSTS = ["orders.example.com"]
    client = Client()
    # A load balancer calls by IP over http: no redirect, no DisallowedHost.
    response = client.get("/healthz", HTTP_HOST="10.0.0.7:8000")
    assert (response.status_code, response.content) == (200, b"alive\n")
    # The control: any other page from that host is refused, and https is enforced.
    assert client.get("/accounts/login/", HTTP_HOST="10.0.0.7:8000").status_code == 400
    assert client.get("/accounts/login/", HTTP_HOST="orders.example.com").status_code == 301
    assert client.post("/healthz", HTTP_HOST="10.0.0.7").status_code == 405


@pytest.mark.django_db
def test_readyz_is_ready_when_the_database_and_temporal_answer(temporal_server, settings):
    settings.DEBUG = False
    settings.SECURE_SSL_REDIRECT = True
    response = Client().get("/readyz", HTTP_HOST="10.0.0.7")
    assert response.status_code == 200, response.content
    assert response.content.decode() == "ready\ndatabase: ok\ntemporal: ok\n"
    assert response["Cache-Control"] == "no-store"


@pytest.mark.django_db
def test_readyz_names_temporal_when_it_is_unreachable(settings):
    settings.TEMPORAL_ADDRESS = f"127.0.0.1:{free_port()}"
    response = Client().get("/readyz")
    assert response.status_code == 503
    lines = response.content.decode().splitlines()
    assert lines == ["not ready: temporal", "database: ok", "temporal: unreachable (connection refused)"]
    assert settings.TEMPORAL_ADDRESS.split(":")[1] not in response.content.decode()  # no address to strangers


@pytest.mark.django_db
def test_readyz_names_a_misconfigured_temporal(settings):
    settings.TEMPORAL_CONFIG_PROBLEM = "a TLS client certificate is set but no client key"
    settings.TEMPORAL_ADDRESS = f"127.0.0.1:{free_port()}"
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert "temporal: misconfigured (see `manage.py check`)" in response.content.decode()


def test_readyz_names_the_database_when_it_is_unreachable(temporal_server):
    """A web process whose Postgres is gone (a real closed port), in its own process."""
    code = (
        "from django.test import Client; r = Client().get('/readyz'); "
        "print(r.status_code); print(r.content.decode(), end='')"
    )
    env = {
        **os.environ,
        "DEBUG": "1",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:{free_port()}/gone",
        "TEMPORAL_ADDRESS": temporal_server,
    }
    proc = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = proc.stdout.strip().splitlines()
    assert lines[-4:] == ["503", "not ready: database", "database: unreachable (OperationalError)", "temporal: ok"], (
        proc.stderr
    )


# -- metrics --------------------------------------------------------------------------------


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{") and line.split(" ")[0] == name:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} is not in the metrics:\n{text}")


@pytest.mark.django_db
def test_metrics_need_the_token(settings):
    settings.METRICS_TOKEN = ""
    assert Client().get("/metrics").status_code == 404
    settings.METRICS_TOKEN = "s3cret-metrics-token"
    assert Client().get("/metrics").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-metrics-token").status_code == 200


@pytest.mark.django_db
def test_metrics_count_orders_reviews_and_requests(settings):
    settings.METRICS_TOKEN = "tok"
    client = Client(HTTP_AUTHORIZATION="Bearer tok")
    before = client.get("/metrics").content.decode()
    now = timezone.now()

    def order(order_id: str, **fields) -> Order:
        return Order.objects.create(
            order_id=order_id, workflow_id=order_id.lower(), address="1 Metric Way", status_changed_at=now, **fields
        )

    waiting = order("MET-1", status=Order.Status.AWAITING_MANUAL_REVIEW)
    late = order("MET-2", status=Order.Status.AWAITING_MANUAL_REVIEW)
    ReviewTask.objects.create(order=waiting, due_at=now + timedelta(hours=1))
    ReviewTask.objects.create(order=late, due_at=now - timedelta(minutes=1))
    order("MET-3", status=Order.Status.SHIPPING, dispatch_failures=2)
    order("MET-4", status=Order.Status.COMPLETED, attention_since=now, attention_reason="terminated")
    Client().get("/accounts/login/")
    after = client.get("/metrics").content.decode()

    def moved(name: str) -> float:
        return _metric(after, name) - _metric(before, name)

    assert moved('orderweb_orders_in_flight{status="awaiting_manual_review"}') == 2
    assert moved('orderweb_orders_in_flight{status="shipping"}') == 1
    assert moved('orderweb_orders_last_24h{status="awaiting_manual_review"}') == 2
    assert moved('orderweb_orders_last_24h{status="completed"}') == 1
    assert 'orderweb_orders_in_flight{status="completed"}' not in after  # ended orders: last 24 h only
    assert moved("orderweb_reviews_open") == 2
    assert moved("orderweb_reviews_overdue") == 1
    assert moved("orderweb_orders_dispatch_failed_waiting") == 1
    assert moved("orderweb_orders_needing_attention") == 1
    assert _metric(after, "orderweb_business_metrics_up") == 1
    login = 'orderweb_http_requests_total{method="GET",route="login",status="200"}'
    assert _metric(after, login) == (_metric(before, login) if login in before else 0) + 1


# -- the codec endpoint for the Temporal Web UI ----------------------------------------------

UI = "https://temporal-ui.example.com"


@pytest.fixture
def codec_key(settings):
    key = Fernet.generate_key()
    settings.TEMPORAL_PAYLOAD_KEYS = [key]
    settings.TEMPORAL_CODEC_CORS_ORIGINS = [UI]
    return key


def _payload_json(payload) -> dict:
    return {
        "metadata": {k: base64.b64encode(v).decode() for k, v in payload.metadata.items()},
        "data": base64.b64encode(payload.data).decode(),
    }


def _staff(django_user_model, name: str, *, staff: bool = True, permission: bool = True):
    user = django_user_model.objects.create_user(name, is_staff=staff)
    if permission:
        user.user_permissions.add(Permission.objects.get(codename="decode_payloads"))
    return django_user_model.objects.get(pk=user.pk)


def _post(client: Client, path: str, body: dict, **headers):
    return client.post(path, json.dumps(body), content_type="application/json", **headers)


@pytest.mark.django_db
def test_staff_with_the_permission_see_decrypted_payloads(codec_key, django_user_model):
    plain = DataConverter.default.payload_converter.to_payload({"address": "9 Hidden Road"})
    encrypted = FernetPayloadCodec([codec_key]).encode_one(plain)
    client = Client()
    client.force_login(_staff(django_user_model, "ops"))
    response = _post(
        client,
        "/temporal-codec/decode",
        {"payloads": [_payload_json(encrypted), _payload_json(plain)]},
        HTTP_ORIGIN=UI,
        HTTP_X_NAMESPACE="default",
    )
    assert response.status_code == 200, response.content
    decoded = response.json()["payloads"]
    assert base64.b64decode(decoded[0]["data"]) == plain.data == base64.b64decode(decoded[1]["data"])
    assert response["Access-Control-Allow-Origin"] == UI and response["Access-Control-Allow-Credentials"] == "true"
    # encode, then decode again: the round trip the UI does when it sends a signal
    encoded = _post(client, "/temporal-codec/encode", {"payloads": [_payload_json(plain)]}).json()["payloads"]
    assert base64.b64decode(encoded[0]["metadata"]["encoding"]) == b"binary/encrypted-fernet"
    again = _post(client, "/temporal-codec/decode", {"payloads": encoded}).json()["payloads"]
    assert base64.b64decode(again[0]["data"]) == plain.data


@pytest.mark.django_db
def test_no_one_else_sees_them(codec_key, django_user_model):
    encrypted = FernetPayloadCodec([codec_key]).encode_one(DataConverter.default.payload_converter.to_payload("x"))
    body = {"payloads": [_payload_json(encrypted)]}
    assert _post(Client(), "/temporal-codec/decode", body).status_code == 401
    for user in (
        _staff(django_user_model, "no-perm", permission=False),
        _staff(django_user_model, "not-staff", staff=False),
    ):
        client = Client()
        client.force_login(user)
        response = _post(client, "/temporal-codec/decode", body)
        assert response.status_code == 403 and "may not see decrypted payloads" in response.json()["error"]
    superuser = django_user_model.objects.create_superuser("root-codec")
    client = Client()
    client.force_login(superuser)
    assert _post(client, "/temporal-codec/decode", body).status_code == 200


@pytest.mark.django_db
def test_cors_preflight_and_foreign_pages(codec_key, django_user_model):
    client = Client()
    preflight = client.options("/temporal-codec/decode", HTTP_ORIGIN=UI, HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST")
    assert preflight.status_code == 204
    assert preflight["Access-Control-Allow-Origin"] == UI
    assert "Content-Type" in preflight["Access-Control-Allow-Headers"]
    foreign = client.options("/temporal-codec/decode", HTTP_ORIGIN="https://evil.example")
    assert foreign.status_code == 403 and "Access-Control-Allow-Origin" not in foreign
    client.force_login(_staff(django_user_model, "ops2"))
    body = {"payloads": []}
    refused = _post(client, "/temporal-codec/decode", body, HTTP_ORIGIN="https://evil.example")
    assert refused.status_code == 403 and "CSRF" in refused.json()["error"]
    # A form a foreign page could post without a preflight is refused, even same-origin.
    form = client.post("/temporal-codec/decode", {"payloads": "x"})
    assert form.status_code == 403 and "application/json" in form.json()["error"]
    assert _post(client, "/temporal-codec/decode", body).status_code == 200  # the control


@pytest.mark.django_db
def test_the_codec_endpoints_own_size_limit_applies_and_every_error_carries_cors(
    codec_key, django_user_model, monkeypatch
):
    """Django refuses request.body above 2.5 MB with a bare 400 and no CORS headers, so the Web UI
    showed ciphertext without a word: the endpoint's own 10 MB limit is the one that applies, and
    what it refuses (413, 500) the UI can read (issue 19)."""
    from orderweb import codec_server

    client = Client()
    client.force_login(_staff(django_user_model, "ops-big"))
    plain = DataConverter.default.payload_converter.to_payload("x" * (3 * 1024 * 1024))
    encrypted = FernetPayloadCodec([codec_key]).encode_one(plain)
    body = {"payloads": [_payload_json(encrypted)]}
    assert len(json.dumps(body)) > 5 * 1024 * 1024  # twice Django's DATA_UPLOAD_MAX_MEMORY_SIZE
    response = _post(client, "/temporal-codec/decode", body, HTTP_ORIGIN=UI)
    assert response.status_code == 200, response.content[:300]
    assert response["Access-Control-Allow-Origin"] == UI
    assert base64.b64decode(response.json()["payloads"][0]["data"]) == plain.data

    too_big = {"payloads": [_payload_json(encrypted)] * 2}  # over 10 MB
    refused = _post(client, "/temporal-codec/decode", too_big, HTTP_ORIGIN=UI)
    assert refused.status_code == 413 and refused["Access-Control-Allow-Origin"] == UI
    assert "larger than the codec endpoint's limit of 10 MB" in refused.json()["error"]

    def broken(self, payload):
        raise RuntimeError("a bug")

    monkeypatch.setattr(codec_server.FernetPayloadCodec, "decode_one", broken)
    failed = _post(client, "/temporal-codec/decode", {"payloads": [_payload_json(encrypted)]}, HTTP_ORIGIN=UI)
    assert failed.status_code == 500 and failed["Access-Control-Allow-Origin"] == UI
    assert failed.json() == {"error": codec_server.SERVER_ERROR}


@pytest.mark.django_db
def test_bad_bodies_a_missing_key_and_the_codec_off(codec_key, django_user_model, settings):
    client = Client()
    client.force_login(_staff(django_user_model, "ops3"))
    assert _post(client, "/temporal-codec/decode", {"nope": 1}).status_code == 400
    assert client.post("/temporal-codec/decode", "{", content_type="application/json").status_code == 400
    other = Fernet.generate_key()
    foreign = FernetPayloadCodec([other]).encode_one(DataConverter.default.payload_converter.to_payload("x"))
    response = _post(client, "/temporal-codec/decode", {"payloads": [_payload_json(foreign)]})
    assert response.status_code == 422 and key_id(other) in response.json()["error"]
    assert client.get("/temporal-codec/decode").status_code == 405
    settings.TEMPORAL_PAYLOAD_KEYS = []
    off = _post(client, "/temporal-codec/decode", {"payloads": []})
    assert off.status_code == 404 and "TEMPORAL_PAYLOAD_KEYS" in off.json()["error"]
