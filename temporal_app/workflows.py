"""OrderWorkflow and its ShippingWorkflow child.

Deterministic and Django-free: this module imports only temporalio and the pure contracts, reads
no settings and does no I/O, so outside clients can import it without Django and replays are
exact. Activities are called by their registered names; their Django-backed implementations live
in ``temporal_app.activities`` and run on the workers.

The workflow is the source of truth for an order's state. Postgres is its projection: the
activities write their own step's state, and ``record_order_progress`` (a local activity: no
extra server round trip) writes the transitions and signal outcomes that have no activity.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from typing import Any, Optional

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from temporal_app.contracts import (
        DEFAULT_REVIEW_TIMEOUT,
        SEARCH_ATTRIBUTE_DISPATCH_FAILURES,
        SEARCH_ATTRIBUTE_ORDER_STATUS,
        SHIPPING_TASK_QUEUE,
        ActionResult,
        Activities,
        AddressChange,
        CancelRequest,
        DispatchInput,
        Errors,
        OrderOptions,
        OrderRef,
        OrderResult,
        OrderState,
        PaymentInput,
        PaymentReceipt,
        ProgressRecord,
        ReceivedOrder,
        ReceiveOrderInput,
        ReviewDecision,
        ShippingInput,
        ShippingOutcome,
        ShippingReport,
        ShippingRetryRequest,
        Signals,
        Updates,
        ValidateOrderInput,
        address_error,
        normalise_address,
        shipping_workflow_id,
    )

ORDER_STATUS_KEY = SearchAttributeKey.for_keyword(SEARCH_ATTRIBUTE_ORDER_STATUS)
DISPATCH_FAILURES_KEY = SearchAttributeKey.for_int(SEARCH_ATTRIBUTE_DISPATCH_FAILURES)

# workflow.patched ids: each marks a deliberate change; remove one only when no workflow that
# started before it can still be running (docs/determinism.md).
PATCH_SEARCH_ATTRIBUTES_AT_START = "search-attributes-at-start"
PATCH_REFUND_UNCONFIRMED_CHARGE = "refund-unconfirmed-charge"
PATCH_CANCEL_AFTER_FAILED_DISPATCH = "cancel-after-failed-dispatch"
PATCH_ONE_WRITE_PER_DECISION = "one-write-per-decision"
PATCH_AUDIT_AFTER_RECEIPT = "audit-after-receipt"
# Every patched() call costs each new workflow a marker and a TemporalChangeVersion upsert (the SDK
# adds it), so this one patch stands for all the history trimming it guards (docs/determinism.md).
PATCH_LEAN_HISTORY = "lean-history"

ACTIVITY_TIMEOUT = timedelta(seconds=30)
# Database-only steps retry until the database is back: giving up would lose the order.
RETRY_FOREVER = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
)
PAYMENT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=10,
    non_retryable_error_types=[Errors.PAYMENT_DECLINED],
)
VALIDATION_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=[Errors.VALIDATION_FAILED],
)
# After these attempts the child reports the failure to the parent and waits for staff.
DISPATCH_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=3,
)
PROGRESS_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
)


def _root_message(err: BaseException) -> str:
    """The innermost ApplicationError's message: what actually went wrong, for people."""
    while err.__cause__ is not None:
        err = err.__cause__
    return str(getattr(err, "message", None) or err)


def _root_type(err: BaseException) -> str:
    while err.__cause__ is not None:
        err = err.__cause__
    return getattr(err, "type", None) or ""


