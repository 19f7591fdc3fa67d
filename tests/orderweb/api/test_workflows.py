"""The API with real workflows: the order starts after commit, cancel and address changes go
through the workflow's Updates and answer with its decision, the audit trail names the client,
two identical requests at the same moment make one order, and an unreachable or silent Temporal
is a 503/504, never a 500."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
import uuid

import pytest

from orderweb.api import errors
from orderweb.models import ApiIdempotencyKey, Order, OrderEvent
from temporal_app.contracts import OrderOptions, RefusalCode
from tests.helpers import temporal, wait_for_state, wait_until
from tests.orderweb.api.conftest import assert_problem, order_payload


def _created_and_waiting(api_client) -> str:
    payload = order_payload()
    response = api_client.post("/orders", payload)
    assert response.status_code == 201 and response.json()["warnings"] == []
    order = Order.objects.get(order_id=payload["order_id"])
    wait_for_state(order.workflow_id, "awaiting_manual_review", timeout=60)
    wait_until(
        lambda: api_client.get(f"/orders/{order.order_id}").json()["status"] == "awaiting_manual_review",
        what="the projection to reach review",
    )
    return order.order_id


@pytest.mark.temporal
def test_create_starts_the_workflow_and_the_order_waits_for_review(system, api_client):
    order_id = _created_and_waiting(api_client)
    body = api_client.get(f"/orders/{order_id}").json()
    assert body["review"]["outcome"] == "pending" and body["review"]["due_at"]
    assert [e["type"] for e in body["timeline"]][:1] == ["order_created"]
    assert "awaiting_manual_review" in [e["to_status"] for e in body["timeline"]]


@pytest.mark.temporal
def test_cancel_through_the_workflow_audited_with_the_client(system, api_client):
    order_id = _created_and_waiting(api_client)
    response = api_client.post(
        f"/orders/{order_id}/cancel", {"reason": "customer changed their mind", "reason_code": "customer_request"}
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["outcome"] == "applied" and body["order"]["status"] == "cancelled"
    assert body["order"]["reasons"]["cancel_reason_code"] == "customer_request"
    assert body["order"]["review"]["outcome"] == "cancelled"
    requested = OrderEvent.objects.get(order__order_id=order_id, type="cancel_requested")
    assert (requested.actor, requested.source, requested.user) == ("shop-frontend", "api", None)
    # Again: the workflow has finished, so it is a refusal with its code, not a 500.
    again = assert_problem(
        api_client.post(f"/orders/{order_id}/cancel", {"reason": "again"}), 409, RefusalCode.ALREADY_FINISHED
    )
    assert again["details"]["order_id"] == order_id
    refused = OrderEvent.objects.get(order__order_id=order_id, type="cancel_refused")
    assert refused.actor == "shop-frontend"


@pytest.mark.temporal
def test_address_change_applied_refused_and_invalid(system, api_client):
    order_id = _created_and_waiting(api_client)
    changed = api_client.post(f"/orders/{order_id}/address", {"address": "7 New Road\nShelbyville"})
    assert changed.status_code == 200, changed.content
    assert changed.json()["order"]["shipping_address"] == "7 New Road\nShelbyville"
    same = api_client.post(f"/orders/{order_id}/address", {"address": "7 New Road\nShelbyville"})
    assert_problem(same, 409, RefusalCode.ADDRESS_UNCHANGED)
    bad = api_client.post(f"/orders/{order_id}/address", {"address": "7 New\x07Road"})
    assert_problem(bad, 422, errors.VALIDATION_FAILED)
    assert (
        OrderEvent.objects.filter(
            order__order_id=order_id, type="address_change_requested", actor="shop-frontend", source="api"
        ).count()
        == 2
    )


@pytest.mark.temporal
def test_unknown_order_actions_are_404(system, api_client):
    assert_problem(api_client.post("/orders/NOPE/cancel", {"reason": "x"}), 404, errors.NOT_FOUND)
    assert_problem(api_client.post("/orders/NOPE/address", {"address": "1 Main St"}), 404, errors.NOT_FOUND)


@pytest.mark.temporal
def test_a_workflow_that_does_not_answer_is_504(system, api_client, settings):
    """The workflow exists but no worker polls its queue: the Update gets no answer in time."""
    from temporal_app.workflows import OrderWorkflow

    order = Order.objects.create(
        order_id=f"SILENT-{uuid.uuid4().hex[:6]}",
        workflow_id=f"silent-{uuid.uuid4().hex}",
        address="1 Main St",
        status="awaiting_manual_review",
    )
    temporal(
        lambda c: c.start_workflow(
            OrderWorkflow.run,
            args=[order.order_id, order.address, OrderOptions()],
            id=order.workflow_id,
            task_queue="nobody-polls-this",
        )
    )
    settings.TEMPORAL_RPC_TIMEOUT_SECONDS = 2
    body = assert_problem(api_client.post(f"/orders/{order.order_id}/cancel", {"reason": "x"}), 504, "no_answer")
    assert body["details"]["order_id"] == order.order_id
    assert OrderEvent.objects.filter(order=order, type="cancel_unanswered", actor="shop-frontend").exists()


@pytest.fixture
def temporal_down(settings):
    from devtools.supervise import free_port

    settings.TEMPORAL_ADDRESS = f"127.0.0.1:{free_port()}"  # nothing listens there
    settings.TEMPORAL_RPC_TIMEOUT_SECONDS = 3
    return settings


def test_temporal_unreachable_create_saves_and_warns_then_actions_are_503(transactional_db, temporal_down, api_client):
    payload = order_payload()
    created = api_client.post("/orders", payload)
    assert created.status_code == 201
    assert [w["code"] for w in created.json()["warnings"]] == ["temporal_unreachable"]
    assert Order.objects.get(order_id=payload["order_id"]).status == "started"  # the workers start it later
    assert api_client.post("/orders", payload).status_code == 200  # a retry finds it
    body = assert_problem(
        api_client.post(f"/orders/{payload['order_id']}/cancel", {"reason": "x"}), 503, "temporal_unreachable"
    )
    assert body["details"]["workflow_status"] == "started"


# -- at the same moment ---------------------------------------------------------------------------


def _post_together(
    url: str, key: str, payload: dict, headers: dict[str, str], count: int = 2
) -> list[tuple[int, dict]]:
    barrier = threading.Barrier(count)
    answers: list[tuple[int, dict]] = []

    def send() -> None:
        request = urllib.request.Request(
            url,
            data=json.dumps(payload).encode(),
            method="POST",
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json", **headers},
        )
        barrier.wait()
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                answers.append((response.status, json.loads(response.read())))
        except urllib.error.HTTPError as err:
            answers.append((err.code, json.loads(err.read())))

    threads = [threading.Thread(target=send) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    return answers


@pytest.mark.temporal
def test_two_identical_posts_at_the_same_moment_make_one_order(system, live_server, api_client):
    payload = order_payload()
    answers = _post_together(f"{live_server.url}/api/v1/orders", api_client.key, payload, {})
    assert sorted(status for status, _ in answers) == [200, 201], answers
    assert {body["order_id"] for _, body in answers} == {payload["order_id"]}
    assert Order.objects.filter(order_id=payload["order_id"]).count() == 1
    assert OrderEvent.objects.filter(order__order_id=payload["order_id"], type="order_created").count() == 1
    wait_for_state(Order.objects.get(order_id=payload["order_id"]).workflow_id, "awaiting_manual_review", timeout=60)


@pytest.mark.temporal
def test_two_posts_with_one_idempotency_key_at_the_same_moment(system, live_server, api_client):
    payload = order_payload()
    answers = _post_together(
        f"{live_server.url}/api/v1/orders", api_client.key, payload, {"Idempotency-Key": "same-moment"}, count=3
    )
    assert [status for status, _ in answers] == [201, 201, 201], answers
    assert len({json.dumps(body, sort_keys=True) for _, body in answers}) == 1  # the first response, replayed
    assert Order.objects.filter(order_id=payload["order_id"]).count() == 1
    assert ApiIdempotencyKey.objects.filter(key="same-moment").count() == 1
    # The order's workflow is left waiting, not mid-step, when the test's rows are flushed.
    wait_for_state(Order.objects.get(order_id=payload["order_id"]).workflow_id, "awaiting_manual_review", timeout=60)
