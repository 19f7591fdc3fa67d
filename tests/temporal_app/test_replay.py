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
    # Imported here, not at the top: the sandbox re-imports this module (its workflows are
    # defined here), and cryptography's native module cannot be imported twice.
    from temporal_app.codec import data_converter

    replayer = Replayer(
        workflows=workflows, workflow_runner=SandboxedWorkflowRunner(), data_converter=data_converter(keys)
    )
    asyncio.run(replayer.replay_workflow(load(path)))


REFERENCE_SCENARIOS = {
    "happy_path",
    "cancel_after_payment",
    "dispatch_failure",
    "temporal_cancel",
    "refused_start",
    "malformed_messages",
    "shipping_terminated",
    # The review team (issue 20): escalation, four eyes, the timeout approving as policy.
    "escalation",
    "four_eyes",
    "policy_timeout",
}


def test_the_reference_scenarios_are_saved():
    names = {path.name.split(".")[0] for path in HISTORIES}
    assert names >= REFERENCE_SCENARIOS


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


ORDER_HISTORIES = [p for p in HISTORIES if ".order." in p.name]


@pytest.mark.parametrize("path", ORDER_HISTORIES, ids=[p.name for p in ORDER_HISTORIES])
def test_a_patched_change_replays_the_old_histories(path):
    replay(path, [PatchedChangeOrderWorkflow, ShippingWorkflow])


# -- with payload encryption on (temporal_app/codec.py) --------------------------------------


def _encrypted_copy(path: Path, keys: list[bytes], tmp_path: Path) -> Path:
    """The saved history as encrypting clients and workers would have left it in Temporal."""
    from temporal_app.codec import FernetPayloadCodec, encode_history_events

    history = load(path)
    encode_history_events(history.events, FernetPayloadCodec(keys))
    out = tmp_path / path.name
    out.write_text(json.dumps({"workflow_id": history.workflow_id, "history": json.loads(history.to_json())}))
    return out


def _payload_bytes(path: Path) -> bytes:
    from temporal_app.codec import payloads_in

    return b"".join(payload.data for event in load(path).events for payload in payloads_in(event))


@pytest.mark.parametrize("path", HISTORIES, ids=[p.name for p in HISTORIES])
def test_saved_histories_replay_with_the_codec_on(path):
    """Histories from before encryption (or from clients without the codec) still replay when
    the workers have keys: the codec leaves payloads it did not encrypt alone."""
    from cryptography.fernet import Fernet

    replay(path, [OrderWorkflow, ShippingWorkflow], [Fernet.generate_key()])


def test_an_encrypted_history_replays_with_the_keys_and_only_with_them(tmp_path):
    from cryptography.fernet import Fernet

    old, new = Fernet.generate_key(), Fernet.generate_key()
    path = next(p for p in HISTORIES if p.name.startswith("happy_path.order"))
    assert b"History Lane" in _payload_bytes(path)  # the control: the plain payloads show the address
    encrypted = _encrypted_copy(path, [old], tmp_path)
    assert b"History Lane" not in _payload_bytes(encrypted)
    replay(encrypted, [OrderWorkflow, ShippingWorkflow], [old])
    # After a rotation (a new key first, the old one kept) it still replays.
    replay(encrypted, [OrderWorkflow, ShippingWorkflow], [new, old])
    # Without the key that encrypted it, it cannot: nothing pretends to replay. Without the codec
    # the workflow's arguments cannot be decoded; with another key the codec says the key is not
    # there (temporal_app.codec.PayloadKeyError). Any other error (a non-determinism, a broken
    # history file) is not this and fails the test.
    with pytest.raises(RuntimeError, match="Failed decoding arguments"):
        replay(encrypted, [OrderWorkflow, ShippingWorkflow])
    with pytest.raises(RuntimeError, match="PayloadKeyError"):
        replay(encrypted, [OrderWorkflow, ShippingWorkflow], [new])
