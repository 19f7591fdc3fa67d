"""Fuzz the workflow's boundary against the real workers: Hypothesis picks start arguments and a
few signals and Updates of any JSON shape; after each example the workflow must have no failing
workflow task and no activity retrying, the order must be finished or waiting for a person, and
the money must add up (a charge only on a completed order, or refunded)."""

from __future__ import annotations

import contextlib
import uuid

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError

from orderweb.models import GatewayLedgerEntry, Order
from temporal_app.contracts import ORDER_TASK_QUEUE, Signals, Updates
from tests.helpers import temporal, wait_until, workflow_status

pytestmark = pytest.mark.temporal

FIELD_NAMES = [
    "line_items",
    "amount",
    "customer",
    "review_timeout_seconds",
    "payment_attempts",
    "source",
    "created_by",
    "decision",
    "reviewer",
    "note",
    "action_id",
    "reason",
    "actor",
    "address",
    "kind",
    "token",
    "run_id",
    "accepted",
    "message",
    "sku",
    "quantity",
    "unit_price",
    "x",
]
NASTY_TEXT = [
    "",
    " ",
    "\x00",
    "approve",
    "reject",
    "dispatch_failed",
    "ack",
    "A" * 400,
    "\ud800",
    "1 Main St",
    "-5",
    "NaN",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(NASTY_TEXT),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.sampled_from(FIELD_NAMES), children, max_size=4)
    ),
    max_leaves=8,
)
MESSAGE_NAMES = [
    Signals.CANCEL_ORDER,
    Signals.UPDATE_ADDRESS,
    Signals.COMPLETE_MANUAL_REVIEW,
    Signals.RETRY_SHIPPING,
    Signals.SHIPPING_REPORT,
    Updates.DECIDE_REVIEW,
    Updates.CHANGE_ADDRESS,
    Updates.REQUEST_CANCEL,
    Updates.RETRY_SHIPPING,
]
messages = st.lists(st.tuples(st.sampled_from(MESSAGE_NAMES), st.lists(json_values, max_size=3)), max_size=4)
RESTING = {"awaiting_manual_review", "completed", "cancelled", "failed"}
EXAMPLES = 120
# The examples run in shards of their own, so that pytest-xdist spreads them over its workers
# (one test of 120 examples was the suite's longest); each shard draws its own examples.
SHARDS = 4


@pytest.mark.timeout(900)
@pytest.mark.parametrize("shard", range(SHARDS))
@settings(
    max_examples=EXAMPLES // SHARDS,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    shape=st.sampled_from(["any", "order", "order+options"]),
    args=st.lists(json_values, max_size=4),
    sent=messages,
    then_approve=st.booleans(),
)
def test_no_input_wedges_an_order_or_loses_money(system, shard, shape, args, sent, then_approve):
    """``shape``: any arguments at all, or a real order (fresh id, good address) with the rest
    drawn, so that most examples reach the review, where messages matter most. ``then_approve``:
    after the drawn messages, the seed's approval, so payment and shipping run after them."""
    if shape != "any":
        args = [f"FUZZ-{uuid.uuid4().hex[:10].upper()}", "1 Fuzz Street", *args[: 1 if shape == "order+options" else 0]]
    workflow_id = f"fuzz-{uuid.uuid4().hex[:12]}"

    async def run(client):
        handle = await client.start_workflow("OrderWorkflow", args=args, id=workflow_id, task_queue=ORDER_TASK_QUEUE)
        for name, payload in sent:
            try:
                if name in Updates.ALL:
                    await handle.execute_update(name, args=payload)
                else:
                    await handle.signal(name, args=payload)
            except (WorkflowUpdateFailedError, RPCError):
                pass  # refused, or the workflow has finished: both are answers
        if then_approve:
            with contextlib.suppress(RPCError):  # it has finished already
                await handle.signal(Signals.COMPLETE_MANUAL_REVIEW)

    temporal(run)
    status = wait_until(
        lambda: (s := workflow_status(workflow_id))["workflow_status"] in RESTING and s,
        timeout=30,
        what=f"{workflow_id} to come to rest",
    )
    event(
        f"ended {status['workflow_status']}"
        + (" (start refused)" if status["reason"].startswith("the start was") else "")
    )
    event(f"{sum(1 for m in status['signals'] if m['outcome'] == 'refused')} messages refused")
    description = temporal(lambda c: c.get_workflow_handle(workflow_id).describe()).raw_description
    assert description.pending_workflow_task.attempt <= 1, "a workflow task is failing"
    assert all(a.attempt <= 1 for a in description.pending_activities), "an activity is retrying"
    if status["workflow_status"] == "awaiting_manual_review":
        wait_until(
            lambda: Order.objects.filter(workflow_id=workflow_id, status="awaiting_manual_review").exists(),
            what="the order's row to show the review",
        )
    order = Order.objects.filter(workflow_id=workflow_id).first()
    if order is not None:
        ledger = GatewayLedgerEntry.objects.filter(order_ref=order.order_id)
        charges, refunds = ledger.filter(kind="charge").count(), ledger.filter(kind="refund").count()
        if status["workflow_status"] == "completed":
            assert (charges, refunds) == (1, 0)
        else:
            assert charges == refunds <= 1
