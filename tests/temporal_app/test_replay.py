"""Determinism guard: saved histories replay through the current workflow code.

A change to workflow code that would break workflows already running (a new command, a changed
order of steps) fails here. Record new histories with `python manage.py record_histories` after a
deliberate change guarded by `workflow.patched`; keep the old files (docs/determinism.md).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Optional

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner
from temporalio.workflow import NondeterminismError

from temporal_app.contracts import OrderOptions, OrderResult
from temporal_app.workflows import (
    PATCH_LEAN_HISTORY, PATCH_SEARCH_ATTRIBUTES_AT_START, OrderWorkflow, ShippingWorkflow,
)

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def load(path: Path) -> WorkflowHistory:
    saved = json.loads(path.read_text())
    return WorkflowHistory.from_json(saved["workflow_id"], saved["history"])


def replay(path: Path, workflows: list) -> None:
    # Sandboxed on purpose, whatever production workers use (TEMPORAL_WORKFLOW_SANDBOX): the
    # sandbox refuses wall clocks, randomness and I/O in workflow code.
    replayer = Replayer(workflows=workflows, workflow_runner=SandboxedWorkflowRunner())
    asyncio.run(replayer.replay_workflow(load(path)))


def test_the_reference_scenarios_are_saved():
    names = {path.name.split(".")[0] for path in HISTORIES}
    assert {"happy_path", "cancel_after_payment", "dispatch_failure"} <= names


@pytest.mark.parametrize("path", HISTORIES, ids=[p.name for p in HISTORIES])
def test_saved_history_replays_with_current_code(path):
    replay(path, [OrderWorkflow, ShippingWorkflow])


@workflow.defn(name="OrderWorkflow")
class UnpatchedChangeOrderWorkflow(OrderWorkflow):
    """OrderWorkflow with one extra step that is not guarded by workflow.patched."""

    @workflow.run
    async def run(
        self, order_id: str, address: str, options: Optional[OrderOptions] = None
    ) -> OrderResult:
        await workflow.sleep(0.001)  # a timer command the old histories never saw
        return await super().run(order_id, address, options)


@workflow.defn(name="OrderWorkflow")
class WallClockOrderWorkflow(OrderWorkflow):
    """OrderWorkflow that reads the wall clock instead of workflow.now()."""

    @workflow.run
    async def run(
        self, order_id: str, address: str, options: Optional[OrderOptions] = None
    ) -> OrderResult:
        return await super().run(order_id, address, options)

    def _log_state(self, state) -> None:
        import datetime

        self._history.append({"state": state.value, "at": datetime.datetime.now().isoformat()})


def test_replay_runs_in_the_sandbox_which_refuses_the_wall_clock():
    """Production workers may run unsandboxed; the replay keeps the sandbox's checks."""
    path = next(p for p in HISTORIES if p.name.startswith("happy_path.order"))
    with pytest.raises(Exception, match="datetime.datetime.now"):
        replay(path, [WallClockOrderWorkflow, ShippingWorkflow])


def test_replay_catches_a_change_that_is_not_patched():
    """The guard has teeth: an unguarded change to the workflow fails to replay."""
    path = next(p for p in HISTORIES if p.name.startswith("happy_path.order"))
    with pytest.raises(NondeterminismError):
        replay(path, [UnpatchedChangeOrderWorkflow, ShippingWorkflow])


def _has_patch_marker(path: Path, patch_id: str) -> bool:
    for event in load(path).events:
        if event.HasField("marker_recorded_event_attributes"):
            details = event.marker_recorded_event_attributes.details
            if "patch-data" in details:
                data = json.loads(details["patch-data"].payloads[0].data)
                if data["id"] == patch_id:
                    return True
    return False


@pytest.mark.parametrize("patch_id", [PATCH_SEARCH_ATTRIBUTES_AT_START, PATCH_LEAN_HISTORY])
def test_histories_cover_both_sides_of_the_patch(patch_id):
    """Order histories recorded before the patch and with its marker both replay above."""
    order_histories = [p for p in HISTORIES if ".order." in p.name]
    with_marker = {p.name for p in order_histories if _has_patch_marker(p, patch_id)}
    assert with_marker and len(with_marker) < len(order_histories)
