"""What each chaos order does and which endings its scenario allows: the scenario mix."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Optional

APPROVE_UPDATE = "approve_update"  # DecideReview(approve) as the review UI sends it
APPROVE_SIGNAL_TWICE = "approve_signal_twice"  # CompleteManualReview twice, same action id
EARLY_APPROVE = "early_approve"  # CompleteManualReview right after start, twice, same action id
RACE_UPDATES = "race_updates"  # DecideReview(approve) and RequestCancel at the same moment
RACE_SIGNALS = "race_signals"  # CompleteManualReview and CancelOrder at the same moment
CANCEL_AFTER_APPROVE = "cancel_after_approve"  # approve, then RequestCancel at once
EARLY_CANCEL = "early_cancel"  # CancelOrder right after start
REJECT = "reject"  # DecideReview(reject, note)
ADDRESS_CHANGE = "address_change"  # ChangeAddress at review, then approve
DISPATCH_FAILURE = "dispatch_failure"  # carrier fails 3 times: staff sends RequestShippingRetry
PAYMENT_DECLINE = "payment_decline"  # the gateway declines: the order fails, nothing charged
REVIEW_TIMEOUT = "review_timeout"  # nobody reviews within 4 s: cancelled, "review timed out"
CLIENT_BAD_ADDRESS = "client_bad_address"  # an outside client starts OrderWorkflow with "   "
# The boundary: what clients and operators may send or do besides the contract.
MALFORMED_MESSAGES = "malformed_messages"  # signals and an Update of the wrong shape, then approve
FORGED_REPORT = "forged_report"  # a ShippingReport from an outside client at review, then approve
TEMPORAL_CANCEL = "temporal_cancel"  # an operator cancels the workflow in Temporal at review
TERMINATE_RECONCILE = "terminate_reconcile"  # an operator terminates it at review; the reconciler flags it
# The review team (issue 20).
FOUR_EYES_SAME = "four_eyes_same"  # a four-eyes order: two approvals at once by one person, then a second person
FOUR_EYES_TWO = "four_eyes_two"  # a four-eyes order: two approvals at once by two people
APPROVE_REJECT_CANCEL = "approve_reject_cancel"  # DecideReview(approve), DecideReview(reject), RequestCancel at once
ESCALATION_KILL = "escalation_kill"  # escalated while a worker is SIGKILLed; approved after the escalation

SCENARIO_WEIGHTS = {
    APPROVE_UPDATE: 24,
    APPROVE_SIGNAL_TWICE: 8,
    EARLY_APPROVE: 8,
    RACE_UPDATES: 12,
    RACE_SIGNALS: 6,
    CANCEL_AFTER_APPROVE: 8,
    EARLY_CANCEL: 5,
    REJECT: 5,
    ADDRESS_CHANGE: 7,
    DISPATCH_FAILURE: 7,
    PAYMENT_DECLINE: 4,
    REVIEW_TIMEOUT: 3,
    CLIENT_BAD_ADDRESS: 3,
    MALFORMED_MESSAGES: 4,
    FORGED_REPORT: 3,
    TEMPORAL_CANCEL: 3,
    TERMINATE_RECONCILE: 2,
    FOUR_EYES_SAME: 4,
    FOUR_EYES_TWO: 4,
    APPROVE_REJECT_CANCEL: 5,
    ESCALATION_KILL: 3,
}

COMPLETED, CANCELLED, FAILED = "completed", "cancelled", "failed"
# A terminated workflow reports nothing more: its order keeps its last state, flagged for staff.
AWAITING_REVIEW = "awaiting_manual_review"
EXPECTED_OUTCOMES = {
    APPROVE_UPDATE: {COMPLETED},
    APPROVE_SIGNAL_TWICE: {COMPLETED},
    EARLY_APPROVE: {COMPLETED},
    RACE_UPDATES: {COMPLETED, CANCELLED},
    RACE_SIGNALS: {COMPLETED, CANCELLED},
    CANCEL_AFTER_APPROVE: {COMPLETED, CANCELLED},
    EARLY_CANCEL: {CANCELLED},
    REJECT: {CANCELLED},
    ADDRESS_CHANGE: {COMPLETED},
    DISPATCH_FAILURE: {COMPLETED},
    PAYMENT_DECLINE: {FAILED},
    REVIEW_TIMEOUT: {CANCELLED},
    CLIENT_BAD_ADDRESS: {FAILED},
    MALFORMED_MESSAGES: {COMPLETED},
    FORGED_REPORT: {COMPLETED},
    TEMPORAL_CANCEL: {CANCELLED},
    TERMINATE_RECONCILE: {AWAITING_REVIEW},
    FOUR_EYES_SAME: {COMPLETED},
    FOUR_EYES_TWO: {COMPLETED},
    APPROVE_REJECT_CANCEL: {COMPLETED, CANCELLED},
    # Approved once the escalation is in Postgres; a run slowed by its faults may reach the
    # timeout first (then the order expires): the escalation is what this scenario checks.
    ESCALATION_KILL: {COMPLETED, CANCELLED},
}
# The scenarios whose order must never be charged (cancelled or failed before payment).
NEVER_CHARGED = {
    EARLY_CANCEL,
    REJECT,
    PAYMENT_DECLINE,
    REVIEW_TIMEOUT,
    CLIENT_BAD_ADDRESS,
    TEMPORAL_CANCEL,
    TERMINATE_RECONCILE,
}
# The scenarios that act on the order while it waits for review.
AT_REVIEW = {
    APPROVE_UPDATE,
    DISPATCH_FAILURE,
    PAYMENT_DECLINE,
    REJECT,
    APPROVE_SIGNAL_TWICE,
    ADDRESS_CHANGE,
    CANCEL_AFTER_APPROVE,
    RACE_UPDATES,
    RACE_SIGNALS,
    MALFORMED_MESSAGES,
    FORGED_REPORT,
    TEMPORAL_CANCEL,
    TERMINATE_RECONCILE,
    FOUR_EYES_SAME,
    FOUR_EYES_TWO,
    APPROVE_REJECT_CANCEL,
    ESCALATION_KILL,
}
# Orders that need two approvals (their amount is at or above the workers' REVIEW_FOUR_EYES_AMOUNT).
FOUR_EYES = {FOUR_EYES_SAME, FOUR_EYES_TWO}
FOUR_EYES_AMOUNT = "1000.00"
FOUR_EYES_UNIT_PRICE = "1250.00"
# The workers escalate a review after this share of its timeout (REVIEW_ESCALATE_AFTER).
ESCALATE_AFTER = 0.5
ESCALATION_TIMEOUT_SECONDS = 24.0  # ESCALATION_KILL's review timeout: escalated after 12 s

REVIEWER = "chaos-reviewer"
SECOND_REVIEWER = "chaos-reviewer-2"
STAFF = "chaos-staff"
REVIEW_TIMEOUT_SECONDS = 4.0


def scenarios_for(count: int, seed: int) -> list[str]:
    """A deterministic mix: every scenario at least once when ``count`` allows, then weighted."""
    rng = random.Random(seed)
    names = list(SCENARIO_WEIGHTS)
    chosen = names[:count] if count < len(names) else list(names)
    chosen += rng.choices(names, weights=[SCENARIO_WEIGHTS[n] for n in names], k=max(0, count - len(names)))
    rng.shuffle(chosen)
    return chosen


@dataclass
class ChaosOrder:
    order_id: str
    scenario: str
    address: str
    new_address: str = ""
    created: bool = False
    early_done: bool = False
    review_done: bool = False
    in_flight: bool = False
    # What the workflow answered to our Updates: "approve"/"cancel"/... -> (accepted, code,
    # message), or None when the answer was lost (a retry then met DUPLICATE_ACTION).
    answers: dict[str, Optional[tuple[bool, str, str]]] = field(default_factory=dict)
    shipping_retries: int = 0
    created_at: float = 0.0  # time.monotonic() when created
    killed_at_escalation: bool = False

    @property
    def workflow_id(self) -> str:
        return self.order_id.lower()
