"""The actions people and clients take on a running order, one small object per concern.

Each gate owns its part of the order's state, the refusal rules (with their codes) and what
taking the action does; the workflow's handlers and validators only call them. The same
``refusal()`` serves a signal (refused and recorded), an Update's validator (refused before
anything reaches history) and the Update's handler.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Optional

from temporalio import workflow
from temporalio.exceptions import FailureError

from temporal_app.contracts import (
    CLIENT_ACTOR,
    FIRST_OF_TWO_APPROVALS,
    POLICY_ACTOR,
    REVIEW_TIMED_OUT,
    SHIPPING_TASK_QUEUE,
    ActionResult,
    Activities,
    AddressChange,
    CancelRequest,
    OrderState,
    ProgressEvent,
    Refusal,
    RefusalCode,
    ReportKind,
    ReviewDecision,
    ReviewEscalation,
    ReviewOutcome,
    ShippingInput,
    ShippingInstruction,
    ShippingOutcome,
    ShippingReport,
    ShippingRetryRequest,
    Signals,
    TimeoutAction,
    ValidatedOrder,
    address_error,
    normalise_address,
    refusal,
    shipping_workflow_id,
)
from temporal_app.workflows.policies import ACTIVITY_TIMEOUT, RETRY_FOREVER
from temporal_app.workflows.record import DISPATCH_FAILURES_KEY, REVIEW_ESCALATED_KEY, OrderRecord


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

    async def start(self, address: str) -> workflow.ChildWorkflowHandle[Any, ShippingOutcome]:
        info = workflow.info()
        self.token = str(workflow.uuid4())
        self.child = await workflow.start_child_workflow(
            "ShippingWorkflow",
            ShippingInput(self.record.order_id, info.workflow_id, address, self.token),
            id=shipping_workflow_id(info.workflow_id),
            task_queue=SHIPPING_TASK_QUEUE,
            result_type=ShippingOutcome,
        )
        return self.child

    async def forward(
        self, signal: str, instruction: ShippingInstruction, *, wait: bool = False
    ) -> Optional[ShippingReport]:
        """Signal the child; with ``wait``, wait for its answer to ``instruction.action_id``."""
        if self.child is None:
            return None
        instruction.token = self.token
        try:
            await self.child.signal(signal, instruction)
        except FailureError:
            # The child already closed: it dispatched or was cancelled; nothing to forward to.
            return ShippingReport(
                ReportKind.ACK, instruction.action_id, False, refusal(RefusalCode.ADDRESS_TOO_LATE).message
            )
        if not wait:
            return None
        await workflow.wait_condition(lambda: instruction.action_id in self._acks or self.record.state.is_terminal)
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
                OrderState.CANCELLED,
                self.request.reason or "cancelled",
                self.request.actor or CLIENT_ACTOR,
                review=review,
                reason_code=self.request.reason_code,
            )


class Escalation:
    """An undecided review is escalated to the review leads once it has waited its share of the
    review timeout (``ValidatedOrder.escalate_after``, REVIEW_ESCALATE_AFTER): a workflow timer,
    so it survives worker restarts; a decision before it cancels it, and nothing else resets it.

    The review's one timer is the escalation's deadline first and then the rest of the timeout,
    so an order decided before the escalation costs the history no more than it did without it."""

    def __init__(self, record: OrderRecord) -> None:
        self.record = record
        self.after = 0.0  # share of the review timeout; 0: never
        self.due: Optional[str] = None  # when it escalates, if it does
        self.at: Optional[str] = None  # when it escalated

    def configure(self, validated: ValidatedOrder) -> None:
        after = validated.escalate_after
        # An activity result is ours, but a bad number must not wedge the workflow: out of range is "never".
        self.after = after if isinstance(after, (int, float)) and 0 < after < 1 else 0.0

    def delay(self, timeout: timedelta) -> Optional[timedelta]:
        if not self.after:
            return None
        delay = timeout * self.after
        self.due = (workflow.now() + delay).isoformat()
        return delay

    async def escalate(self, waited: timedelta, review_due: datetime) -> None:
        """The leads are told (review_escalated: audit, task, email, webhook, metric; once)."""
        self.at = workflow.now().isoformat()
        workflow.upsert_search_attributes([REVIEW_ESCALATED_KEY.value_set(True)])
        self.record.log_message(
            "ReviewEscalated",
            "system",
            "",
            "applied",
            f"the review waited {waited.total_seconds():g} s undecided: escalated to the leads",
        )
        await workflow.execute_activity(
            Activities.REVIEW_ESCALATED,
            ReviewEscalation(
                self.record.order_id, workflow.info().workflow_id, waited.total_seconds(), review_due.timestamp()
            ),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RETRY_FOREVER,
        )


class FourEyes:
    """Orders that need approvals from two different people before the charge (an amount at or
    above REVIEW_FOUR_EYES_AMOUNT, a risk level in REVIEW_FOUR_EYES_LEVELS). The workflow keeps
    the approvals (who, when, the note); each approval but the last is projected on its own and
    answered "approved, 1 of 2". An approval from a Temporal client counts by its ``reviewer``
    (``temporal-client`` when it names none), so two anonymous clients count as one person."""

    def __init__(self, record: OrderRecord) -> None:
        self.record = record
        self.required = 1
        self.rule = ""
        self.approvals: list[dict[str, Any]] = []
        self._answered: list[tuple[ReviewDecision, str]] = []  # approvals not the last, projected, with their answer

    def configure(self, validated: ValidatedOrder) -> None:
        self.required = 2 if validated.approvals_required == 2 else 1
        self.rule = validated.four_eyes_rule if self.required > 1 else ""

    def refusal(self, decision: ReviewDecision) -> Optional[Refusal]:
        reviewer = _reviewer(decision)
        if decision.decision == "approve" and any(a["reviewer"] == reviewer for a in self.approvals):
            return refusal(RefusalCode.SAME_REVIEWER, reviewer=reviewer)
        return None

    def completes(self, decision: ReviewDecision) -> bool:
        """Whether the decision ends the review: a rejection, or the last approval needed."""
        return decision.decision != "approve" or len(self.approvals) + 1 >= self.required

    def count(self, decision: ReviewDecision) -> None:
        if decision.decision == "approve" and self.required > 1:
            self.approvals.append(
                {
                    "reviewer": _reviewer(decision),
                    "at": workflow.now().isoformat(),
                    "note": decision.note,
                    "action_id": decision.action_id,
                }
            )

    def answered(self, decision: ReviewDecision) -> Optional[str]:
        return next((answer for held, answer in self._answered if held is decision), None)

    def answer(self) -> str:
        return f"Approved, {len(self.approvals)} of {self.required}: waiting for a second reviewer."

    async def record_partial(self, decision: ReviewDecision) -> str:
        """Project an approval that is not the last: its audit event, and the task says who
        approved (and gives their claim back, so a colleague can take it)."""
        reviewer, number = _reviewer(decision), len(self.approvals)
        message = self.answer()
        await self.record.project(
            ProgressEvent.REVIEW_PARTLY_APPROVED,
            key=f"review_approval:{number}",
            actor=reviewer,
            source="workflow",
            to_status="",
            reason=f"approved, {number} of {self.required}: waiting for a second reviewer ({self.rule})",
            details={
                "decision": "approve",
                "note": decision.note,
                "action_id": decision.action_id,
                "approvals": number,
                "approvals_required": self.required,
                "rule": self.rule,
            },
            approval=(reviewer, decision.note, number, self.required),
        )
        self._answered.append((decision, message))
        return message


class ReviewExpiry:
    """What the review's timeout does, by the order's risk level (REVIEW_TIMEOUT_ACTION_<LEVEL>):
    expire (cancel, the default) or approve as the actor ``policy``, naming the rule."""

    def __init__(self) -> None:
        self.action = TimeoutAction.EXPIRE
        self.rule = ""

    def configure(self, validated: ValidatedOrder, four_eyes: FourEyes) -> None:
        approve = validated.timeout_action == TimeoutAction.APPROVE and four_eyes.required == 1
        # A policy never stands in for the people four eyes asks for: such an order expires.
        self.action = TimeoutAction.APPROVE if approve else TimeoutAction.EXPIRE
        self.rule = validated.timeout_rule if approve else ""

    def decision(self) -> Optional[ReviewDecision]:
        """The policy's approval when the timeout approves; None when it expires the order."""
        if self.action != TimeoutAction.APPROVE:
            return None
        return ReviewDecision("approve", POLICY_ACTOR, f"approved by policy: the review timed out ({self.rule})")


