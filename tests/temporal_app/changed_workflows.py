"""Changed copies of OrderWorkflow, as a developer might write them, for the deploy checks'
tests. Only temporalio and the workflow package here: the sandbox re-imports this module.

- ``StepBeforeReviewOrderWorkflow``: an incompatible change (a step inserted before the review,
  not patched). Every recorded order history fails to replay with it (verify_replay's test).
- ``NoteAfterReviewOrderWorkflow``: a compatible, patched change (after the approval the
  workflow records which code approved it in its memo). The worker-versioning rehearsal deploys
  it as v2 (test_versioning.py).
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow

from temporal_app.contracts import OrderResult, ReceivedOrder, ReviewDecision
from temporal_app.workflows import OrderWorkflow

REHEARSAL_PATCH = "rehearsal-note-after-review"


@workflow.defn(name="OrderWorkflow")
class StepBeforeReviewOrderWorkflow(OrderWorkflow):
    @workflow.run
    async def run(self, *args: Any) -> OrderResult:
        return await super().run(*args)

    async def _validate(self, received: ReceivedOrder) -> None:
        await workflow.sleep(0.001)  # a timer the running orders' histories never had
        await super()._validate(received)


@workflow.defn(name="OrderWorkflow")
class NoteAfterReviewOrderWorkflow(OrderWorkflow):
    @workflow.run
    async def run(self, *args: Any) -> OrderResult:
        return await super().run(*args)

    async def _approved(self, decision: ReviewDecision) -> None:
        await super()._approved(decision)
        if workflow.patched(REHEARSAL_PATCH):
            workflow.upsert_memo({"approved_under": "v2"})
