"""The actions people and clients take on a running order, one small object per concern.

Each gate owns its part of the order's state, the refusal rules (with their codes) and what
taking the action does; the workflow's handlers and validators only call them. The same
``refusal()`` serves a signal (refused and recorded), an Update's validator (refused before
anything reaches history) and the Update's handler.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Optional

from temporalio import workflow
from temporalio.exceptions import FailureError

from temporal_app.contracts import (
    CLIENT_ACTOR,
    REVIEW_TIMED_OUT,
    SHIPPING_TASK_QUEUE,
    AddressChange,
    CancelRequest,
    OrderState,
    Refusal,
    RefusalCode,
    ReportKind,
    ReviewDecision,
    ReviewOutcome,
    ShippingInput,
    ShippingInstruction,
    ShippingOutcome,
    ShippingReport,
    ShippingRetryRequest,
    Signals,
    address_error,
    normalise_address,
    refusal,
    shipping_workflow_id,
)
from temporal_app.workflows.record import DISPATCH_FAILURES_KEY, OrderRecord


@dataclass
class OrderStopped(Exception):
    """The order leaves its story early: cancelled, rejected, timed out, declined, failed."""

    state: OrderState
    reason: str
    actor: str = "system"
    review: Optional[ReviewOutcome] = None  # set when this ends the manual review
    note: str = ""
    reason_code: str = ""
    action_id: str = ""  # the decision's, when a reviewer's rejection ends the order

    def __post_init__(self) -> None:
        super().__init__(self.reason)


def _finished(record: OrderRecord) -> Optional[Refusal]:
    if record.state.is_terminal:
        return refusal(RefusalCode.ALREADY_FINISHED, state=record.state.value)
    return None


class Shipping:
    """The parent's side of the ShippingWorkflow child: starting it, forwarding instructions,
    and the child's reports, which only the child can make (they quote a secret it was given)."""

    def __init__(self, record: OrderRecord) -> None:
        self.record = record
        self.child: Optional[workflow.ChildWorkflowHandle[Any, ShippingOutcome]] = None
        self.token = ""
        self.dispatched = False
        self.failures = 0
        self.awaiting_retry = False
        self._acks: dict[str, ShippingReport] = {}

    async def start(self, address: str) -> None:
        info = workflow.info()
        self.token = str(workflow.uuid4())
        self.child = await workflow.start_child_workflow(
            "ShippingWorkflow",
            ShippingInput(self.record.order_id, info.workflow_id, address, self.token),
            id=shipping_workflow_id(info.workflow_id),
            task_queue=SHIPPING_TASK_QUEUE,
            result_type=ShippingOutcome,
        )

    async def forward(self, signal: str, instruction: ShippingInstruction, *, wait: bool = False) -> Optional[ShippingReport]:
        """Signal the child; with ``wait``, wait for its answer to ``instruction.action_id``."""
        if self.child is None:
            return None
        instruction.token = self.token
        try:
            await self.child.signal(signal, instruction)
        except FailureError:
            # The child already closed: it dispatched or was cancelled; nothing to forward to.
            return ShippingReport(ReportKind.ACK, instruction.action_id, False,
                                  refusal(RefusalCode.ADDRESS_TOO_LATE).message)
        if not wait:
            return None
        await workflow.wait_condition(
            lambda: instruction.action_id in self._acks or self.record.state.is_terminal
        )
        return self._acks.pop(
            instruction.action_id,
            ShippingReport(ReportKind.ACK, instruction.action_id, False, refusal(RefusalCode.ADDRESS_TOO_LATE).message),
        )

    # -- the child's reports -----------------------------------------------------------------------

    def report_refusal(self, report: ShippingReport) -> Optional[Refusal]:
        """A report counts only if it quotes this run's secret and names the running child, and
        only in a state where the child can make it."""
        if (
            self.child is None
            or not self.token
            or report.token != self.token
            or report.run_id != self.child.first_execution_run_id
            or self.record.state != OrderState.SHIPPING
        ):
            return refusal(RefusalCode.NOT_FROM_CHILD)
        if report.kind == ReportKind.DISPATCH_FAILED and not self.awaiting_retry:
            return None
        if report.kind == ReportKind.ACK and report.action_id:
            return None
        return refusal(RefusalCode.NOT_FROM_CHILD)

    def take_report(self, report: ShippingReport) -> None:
        if report.kind == ReportKind.ACK:
            self._acks[report.action_id] = report
            return
        self.failures += 1
        self.awaiting_retry = True
        workflow.upsert_search_attributes([DISPATCH_FAILURES_KEY.value_set(self.failures)])

    # -- staff's retry -----------------------------------------------------------------------------

    def retry_refusal(self, request: ShippingRetryRequest, cancel_requested: bool) -> Optional[Refusal]:
        if self.record.is_duplicate(request.action_id):
            return refusal(RefusalCode.DUPLICATE_ACTION)
        finished = _finished(self.record)
        if finished:
            return finished
        if not self.awaiting_retry or cancel_requested:
            return refusal(RefusalCode.NOT_DISPATCH_FAILED)
        return None

    async def take_retry(self, request: ShippingRetryRequest) -> None:
        self.awaiting_retry = False
        await self.forward(Signals.SHIPPING_RETRY, ShippingInstruction("", request.action_id))


