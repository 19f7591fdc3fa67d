"""python manage.py record_histories [--out DIR]

Runs the reference scenarios against the configured Temporal server and running workers
(`make run`), and saves each workflow's history as JSON. With payload encryption on
(TEMPORAL_PAYLOAD_KEYS), the history is decrypted before it is saved: the saved files are test
fixtures that must replay on any machine, without a key that never belongs in the repository,
and they hold only this command's made-up orders. The replay test
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
from temporal_app.codec import FernetPayloadCodec, decode_history_events
from temporal_app.contracts import (
    ORDER_TASK_QUEUE,
    AddressChange,
    CancelRequest,
    LineItem,
    ReviewDecision,
    ShippingRetryRequest,
    Signals,
    Updates,
    shipping_workflow_id,
)

DEFAULT_OUT = Path(settings.BASE_DIR) / "tests" / "temporal_app" / "histories"
SCENARIOS = (
    "happy_path",
    "cancel_after_payment",
    "dispatch_failure",
    "temporal_cancel",
    "refused_start",
    "malformed_messages",
    "shipping_terminated",
    # The review team (issue 20); the workers need the rules they exercise (see RULES_NEEDED).
    "escalation",
    "four_eyes",
    "policy_timeout",
)
# What the workers' settings must say for the review team's scenarios (the rules are read by the
# workers' order_validated, not by this command). `make run` with .env.example's four eyes and:
#   REVIEW_TIMEOUT_ACTION_MEDIUM=approve make run
RULES_NEEDED = (
    "The workers must run with REVIEW_FOUR_EYES_AMOUNT=1000.00 (as .env.example sets it), "
    "REVIEW_TIMEOUT_ACTION_MEDIUM=approve and REVIEW_ESCALATE_AFTER above 0 (0.75 by default): {problem}"
)


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
        parser.add_argument(
            "--scenario",
            action="append",
            choices=SCENARIOS,
            dest="scenarios",
            help="Record only this scenario (repeatable). Default: all.",
        )

    def handle(self, *args, out: Path, tag: str, scenarios=None, **options):
        out.mkdir(parents=True, exist_ok=True)
        for name in scenarios or SCENARIOS:
            workflow_ids = getattr(self, f"_scenario_{name}")(
                f"HIST-{name.upper().replace('_', '-')}-{tag}-{int(time.time())}"
            )
            for kind, workflow_id in workflow_ids.items():
                path = out / f"{name}.{kind}.{tag}.json"
                path.write_text(self._history_json(workflow_id))
                self.stdout.write(f"saved {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")

    def _history_json(self, workflow_id: str) -> str:
        async def fetch(client):
            handle = client.get_workflow_handle(workflow_id)
            await handle.result()
            history = await handle.fetch_history()  # as Temporal stores it: encrypted, if the codec is on
            if settings.TEMPORAL_PAYLOAD_KEYS:
                decode_history_events(history.events, FernetPayloadCodec(settings.TEMPORAL_PAYLOAD_KEYS))
            # The replayer needs the real workflow id (child ids derive from it).
            return json.dumps({"workflow_id": workflow_id, "history": json.loads(history.to_json())})

        return client_thread.run(fetch, timeout=120)

    def _client(self, fn):
        return client_thread.run(fn, timeout=60)

    def _order(self, order_id: str, *, price: str = "5.00", **kwargs):
        return order_create(
            order_id=order_id, address="1 History Lane", line_items=[LineItem("SKU-H", "Thing", 1, price)], **kwargs
        )

    def _rules(self, order, **expected) -> None:
        """Refuse to record when the workers' rules are not the ones the scenario exercises."""
        from reviews.models import ReviewTask

        task = ReviewTask.objects.filter(order=order).first()
        found = {name: getattr(task, name, None) for name in expected}
        if found != expected:
            self._client(lambda c: c.get_workflow_handle(order.workflow_id).terminate("wrong rules"))
            raise CommandError(RULES_NEEDED.format(problem=f"the review task of {order.order_id} has {found}"))

    def _scenario_happy_path(self, order_id: str) -> dict[str, str]:
        order = self._order(order_id)
        _wait(order.workflow_id, _awaiting_review, "review")
        order_workflow_update(
            order.workflow_id, Updates.CHANGE_ADDRESS, AddressChange("2 History Lane", "recorder", "h-addr")
        )
        order_workflow_update(
            order.workflow_id, Updates.DECIDE_REVIEW, ReviewDecision("approve", "recorder", action_id="h-approve")
        )
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

    def _scenario_temporal_cancel(self, order_id: str) -> dict[str, str]:
        """An operator cancels the workflow in Temporal (Web UI or CLI) while it awaits review."""
        order = self._order(order_id)
        _wait(order.workflow_id, _awaiting_review, "review")
        self._client(lambda c: c.get_workflow_handle(order.workflow_id).cancel())
        return {"order": order.workflow_id}

    def _scenario_refused_start(self, order_id: str) -> dict[str, str]:
        """A client starts OrderWorkflow with an order id that is not one (a number)."""
        workflow_id = order_id.lower()
        self._client(
            lambda c: c.start_workflow(
                "OrderWorkflow", args=[123, "1 History Lane"], id=workflow_id, task_queue=ORDER_TASK_QUEUE
            )
        )
        return {"order": workflow_id}

    def _scenario_malformed_messages(self, order_id: str) -> dict[str, str]:
        """Signals of the wrong shape and a forged shipping report, refused; then an approval."""
        order = self._order(order_id)
        _wait(order.workflow_id, _awaiting_review, "review")

        async def send(client):
            handle = client.get_workflow_handle(order.workflow_id)
            await handle.signal(Signals.COMPLETE_MANUAL_REVIEW, args=["approve", "twice"])
            await handle.signal(Signals.UPDATE_ADDRESS)
            await handle.signal(Signals.CANCEL_ORDER, "not a request")
            await handle.signal(Signals.SHIPPING_REPORT, {"kind": "dispatch_failed", "message": "forged"})

        self._client(send)
        _wait(order.workflow_id, lambda s: len(s["signals"]) >= 4, "the refusals")
        order_workflow_update(order.workflow_id, Updates.DECIDE_REVIEW, ReviewDecision("approve", "recorder"))
        return {"order": order.workflow_id, "shipping": shipping_workflow_id(order.workflow_id)}

    def _scenario_shipping_terminated(self, order_id: str) -> dict[str, str]:
        """The shipping child is terminated while it waits after a failed dispatch: the parent
        asks the carrier, finds nothing shipped, refunds and fails the order."""
        order = self._order(order_id)
        fault_plan(target="carrier_dispatched", order_ref=order.order_id, times=3)
        _wait(order.workflow_id, _awaiting_review, "review")
        order_workflow_update(order.workflow_id, Updates.DECIDE_REVIEW, ReviewDecision("approve", "recorder"))
        _wait(order.workflow_id, lambda s: s["awaiting_shipping_retry"], "dispatch failure")
        self._client(lambda c: c.get_workflow_handle(shipping_workflow_id(order.workflow_id)).terminate("recorded"))
        return {"order": order.workflow_id}

    def _scenario_escalation(self, order_id: str) -> dict[str, str]:
        """Nobody decides for 3/4 of a 10 s review: the leads are told (the escalation's timer, the
        ReviewEscalated upsert, the review_escalated activity); then an approval."""
        order = self._order(order_id, review_timeout_seconds=10)
        _wait(order.workflow_id, _awaiting_review, "review")
        status = _wait(
            order.workflow_id,
            lambda s: s["review_escalated_at"] or s["workflow_status"] != "awaiting_manual_review",
            "the escalation",
        )
        if not status["review_escalated_at"]:
            raise CommandError(RULES_NEEDED.format(problem=f"{order.order_id} did not escalate"))
        order_workflow_update(
            order.workflow_id, Updates.DECIDE_REVIEW, ReviewDecision("approve", "recorder", action_id="e-1")
        )
        return {"order": order.workflow_id}

    def _scenario_four_eyes(self, order_id: str) -> dict[str, str]:
        """A 1,500.00 order: approved by one reviewer (the first of two), again by the same one by
        signal (refused, same reviewer), then by a second: paid and shipped."""
        order = self._order(order_id, price="1500.00")
        _wait(order.workflow_id, _awaiting_review, "review")
        self._rules(order, approvals_required=2)
        order_workflow_update(
            order.workflow_id, Updates.DECIDE_REVIEW, ReviewDecision("approve", "recorder-a", "first", "fe-1")
        )
        self._client(
            lambda c: c.get_workflow_handle(order.workflow_id).signal(
                Signals.COMPLETE_MANUAL_REVIEW, ReviewDecision("approve", "recorder-a", "again", "fe-2")
            )
        )
        _wait(order.workflow_id, lambda s: any(m.get("code") == "same_reviewer" for m in s["signals"]), "the refusal")
        order_workflow_update(
            order.workflow_id, Updates.DECIDE_REVIEW, ReviewDecision("approve", "recorder-b", "", "fe-3")
        )
        return {"order": order.workflow_id, "shipping": shipping_workflow_id(order.workflow_id)}

    def _scenario_policy_timeout(self, order_id: str) -> dict[str, str]:
        """A medium-risk order nobody decides within its 4 s: escalated, then approved by the
        actor "policy" (REVIEW_TIMEOUT_ACTION_MEDIUM=approve), paid and shipped."""
        order = self._order(order_id, review_timeout_seconds=4)
        _wait(order.workflow_id, _awaiting_review, "review")
        self._rules(order, timeout_action="approve")
        status = _wait(order.workflow_id, lambda s: s["workflow_status"] in ("completed", "cancelled"), "the ending")
        if status["workflow_status"] != "completed":
            raise CommandError(RULES_NEEDED.format(problem=f"{order.order_id} ended {status['workflow_status']}"))
        return {"order": order.workflow_id}
