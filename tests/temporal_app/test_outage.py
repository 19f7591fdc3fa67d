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
from tests.helpers import new_order_id, temporal, wait_for_state

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
    from temporal_app.client import start_order_workflow_async
    from orderweb.services import order_workflow_options

    order = order_create(order_id=new_order_id(), address="6 Twice Ave")
    wait_for_state(order.workflow_id, "awaiting_manual_review")
    options = order_workflow_options(order)
    again = temporal(lambda client: start_order_workflow_async(client, order, options))
    assert again is False
