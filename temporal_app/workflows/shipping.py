"""ShippingWorkflow: prepares and dispatches one order's package, as the OrderWorkflow's child.

It owns the address once shipping starts: the parent forwards address changes, cancels and
retries, and the child refuses a change or a cancel once the carrier dispatch has begun. A
dispatch that exhausts its retries is reported to the parent, and the child waits for staff to
retry or cancel. Instructions and reports quote a secret the parent chose, so no other client
can steer a shipment.

Deterministic and Django-free.
"""

from __future__ import annotations

from typing import Any, Optional

from temporalio import workflow
from temporalio.exceptions import ActivityError, FailureError

from temporal_app.contracts import (
    Activities,
    DispatchInput,
    RefusalCode,
    ReportKind,
    ShippingInput,
    ShippingInstruction,
    ShippingOutcome,
    ShippingReport,
    ShippingStatus,
    Signals,
    refusal,
)
from temporal_app.workflows import boundary
from temporal_app.workflows.failures import STEP_FAILED, root_message
from temporal_app.workflows.policies import ACTIVITY_TIMEOUT, DISPATCH_RETRY, RETRY_FOREVER
from temporal_app.workflows.record import MAX_MESSAGES_KEPT
from temporal_app.workflows.shielded import run_shielded
from temporal_app.workflows.steps import db_step

# The child's own states (get_status's shipping_status).
PREPARING = "preparing"
PREPARED = "prepared"
DISPATCHING = "dispatching"
DISPATCH_FAILED = "dispatch_failed"
DISPATCHED = "dispatched"
CANCELLED = "cancelled"
FAILED = "failed"

NOT_STARTED_BY_PARENT = "ShippingWorkflow runs only as the child of the OrderWorkflow named in its input."
CANCELLED_IN_TEMPORAL = "the shipping workflow was cancelled in Temporal"


