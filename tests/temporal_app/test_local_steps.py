"""Local activities have a limit (temporal_app/workflows/steps.py): a short database step that
keeps failing LOCAL_STEP_ATTEMPTS times goes on as a regular activity, so an outage of Postgres
does not keep the workflow's task open, renewed every 8 s with three history events each time,
for as long as it lasts."""

from __future__ import annotations

import pytest
from django.test import override_settings

from orderweb.services import order_create
from temporal_app.contracts import LineItem
from tests.helpers import new_order_id, temporal, wait_for_state, wait_until

pytestmark = pytest.mark.temporal


def history(workflow_id: str) -> list:
    async def events(client):
        return [event async for event in client.get_workflow_handle(workflow_id).fetch_history_events()]

    return temporal(events)


def scheduled_activities(workflow_id: str) -> list[str]:
    return [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history(workflow_id)
        if e.HasField("activity_task_scheduled_event_attributes")
    ]


def workflow_tasks_completed(workflow_id: str) -> int:
    return sum(1 for e in history(workflow_id) if e.HasField("workflow_task_completed_event_attributes"))


def test_a_database_step_failing_past_its_limit_goes_on_as_a_regular_activity(system):
    """Issue 19, item 6: order_received and the projection writes retried as local activities
    without end; here every attempt fails (as while Postgres is down) and the order's history
    must stop growing once the step has become a regular activity."""
    with override_settings(ACTIVITY_FAULT_RATE=1.0):
        order = order_create(
            order_id=new_order_id("LA-OUTAGE"),
            address="9 Outage Row",
            line_items=[LineItem("SKU-1", "Widget", 1, "5.00")],
        )
        wait_until(
            lambda: "order_received" in scheduled_activities(order.workflow_id),
            timeout=90,
            what="order_received to go on as a regular activity",
        )
        renewed = workflow_tasks_completed(order.workflow_id)
        # A couple of renewals while it was local; none while the regular activity retries.
        assert renewed <= 4
        marker = [e for e in history(order.workflow_id) if e.HasField("marker_recorded_event_attributes")]
        assert marker, "the local attempts' failure is in the history (a marker), as is the patch"
    # Postgres is back: the regular activity's next attempt succeeds and the order goes on.
    wait_for_state(order.workflow_id, "awaiting_manual_review", timeout=90)
    wait_until(
        lambda: order.__class__.objects.filter(pk=order.pk, status="awaiting_manual_review").exists(),
        what="the projection",
    )
    assert scheduled_activities(order.workflow_id) == ["order_received"]

    # The new path replays through the current code (strict sandbox), its patch marker included.
    import asyncio

    from temporalio.worker import Replayer
    from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

    from temporal_app.worker import replay_workflows
    from temporal_app.workflows.steps import BOUNDED_LOCAL_STEPS_PATCH

    events = history(order.workflow_id)
    assert any(
        BOUNDED_LOCAL_STEPS_PATCH.encode() in e.SerializeToString()
        for e in events
        if e.HasField("marker_recorded_event_attributes")
    )
    replayer = Replayer(workflows=replay_workflows(), workflow_runner=SandboxedWorkflowRunner())
    asyncio.run(
        replayer.replay_workflow(temporal(lambda client: client.get_workflow_handle(order.workflow_id).fetch_history()))
    )