class Review:
    """The manual review: the decision, held from the moment it is taken until the order
    reaches review, and the wait for it, with its rules (escalation, four eyes, expiry)."""

    def __init__(self, record: OrderRecord, cancellation: Cancellation) -> None:
        self.record = record
        self.cancellation = cancellation
        self.decision: Optional[ReviewDecision] = None
        self.due: Optional[str] = None
        self.open = False  # the review task exists in Postgres and is not closed yet
        self.decided = False  # the decision (or the ending that replaced it) is in Postgres
        self.outcome: Optional[ReviewOutcome] = None  # how the review ended
        self.escalation = Escalation(record)
        self.four_eyes = FourEyes(record)
        self.expiry = ReviewExpiry()
        # A second person's approval that came (by Update) before the order reached review, while
        # a first was held: it counts if four eyes applies, else it is refused then.
        self.held_second: Optional[ReviewDecision] = None
        self._refused_late: list[ReviewDecision] = []

    def refusal(self, decision: ReviewDecision, *, from_signal: bool) -> Optional[Refusal]:
        """``from_signal``: the seed's signal may reject without a note; an Update needs one."""
        if decision.decision not in ("approve", "reject"):
            return refusal(RefusalCode.UNKNOWN_DECISION, decision=decision.decision)
        if decision.decision == "reject" and not decision.note.strip() and not from_signal:
            return refusal(RefusalCode.REJECT_NEEDS_NOTE)
        if self.record.is_duplicate(decision.action_id):
            return refusal(RefusalCode.DUPLICATE_ACTION)
        if self.decision is not None and not (not from_signal and self._may_hold_second(decision)):
            return refusal(RefusalCode.ALREADY_DECIDED)
        if self.cancellation.request is not None:
            return refusal(RefusalCode.CANCEL_ALREADY_REQUESTED)
        found = self.four_eyes.refusal(decision)
        if found is not None:
            return found
        state = self.record.state
        # order_received and order_validated (local activities of the first workflow task)
        # commit the review task before this workflow learns they returned; when that task is
        # retried, or the workflow replayed on another worker, it starts again from `started`.
        # So a reviewer's Update can arrive while the order is still `started` or `processing`:
        # held until the order reaches review, like an early signal.
        if state in (OrderState.STARTED, OrderState.PROCESSING, OrderState.AWAITING_MANUAL_REVIEW):
            return None
        return refusal(RefusalCode.NOT_AWAITING_REVIEW, state=state.value)

    def _may_hold_second(self, decision: ReviewDecision) -> bool:
        """Before review the rules are not known: a second person's approval (by Update: a
        signal's refusal was recorded in histories before four eyes) is held beside the first."""
        held = self.decision
        return (
            not self.open
            and held is not None
            and self.held_second is None
            and held.decision == decision.decision == "approve"
            and _reviewer(held) != _reviewer(decision)
        )

    async def take(self, decision: ReviewDecision) -> Optional[str]:
        """Take a decision. An approval that is not the last one four eyes needs is counted and
        projected, and its answer returned; None when the decision ends the review (or is held
        until the order reaches review, where the rules are known)."""
        if self.decision is not None and self._may_hold_second(decision):
            self.held_second = decision
            return None
        if self.open and not self.four_eyes.completes(decision):
            self.four_eyes.count(decision)
            return await self.four_eyes.record_partial(decision)
        self.four_eyes.count(decision)
        self.decision = decision
        return None

    def answered(self, decision: ReviewDecision) -> Optional[ActionResult]:
        """The answer to an Update whose approval turned out not to be the last (it was held
        until the order reached review, and four eyes applies), once it is projected."""
        answer = self.four_eyes.answered(decision)
        if answer is not None:
            return ActionResult(True, answer, self.record.state.value, FIRST_OF_TWO_APPROVALS)
        if any(refused is decision for refused in self._refused_late):
            found = refusal(RefusalCode.ALREADY_DECIDED)
            return ActionResult(False, found.message, self.record.state.value, found.code.value)
        return None

    async def open_with(self, validated: ValidatedOrder) -> None:
        """The order reached review: its rules are known. A decision held until now that is an
        approval four eyes does not accept alone becomes the first approval."""
        self.four_eyes.configure(validated)
        self.escalation.configure(validated)
        self.expiry.configure(validated, self.four_eyes)
        held, second = self.decision, self.held_second
        if held is not None and held.decision == "approve" and self.four_eyes.required > 1:
            self.decision = None
            self.four_eyes.approvals.clear()
            self.four_eyes.count(held)
            await self.four_eyes.record_partial(held)
            if second is not None:  # another person's approval, held too: the second of two
                self.four_eyes.count(second)
                self.decision = second
        elif second is not None:  # one approval was enough: the other was too late
            self._refused_late.append(second)

    async def wait_for_approval(self, timeout: timedelta) -> ReviewDecision:
        """The approving decision; a rejection, a cancel or the timeout (unless its policy
        approves) stops the order. The leads are told when it waits too long."""
        due = workflow.now() + timeout
        escalate_in = self.escalation.delay(timeout)
        if escalate_in is None:
            decided = await self._wait(timeout)
        else:
            decided = await self._wait(escalate_in)
            if not decided:
                await self.escalation.escalate(escalate_in, due)
                remaining = due - workflow.now()
                decided = self._waited() or (remaining > timedelta(0) and await self._wait(remaining))
        if not decided:
            policy = self.expiry.decision()
            if policy is None:
                raise OrderStopped(OrderState.CANCELLED, REVIEW_TIMED_OUT, review=ReviewOutcome.EXPIRED)
            self.record.log_message("ReviewTimeout", POLICY_ACTOR, "", "applied", policy.note)
            self.decision = policy
        self.cancellation.stop_if_requested(review=ReviewOutcome.CANCELLED)
        decision = self.decision
        assert decision is not None  # the wait above ends only with a decision or a cancel
        if decision.decision == "reject":
            raise OrderStopped(
                OrderState.CANCELLED,
                f"rejected in review: {decision.note}" if decision.note else "rejected in review",
                decision.reviewer or CLIENT_ACTOR,
                review=ReviewOutcome.REJECTED,
                note=decision.note,
                reason_code=decision.reason_code,
                action_id=decision.action_id,
            )
        return decision

    def _waited(self) -> bool:
        return self.decision is not None or self.cancellation.request is not None

    async def _wait(self, timeout: timedelta) -> bool:
        """Wait for a decision or a cancel; False when ``timeout`` passed first."""
        try:
            await workflow.wait_condition(self._waited, timeout=timeout)
        except TimeoutError:
            return False
        return True

    def status(self) -> dict[str, Any]:
        """What get_status tells of the review's rules."""
        return {
            "review_approvals": [{k: v for k, v in a.items() if k != "action_id"} for a in self.four_eyes.approvals],
            "review_approvals_required": self.four_eyes.required,
            "review_four_eyes_rule": self.four_eyes.rule,
            "review_escalates_at": self.escalation.due,
            "review_escalated_at": self.escalation.at,
            "review_timeout_action": self.expiry.action.value,
        }


def _reviewer(decision: ReviewDecision) -> str:
    """Who a decision counts as: its reviewer, or the anonymous Temporal client."""
    return decision.reviewer or CLIENT_ACTOR


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
                Signals.SHIPPING_ADDRESS,
                ShippingInstruction("", action_id, address=new),
                wait=True,
            )
            if answer is not None and not answer.accepted:
                return refusal(RefusalCode.ADDRESS_TOO_LATE)
        self.record.address = new
        return None