@workflow.defn(name="OrderWorkflow")
class OrderWorkflow:
    """One order, from receipt to dispatch. Started with (order_id, address[, options])."""

    @workflow.init
    def __init__(self, order_id: str, address: str, options: Optional[OrderOptions] = None) -> None:
        self._order_id = order_id
        self._address = address
        self._options = options or OrderOptions()
        self._state = OrderState.STARTED
        self._reason = ""
        self._history: list[dict[str, Any]] = []
        self._signals: list[dict[str, Any]] = []
        self._seen_actions: set[str] = set()
        self._cancel: Optional[CancelRequest] = None
        self._decision: Optional[ReviewDecision] = None
        self._decision_projected = False
        self._end_projected = False  # the terminal state is in Postgres
        self._review_due: Optional[str] = None
        self._dispatched = False
        self._dispatch_failures = 0
        self._awaiting_shipping_retry = False
        self._tracking_number = ""
        self._shipping: Optional[workflow.ChildWorkflowHandle[Any, ShippingOutcome]] = None
        self._shipping_acks: dict[str, ShippingReport] = {}
        self._received = False  # order_received has made sure the order's row exists
        self._conflict = False  # ... or found it belongs to another workflow run
        self._log_state(OrderState.STARTED)

    # -- main story ------------------------------------------------------------------------

    @workflow.run
    async def run(
        self, order_id: str, address: str, options: Optional[OrderOptions] = None
    ) -> OrderResult:
        info = workflow.info()
        if self._lean_history():
            # Our own starts carry both search attributes; an outside client's start may carry
            # none: set what is missing, so the Web UI can filter every order from the start.
            missing = [
                update for key, update in (
                    (ORDER_STATUS_KEY, ORDER_STATUS_KEY.value_set(self._state.value)),
                    (DISPATCH_FAILURES_KEY, DISPATCH_FAILURES_KEY.value_set(self._dispatch_failures)),
                ) if info.typed_search_attributes.get(key) is None
            ]
            if missing:
                workflow.upsert_search_attributes(missing)
        elif workflow.patched(PATCH_SEARCH_ATTRIBUTES_AT_START):
            # (Before lean-history: set both, whatever the start carried.)
            workflow.upsert_search_attributes(
                [ORDER_STATUS_KEY.value_set(self._state.value),
                 DISPATCH_FAILURES_KEY.value_set(self._dispatch_failures)]
            )
        try:
            received = await workflow.execute_activity(
                Activities.ORDER_RECEIVED,
                ReceiveOrderInput(order_id, info.workflow_id, address, self._options),
                result_type=ReceivedOrder,
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=RETRY_FOREVER,
            )
        except ActivityError as err:
            if _root_type(err) != Errors.ORDER_CONFLICT:
                raise
            # The order is another run's (it already finished): refuse without touching its row.
            self._conflict = self._received = True
            self._reason = _root_message(err)
            self._set_state(OrderState.FAILED)
            await workflow.wait_condition(workflow.all_handlers_finished)
            return OrderResult(order_id, OrderState.FAILED.value, self._reason)
        self._received = True
        self._set_state(OrderState.PROCESSING)  # projected by order_received
        if self._cancel:
            return await self._finish_cancelled()

        review_timeout = timedelta(
            seconds=self._options.review_timeout_seconds or received.review_timeout_seconds
            or DEFAULT_REVIEW_TIMEOUT.total_seconds()
        )
        review_due = workflow.now() + review_timeout
        try:
            await workflow.execute_activity(
                Activities.ORDER_VALIDATED,
                ValidateOrderInput(order_id, review_due.timestamp()),
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=VALIDATION_RETRY,
            )
        except ActivityError as err:
            return await self._finish_failed(f"validation failed: {_root_message(err)}")
        self._review_due = review_due.isoformat()
        self._set_state(OrderState.AWAITING_MANUAL_REVIEW)  # projected by order_validated

        try:
            await workflow.wait_condition(
                lambda: self._decision is not None or self._cancel is not None,
                timeout=review_timeout,
            )
        except asyncio.TimeoutError:
            return await self._finish_cancelled(Errors.REVIEW_TIMED_OUT, review_outcome="expired")
        if self._cancel:
            return await self._finish_cancelled(review_outcome="cancelled")

        decision = self._decision
        assert decision is not None
        if decision.decision == "reject":
            reason = f"rejected in review: {decision.note}" if decision.note else "rejected in review"
            return await self._finish_cancelled(reason, review_outcome="rejected", decision=decision)

        # Not published as a search attribute under lean-history: the order leaves this state as
        # soon as the decision is in Postgres (below), and until then the projection, too, still
        # shows it awaiting review.
        self._set_state(OrderState.MANUAL_REVIEW_COMPLETED, publish=not self._lean_history())
        await self._project(
            "review_approved",
            key="review_approved",
            from_status=OrderState.AWAITING_MANUAL_REVIEW,
            actor=decision.reviewer or "temporal-client",
            source="workflow",
            details={"decision": "approve", "note": decision.note, "action_id": decision.action_id,
                     "review_outcome": "approved"},
        )
        self._decision_projected = True
        if self._cancel:
            return await self._finish_cancelled()

        self._set_state(OrderState.PROCESSING_PAYMENT)  # projected by payment_charged
        try:
            await workflow.execute_activity(
                Activities.PAYMENT_CHARGED,
                PaymentInput(order_id, received.amount),
                result_type=PaymentReceipt,
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=dataclasses.replace(
                    PAYMENT_RETRY,
                    maximum_attempts=self._options.payment_attempts or PAYMENT_RETRY.maximum_attempts,
                ),
            )
        except ActivityError as err:
            if _root_type(err) == Errors.PAYMENT_DECLINED:
                return await self._finish_failed(f"payment declined: {_root_message(err)}")
            reason = f"payment could not be processed: {_root_message(err)}"
            if workflow.patched(PATCH_REFUND_UNCONFIRMED_CHARGE):
                # The gateway may have charged on an attempt whose result we never recorded
                # (its later attempts failed): give back whatever it holds under our key.
                if await self._refund():
                    reason = f"{reason} (payment refunded)"
            return await self._finish_failed(reason)
        if self._cancel:
            return await self._finish_cancelled(refund=True)

        self._set_state(OrderState.SHIPPING)  # projected by package_prepared
        self._shipping = await workflow.start_child_workflow(
            ShippingWorkflow.run,
            ShippingInput(order_id, info.workflow_id, self._address),
            id=shipping_workflow_id(info.workflow_id),
            task_queue=SHIPPING_TASK_QUEUE,
        )
        if self._cancel:  # arrived while the child was starting: forward it
            await self._forward_to_shipping(Signals.SHIPPING_CANCEL, self._cancel)
        outcome: ShippingOutcome = await self._shipping
        if outcome.status == "cancelled":
            return await self._finish_cancelled(refund=True)

        self._dispatched = True
        self._tracking_number = outcome.tracking_number
        self._address = outcome.address or self._address
        if self._cancel is not None:
            # The cancel reached the child while the carrier dispatch was under way.
            await self._audit(
                "CancelRefused", self._cancel.actor, self._cancel.action_id, False,
                Errors.CANCEL_TOO_LATE, reason=self._cancel.reason,
            )
        return await self._finish(OrderState.COMPLETED, "", refund=False)

    # -- endings ---------------------------------------------------------------------------

    async def _finish_cancelled(
        self,
        reason: str = "",
        *,
        refund: bool = False,
        review_outcome: str = "",
        decision: Optional[ReviewDecision] = None,
    ) -> OrderResult:
        if not reason:
            reason = self._cancel.reason if self._cancel else "cancelled"
        if refund:
            await self._refund()
            reason = f"{reason} (payment refunded)"
        actor = "system"
        if decision is not None:
            actor = decision.reviewer or "temporal-client"
        elif self._cancel is not None and reason != Errors.REVIEW_TIMED_OUT:
            actor = self._cancel.actor or "temporal-client"
        return await self._finish(
            OrderState.CANCELLED, reason, refund=refund, actor=actor,
            details={"review_outcome": review_outcome, "note": decision.note if decision else ""}
            if review_outcome else {},
        )

    async def _refund(self) -> bool:
        """Refund the charge, if the gateway holds one (idempotent by the refund key)."""
        refunded = await workflow.execute_activity(
            Activities.PAYMENT_REFUNDED,
            OrderRef(self._order_id, workflow.info().workflow_id),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RETRY_FOREVER,
        )
        return bool(refunded)

    async def _finish_failed(self, reason: str) -> OrderResult:
        return await self._finish(OrderState.FAILED, reason, refund=False)

    async def _finish(
        self,
        state: OrderState,
        reason: str,
        *,
        refund: bool,
        actor: str = "system",
        details: Optional[dict[str, Any]] = None,
    ) -> OrderResult:
        previous = self._state
        self._reason = reason
        self._set_state(state)
        await self._project(
            f"order_{state.value}",
            key=f"order_{state.value}",  # a run ends once
            from_status=previous,
            reason=reason,
            actor=actor,
            details={**(details or {}), "refunded": refund, "tracking_number": self._tracking_number},
        )
        self._decision_projected = True
        self._end_projected = True
        # Handlers still running (an update waiting for its answer) finish before we return.
        await workflow.wait_condition(workflow.all_handlers_finished)
        return OrderResult(self._order_id, state.value, reason, self._tracking_number)

    # -- state and projection --------------------------------------------------------------

    def _log_state(self, state: OrderState) -> None:
        self._history.append({"state": state.value, "at": workflow.now().isoformat()})

    def _set_state(self, state: OrderState, *, publish: bool = True) -> None:
        self._state = state
        self._log_state(state)
        if publish:
            workflow.upsert_search_attributes([ORDER_STATUS_KEY.value_set(state.value)])

    def _lean_history(self) -> bool:
        """Whether this run writes the trimmed history: search attributes upserted only when the
        start lacks them or the status is worth filtering on, and one write per decision
        (implied, without its own patch marker). Memoised by the SDK; False when replaying a
        history recorded before the change."""
        return workflow.patched(PATCH_LEAN_HISTORY)

    async def _project(
        self,
        event_type: str,
        *,
        key: str,
        from_status: str = "",
        reason: str = "",
        actor: str = "system",
        source: str = "workflow",
        details: Optional[dict[str, Any]] = None,
        to_status: Optional[str] = None,
    ) -> None:
        """Write a state change or signal outcome to Postgres, once per run and ``key``.

        ``key`` names the event itself ("order_cancelled", "CancelOrder:c-1:applied:1"), never
        its place among the writes: when a workflow task fails after its local activities ran (a
        signal arrived while it completed), the retried task may handle more signals first, and a
        counter of writes would give an earlier write's key to a different event."""
        if not self._received and workflow.patched(PATCH_AUDIT_AFTER_RECEIPT):
            # A signal that arrives before order_received has created the order's row (an
            # outside client's early signal) would fail to find it and retry; wait for the row.
            await workflow.wait_condition(lambda: self._received)
        if self._conflict:
            return  # the row is another workflow's: leave its audit trail alone
        record = ProgressRecord(
            order_id=self._order_id,
            event_type=event_type,
            event_key=f"{workflow.info().run_id}:{key}",
            actor=actor,
            source=source,
            from_status=str(from_status),
            to_status=self._state.value if to_status is None else to_status,
            reason=reason,
            details=details or {},
        )
        await workflow.execute_local_activity(
            Activities.RECORD_ORDER_PROGRESS,
            record,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=PROGRESS_RETRY,
        )

    def _remember(
        self, name: str, actor: str, action_id: str, outcome: str, message: str, **extra: Any
    ) -> None:
        self._signals.append(
            {
                "name": name,
                "at": workflow.now().isoformat(),
                "actor": actor or "temporal-client",
                "action_id": action_id,
                "outcome": outcome,
                "message": message,
                **extra,
            }
        )

    async def _audit(
        self, name: str, actor: str, action_id: str, accepted: bool, message: str, **extra: Any
    ) -> ActionResult:
        """Record a signal or update's outcome in the query history and in Postgres."""
        outcome = "applied" if accepted else "refused"
        self._remember(name, actor, action_id, outcome, message, **extra)
        if (
            accepted
            and name in (Signals.COMPLETE_MANUAL_REVIEW, Updates.DECIDE_REVIEW)
            and (self._lean_history() or workflow.patched(PATCH_ONE_WRITE_PER_DECISION))
        ):
            # The decision's own projection (review_approved, or the cancellation it causes)
            # records it with its reviewer, in the same write as the state change.
            return ActionResult(accepted, message, self._state.value)
        # Named by what happened: the action id where the caller gave one, else the n-th such
        # outcome of that signal or update (handlers run in the order of the history's events).
        nth = sum(1 for entry in self._signals
                  if (entry["name"], entry["action_id"], entry["outcome"]) == (name, action_id, outcome))
        await self._project(
            "signal_applied" if accepted else "signal_refused",
            key=f"{name}:{action_id or '-'}:{outcome}:{nth}",
            actor=actor or "temporal-client",
            source="signal",
            to_status="",
            reason="" if accepted else message,
            details={"signal": name, "action_id": action_id, "message": message, **extra},
        )
        return ActionResult(accepted, message, self._state.value)

    def _is_duplicate(self, action_id: str) -> bool:
        if not action_id:
            return False
        if action_id in self._seen_actions:
            return True
        self._seen_actions.add(action_id)
        return False

    # -- review ----------------------------------------------------------------------------

    def _review_refusal(self, decision: ReviewDecision, *, allow_early: bool) -> Optional[str]:
        if decision.decision not in ("approve", "reject"):
            return Errors.UNKNOWN_DECISION.format(decision=decision.decision)
        if decision.decision == "reject" and not decision.note.strip() and not allow_early:
            return Errors.REJECT_NEEDS_NOTE
        if decision.action_id and decision.action_id in self._seen_actions:
            return Errors.DUPLICATE_ACTION
        if self._decision is not None:
            return Errors.ALREADY_DECIDED
        if self._cancel is not None:
            return Errors.CANCEL_ALREADY_REQUESTED
        if self._state == OrderState.AWAITING_MANUAL_REVIEW:
            return None
        # order_validated commits the review task (and the row's awaiting_manual_review) just
        # before this workflow learns it returned, so a reviewer's Update can arrive while we
        # are still `processing`: hold it like an early signal and apply it at review.
        early = self._state in (OrderState.STARTED, OrderState.PROCESSING)
        if self._state == OrderState.PROCESSING or (allow_early and early):
            return None
        return Errors.NOT_AWAITING_REVIEW.format(state=self._state.value)

    @workflow.signal(name=Signals.COMPLETE_MANUAL_REVIEW)
    async def complete_manual_review(self, decision: Optional[ReviewDecision] = None) -> None:
        """Approve (no argument, as in the seed) or decide. A decision that arrives before the
        order reaches review is held and applied when it does; one that arrives after the review
        was decided, cancelled or timed out is refused and recorded."""
        decision = decision or ReviewDecision()
        refusal = self._review_refusal(decision, allow_early=True)
        if refusal is None:
            self._is_duplicate(decision.action_id)
            self._decision = decision
        await self._audit(
            Signals.COMPLETE_MANUAL_REVIEW, decision.reviewer, decision.action_id,
            refusal is None, refusal or f"review decision: {decision.decision}",
            decision=decision.decision, note=decision.note,
        )

    @workflow.update(name=Updates.DECIDE_REVIEW)
    async def decide_review(self, decision: ReviewDecision) -> ActionResult:
        self._is_duplicate(decision.action_id)
        self._decision = decision
        result = await self._audit(
            Updates.DECIDE_REVIEW, decision.reviewer, decision.action_id, True,
            f"review decision: {decision.decision}", decision=decision.decision, note=decision.note,
        )
        # Answer once the decision is in Postgres, so the reviewer's next page shows it.
        await workflow.wait_condition(lambda: self._decision_projected)
        if self._state == OrderState.FAILED:  # held while processing, then validation failed
            return ActionResult(False, Errors.ALREADY_FINISHED.format(state=self._state.value), self._state.value)
        return ActionResult(True, result.message, self._state.value)

    @decide_review.validator
    def _validate_decide_review(self, decision: ReviewDecision) -> None:
        refusal = self._review_refusal(decision, allow_early=False)
        if refusal:
            raise ApplicationError(refusal, type=Errors.REFUSED, non_retryable=True)

    # -- cancel ----------------------------------------------------------------------------

    def _cancel_refusal(self, request: CancelRequest) -> Optional[str]:
        if request.action_id and request.action_id in self._seen_actions:
            return Errors.DUPLICATE_ACTION
        if self._dispatched or self._state == OrderState.COMPLETED:
            return Errors.CANCEL_TOO_LATE
        if self._state.is_terminal:
            return Errors.ALREADY_FINISHED.format(state=self._state.value)
        if self._cancel is not None:
            return Errors.CANCEL_ALREADY_REQUESTED
        return None

    async def _apply_cancel(self, name: str, request: CancelRequest) -> ActionResult:
        refusal = self._cancel_refusal(request)
        if refusal is None:
            self._is_duplicate(request.action_id)
            self._cancel = request
            if self._shipping is not None:
                await self._forward_to_shipping(Signals.SHIPPING_CANCEL, request)
        return await self._audit(
            name, request.actor, request.action_id, refusal is None,
            refusal or f"cancellation requested: {request.reason}", reason=request.reason,
        )

    @workflow.signal(name=Signals.CANCEL_ORDER)
    async def cancel_order(self, request: Optional[CancelRequest] = None) -> None:
        await self._apply_cancel(Signals.CANCEL_ORDER, request or CancelRequest())

    @workflow.update(name=Updates.REQUEST_CANCEL)
    async def request_cancel(self, request: CancelRequest) -> ActionResult:
        await self._apply_cancel(Updates.REQUEST_CANCEL, request)
        # The cancel is decided when the order ends: during shipping the child may already be
        # dispatching, in which case the order completes and the cancel was too late.
        # Answer once the ending is in Postgres, so the next page the person sees shows it.
        await workflow.wait_condition(lambda: self._end_projected)
        if self._state == OrderState.CANCELLED:
            return ActionResult(True, f"Order cancelled: {self._reason}", self._state.value)
        if self._state == OrderState.COMPLETED:
            return ActionResult(False, Errors.CANCEL_TOO_LATE, self._state.value)
        # It ended another way first (a declined payment, a failed validation).
        return ActionResult(False, Errors.ALREADY_FINISHED.format(state=self._state.value), self._state.value)

    @request_cancel.validator
    def _validate_request_cancel(self, request: CancelRequest) -> None:
        refusal = self._cancel_refusal(request)
        if refusal:
            raise ApplicationError(refusal, type=Errors.REFUSED, non_retryable=True)

    # -- address ---------------------------------------------------------------------------

    def _address_refusal(self, change: AddressChange) -> Optional[str]:
        if change.action_id and change.action_id in self._seen_actions:
            return Errors.DUPLICATE_ACTION
        problem = address_error(change.address)
        if problem:
            return problem
        if self._dispatched or self._state == OrderState.COMPLETED:
            return Errors.ADDRESS_TOO_LATE
        if self._state.is_terminal:
            return Errors.ALREADY_FINISHED.format(state=self._state.value)
        if normalise_address(change.address) == normalise_address(self._address):
            return Errors.ADDRESS_UNCHANGED
        return None

    async def _apply_address(self, name: str, change: AddressChange) -> ActionResult:
        refusal = self._address_refusal(change)
        old = self._address
        new = normalise_address(change.address) if refusal is None else ""
        if refusal is None:
            self._is_duplicate(change.action_id)
            if self._shipping is not None:
                # The child owns the address once shipping started: it refuses if it is
                # already dispatching.
                action_id = change.action_id or str(workflow.uuid4())
                ack = await self._forward_to_shipping(
                    Signals.SHIPPING_ADDRESS, AddressChange(new, change.actor, action_id),
                    wait_for=action_id,
                )
                if ack is not None and not ack.accepted:
                    refusal = ack.message
            if refusal is None:
                self._address = new
        return await self._audit(
            name, change.actor, change.action_id, refusal is None,
            refusal or "address updated", old_address=old if refusal is None else "",
            new_address=new if refusal is None else "",
            requested_address=change.address if refusal else "",
        )

    @workflow.signal(name=Signals.UPDATE_ADDRESS)
    async def update_address(self, address: str, change: Optional[AddressChange] = None) -> None:
        """One argument, the new address, as in the seed; our own callers add who asked."""
        change = change or AddressChange(address)
        change.address = address
        await self._apply_address(Signals.UPDATE_ADDRESS, change)

    @workflow.update(name=Updates.CHANGE_ADDRESS)
    async def change_address(self, change: AddressChange) -> ActionResult:
        return await self._apply_address(Updates.CHANGE_ADDRESS, change)

    @change_address.validator
    def _validate_change_address(self, change: AddressChange) -> None:
        refusal = self._address_refusal(change)
        if refusal:
            raise ApplicationError(refusal, type=Errors.REFUSED, non_retryable=True)

    # -- shipping --------------------------------------------------------------------------

    def _retry_refusal(self, request: ShippingRetryRequest) -> Optional[str]:
        if request.action_id and request.action_id in self._seen_actions:
            return Errors.DUPLICATE_ACTION
        if self._state.is_terminal:
            return Errors.ALREADY_FINISHED.format(state=self._state.value)
        if not self._awaiting_shipping_retry or self._cancel is not None:
            return Errors.NOT_DISPATCH_FAILED
        return None

    async def _apply_retry(self, name: str, request: ShippingRetryRequest) -> ActionResult:
        refusal = self._retry_refusal(request)
        if refusal is None:
            self._is_duplicate(request.action_id)
            self._awaiting_shipping_retry = False
            await self._forward_to_shipping(Signals.SHIPPING_RETRY, request)
        return await self._audit(
            name, request.actor, request.action_id, refusal is None,
            refusal or "shipping retried",
        )

    @workflow.signal(name=Signals.RETRY_SHIPPING)
    async def retry_shipping(self, request: Optional[ShippingRetryRequest] = None) -> None:
        await self._apply_retry(Signals.RETRY_SHIPPING, request or ShippingRetryRequest())

    @workflow.update(name=Updates.RETRY_SHIPPING)
    async def request_shipping_retry(self, request: ShippingRetryRequest) -> ActionResult:
        return await self._apply_retry(Updates.RETRY_SHIPPING, request)

    @request_shipping_retry.validator
    def _validate_request_shipping_retry(self, request: ShippingRetryRequest) -> None:
        refusal = self._retry_refusal(request)
        if refusal:
            raise ApplicationError(refusal, type=Errors.REFUSED, non_retryable=True)

    @workflow.signal(name=Signals.SHIPPING_REPORT)
    async def shipping_report(self, report: ShippingReport) -> None:
        """The child's reports: a dispatch that exhausted its retries, or an acknowledgement."""
        if report.kind == "ack":
            self._shipping_acks[report.action_id] = report
            return
        if report.kind == "dispatch_failed":
            self._dispatch_failures += 1
            self._awaiting_shipping_retry = True
            workflow.upsert_search_attributes(
                [DISPATCH_FAILURES_KEY.value_set(self._dispatch_failures)]
            )
            self._remember("DispatchFailed", "system", "", "applied", report.message)
            await self._project(
                "dispatch_failed",
                key=f"dispatch_failed:{self._dispatch_failures}",
                reason=report.message,
                to_status="",
                details={"dispatch_failures": self._dispatch_failures},
            )

    async def _forward_to_shipping(
        self, signal: str, payload: Any, *, wait_for: str = ""
    ) -> Optional[ShippingReport]:
        """Signal the child; with ``wait_for``, wait for its acknowledgement of that action."""
        assert self._shipping is not None
        try:
            await self._shipping.signal(signal, payload)
        except FailureError:
            # The child already closed: it dispatched or was cancelled; nothing to forward to.
            return ShippingReport("ack", wait_for, False, Errors.ADDRESS_TOO_LATE)
        if not wait_for:
            return None
        await workflow.wait_condition(
            lambda: wait_for in self._shipping_acks or self._state.is_terminal
        )
        return self._shipping_acks.pop(
            wait_for, ShippingReport("ack", wait_for, False, Errors.ADDRESS_TOO_LATE)
        )

    # -- query -----------------------------------------------------------------------------

    @workflow.query(name="get_status")
    def get_status(self) -> dict[str, Any]:
        return {
            "workflow_status": self._state.value,
            "order_id": self._order_id,
            "address": self._address,
            "reason": self._reason,
            "cancel_reason": self._reason if self._state == OrderState.CANCELLED else "",
            "failure_reason": self._reason if self._state == OrderState.FAILED else "",
            "review_due": self._review_due,
            "review_decision": self._decision.decision if self._decision else None,
            "cancel_requested": self._cancel is not None,
            "dispatch_failures": self._dispatch_failures,
            "awaiting_shipping_retry": self._awaiting_shipping_retry,
            "tracking_number": self._tracking_number,
            "state_history": list(self._history),
            "signals": list(self._signals),
        }


