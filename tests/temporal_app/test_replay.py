"""Determinism guard: saved histories replay through the current workflow code.

A change to workflow code that would break workflows already running (a new command, a changed
order of steps) fails here. Record new histories with `python manage.py record_histories` after a
deliberate change guarded by `workflow.patched`; keep the old files (docs/determinism.md).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner
from temporalio.workflow import NondeterminismError

from temporal_app.codec import data_converter
from temporal_app.contracts import OrderResult
from temporal_app.workflows import OrderWorkflow, ShippingWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def load(path: Path) -> WorkflowHistory:
    saved = json.loads(path.read_text())
    return WorkflowHistory.from_json(saved["workflow_id"], saved["history"])


def replay(path: Path, workflows: list, keys: list[bytes] = ()) -> None:
    # Sandboxed on purpose, whatever production workers use (TEMPORAL_WORKFLOW_SANDBOX): the
    # sandbox refuses wall clocks, randomness and I/O in workflow code. The data converter is the
    # workers' own (temporal_app.codec): with payload keys set, the replayer decrypts as they do.
    replayer = Replayer(workflows=workflows, workflow_runner=SandboxedWorkflowRunner(),
                        data_converter=data_converter(keys))
    asyncio.run(replayer.replay_workflow(load(path)))


REFERENCE_SCENARIOS = {
    "happy_path", "cancel_after_payment", "dispatch_failure", "temporal_cancel", "refused_start",
    "malformed_messages", "shipping_terminated",
}


def test_the_reference_scenarios_are_saved():
    names = {path.name.split(".")[0] for path in HISTORIES}
    assert REFERENCE_SCENARIOS <= names


@pytest.mark.parametrize("path", HISTORIES, ids=[p.name for p in HISTORIES])
def test_saved_history_replays_with_current_code(path):
    replay(path, [OrderWorkflow, ShippingWorkflow])


@workflow.defn(name="OrderWorkflow")
class UnpatchedChangeOrderWorkflow(OrderWorkflow):
    """OrderWorkflow with one extra step that is not guarded by workflow.patched."""

    @workflow.run
    async def run(self, *args: Any) -> OrderResult:
        await workflow.sleep(0.001)  # a timer command the old histories never saw
        return await super().run(*args)


@workflow.defn(name="OrderWorkflow")
class WallClockOrderWorkflow(OrderWorkflow):
    """OrderWorkflow that reads the wall clock instead of workflow.now()."""

    @workflow.run
    async def run(self, *args: Any) -> OrderResult:
        import datetime

        datetime.datetime.now()
        return await super().run(*args)


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


@workflow.defn(name="OrderWorkflow")
class PatchedChangeOrderWorkflow(OrderWorkflow):
    """The same extra step, guarded as docs/determinism.md says: old histories take the old path."""

    @workflow.run
    async def run(self, *args: Any) -> OrderResult:
        if workflow.patched("test-extra-step"):
            await workflow.sleep(0.001)
        return await super().run(*args)


def test_a_patched_change_replays_the_old_histories():
    for path in (p for p in HISTORIES if ".order." in p.name):
        replay(path, [PatchedChangeOrderWorkflow, ShippingWorkflow])
