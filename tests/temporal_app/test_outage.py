"""Saving an order while Temporal is unreachable loses nothing: the person is told, the row stays,
and the workers start its workflow once Temporal answers."""

from __future__ import annotations

import pytest
from django.test import override_settings

from devtools.supervise import free_port
from orderweb.activities import orphaned_orders_started
from orderweb.models import Order
from orderweb.services import order_create
from temporal_app.client import TemporalUnavailable
from tests.helpers import new_order_id, temporal, wait_for_state, wait_until

pytestmark = pytest.mark.temporal


def test_order_saved_during_an_outage_is_started_later(system):
    order_id = new_order_id()
    with (
        override_settings(TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}", TEMPORAL_RPC_TIMEOUT_SECONDS=3),
        pytest.raises(TemporalUnavailable, match="Temporal is unreachable"),
    ):
        order_create(order_id=order_id, address="5 Outage Rd")
    order = Order.objects.get(order_id=order_id)
    assert order.status == Order.Status.STARTED
    assert order.events.get().type == "order_created"

    started = orphaned_orders_started(older_than_seconds=0)
    assert started >= 1
    wait_for_state(order.workflow_id, "awaiting_manual_review")
    # The workflow has moved the row on, so a second sweep starts nothing.
    assert orphaned_orders_started(older_than_seconds=0) == 0


def test_starting_an_existing_workflow_again_is_harmless(system):
    from orderweb.services import order_workflow_options
    from temporal_app.client import start_order_workflow_async

    order = order_create(order_id=new_order_id(), address="6 Twice Ave")
    wait_for_state(order.workflow_id, "awaiting_manual_review")
    options = order_workflow_options(order)
    again = temporal(lambda client: start_order_workflow_async(client, order, options))
    assert again is False


def save_during_outage(count: int, prefix: str, **options) -> list[Order]:
    """Orders saved through order_create while Temporal is unreachable: each told its caller so."""
    ids = [new_order_id(prefix) for _ in range(count)]
    with override_settings(TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}", TEMPORAL_RPC_TIMEOUT_SECONDS=3):
        for order_id in ids:
            with pytest.raises(TemporalUnavailable):
                order_create(order_id=order_id, address="7 Backlog Lane", **options)
    return list(Order.objects.filter(order_id__in=ids).order_by("created_at", "pk"))


def workflow_exists(workflow_id: str) -> bool:
    from temporalio.service import RPCError

    async def describe(client):
        try:
            await client.get_workflow_handle(workflow_id).describe()
            return True
        except RPCError:
            return False

    return temporal(describe)


@override_settings(ORDER_START_SWEEP_BATCH=3)
def test_a_backlog_larger_than_a_batch_is_all_started_and_the_reconciler_leaves_it_to_the_sweep(system):
    """Issue 19, item 1: orders saved during an outage stayed `started` for good once the
    reconciler (which ran first, or between sweeps) flagged them `workflow_gone`, and the sweep
    started at most one batch at a time."""
    from reviews.services import orders_reconcile_with_reviews

    orders = save_during_outage(7, "BACKLOG")
    assert {o.status for o in orders} == {Order.Status.STARTED}
    # Temporal is back; the reconciler runs before the sweep reaches them.
    report = orders_reconcile_with_reviews(grace_seconds=0)
    assert not [f for f in report.findings if f.order.order_id in {o.order_id for o in orders}]

    started = orphaned_orders_started(older_than_seconds=0)  # one sweep: the whole backlog
    assert started == 7
    assert all(workflow_exists(o.workflow_id) for o in orders)
    for order in orders:
        wait_for_state(order.workflow_id, "awaiting_manual_review")
    assert not Order.objects.filter(pk__in=[o.pk for o in orders], attention_since__isnull=False).exists()


@override_settings(ORDER_START_SWEEP_BATCH=2)
def test_one_order_temporal_refuses_to_start_is_flagged_and_the_ones_after_it_are_started(system):
    """An error other than an outage used to end the sweep, so every later order waited behind it."""
    from orderweb.services import WORKFLOW_NOT_STARTED_PROBLEM

    broken = save_during_outage(1, "UNSTARTABLE")[0]
    # A row Temporal refuses to start (an empty workflow id: INVALID_ARGUMENT), oldest of all.
    Order.objects.filter(pk=broken.pk).update(workflow_id="")
    later = save_during_outage(4, "AFTER-BROKEN")

    assert orphaned_orders_started(older_than_seconds=0) == 4
    broken.refresh_from_db()
    assert broken.needs_attention and "could not be started" in broken.attention_reason
    flagged = broken.events.get(type="attention_flagged")
    assert flagged.details["problem"] == WORKFLOW_NOT_STARTED_PROBLEM
    for order in later:
        wait_for_state(order.workflow_id, "awaiting_manual_review")
    # Flagged once: the next sweep leaves it to staff.
    assert orphaned_orders_started(older_than_seconds=0) == 0
    assert broken.events.filter(type="attention_flagged").count() == 1


def test_orders_the_old_reconciler_flagged_gone_are_started_and_their_flag_clears(system):
    """Orders stranded before the fix (flagged `workflow_gone` while never started) are the
    sweep's too: started, and unflagged by their workflow's first step."""
    from orderweb.reconcile import WORKFLOW_GONE, WORKFLOW_GONE_PROBLEM
    from orderweb.services import STRANDED_FLAG_PREFIX, order_flag_attention

    assert WORKFLOW_GONE.startswith(STRANDED_FLAG_PREFIX)
    stranded = save_during_outage(2, "STRANDED")
    for order in stranded:
        order_flag_attention(
            order=order, problem=WORKFLOW_GONE_PROBLEM, reason=WORKFLOW_GONE.format(workflow_id=order.workflow_id)
        )
    assert orphaned_orders_started(older_than_seconds=0) == 2
    for order in stranded:
        wait_for_state(order.workflow_id, "awaiting_manual_review")
        wait_until(lambda o=order: not Order.objects.get(pk=o.pk).needs_attention, what="the flag to clear")


def test_an_order_saved_during_an_outage_keeps_the_review_timeout_it_was_given(system):
    """The sweep rebuilds the workflow's input from the row; the review timeout order_create was
    given is kept in the creation's audit row (the chaos run's review_timeout scenario lost it)."""
    order = save_during_outage(1, "TIMEOUT-KEPT", review_timeout_seconds=2)[0]
    assert orphaned_orders_started(older_than_seconds=0) == 1
    status = wait_for_state(order.workflow_id, "cancelled")
    assert "review timed out" in status["reason"]