@workflow.defn(name="ShippingWorkflow")
class ShippingWorkflow:
    @workflow.init
    def __init__(self, *args: Any) -> None:
        self.request: Optional[ShippingInput] = boundary.shipping_input(args)
        self.address = self.request.address if self.request else ""
        self.state = PREPARING
        self.failures = 0
        self.cancel_reason = ""  # a cancel that stands
        self.cancel_during_dispatch = ""  # a cancel that came while the carrier was being called
        self.retry = False
        # The latest foreign messages, for whoever investigates (get_status), at most
        # MAX_MESSAGES_KEPT like the order's own messages: anyone may signal a child, and its state
        # must not grow with every signal (each one stays in the history).
        self.ignored: list[dict[str, str]] = []
        self.ignored_dropped = 0

    @workflow.run
    async def run(self, *args: Any) -> ShippingOutcome:
        # Temporal's own cancel is handled like the parent's, at the next step.
        return await run_shielded(self._story(), self._cancelled_in_temporal)

    async def _cancelled_in_temporal(self) -> None:
        self._cancel(CANCELLED_IN_TEMPORAL)

    async def _story(self) -> ShippingOutcome:
        request = self.request
        parent = workflow.info().parent
        if request is None or parent is None or parent.workflow_id != request.parent_workflow_id:
            self.state = FAILED
            return ShippingOutcome(ShippingStatus.FAILED, reason=NOT_STARTED_BY_PARENT)
        if self.cancel_reason:
            return await self._finish(ShippingStatus.CANCELLED)
        try:
            # A short database step: a local activity (the carrier's call below stays a regular
            # activity, its attempts visible in the history and its timeouts its own).
            await db_step(
                Activities.PACKAGE_PREPARED,
                DispatchInput(request.order_id, self.address),
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=RETRY_FOREVER,
            )
        except STEP_FAILED as err:
            self.state = FAILED
            return await self._finish(ShippingStatus.FAILED, f"the package could not be prepared: {root_message(err)}")
        self.state = PREPARED
        while True:
            if self.cancel_reason:
                return await self._finish(ShippingStatus.CANCELLED)
            self.state = DISPATCHING
            try:
                tracking_number: str = await workflow.execute_activity(
                    Activities.CARRIER_DISPATCHED,
                    DispatchInput(request.order_id, self.address),
                    result_type=str,
                    start_to_close_timeout=ACTIVITY_TIMEOUT,
                    retry_policy=DISPATCH_RETRY,
                )
            except ActivityError as err:
                if self.cancel_during_dispatch:
                    # Nothing was dispatched after all, so the cancel that came meanwhile stands.
                    self.cancel_reason = self.cancel_during_dispatch
                    return await self._finish(ShippingStatus.CANCELLED)
                await self._dispatch_failed(root_message(err))
                continue
            self.state = DISPATCHED
            return await self._finish(ShippingStatus.DISPATCHED, tracking_number=tracking_number)

    async def _dispatch_failed(self, message: str) -> None:
        self.failures += 1
        self.state = DISPATCH_FAILED
        await self._report(ShippingReport(ReportKind.DISPATCH_FAILED, message=message))
        await workflow.wait_condition(lambda: self.retry or bool(self.cancel_reason))
        self.retry = False

    async def _finish(self, status: ShippingStatus, reason: str = "", tracking_number: str = "") -> ShippingOutcome:
        if status == ShippingStatus.CANCELLED:
            self.state = CANCELLED
            reason = reason or self.cancel_reason
        await workflow.wait_condition(workflow.all_handlers_finished)
        return ShippingOutcome(status, tracking_number, self.address, reason)

    async def _report(self, report: ShippingReport) -> None:
        assert self.request is not None
        report.token = self.request.report_token
        report.run_id = workflow.info().run_id
        parent = workflow.get_external_workflow_handle(self.request.parent_workflow_id)
        try:
            await parent.signal(Signals.SHIPPING_REPORT, report)
        except FailureError:
            workflow.logger.warning("parent %s is gone; report dropped", self.request.parent_workflow_id)

    def _cancel(self, reason: str) -> None:
        # Once dispatch has begun the parent learns the outcome from the result: dispatched (the
        # cancel was too late) or cancelled (the dispatch failed, so the cancel stands).
        if self.state == DISPATCHING:
            self.cancel_during_dispatch = reason
        elif self.state not in (DISPATCHED, FAILED):
            self.cancel_reason = reason

    def _from_parent(self, name: str, args: Any) -> Optional[ShippingInstruction]:
        """The instruction, if it quotes the parent's secret; anything else is ignored and kept
        in get_status for whoever investigates."""
        instruction = boundary.shipping_instruction(name, args)
        if (
            isinstance(instruction, ShippingInstruction)
            and self.request is not None
            and self.request.report_token
            and instruction.token == self.request.report_token
        ):
            return instruction
        found = (
            instruction if not isinstance(instruction, ShippingInstruction) else refusal(RefusalCode.NOT_FROM_PARENT)
        )
        self.ignored.append(
            {"name": name, "at": workflow.now().isoformat(), "code": found.code.value, "message": found.message}
        )
        if len(self.ignored) > MAX_MESSAGES_KEPT:
            del self.ignored[0]
            self.ignored_dropped += 1
        return None

    @workflow.signal(name=Signals.SHIPPING_CANCEL)
    def cancel(self, *args: Any) -> None:
        instruction = self._from_parent(Signals.SHIPPING_CANCEL, args)
        if instruction is not None:
            self._cancel(instruction.reason or "cancelled")

    @workflow.signal(name=Signals.SHIPPING_ADDRESS)
    async def change_address(self, *args: Any) -> None:
        instruction = self._from_parent(Signals.SHIPPING_ADDRESS, args)
        if instruction is None:
            return
        accepted = self.state not in (DISPATCHING, DISPATCHED)
        if accepted:
            self.address = instruction.address
        await self._report(
            ShippingReport(
                ReportKind.ACK,
                instruction.action_id,
                accepted,
                "" if accepted else refusal(RefusalCode.ADDRESS_TOO_LATE).message,
                instruction.address,
            )
        )

    @workflow.signal(name=Signals.SHIPPING_RETRY)
    def retry_dispatch(self, *args: Any) -> None:
        instruction = self._from_parent(Signals.SHIPPING_RETRY, args)
        if instruction is not None and self.state == DISPATCH_FAILED:
            self.retry = True

    @workflow.query(name="get_status")
    def get_status(self) -> dict[str, Any]:
        return {
            "shipping_status": self.state,
            "order_id": self.request.order_id if self.request else "",
            "address": self.address,
            "dispatch_failures": self.failures,
            "cancelled": bool(self.cancel_reason),
            "ignored_messages": list(self.ignored),
            "ignored_messages_not_shown": self.ignored_dropped,
        }
