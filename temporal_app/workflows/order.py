"""OrderWorkflow: one order, from receipt to dispatch.

``run()`` reads as the order's story: receive, validate, wait for the review, charge, ship.
Anything that stops it early (a cancel, a rejection, the review timing out, a declined card, a
fault no retry can fix) is raised as ``OrderStopped`` and handled in one place, ``_stopped``,
which refunds whatever was charged. Signals and Updates are one line each: the gates in
``order_actions`` decide and act, ``OrderRecord`` records.

Deterministic and Django-free: temporalio, the contracts and this package only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Optional, TypeVar, Union

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError

from temporal_app.contracts import (
    CLIENT_ACTOR,
    DEFAULT_REVIEW_TIMEOUT,
    FIRST_OF_TWO_APPROVALS,
    POLICY_ACTOR,
    SYSTEM_ACTOR,
    TEMPORAL_ACTOR,
    ActionResult,
    Activities,
    CancelRequest,
    CancelRequestInfo,
    Errors,
    OrderRef,
    OrderResult,
    OrderState,
    PaymentInput,
    PaymentReceipt,
    ProgressEvent,
    ReceivedOrder,
    ReceiveOrderInput,
    Refusal,
    RefusalCode,
    RefusedStart,
    ReportKind,
    ReviewDecision,
    ReviewOutcome,
    ShippingOutcome,
    ShippingRetryRequest,
    ShippingStatus,
    Signals,
    Updates,
    ValidatedOrder,
    ValidateOrderInput,
    refusal,
)
from temporal_app.workflows import boundary
from temporal_app.workflows.failures import STEP_FAILED, root_message, root_type
from temporal_app.workflows.order_actions import (
    AddressBook,
    Cancellation,
    OrderStopped,
    Review,
    Shipping,
)
from temporal_app.workflows.policies import (
    ACTIVITY_TIMEOUT,
    LOOKUP_RETRY,
    PAYMENT_RETRY,
    RETRY_FOREVER,
    VALIDATION_RETRY,
)
from temporal_app.workflows.record import OrderRecord, ReviewClose
from temporal_app.workflows.shielded import run_shielded
from temporal_app.workflows.steps import db_step

T = TypeVar("T")

# The one patch of issue 20 (docs/determinism.md): the DecideReview handler's own check.
REVIEW_TEAM_PATCH = "issue-20-review-team"


@workflow.defn(name="OrderWorkflow")
class OrderWorkflow:
    """Started with (order_id, address[, options]); any other arguments are refused, not fatal."""

    @workflow.init
    def __init__(self, *args: Any) -> None:
        self.start = boundary.parse_start(args)
        self.record = OrderRecord(self.start.order_id, self.start.address)
        self.shipping = Shipping(self.record)
        self.cancellation = Cancellation(self.record, self.shipping)
        self.review = Review(self.record, self.cancellation)
        self.address = AddressBook(self.record, self.shipping)
        self.charge_attempted = False

    # -- the story -------------------------------------------------------------------------------

    @workflow.run
    async def run(self, *args: Any) -> OrderResult:
        # A cancel requested in Temporal is handled like CancelOrder, at the story's next step.
        return await run_shielded(self._story(), self._cancel_requested_in_temporal)

    async def _story(self) -> OrderResult:
        if self.start.refused:
            return await self._refuse_start()
        try:
            received = await self._receive()
            await self._validate(received)
            approval = await self.review.wait_for_approval(self._review_timeout(received))
            await self._approved(approval)
            await self._charge(received.amount)
            return await self._completed(await self._ship())
        except OrderStopped as stop:
            return await self._stopped(stop)

    def _review_timeout(self, received: ReceivedOrder) -> timedelta:
        return timedelta(
            seconds=self.start.options.review_timeout_seconds
            or received.review_timeout_seconds
            or DEFAULT_REVIEW_TIMEOUT.total_seconds()
        )

    async def _receive(self) -> ReceivedOrder:
        self.record.publish_missing_search_attributes()
        options = dataclasses.replace(self.start.options, amount=self.start.amount)
        try:
            # Local activities, here and for order_validated: short database steps that run in the
            # workflow's own task, with no round trip to the server each (a marker in history).
            # (Bounded: after LOCAL_STEP_ATTEMPTS failures, a regular activity: workflows/steps.py.)
            received = await db_step(
                Activities.ORDER_RECEIVED,
                ReceiveOrderInput(self.record.order_id, workflow.info().workflow_id, self.record.address, options),
                result_type=ReceivedOrder,
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=RETRY_FOREVER,
            )
        except STEP_FAILED as err:
            if root_type(err) == Errors.ORDER_CONFLICT:
                # The order is another workflow's: refuse without touching its row.
                self.record.foreign = True
            self.record.received = True
            raise OrderStopped(OrderState.FAILED, root_message(err)) from None
        self.record.received = True
        self.record.enter(OrderState.PROCESSING)  # projected by order_received
        self.cancellation.stop_if_requested()
        return received

    async def _validate(self, received: ReceivedOrder) -> None:
        if self.start.problems:
            raise OrderStopped(OrderState.FAILED, "validation failed: " + " ".join(self.start.problems))
        due = workflow.now() + self._review_timeout(received)
        try:
            validated: Optional[ValidatedOrder] = await db_step(
                Activities.ORDER_VALIDATED,
                ValidateOrderInput(self.record.order_id, due.timestamp()),
                result_type=ValidatedOrder,
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=VALIDATION_RETRY,
            )
        except STEP_FAILED as err:
            raise OrderStopped(OrderState.FAILED, f"validation failed: {root_message(err)}") from None
        self.review.open = True
        self.review.due = due.isoformat()
        self.record.enter(OrderState.AWAITING_MANUAL_REVIEW)  # projected by order_validated
        self.cancellation.stop_if_requested(review=ReviewOutcome.CANCELLED)
        validated = validated if validated is not None else ValidatedOrder()
        await self.review.open_with(validated)
        if validated.approved_by_policy and self.review.decision is None and self.review.four_eyes.required == 1:
            # The review policy let the order through: it is approved as a person would, by "policy".
            await self.review.take(
                ReviewDecision("approve", POLICY_ACTOR, f"approved by policy: {validated.approved_by_policy}")
            )

    async def _approved(self, decision: ReviewDecision) -> None:
        self.record.enter(OrderState.MANUAL_REVIEW_COMPLETED)
        await self.record.project(
            ProgressEvent.REVIEW_APPROVED,
            key="review_approved",
            from_status=OrderState.AWAITING_MANUAL_REVIEW,
            actor=decision.reviewer or CLIENT_ACTOR,
            details={
                "decision": "approve",
                "note": decision.note,
                "action_id": decision.action_id,
                **self._four_eyes_details(),
            },
            review=ReviewClose(
                ReviewOutcome.APPROVED, decision.reviewer or CLIENT_ACTOR, decision.note, action_id=decision.action_id
            ),
        )
        self.review.open = False
        self.review.decided = True
        self.review.outcome = ReviewOutcome.APPROVED
        self.cancellation.stop_if_requested()

    def _four_eyes_details(self) -> dict[str, Any]:
        four_eyes = self.review.four_eyes
        if four_eyes.required == 1:
            return {}
        return {
            "approvals": [{k: v for k, v in a.items() if k != "action_id"} for a in four_eyes.approvals],
            "approvals_required": four_eyes.required,
            "rule": four_eyes.rule,
        }

    async def _charge(self, amount: str) -> None:
        self.record.enter(OrderState.PROCESSING_PAYMENT)  # projected by payment_charged
        self.charge_attempted = True
        attempts = self.start.options.payment_attempts or PAYMENT_RETRY.maximum_attempts
        try:
            await workflow.execute_activity(
                Activities.PAYMENT_CHARGED,
                PaymentInput(self.record.order_id, amount),
                result_type=PaymentReceipt,
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=dataclasses.replace(PAYMENT_RETRY, maximum_attempts=attempts),
            )
        except ActivityError as err:
            if root_type(err) == Errors.PAYMENT_DECLINED:
                raise OrderStopped(OrderState.FAILED, f"payment declined: {root_message(err)}") from None
            raise OrderStopped(OrderState.FAILED, f"payment could not be processed: {root_message(err)}") from None
        self.cancellation.stop_if_requested()

    async def _ship(self) -> ShippingOutcome:
        self.record.enter(OrderState.SHIPPING)  # projected by package_prepared
        child = await self.shipping.start(self.record.address)
        if self.cancellation.request is not None:  # arrived while the child was starting
            await self.cancellation.take(self.cancellation.request)
        try:
            outcome = await child
        except ChildWorkflowError as err:
            # Terminated, timed out or failed: the carrier's ledger says whether it shipped.
            outcome = await workflow.execute_activity(
                Activities.SHIPMENT_CHECKED,
                OrderRef(self.record.order_id, workflow.info().workflow_id),
                result_type=ShippingOutcome,
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=RETRY_FOREVER,
            )
            outcome.reason = outcome.reason or (
                f"the shipping workflow stopped ({root_message(err).lower()}) before the package was dispatched"
            )
        if outcome.status == ShippingStatus.CANCELLED:
            self.cancellation.stop_if_requested()
            raise OrderStopped(OrderState.CANCELLED, outcome.reason or "shipping was cancelled")
        if outcome.status != ShippingStatus.DISPATCHED:
            raise OrderStopped(OrderState.FAILED, f"shipping failed: {outcome.reason}")
        return outcome

    # -- endings ---------------------------------------------------------------------------------

    async def _completed(self, outcome: ShippingOutcome) -> OrderResult:
        self.shipping.dispatched = True
        self.record.tracking_number = outcome.tracking_number
        self.record.address = outcome.address or self.record.address
        late = self.cancellation.request
        if late is not None:
            # The cancel reached the child while the carrier dispatch was under way.
            await self.record.refused(
                "CancelRefused", late.actor, late.action_id, refusal(RefusalCode.CANCEL_TOO_LATE), reason=late.reason
            )
        return await self._finish(OrderState.COMPLETED, "", actor=SYSTEM_ACTOR)

    async def _stopped(self, stop: OrderStopped) -> OrderResult:
        reason, refunded = stop.reason, False
        if self.charge_attempted:
            # Whatever the gateway holds under our key goes back: a charge made on an attempt
            # whose result we never recorded included.
            refunded = await self._refund()
            if refunded:
                reason = f"{reason} (payment refunded)"
        review = (
            ReviewClose(stop.review, stop.actor, stop.note, stop.reason_code, stop.action_id) if stop.review else None
        )
        if review is None and self.review.open:
            review = ReviewClose(ReviewOutcome.CANCELLED, stop.actor)
        return await self._finish(
            stop.state, reason, actor=stop.actor, review=review, refunded=refunded, reason_code=stop.reason_code
        )

    async def _refund(self) -> bool:
        return bool(
            await workflow.execute_activity(
                Activities.PAYMENT_REFUNDED,
                OrderRef(self.record.order_id, workflow.info().workflow_id),
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=RETRY_FOREVER,
            )
        )

    async def _finish(
        self,
        state: OrderState,
        reason: str,
        *,
        actor: str,
        review: Optional[ReviewClose] = None,
        refunded: bool = False,
        reason_code: str = "",
    ) -> OrderResult:
        previous = self.record.state
        self.record.reason = reason
        self.record.enter(state)
        await self.record.project(
            ProgressEvent(f"order_{state.value}"),
            key=f"order_{state.value}",  # a run ends once
            from_status=previous,
            reason=reason,
            actor=actor,
            details={
                "refunded": refunded,
                "tracking_number": self.record.tracking_number,
                **({"reason_code": reason_code} if reason_code else {}),
                **({"review_outcome": review.outcome.value, "note": review.note} if review else {}),
            },
            review=review,
        )
        if review is not None:
            self.review.outcome = review.outcome
        self.review.open = False
        self.review.decided = True
        self.record.ended = True
        # Handlers still running (an Update waiting for its answer) finish before we return.
        await workflow.wait_condition(workflow.all_handlers_finished)
        return OrderResult(self.record.order_id, state.value, reason, self.record.tracking_number)

    async def _refuse_start(self) -> OrderResult:
        """No usable order id: nothing to receive or charge. Staff see the refused start."""
        info = workflow.info()
        self.record.received = self.record.foreign = True  # there is no row to write to
        self.record.reason = f"the start was refused: {self.start.refused}"
        self.record.enter(OrderState.FAILED)
        # Nothing will be reviewed: a decision Update accepted before run() began (its validator
        # saw `started`) is answered now, as already finished, instead of waited on for ever.
        self.review.decided = True
        await workflow.execute_activity(
            Activities.START_REFUSED,
            RefusedStart(info.workflow_id, info.run_id, self.start.refused, self.start.arguments),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RETRY_FOREVER,
        )
        self.record.ended = True
        await workflow.wait_condition(workflow.all_handlers_finished)
        return OrderResult(self.record.order_id, OrderState.FAILED.value, self.record.reason)

    # -- Temporal's own cancel ---------------------------------------------------------------------

    async def _cancel_requested_in_temporal(self) -> None:
        info = CancelRequestInfo()
        try:
            info = await workflow.execute_activity(
                Activities.CANCEL_REQUEST_READ,
                OrderRef(self.record.order_id, workflow.info().workflow_id),
                result_type=CancelRequestInfo,
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=LOOKUP_RETRY,
            )
        except ActivityError:
            workflow.logger.warning("could not read who cancelled %s in Temporal", workflow.info().workflow_id)
        reason = "cancelled in Temporal" + (f" by {info.identity}" if info.identity else "")
        if info.reason:
            reason = f"{reason}: {info.reason}"
        request = CancelRequest(reason=reason, actor=TEMPORAL_ACTOR)
        found = self.cancellation.refusal(request)
        if found is not None:
            await self.record.refused("TemporalCancel", TEMPORAL_ACTOR, "", found, reason=reason)
            return
        await self.cancellation.take(request)
        await self.record.applied(
            "TemporalCancel",
            TEMPORAL_ACTOR,
            "",
            f"cancellation requested: {reason}",
            event=ProgressEvent.TEMPORAL_CANCEL_REQUESTED,
            reason=reason,
        )

    # -- signals and updates -----------------------------------------------------------------------

    async def _signal(
        self,
        name: str,
        parsed: Union[T, Refusal],
        check: Callable[[T], Optional[Refusal]],
        take: Callable[[T], Awaitable[None]],
        describe: Callable[[T], tuple[str, dict[str, Any]]],
    ) -> None:
        """The shape of every signal: read it, then refuse it or take it, recorded either way."""
        if isinstance(parsed, Refusal):
            await self.record.refused(name, "", "", parsed)
            return
        actor, action_id = _who(parsed)
        message, extra = describe(parsed)
        found = check(parsed)
        if found is not None:
            await self.record.refused(name, actor, action_id, found, **extra)
            return
        self.record.remember_action(action_id)
        await take(parsed)
        await self.record.applied(name, actor, action_id, message, event=ProgressEvent.SIGNAL_APPLIED, **extra)

    @workflow.signal(name=Signals.CANCEL_ORDER)
    async def cancel_order(self, *args: Any) -> None:
        await self._signal(
            Signals.CANCEL_ORDER,
            boundary.cancel_request(Signals.CANCEL_ORDER, args),
            self.cancellation.refusal,
            self.cancellation.take,
            lambda request: (f"cancellation requested: {request.reason}", {"reason": request.reason}),
        )

    @workflow.signal(name=Signals.UPDATE_ADDRESS)
    async def update_address(self, *args: Any) -> None:
        """One argument, the new address, as in the seed; our own callers may add who asked."""
        change = boundary.address_signal(Signals.UPDATE_ADDRESS, args)
        await self._address(Signals.UPDATE_ADDRESS, change)

    @workflow.signal(name=Signals.COMPLETE_MANUAL_REVIEW)
    async def complete_manual_review(self, *args: Any) -> None:
        """Approve (no argument, as in the seed) or decide. A decision that arrives before the
        order reaches review is held and applied when it does."""
        decision = boundary.review_decision(Signals.COMPLETE_MANUAL_REVIEW, args)
        if isinstance(decision, Refusal):
            await self.record.refused(Signals.COMPLETE_MANUAL_REVIEW, "", "", decision)
            return
        found = self.review.refusal(decision, from_signal=True)
        if found is not None:
            await self.record.refused(
                Signals.COMPLETE_MANUAL_REVIEW,
                decision.reviewer,
                decision.action_id,
                found,
                decision=decision.decision,
                note=decision.note,
            )
            return
        self.record.remember_action(decision.action_id)
        partly = await self.review.take(decision)
        # Not projected on its own: the approval (or the cancellation a rejection causes) is
        # written with the reviewer, in the same write as the state change; an approval that is
        # not the last of four eyes was written by take().
        await self.record.applied(
            Signals.COMPLETE_MANUAL_REVIEW,
            decision.reviewer,
            decision.action_id,
            partly or f"review decision: {decision.decision}",
            event=ProgressEvent.SIGNAL_APPLIED,
            project=False,
            decision=decision.decision,
            note=decision.note,
        )

    @workflow.signal(name=Signals.RETRY_SHIPPING)
    async def retry_shipping(self, *args: Any) -> None:
        await self._signal(
            Signals.RETRY_SHIPPING,
            boundary.retry_request(Signals.RETRY_SHIPPING, args),
            self._retry_refusal,
            self.shipping.take_retry,
            lambda request: ("shipping retried", {}),
        )

    @workflow.signal(name=Signals.SHIPPING_REPORT)
    async def shipping_report(self, *args: Any) -> None:
        """The child's reports: a dispatch that exhausted its retries, or an answer."""
        report = boundary.shipping_report(Signals.SHIPPING_REPORT, args)
        if isinstance(report, Refusal):
            await self.record.refused(Signals.SHIPPING_REPORT, "", "", report)
            return
        found = self.shipping.report_refusal(report)
        if found is not None:
            await self.record.refused(Signals.SHIPPING_REPORT, "", report.action_id, found, kind=report.kind)
            return
        self.shipping.take_report(report)
        if report.kind == ReportKind.DISPATCH_FAILED:
            self.record.log_message("DispatchFailed", SYSTEM_ACTOR, "", "applied", report.message)
            await self.record.project(
                ProgressEvent.DISPATCH_FAILED,
                key=f"dispatch_failed:{self.shipping.failures}",
                reason=report.message,
                to_status="",
                details={"dispatch_failures": self.shipping.failures},
            )

    @workflow.update(name=Updates.DECIDE_REVIEW)
    async def decide_review(self, *args: Any) -> ActionResult:
        decision = boundary.review_decision(Updates.DECIDE_REVIEW, args)
        assert isinstance(decision, ReviewDecision)  # the validator refused anything else
        # Validators of Updates delivered together all run before their handlers: an approval and
        # a rejection, or two approvals of a four-eyes order by one person, can both pass theirs.
        # Whichever handler runs second finds the first's decision and is refused here. Histories
        # recorded before took (and answered) both: patched, so they replay as they were; the
        # marker is written only when it refuses, so no other order pays for it.
        found = self.review.refusal(decision, from_signal=False)
        if found is not None and workflow.patched(REVIEW_TEAM_PATCH):
            return await self.record.refused(
                Updates.DECIDE_REVIEW,
                decision.reviewer,
                decision.action_id,
                found,
                decision=decision.decision,
                note=decision.note,
            )
        self.record.remember_action(decision.action_id)
        partly = await self.review.take(decision)
        result = await self.record.applied(
            Updates.DECIDE_REVIEW,
            decision.reviewer,
            decision.action_id,
            partly or f"review decision: {decision.decision}",
            event=ProgressEvent.UPDATE_APPLIED,
            project=False,
            decision=decision.decision,
            note=decision.note,
        )
        if partly:
            return ActionResult(True, partly, self.record.state.value, FIRST_OF_TWO_APPROVALS)
        # Answer once the decision is in Postgres, so the reviewer's next page shows it (or, for an
        # approval held until review that four eyes made the first of two, once that is).
        await workflow.wait_condition(lambda: self.review.decided or self.review.answered(decision) is not None)
        answered = self.review.answered(decision)
        if answered is not None and not answered.accepted:  # held before review, then not needed
            return await self.record.refused(
                Updates.DECIDE_REVIEW,
                decision.reviewer,
                decision.action_id,
                refusal(RefusalCode(answered.code)),
                decision=decision.decision,
                note=decision.note,
            )
        if answered is not None:
            return answered
        if self.record.state == OrderState.FAILED:  # held before review, then validation failed
            found = refusal(RefusalCode.ALREADY_FINISHED, state=self.record.state.value)
            return ActionResult(False, found.message, self.record.state.value, found.code.value)
        return ActionResult(True, result.message, self.record.state.value)

    @decide_review.validator
    def _validate_decide_review(self, *args: Any) -> None:
        decision = boundary.review_decision(Updates.DECIDE_REVIEW, args)
        self._refuse_update(
            decision if isinstance(decision, Refusal) else self.review.refusal(decision, from_signal=False)
        )

    @workflow.update(name=Updates.REQUEST_CANCEL)
    async def request_cancel(self, *args: Any) -> ActionResult:
        request = boundary.cancel_request(Updates.REQUEST_CANCEL, args)
        assert isinstance(request, CancelRequest)
        self.record.remember_action(request.action_id)
        await self.cancellation.take(request)
        await self.record.applied(
            Updates.REQUEST_CANCEL,
            request.actor,
            request.action_id,
            f"cancellation requested: {request.reason}",
            event=ProgressEvent.UPDATE_APPLIED,
            reason=request.reason,
        )
        # The cancel is decided when the order ends: during shipping the child may already be
        # dispatching, and then the order completes. Answer once the ending is in Postgres.
        await workflow.wait_condition(lambda: self.record.ended)
        state = self.record.state
        if state == OrderState.CANCELLED:
            return ActionResult(True, f"Order cancelled: {self.record.reason}", state.value)
        found = (
            refusal(RefusalCode.CANCEL_TOO_LATE)
            if state == OrderState.COMPLETED
            else refusal(RefusalCode.ALREADY_FINISHED, state=state.value)
        )
        return ActionResult(False, found.message, state.value, found.code.value)

    @request_cancel.validator
    def _validate_request_cancel(self, *args: Any) -> None:
        request = boundary.cancel_request(Updates.REQUEST_CANCEL, args)
        self._refuse_update(request if isinstance(request, Refusal) else self.cancellation.refusal(request))

    @workflow.update(name=Updates.CHANGE_ADDRESS)
    async def change_address(self, *args: Any) -> ActionResult:
        return await self._address(Updates.CHANGE_ADDRESS, boundary.address_change(Updates.CHANGE_ADDRESS, args))

    @change_address.validator
    def _validate_change_address(self, *args: Any) -> None:
        change = boundary.address_change(Updates.CHANGE_ADDRESS, args)
        self._refuse_update(change if isinstance(change, Refusal) else self.address.refusal(change))

    @workflow.update(name=Updates.RETRY_SHIPPING)
    async def request_shipping_retry(self, *args: Any) -> ActionResult:
        request = boundary.retry_request(Updates.RETRY_SHIPPING, args)
        assert not isinstance(request, Refusal)
        self.record.remember_action(request.action_id)
        await self.shipping.take_retry(request)
        return await self.record.applied(
            Updates.RETRY_SHIPPING,
            request.actor,
            request.action_id,
            "shipping retried",
            event=ProgressEvent.UPDATE_APPLIED,
        )

    @request_shipping_retry.validator
    def _validate_request_shipping_retry(self, *args: Any) -> None:
        request = boundary.retry_request(Updates.RETRY_SHIPPING, args)
        self._refuse_update(request if isinstance(request, Refusal) else self._retry_refusal(request))

    # -- what the handlers share -------------------------------------------------------------------

    def _refuse_update(self, found: Optional[Refusal]) -> None:
        """A validator's refusal: its code and the state the order is in, for the caller."""
        if found is not None:
            raise ApplicationError(
                found.message, found.code.value, self.record.state.value, type=Errors.REFUSED, non_retryable=True
            )

    def _retry_refusal(self, request: ShippingRetryRequest) -> Optional[Refusal]:
        return self.shipping.retry_refusal(request, cancel_requested=self.cancellation.request is not None)

    async def _address(self, name: str, change: Any) -> ActionResult:
        """UpdateAddress and ChangeAddress: refused (recorded) or applied (recorded, with the
        old and new address); the child may still refuse once shipping started."""
        if isinstance(change, Refusal):
            return await self.record.refused(name, "", "", change)
        old = self.record.address
        found = self.address.refusal(change)
        if found is None:
            self.record.remember_action(change.action_id)
            found = await self.address.take(change)
        if found is not None:
            return await self.record.refused(
                name, change.actor, change.action_id, found, requested_address=change.address
            )
        event = ProgressEvent.SIGNAL_APPLIED if name == Signals.UPDATE_ADDRESS else ProgressEvent.UPDATE_APPLIED
        return await self.record.applied(
            name,
            change.actor,
            change.action_id,
            "address updated",
            event=event,
            old_address=old,
            new_address=self.record.address,
        )

    # -- the query ---------------------------------------------------------------------------------

    @workflow.query(name="get_status")
    def get_status(self) -> dict[str, Any]:
        decision = self.review.decision
        return self.record.status(
            review_due=self.review.due,
            review_decision=decision.decision if decision else None,
            review_outcome=self.review.outcome.value if self.review.outcome else None,
            cancel_requested=self.cancellation.request is not None,
            dispatch_failures=self.shipping.failures,
            awaiting_shipping_retry=self.shipping.awaiting_retry,
            **self.review.status(),
        )


def _who(request: Any) -> tuple[str, str]:
    """The actor and action id a request names (each request type names its actor its own way)."""
    actor = getattr(request, "actor", None) or getattr(request, "reviewer", "") or ""
    return actor, getattr(request, "action_id", "")
