"""The contracts' payloads: the dataclasses that workflows, activities, signals, updates and queries
take and return, and the workflow ids derived from an order's.

Part of ``temporal_app.contracts``, which re-exports it: import from there. Pure like it: standard
library only, no Django, no I/O (the workflow sandbox passes it through, temporal_app/worker.py).

No ``from __future__ import annotations`` here: the SDK turns every payload into these
dataclasses with ``typing.get_type_hints``, which compiles string annotations again on each call
(about 5 % of a loaded worker's time, by py-spy; docs/benchmarks.md).
"""

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Optional

from temporal_app.contracts_names import CLIENT_ACTOR, DEFAULT_CURRENCY, SYSTEM_ACTOR

# -- Inputs and outputs --------------------------------------------------------------------------


@dataclass
class LineItem:
    sku: str
    name: str = ""
    quantity: int = 1
    unit_price: str = "0.00"  # decimal as text: floats would round money


@dataclass
class OrderOptions:
    """Optional third argument of OrderWorkflow.run. Two-argument starts use the defaults."""

    line_items: list[LineItem] = field(default_factory=list)
    amount: Optional[str] = None  # decimal as text; None -> sum of line items
    customer: str = ""
    # None -> the value in Django settings (ORDER_REVIEW_TIMEOUT), read by order_received.
    review_timeout_seconds: Optional[float] = None
    # Attempts of the payment step before the order fails (None: the workflow's default, 10).
    payment_attempts: Optional[int] = None
    # How the order came in, for the audit trail ("web", "admin", "api", "temporal-client").
    source: str = CLIENT_ACTOR
    created_by: str = ""
    # Optional customer details: what review and risk rules can use when a client has them.
    customer_email: str = ""
    billing_address: str = ""
    client_ip: str = ""
    user_agent: str = ""
    currency: str = DEFAULT_CURRENCY


@dataclass
class ReviewDecision:
    """CompleteManualReview's optional argument. No argument means approve, as in the seed."""

    decision: str = "approve"  # "approve" | "reject"
    reviewer: str = ""
    note: str = ""
    action_id: str = ""
    reason_code: str = ""  # why a rejection, as a code reports can count (the note says it for people)


@dataclass
class CancelRequest:
    reason: str = "cancelled by request"
    actor: str = ""
    action_id: str = ""
    reason_code: str = ""  # why, as a code reports can count (``reason`` says it for people)


@dataclass
class AddressChange:
    address: str
    actor: str = ""
    action_id: str = ""


@dataclass
class ShippingRetryRequest:
    actor: str = ""
    action_id: str = ""


# ActionResult.code of an accepted approval that is the first of two (four eyes): the order
# waits for a second reviewer.
FIRST_OF_TWO_APPROVALS = "first_of_two_approvals"


@dataclass
class ActionResult:
    """What an Update returns: whether the workflow took the action, and the state after it.
    ``code`` is set when the action was accepted but did not take effect (a cancel that came
    too late for the dispatch), or took effect only in part (``FIRST_OF_TWO_APPROVALS``)."""

    accepted: bool
    message: str
    workflow_status: str
    code: str = ""


@dataclass
class OrderResult:
    order_id: str
    status: str
    reason: str = ""
    tracking_number: str = ""


# Activity inputs and outputs.


@dataclass
class ReceiveOrderInput:
    order_id: str
    workflow_id: str
    address: str
    options: OrderOptions


@dataclass
class ReceivedOrder:
    review_timeout_seconds: float
    amount: str


@dataclass
class ValidatedOrder:
    """order_validated's answer. ``approved_by_policy`` names the review-policy rule that let
    the order through without a person (REVIEW_POLICY=risky); empty: a person decides.

    The rest are the review's rules for this order, read from settings by the activity (workflow
    code reads no settings) and kept in history with its result, so a replay decides alike. Their
    defaults are the behaviour before they existed: histories recorded then replay unchanged."""

    approved_by_policy: str = ""
    # Share of the review timeout after which an undecided order is escalated (0: never).
    escalate_after: float = 0.0
    # What the timeout does (a TimeoutAction) and the setting that chose it, for the audit.
    timeout_action: str = "expire"
    timeout_rule: str = ""
    # Approvals by different people needed before the charge: 2 for four eyes, and why.
    approvals_required: int = 1
    four_eyes_rule: str = ""


@dataclass
class OrderRef:
    order_id: str
    workflow_id: str


@dataclass
class ReviewEscalation:
    """review_escalated's input: which order, since when it waits and when its review times out."""

    order_id: str
    workflow_id: str
    waited_seconds: float
    review_due_epoch: float


@dataclass
class ValidateOrderInput:
    order_id: str
    review_due_epoch: float  # when the review task times out (workflow time, seconds)


@dataclass
class PaymentInput:
    order_id: str
    amount: str


