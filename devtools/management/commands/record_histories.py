"""python manage.py record_histories [--out DIR]

Runs the reference scenarios against the configured Temporal server and running workers
(`make run`), and saves each workflow's history as JSON. The replay test
(tests/temporal_app/test_replay.py) runs every saved history through the current workflow code on
each test run, so a change that would break running workflows fails the suite. Record new
histories after a deliberate, patched change (see docs/determinism.md), and keep the old ones.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from orderweb.services import order_create
from orderweb.simulators import fault_plan
from temporal_app.client import client_thread, order_workflow_status, order_workflow_update
from temporal_app.contracts import (
    AddressChange,
    CancelRequest,
    LineItem,
    ReviewDecision,
    ShippingRetryRequest,
    Updates,
    shipping_workflow_id,
)

DEFAULT_OUT = Path(settings.BASE_DIR) / "tests" / "temporal_app" / "histories"


def _wait(workflow_id: str, predicate, what: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = order_workflow_status(workflow_id)
        if predicate(status):
            return status
        time.sleep(0.1)
    raise CommandError(f"{workflow_id}: timed out waiting for {what}")


def _awaiting_review(status: dict) -> bool:
    return status["workflow_status"] == "awaiting_manual_review"


class Command(BaseCommand):
    help = "Record reference workflow histories for the replay test (needs running workers)."

    def add_arguments(self, parser):
        parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
        parser.add_argument("--tag", default=time.strftime("%Y%m%d"), help="File name suffix.")

    def handle(self, *args, out: Path, tag: str, **options):
        out.mkdir(parents=True, exist_ok=True)
        for name in ("happy_path", "cancel_after_payment", "dispatch_failure"):
            workflow_ids = getattr(self, f"_scenario_{name}")(f"HIST-{name.upper().replace('_', '-')}-{tag}-{int(time.time())}")
            for kind, workflow_id in workflow_ids.items():
                path = out / f"{name}.{kind}.{tag}.json"
                path.write_text(self._history_json(workflow_id))
                self.stdout.write(f"saved {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")

    def _history_json(self, workflow_id: str) -> str:
        async def fetch(client):
            handle = client.get_workflow_handle(workflow_id)
            await handle.result()
            history = await handle.fetch_history()
            # The replayer needs the real workflow id (child ids derive from it).
            return json.dumps({"workflow_id": workflow_id, "history": json.loads(history.to_json())})

        return client_thread.run(fetch, timeout=120)

    def _order(self, order_id: str):
        return order_create(order_id=order_id, address="1 History Lane", line_items=[LineItem("SKU-H", "Thing", 1, "5.00")])

    def _scenario_happy_path(self, order_id: str) -> dict[str, str]:
        order = self._order(order_id)
        _wait(order.workflow_id, _awaiting_review, "review")
        order_workflow_update(order.workflow_id, Updates.CHANGE_ADDRESS, AddressChange("2 History Lane", "recorder", "h-addr"))
        order_workflow_update(order.workflow_id, Updates.DECIDE_REVIEW, ReviewDecision("approve", "recorder", action_id="h-approve"))
        return {"order": order.workflow_id, "shipping": shipping_workflow_id(order.workflow_id)}

    def _scenario_cancel_after_payment(self, order_id: str) -> dict[str, str]:
        order = self._order(order_id)
        fault_plan(target="payment_charged", order_ref=order.order_id, times=2)
        _wait(order.workflow_id, _awaiting_review, "review")
        order_workflow_update(order.workflow_id, Updates.DECIDE_REVIEW, ReviewDecision("approve", "recorder"))
        _wait(order.workflow_id, lambda s: s["workflow_status"] == "processing_payment", "payment")
        order_workflow_update(order.workflow_id, Updates.REQUEST_CANCEL, CancelRequest("recorded cancel", "recorder"))
        return {"order": order.workflow_id}

    def _scenario_dispatch_failure(self, order_id: str) -> dict[str, str]:
        order = self._order(order_id)
        fault_plan(target="carrier_dispatched", order_ref=order.order_id, times=3)
        _wait(order.workflow_id, _awaiting_review, "review")
        order_workflow_update(order.workflow_id, Updates.DECIDE_REVIEW, ReviewDecision("approve", "recorder"))
        _wait(order.workflow_id, lambda s: s["awaiting_shipping_retry"], "dispatch failure")
        order_workflow_update(order.workflow_id, Updates.RETRY_SHIPPING, ShippingRetryRequest("recorder"))
        return {"order": order.workflow_id, "shipping": shipping_workflow_id(order.workflow_id)}
