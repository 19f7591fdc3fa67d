"""The order as its workflow knows it, and how that reaches Temporal's search attributes and the
Postgres projection.

``OrderRecord`` holds the state, the reason it ended, the state history and every message the
workflow took or refused (what ``get_status`` returns), and writes each change through: the
``OrderStatus`` search attribute where an order can rest, and a projection record (a local
activity, no extra server round trip) keyed by the event it records.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import Any, Optional

from temporalio import workflow
from temporalio.common import SearchAttributeKey

from temporal_app.contracts import (
    CLIENT_ACTOR,
    SEARCH_ATTRIBUTE_DISPATCH_FAILURES,
    SEARCH_ATTRIBUTE_ORDER_STATUS,
    SEARCH_ATTRIBUTE_REVIEW_ESCALATED,
    SYSTEM_ACTOR,
    ActionResult,
    Activities,
    OrderState,
    ProgressEvent,
    ProgressRecord,
    Refusal,
    ReviewApprovalRecord,
    ReviewOutcome,
    ReviewOutcomeRecord,
    Updates,
)
from temporal_app.workflows.policies import PROJECTION_RETRY, PROJECTION_TIMEOUT
from temporal_app.workflows.steps import db_step

ORDER_STATUS_KEY = SearchAttributeKey.for_keyword(SEARCH_ATTRIBUTE_ORDER_STATUS)
DISPATCH_FAILURES_KEY = SearchAttributeKey.for_int(SEARCH_ATTRIBUTE_DISPATCH_FAILURES)
# Set (to true) only when a review escalates: unset means "not escalated", and an order that never
# escalates pays no upsert for it.
REVIEW_ESCALATED_KEY = SearchAttributeKey.for_bool(SEARCH_ATTRIBUTE_REVIEW_ESCALATED)

# OrderStatus is upserted for every state an order can rest in (a person's review, a payment
# being retried, a shipment waiting for staff) and for its ending. `processing` and
# `manual_review_completed` last only within one workflow task (the local activities around them
# run in it), so an upsert each would be a history event and a visibility write for nothing.
PUBLISHED_STATES = frozenset(OrderState) - {OrderState.PROCESSING, OrderState.MANUAL_REVIEW_COMPLETED}
# get_status keeps the latest messages; a client that floods an order with signals must not
# grow the query's answer without bound (each one is still in the history and in Postgres).
MAX_MESSAGES_KEPT = 200


@dataclass
class ReviewClose:
    """A transition that ends the manual review: the review task closes in the same write."""

    outcome: ReviewOutcome
    reviewer: str = ""
    note: str = ""
    reason_code: str = ""
    action_id: str = ""  # the decision's action id: the projection links a person only through it


class OrderRecord:
    def __init__(self, order_id: str, address: str) -> None:
        self.order_id = order_id
        self.address = address
        self.state = OrderState.STARTED
        self.reason = ""
        self.tracking_number = ""
        self.history: list[dict[str, Any]] = []
        self.messages: list[dict[str, Any]] = []
        self.messages_dropped = 0
        self._message_counts: Counter[tuple[str, str, str]] = Counter()
        self.action_ids: set[str] = set()
        # The order's row exists (order_received ran), so projection writes can find it.
        self.received = False
        # The row belongs to another workflow: never write to it.
        self.foreign = False
        self.ended = False  # the ending is in Postgres
        # Projection writes happen one at a time, in the order the workflow made them, so the
        # audit trail tells the story in order (a cancel's "requested" before the ending).
        self._writing = asyncio.Lock()
        self._log(OrderState.STARTED)

    # -- state -----------------------------------------------------------------------------------

    def enter(self, state: OrderState) -> None:
        self.state = state
        self._log(state)
        if state in PUBLISHED_STATES:
            workflow.upsert_search_attributes([ORDER_STATUS_KEY.value_set(state.value)])

    def publish_missing_search_attributes(self) -> None:
        """Our own starts carry both search attributes; an outside client's may carry none: set
        what is missing, so the Web UI can filter every order from the start."""
        present = workflow.info().typed_search_attributes
        missing = [
            update
            for key, update in (
                (ORDER_STATUS_KEY, ORDER_STATUS_KEY.value_set(self.state.value)),
                (DISPATCH_FAILURES_KEY, DISPATCH_FAILURES_KEY.value_set(0)),
            )
            if present.get(key) is None
        ]
        if missing:
            workflow.upsert_search_attributes(missing)

    def _log(self, state: OrderState) -> None:
        self.history.append({"state": state.value, "at": workflow.now().isoformat()})

    # -- messages (signals, updates, Temporal's own cancel) ------------------------------------------

    def is_duplicate(self, action_id: str) -> bool:
        return bool(action_id) and action_id in self.action_ids

    def remember_action(self, action_id: str) -> None:
        if action_id:
            self.action_ids.add(action_id)

    def log_message(
        self, name: str, actor: str, action_id: str, outcome: str, message: str, code: str = "", **extra: Any
    ) -> None:
        self.messages.append(
            {
                "name": name,
                "at": workflow.now().isoformat(),
                "actor": actor or CLIENT_ACTOR,
                "action_id": action_id,
                "outcome": outcome,
                "code": code,
                "message": message,
                **extra,
            }
        )
        if len(self.messages) > MAX_MESSAGES_KEPT:
            del self.messages[0]
            self.messages_dropped += 1

    async def refused(self, name: str, actor: str, action_id: str, refusal: Refusal, **extra: Any) -> ActionResult:
        """A message the workflow did not take: in get_status and in the audit trail."""
        self.log_message(name, actor, action_id, "refused", refusal.message, refusal.code.value, **extra)
        event = ProgressEvent.UPDATE_REFUSED if name in Updates.ALL else ProgressEvent.SIGNAL_REFUSED
        await self._message_event(
            event, name, actor, action_id, "refused", refusal.message, {"code": refusal.code.value, **extra}
        )
        return ActionResult(False, refusal.message, self.state.value, refusal.code.value)

    async def applied(
        self,
        name: str,
        actor: str,
        action_id: str,
        message: str,
        *,
        event: ProgressEvent,
        project: bool = True,
        **extra: Any,
    ) -> ActionResult:
        """A message the workflow took. ``project=False`` when the change it causes is written
        with the message's actor anyway (a review decision)."""
        self.log_message(name, actor, action_id, "applied", message, **extra)
        if project:
            await self._message_event(event, name, actor, action_id, "applied", "", {"message": message, **extra})
        return ActionResult(True, message, self.state.value)

    async def _message_event(
        self,
        event: ProgressEvent,
        name: str,
        actor: str,
        action_id: str,
        outcome: str,
        reason: str,
        details: dict[str, Any],
    ) -> None:
        # Named by what happened: the action id where the caller gave one, else the n-th such
        # outcome of that message (handlers run in the order of the history's events).
        self._message_counts[(name, action_id, outcome)] += 1
        nth = self._message_counts[(name, action_id, outcome)]
        await self.project(
            event,
            key=f"{name}:{action_id or '-'}:{outcome}:{nth}",
            actor=actor or CLIENT_ACTOR,
            source="signal",
            to_status="",
            reason=reason,
            details={"signal": name, "action_id": action_id, **details},
        )

    # -- the projection ----------------------------------------------------------------------------

    async def project(
        self,
        event: ProgressEvent,
        *,
        key: str,
        from_status: str = "",
        reason: str = "",
        actor: str = SYSTEM_ACTOR,
        source: str = "workflow",
        details: Optional[dict[str, Any]] = None,
        to_status: Optional[str] = None,
        review: Optional[ReviewClose] = None,
        approval: Optional[tuple[str, str, int, int]] = None,
    ) -> None:
        """Write a state change or a message's outcome to Postgres, once per run and ``key``.

        ``key`` names the event itself ("order_cancelled", "CancelOrder:c-1:applied:1"), never
        its place among the writes: a workflow task that fails after its local activities ran
        is retried, possibly with more messages handled first, and must repeat the same keys.

        ``review``: the write closes the review task too; ``approval`` (reviewer, note, approvals
        so far, approvals required): it records an approval that is not the last (four eyes)."""
        if not self.received:
            # A message that arrives before order_received has created the row (an outside
            # client signalling right after its start) waits for the row.
            await workflow.wait_condition(lambda: self.received)
        if self.foreign:
            return
        record = ProgressRecord(
            order_id=self.order_id,
            event_type=event.value,
            event_key=f"{workflow.info().run_id}:{key}",
            actor=actor,
            source=source,
            from_status=str(from_status),
            to_status=self.state.value if to_status is None else to_status,
            reason=reason,
            details=details or {},
        )
        arg: Any
        if approval is not None:
            activity, arg = Activities.RECORD_REVIEW_APPROVAL, ReviewApprovalRecord(record, *approval)
        elif review is None:
            activity, arg = Activities.RECORD_ORDER_PROGRESS, record
        else:
            activity = Activities.RECORD_REVIEW_OUTCOME
            arg = ReviewOutcomeRecord(
                record, review.outcome.value, review.reviewer, review.note, review.reason_code, review.action_id
            )
        async with self._writing:
            await db_step(activity, arg, start_to_close_timeout=PROJECTION_TIMEOUT, retry_policy=PROJECTION_RETRY)

    # -- the query ---------------------------------------------------------------------------------

    def status(self, **extra: Any) -> dict[str, Any]:
        return {
            "workflow_status": self.state.value,
            "order_id": self.order_id,
            "address": self.address,
            "reason": self.reason,
            "cancel_reason": self.reason if self.state == OrderState.CANCELLED else "",
            "failure_reason": self.reason if self.state == OrderState.FAILED else "",
            "tracking_number": self.tracking_number,
            "state_history": list(self.history),
            "signals": list(self.messages),
            "signals_not_shown": self.messages_dropped,
            **extra,
        }