@dataclass
class PaymentReceipt:
    idempotency_key: str
    provider_reference: str
    amount: str


@dataclass
class ShippingInput:
    order_id: str
    parent_workflow_id: str
    address: str
    # A secret the child quotes in its reports, so the parent can tell them from forgeries.
    report_token: str = ""


@dataclass
class DispatchInput:
    order_id: str
    address: str


class ShippingStatus(StrEnum):
    """How a ShippingWorkflow ended."""

    DISPATCHED = "dispatched"
    CANCELLED = "cancelled"
    FAILED = "failed"  # a step failed for good (the package could not be prepared)
    NOT_DISPATCHED = "not_dispatched"  # shipment_checked: the carrier holds nothing


@dataclass
class ShippingOutcome:
    status: str  # ShippingStatus
    tracking_number: str = ""
    address: str = ""
    reason: str = ""


class ReportKind(StrEnum):
    DISPATCH_FAILED = "dispatch_failed"
    ACK = "ack"  # the child's answer to a forwarded address change


@dataclass
class ShippingReport:
    """Child -> parent: a dispatch that exhausted its retries, or the answer to an action."""

    kind: str  # ReportKind
    action_id: str = ""
    accepted: bool = True
    message: str = ""
    address: str = ""
    token: str = ""  # ShippingInput.report_token
    run_id: str = ""  # the child's run, checked against the one the parent started


@dataclass
class ShippingInstruction:
    """Parent -> child: cancel, change the address, or retry the dispatch. It quotes the report
    token, so the child can tell its parent's instructions from forgeries."""

    token: str
    action_id: str = ""
    address: str = ""
    reason: str = ""


@dataclass
class RefusedStart:
    """A start whose arguments cannot make an order (no usable order id)."""

    workflow_id: str
    run_id: str
    reason: str
    arguments: str  # a short, printable preview of what was sent


@dataclass
class CancelRequestInfo:
    """What Temporal's history says about a cancel request made in Temporal itself."""

    identity: str = ""
    reason: str = ""


class ProgressEvent(StrEnum):
    """Audit event types that the workflow writes through its projection (OrderEvent.Type has
    the same values)."""

    REVIEW_APPROVED = "review_approved"
    ORDER_COMPLETED = "order_completed"
    ORDER_CANCELLED = "order_cancelled"
    ORDER_FAILED = "order_failed"
    SIGNAL_APPLIED = "signal_applied"
    SIGNAL_REFUSED = "signal_refused"
    UPDATE_APPLIED = "update_applied"
    UPDATE_REFUSED = "update_refused"  # taken by the validator, then refused (too late for the child)
    TEMPORAL_CANCEL_REQUESTED = "temporal_cancel_requested"
    DISPATCH_FAILED = "dispatch_failed"
    REVIEW_PARTLY_APPROVED = "review_partly_approved"  # four eyes: an approval that is not the last


class ReviewOutcome(StrEnum):
    """How the order's manual review ended; the review task closes with it."""

    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"  # the review timed out
    CANCELLED = "cancelled"  # the order was cancelled while in review


@dataclass
class ProgressRecord:
    """One projection write: a state change, a message's outcome, or both."""

    order_id: str
    event_type: str  # ProgressEvent
    event_key: str
    actor: str = SYSTEM_ACTOR
    source: str = "workflow"
    from_status: str = ""
    to_status: str = ""
    reason: str = ""
    details: dict = field(default_factory=dict)


@dataclass
class ReviewOutcomeRecord:
    """A transition that ends the order's manual review: written with the review task's close."""

    progress: ProgressRecord
    outcome: str  # ReviewOutcome
    reviewer: str = ""
    note: str = ""
    reason_code: str = ""
    # The decision's action id ("" for a policy, a timeout, a cancel): the projection links the
    # reviewer's account only when our own action path recorded who asked under this id.
    action_id: str = ""


@dataclass
class ReviewApprovalRecord:
    """The first approval of a four-eyes order, for its projection (record_review_approval): its
    audit event, and the task showing who approved and that it waits for someone else."""

    progress: ProgressRecord
    reviewer: str
    note: str = ""
    approvals: int = 1
    approvals_required: int = 2


@dataclass
class PeriodicRun:
    """PeriodicJobWorkflow's argument: which registered periodic job to run (its full name,
    ``module.function``)."""

    job: str


MAX_PERIODIC_JOB_NAME_LENGTH = 200


@dataclass
class WebhookInput:
    """WebhookDeliveryWorkflow's argument: which delivery, and how long to keep trying."""

    delivery_id: int
    give_up_after_seconds: float = 24 * 3600


def webhook_workflow_id(delivery_id: int) -> str:
    return f"webhook-{delivery_id}"


def shipping_workflow_id(order_workflow_id: str) -> str:
    """The child's id derives from the parent's, so it is deterministic and easy to find."""
    return f"{order_workflow_id}-shipping"
