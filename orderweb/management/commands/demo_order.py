"""python manage.py demo_order [--cancel | --reject | --dispatch-failure]

The seed's `demo_order_workflow.py` for this system, against the running system (`make run`):
start an order exactly as the seed does (two arguments, id, task queue `order-tq`), show every
status change as it happens (polling the `get_status` query), update the address, complete the
review, and print the result, what Postgres now holds and the Temporal Web UI link.

It talks to Temporal as any outside client would (start_workflow, signal, query, describe,
result); only the dispatch-failure path touches the database, to plan the simulated carrier's
failures. It exits non-zero if the story does not end as expected.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, Optional

from django.core.management.base import BaseCommand, CommandError
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from orderweb.models import Order
from orderweb.services import order_workflow_id
from orderweb.simulators import fault_plan
from temporal_app.client import (
    DISPATCH_FAILURES_KEY,
    ORDER_STATUS_KEY,
    TemporalUnavailable,
    client_thread,
    workflow_ui_url,
)
from temporal_app.contracts import ORDER_TASK_QUEUE, CancelRequest, OrderState, ReviewDecision, Signals
from temporal_app.workflows import OrderWorkflow
from temporal_app.workflows.policies import DISPATCH_RETRY

SEED_ADDRESS = "123 Main St, City, State 12345"
NEW_ADDRESS = "456 Oak Ave, Springfield, State 67890"
CARRIER = "carrier_dispatched"

ORDER_EXISTS = "A workflow with id {workflow_id!r} already exists: choose another --order-id."
STORY_FAILED = "The story did not end as expected: {detail}"
NOT_RUNNING = (
    "{detail}\nIs the system running? Start it with `make run` in another terminal "
    "(set TEMPORAL_ADDRESS if it runs on another port)."
)


class Story:
    """One order's story: sends what the seed sends and prints what the workflow reports."""

    def __init__(self, out: Callable[[str], None], workflow_id: str, timeout: float) -> None:
        self.out = out
        self.workflow_id = workflow_id
        self.timeout = timeout
        self.status: dict[str, Any] = {}
        self._t0: Optional[datetime] = None
        self._states_seen = 0
        self._signals_seen = 0

    # -- Temporal calls (the seed's client API, run on this process's client thread) ---------

    def handle(self, client):
        return client.get_workflow_handle_for(OrderWorkflow.run, self.workflow_id)

    def call(self, fn, timeout: Optional[float] = None):
        return client_thread.run(lambda client: fn(self.handle(client)), timeout=timeout)

    def send(self, label: str, fn) -> None:
        self.out(f"           -> {label}")
        self.call(fn)

    # -- watching ------------------------------------------------------------------------

    def _at(self, iso: str) -> str:
        at = datetime.fromisoformat(iso)
        if self._t0 is None:
            self._t0 = at
        return f"+{(at - self._t0).total_seconds():.2f}s".rjust(7)

    def poll(self) -> dict[str, Any]:
        """Query get_status and print every state change and signal outcome not shown yet."""
        self.status = self.call(lambda h: h.query(OrderWorkflow.get_status))
        events = [("state", e) for e in self.status["state_history"][self._states_seen :]]
        events += [("signal", e) for e in self.status["signals"][self._signals_seen :]]
        self._states_seen = len(self.status["state_history"])
        self._signals_seen = len(self.status["signals"])
        # A signal and the state change it caused share a timestamp: the signal comes first.
        for kind, entry in sorted(events, key=lambda item: (item[1]["at"], item[0] == "state")):
            if kind == "state":
                self.out(f"  {self._at(entry['at'])}  state   {entry['state']}")
            elif entry["name"] == "DispatchFailed":  # the shipping child's report, not a signal we sent
                self.out(f"  {self._at(entry['at'])}  failure {entry['message']}")
            else:
                self.out(
                    f"  {self._at(entry['at'])}  signal  {entry['name']} {entry['outcome']}: {entry['message']}"
                    + (f" (by {entry['actor']})" if entry.get("actor") else "")
                )
        return self.status

    def wait_for(self, what: str, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while True:
            status = self.poll()
            if predicate(status):
                return status
            if time.monotonic() > deadline:
                raise CommandError(
                    STORY_FAILED.format(
                        detail=f"no {what} within {self.timeout:g} s (state: {status['workflow_status']})"
                    )
                )
            time.sleep(0.1)

    def wait_for_state(self, *states: str) -> dict[str, Any]:
        wanted = set(states) | {s.value for s in OrderState if s.is_terminal}
        return self.wait_for(" or ".join(states), lambda s: s["workflow_status"] in wanted)


class Command(BaseCommand):
    help = "The seed's demo: start an order, watch it, update the address, complete the review."

    def add_arguments(self, parser):
        path = parser.add_mutually_exclusive_group()
        path.add_argument("--cancel", action="store_true", help="Cancel the order while it awaits review.")
        path.add_argument("--reject", action="store_true", help="Reject the order in review.")
        path.add_argument(
            "--dispatch-failure",
            action="store_true",
            help="Make the simulated carrier fail until dispatch gives up, then retry shipping.",
        )
        parser.add_argument("--order-id", help="Order id (default: a new ORDER-xxxxxx).")
        parser.add_argument("--address", default=SEED_ADDRESS, help="Shipping address at start.")
        parser.add_argument("--timeout", type=float, default=60.0, help="Seconds to wait for each step.")

    def handle(self, *args, cancel, reject, dispatch_failure, order_id, address, timeout, **options):
        order_id = order_id or f"ORDER-{uuid.uuid4().hex[:6].upper()}"
        workflow_id = order_workflow_id(order_id)
        path = "cancel" if cancel else "reject" if reject else "dispatch-failure" if dispatch_failure else "approve"
        expected = OrderState.CANCELLED if cancel or reject else OrderState.COMPLETED
        out = self.stdout.write
        story = Story(out, workflow_id, timeout)

        out(self.style.MIGRATE_HEADING(f"Order {order_id}: the seed's story ({path} path)"))
        out(f"  workflow  {workflow_id} on task queue {ORDER_TASK_QUEUE}")
        out(f"  web UI    {workflow_ui_url(workflow_id)}")
        out("")
        out(f"           -> start_workflow(OrderWorkflow.run, args=[{order_id!r}, {address!r}],")
        out(f"                             id={workflow_id!r}, task_queue={ORDER_TASK_QUEUE!r})")
        try:
            self._refuse_existing(workflow_id)
            client_thread.run(
                lambda client: client.start_workflow(
                    OrderWorkflow.run, args=[order_id, address], id=workflow_id, task_queue=ORDER_TASK_QUEUE
                )
            )
            self._story(story, order_id, path)
            result = story.call(lambda h: h.result(), timeout=timeout)
            story.poll()
        except TemporalUnavailable as err:
            raise CommandError(NOT_RUNNING.format(detail=err)) from None
        except WorkflowAlreadyStartedError:
            raise CommandError(ORDER_EXISTS.format(workflow_id=workflow_id)) from None

        out("")
        tracking = f", tracking number {result.tracking_number}" if result.tracking_number else ""
        reason = f" ({result.reason})" if result.reason else ""
        out(
            self.style.SUCCESS(f"Result    {result.status}{reason}{tracking}")
            if result.status == expected
            else self.style.ERROR(f"Result    {result.status}{reason}")
        )
        out(f"          {result!r}")
        order = self._projection(order_id, expected)
        out(f"Temporal  {workflow_ui_url(workflow_id)}")
        if result.status != expected or order.status != expected:
            raise CommandError(
                STORY_FAILED.format(
                    detail=f"expected {expected.value}, the workflow says {result.status} "
                    f"and Postgres says {order.status}"
                )
            )

    def _refuse_existing(self, workflow_id: str) -> None:
        """The seed's start call sets no id reuse policy, so Temporal would start a second run
        for a finished order; the demo wants a new order instead."""

        async def exists(client) -> bool:
            try:
                await client.get_workflow_handle(workflow_id).describe()
                return True
            except RPCError as err:
                if err.status == RPCStatusCode.NOT_FOUND:
                    return False
                raise

        if client_thread.run(exists):
            raise WorkflowAlreadyStartedError(workflow_id, "OrderWorkflow")

    def _story(self, story: Story, order_id: str, path: str) -> None:
        status = story.wait_for_state(OrderState.AWAITING_MANUAL_REVIEW)
        if status["workflow_status"] != OrderState.AWAITING_MANUAL_REVIEW:
            return  # failed validation (a bad --address): the result shows why

        # As in the seed: handle.signal(OrderWorkflow.update_address, "New Address")
        story.send(
            f"signal UpdateAddress({NEW_ADDRESS!r})", lambda h: h.signal(OrderWorkflow.update_address, NEW_ADDRESS)
        )
        status = story.wait_for(
            "address update", lambda s: any(e["name"] == Signals.UPDATE_ADDRESS for e in s["signals"])
        )
        story.out(f"           address is now {status['address']!r}")

        if path == "cancel":
            story.send(
                "signal CancelOrder (while awaiting review)",
                lambda h: h.signal(
                    OrderWorkflow.cancel_order,
                    CancelRequest(reason="the customer changed their mind", actor="demo_order"),
                ),
            )
            return
        if path == "reject":
            story.send(
                "signal CompleteManualReview(decision='reject')",
                lambda h: h.signal(
                    OrderWorkflow.complete_manual_review,
                    ReviewDecision(decision="reject", reviewer="demo_order", note="the address looks made up"),
                ),
            )
            return
        if path == "dispatch-failure":
            attempts = DISPATCH_RETRY.maximum_attempts
            fault_plan(target=CARRIER, order_ref=order_id, times=attempts)
            story.out(f"           (the simulated carrier will now fail the next {attempts} dispatch attempts)")

        # As in the seed: handle.signal(OrderWorkflow.complete_manual_review), i.e. approve.
        story.send(
            "signal CompleteManualReview()  (no argument: approve, as in the seed)",
            lambda h: h.signal(OrderWorkflow.complete_manual_review),
        )
        if path != "dispatch-failure":
            return

        story.wait_for("dispatch failure", lambda s: s["awaiting_shipping_retry"])
        failures = self._search_attribute(story)
        story.out(
            f"           dispatch gave up after {DISPATCH_RETRY.maximum_attempts} attempts; "
            f"search attribute DispatchFailures = {failures}"
        )
        fault_plan(target=CARRIER, order_ref=order_id, times=0)
        story.out("           (the carrier works again: fault cleared)")
        story.send("signal RetryShipping()", lambda h: h.signal(Signals.RETRY_SHIPPING))

    def _search_attribute(self, story: Story) -> int:
        """DispatchFailures as the Temporal Web UI sees it (describe), once it is written."""
        deadline = time.monotonic() + story.timeout
        while True:
            description = story.call(lambda h: h.describe())
            failures = description.typed_search_attributes.get(DISPATCH_FAILURES_KEY) or 0
            if failures >= 1 or time.monotonic() > deadline:
                state = description.typed_search_attributes.get(ORDER_STATUS_KEY)
                story.out(f"           describe(): OrderStatus = {state}, DispatchFailures = {failures}")
                if failures < 1:
                    raise CommandError(STORY_FAILED.format(detail="DispatchFailures was not recorded"))
                return failures
            time.sleep(0.1)

    def _projection(self, order_id: str, expected: OrderState) -> Order:
        """What the back office shows: the Postgres rows the workers wrote."""
        order = Order.objects.filter(order_id=order_id).first()
        if order is None:
            raise CommandError(STORY_FAILED.format(detail=f"Postgres has no order {order_id}"))
        events = order.events.count()
        charge = order.payments.filter(kind="charge").first()
        shipment = getattr(order, "shipment", None)
        parts = [f"order {order.order_id} is {order.status}", f"{events} audit events"]
        if charge:
            parts.append(f"charge {charge.status}")
        if shipment:
            parts.append(
                f"shipment {shipment.status}" + (f" {shipment.tracking_number}" if shipment.tracking_number else "")
            )
        if order.cancel_reason:
            parts.append(f"reason: {order.cancel_reason}")
        self.stdout.write(f"Postgres  {'; '.join(parts)}")
        return order
