"""Temporal Cloud Actions counted from a history (devtools/actions.py), on the saved happy path:
the figures the Scaling section's estimates start from."""

from __future__ import annotations

import json
from pathlib import Path

from temporalio.client import WorkflowHistory

from devtools.actions import billable_actions

HISTORIES = Path(__file__).resolve().parents[1] / "temporal_app" / "histories"


def load(name: str) -> WorkflowHistory:
    saved = json.loads((HISTORIES / name).read_text())
    return WorkflowHistory.from_json(saved["workflow_id"], saved["history"])


def test_the_saved_happy_path_counts_by_the_published_rules():
    # The recorded happy path: an address change (an Update) at review, then the approval (an
    # Update), the charge, the shipping child.
    order = billable_actions(load("happy_path.order.20261130.json").events)
    assert dict(order) == {
        "workflow started": 1,
        "timer started": 1,  # the review timeout
        "search attributes upserted": 4,  # awaiting review, processing payment, shipping, the end
        "update": 2,
        "child workflow started (start + execution)": 2,
        "activity attempts": 1,  # payment_charged
        # received + validated in one task, the address change, the approval, the ending
        "workflow tasks with local activities": 4,
    }
    shipping = billable_actions(load("happy_path.shipping.20261130.json").events, child=True)
    assert dict(shipping) == {"activity attempts": 1, "workflow tasks with local activities": 1}
    assert sum(order.values()) + sum(shipping.values()) == 17


def test_retries_count_each_attempt_and_a_child_does_not_count_its_own_start():
    history = load("dispatch_failure.shipping.20261130.json")
    counts = billable_actions(history.events, child=True)
    assert "workflow started" not in counts
    assert counts["activity attempts"] > 1  # the carrier failed: each attempt is an Action
