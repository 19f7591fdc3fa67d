"""Activities that talk to Temporal only (no ORM). The order's own steps live in the apps that
own their data: ``orderweb/activities.py`` and ``reviews/activities.py``."""

from __future__ import annotations

from temporalio import activity
from temporalio.api.enums.v1 import EventType

from temporal_app.contracts import ORDER_TASK_QUEUE, Activities, CancelRequestInfo, OrderRef
from temporal_app.registry import temporal_activity


@temporal_activity(Activities.CANCEL_REQUEST_READ, queue=ORDER_TASK_QUEUE)
async def cancel_request_read(order: OrderRef) -> CancelRequestInfo:
    """Who asked Temporal to cancel the order's workflow, and why: the Web UI or the CLI record
    the caller's identity and an optional reason in the history, which workflow code cannot see."""
    handle = activity.client().get_workflow_handle(order.workflow_id, run_id=activity.info().workflow_run_id)
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED:
            request = event.workflow_execution_cancel_requested_event_attributes
            return CancelRequestInfo(identity=request.identity, reason=request.cause)
    return CancelRequestInfo()