@workflow.defn(name="ShippingWorkflow")
class ShippingWorkflow:
    """Prepares and dispatches one order's package. Owns the address once shipping starts: the
    parent forwards address changes and cancellations, and this workflow refuses them once the
    carrier dispatch has begun."""

    @workflow.init
    def __init__(self, request: ShippingInput) -> None:
        self._request = request
        self._address = request.address
        self._cancelled = False
        self._cancel_during_dispatch = False
        self._dispatching = False
        self._retry = False
        self._awaiting_retry = False
        self._state = "preparing"
        self._failures = 0

    @workflow.run
    async def run(self, request: ShippingInput) -> ShippingOutcome:
        if self._cancelled:
            return await self._finish_cancelled()
        await workflow.execute_activity(
            Activities.PACKAGE_PREPARED,
            DispatchInput(request.order_id, self._address),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RETRY_FOREVER,
        )
        self._state = "prepared"
        while True:
            if self._cancelled:
                return await self._finish_cancelled()
            self._dispatching = True
            try:
                tracking_number: str = await workflow.execute_activity(
                    Activities.CARRIER_DISPATCHED,
                    DispatchInput(request.order_id, self._address),
                    result_type=str,
                    start_to_close_timeout=ACTIVITY_TIMEOUT,
                    retry_policy=DISPATCH_RETRY,
                )
            except ActivityError as err:
                self._dispatching = False
                if self._cancel_during_dispatch and workflow.patched(PATCH_CANCEL_AFTER_FAILED_DISPATCH):
                    # The parent asked to cancel while the carrier was being called; nothing was
                    # dispatched after all, so the cancel stands.
                    return await self._finish_cancelled()
                self._failures += 1
                self._state = "dispatch_failed"
                self._awaiting_retry = True
                await self._report(ShippingReport("dispatch_failed", message=_root_message(err)))
                await workflow.wait_condition(lambda: self._retry or self._cancelled)
                self._retry = False
                self._awaiting_retry = False
                continue
            self._state = "dispatched"
            await workflow.wait_condition(workflow.all_handlers_finished)
            return ShippingOutcome("dispatched", tracking_number, self._address)

    async def _finish_cancelled(self) -> ShippingOutcome:
        self._state = "cancelled"
        await workflow.wait_condition(workflow.all_handlers_finished)
        return ShippingOutcome("cancelled", "", self._address)

    async def _report(self, report: ShippingReport) -> None:
        parent = workflow.get_external_workflow_handle(self._request.parent_workflow_id)
        try:
            await parent.signal(Signals.SHIPPING_REPORT, report)
        except FailureError:
            workflow.logger.warning("parent %s is gone; report dropped", self._request.parent_workflow_id)

    @workflow.signal(name=Signals.SHIPPING_CANCEL)
    def cancel(self, request: CancelRequest) -> None:
        # Once dispatch has begun the parent learns the outcome from our result: dispatched
        # (the cancel was too late) or cancelled (the dispatch failed, so the cancel stands).
        if self._dispatching:
            self._cancel_during_dispatch = True
        elif self._state != "dispatched":
            self._cancelled = True

    @workflow.signal(name=Signals.SHIPPING_ADDRESS)
    async def change_address(self, change: AddressChange) -> None:
        accepted = not self._dispatching and self._state != "dispatched"
        if accepted:
            self._address = change.address
        await self._report(
            ShippingReport("ack", change.action_id, accepted,
                           "" if accepted else Errors.ADDRESS_TOO_LATE, change.address)
        )

    @workflow.signal(name=Signals.SHIPPING_RETRY)
    def retry(self, request: ShippingRetryRequest) -> None:
        if self._awaiting_retry:
            self._retry = True

    @workflow.query(name="get_status")
    def get_status(self) -> dict[str, Any]:
        return {
            "shipping_status": self._state,
            "order_id": self._request.order_id,
            "address": self._address,
            "dispatch_failures": self._failures,
            "cancelled": self._cancelled,
        }