class Cancellation:
    def __init__(self, record: OrderRecord, shipping: Shipping) -> None:
        self.record = record
        self.shipping = shipping
        self.request: Optional[CancelRequest] = None

    def refusal(self, request: CancelRequest) -> Optional[Refusal]:
        if self.record.is_duplicate(request.action_id):
            return refusal(RefusalCode.DUPLICATE_ACTION)
        if self.shipping.dispatched or self.record.state == OrderState.COMPLETED:
            return refusal(RefusalCode.CANCEL_TOO_LATE)
        finished = _finished(self.record)
        if finished:
            return finished
        if self.request is not None:
            return refusal(RefusalCode.CANCEL_ALREADY_REQUESTED)
        return None

    async def take(self, request: CancelRequest) -> None:
        self.request = request
        await self.shipping.forward(
            Signals.SHIPPING_CANCEL, ShippingInstruction("", request.action_id, reason=request.reason)
        )

    def stop_if_requested(self, *, review: Optional[ReviewOutcome] = None) -> None:
        if self.request is not None:
            raise OrderStopped(
                OrderState.CANCELLED, self.request.reason or "cancelled", self.request.actor or CLIENT_ACTOR,
                review=review, reason_code=self.request.reason_code,
            )


class Review:
    """The manual review: the decision, held from the moment it is taken until the order
    reaches review, and the wait for it."""

    def __init__(self, record: OrderRecord, cancellation: Cancellation) -> None:
        self.record = record
        self.cancellation = cancellation
        self.decision: Optional[ReviewDecision] = None
        self.due: Optional[str] = None
        self.open = False  # the review task exists in Postgres and is not closed yet
        self.decided = False  # the decision (or the ending that replaced it) is in Postgres
        self.outcome: Optional[ReviewOutcome] = None  # how the review ended

    def refusal(self, decision: ReviewDecision, *, from_signal: bool) -> Optional[Refusal]:
        """``from_signal``: the seed's signal may reject without a note; an Update needs one."""
        if decision.decision not in ("approve", "reject"):
            return refusal(RefusalCode.UNKNOWN_DECISION, decision=decision.decision)
        if decision.decision == "reject" and not decision.note.strip() and not from_signal:
            return refusal(RefusalCode.REJECT_NEEDS_NOTE)
        if self.record.is_duplicate(decision.action_id):
            return refusal(RefusalCode.DUPLICATE_ACTION)
        if self.decision is not None:
            return refusal(RefusalCode.ALREADY_DECIDED)
        if self.cancellation.request is not None:
            return refusal(RefusalCode.CANCEL_ALREADY_REQUESTED)
        state = self.record.state
        # order_received and order_validated (local activities of the first workflow task)
        # commit the review task before this workflow learns they returned; when that task is
        # retried, or the workflow replayed on another worker, it starts again from `started`.
        # So a reviewer's Update can arrive while the order is still `started` or `processing`:
        # held until the order reaches review, like an early signal.
        if state in (OrderState.STARTED, OrderState.PROCESSING, OrderState.AWAITING_MANUAL_REVIEW):
            return None
        return refusal(RefusalCode.NOT_AWAITING_REVIEW, state=state.value)

    def take(self, decision: ReviewDecision) -> None:
        self.decision = decision

    async def wait_for_approval(self, timeout: timedelta) -> ReviewDecision:
        """The approving decision; a rejection, a cancel or the timeout stops the order."""
        try:
            await workflow.wait_condition(
                lambda: self.decision is not None or self.cancellation.request is not None, timeout=timeout,
            )
        except asyncio.TimeoutError:
            raise OrderStopped(OrderState.CANCELLED, REVIEW_TIMED_OUT, review=ReviewOutcome.EXPIRED) from None
        self.cancellation.stop_if_requested(review=ReviewOutcome.CANCELLED)
        decision = self.decision
        assert decision is not None  # the wait above ends only with a decision or a cancel
        if decision.decision == "reject":
            raise OrderStopped(
                OrderState.CANCELLED,
                f"rejected in review: {decision.note}" if decision.note else "rejected in review",
                decision.reviewer or CLIENT_ACTOR, review=ReviewOutcome.REJECTED, note=decision.note,
                reason_code=decision.reason_code, action_id=decision.action_id,
            )
        return decision


class AddressBook:
    """The shipping address. Once shipping started the child owns it and answers whether a
    change still made it (it refuses once the carrier dispatch has begun)."""

    def __init__(self, record: OrderRecord, shipping: Shipping) -> None:
        self.record = record
        self.shipping = shipping

    def refusal(self, change: AddressChange) -> Optional[Refusal]:
        if self.record.is_duplicate(change.action_id):
            return refusal(RefusalCode.DUPLICATE_ACTION)
        problem = address_error(change.address)
        if problem:
            return refusal(RefusalCode.ADDRESS_INVALID, detail=problem)
        if self.shipping.dispatched or self.record.state == OrderState.COMPLETED:
            return refusal(RefusalCode.ADDRESS_TOO_LATE)
        finished = _finished(self.record)
        if finished:
            return finished
        if normalise_address(change.address) == normalise_address(self.record.address):
            return refusal(RefusalCode.ADDRESS_UNCHANGED)
        return None

    async def take(self, change: AddressChange) -> Optional[Refusal]:
        """Apply the change; the child may still refuse it (a late refusal)."""
        new = normalise_address(change.address)
        if self.shipping.child is not None:
            action_id = change.action_id or str(workflow.uuid4())
            answer = await self.shipping.forward(
                Signals.SHIPPING_ADDRESS, ShippingInstruction("", action_id, address=new), wait=True,
            )
            if answer is not None and not answer.accepted:
                return refusal(RefusalCode.ADDRESS_TOO_LATE)
        self.record.address = new
        return None
