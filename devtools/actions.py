"""Temporal Cloud's billable Actions, counted from a workflow's history (docs/operations.md,
"Scaling"), by the rules Temporal Cloud publishes ("Temporal Cloud Actions"):

- a workflow start (not a child's: the parent's start of a child counts two, start and execution);
- each timer started, each search-attribute upsert, each signal received, each Update accepted;
- each activity attempt (an activity retried three times is four);
- local activities: one per workflow task that recorded any (not one per local activity).

Not in a history, so not counted here: queries (the order page's live status asks one), Updates
refused by their validator, heartbeats (none here). What the history shows is what an order costs
as long as nobody looks at it in the web or the Temporal UI.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

LOCAL_ACTIVITY_MARKER = "core_local_activity"


def billable_actions(events: Iterable[HistoryEvent], *, child: bool = False) -> Counter[str]:
    """The Actions one run's history shows, by kind. ``child``: the run is a child workflow, whose
    start its parent's history already counts."""
    counts: Counter[str] = Counter()
    attempts: dict[int, int] = {}  # scheduled event id -> attempts started
    local_activity_tasks: set[int] = set()  # workflow-task-completed event ids with a marker
    last_task_completed = 0
    for event in events:
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED and not child:
            counts["workflow started"] += 1
        elif kind == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
            counts["child workflow started (start + execution)"] += 2
        elif kind == EventType.EVENT_TYPE_TIMER_STARTED:
            counts["timer started"] += 1
        elif kind == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            counts["search attributes upserted"] += 1
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            counts["signal"] += 1
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            counts["update"] += 1
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started = event.activity_task_started_event_attributes
            attempts[started.scheduled_event_id] = max(attempts.get(started.scheduled_event_id, 0), started.attempt)
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            last_task_completed = event.event_id
        elif (
            kind == EventType.EVENT_TYPE_MARKER_RECORDED
            and event.marker_recorded_event_attributes.marker_name == LOCAL_ACTIVITY_MARKER
        ):
            local_activity_tasks.add(last_task_completed)
    if attempts:
        counts["activity attempts"] += sum(attempts.values())
    if local_activity_tasks:
        counts["workflow tasks with local activities"] += len(local_activity_tasks)
    return counts


def order_actions(workflow_id: str) -> Counter[str]:
    """One order's Actions, read from Temporal: its workflow's history and its shipping child's."""
    from temporal_app.client import client_thread
    from temporal_app.contracts import shipping_workflow_id

    async def read(client) -> Counter[str]:
        parent = await client.get_workflow_handle(workflow_id).fetch_history()
        child = await client.get_workflow_handle(shipping_workflow_id(workflow_id)).fetch_history()
        return billable_actions(parent.events) + billable_actions(child.events, child=True)

    return client_thread.run(read, timeout=30)
