"""The order system's contracts: names, states, inputs and rules shared by every side.

This module is imported by the workflow sandbox, by outside Temporal clients and by Django code,
so it must stay pure: standard library only, no Django, no I/O. Renaming anything marked as a
contract breaks clients that integrate with the workflows (see DESIGN.md).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Optional

# -- Task queues and search attributes (contract) ---------------------------------------------

ORDER_TASK_QUEUE = "order-tq"
SHIPPING_TASK_QUEUE = "shipping-tq"

# Keyword: the order's workflow_status, so the Temporal Web UI can filter by it.
SEARCH_ATTRIBUTE_ORDER_STATUS = "OrderStatus"
# Int: how many times carrier dispatch exhausted its retries for this order.
SEARCH_ATTRIBUTE_DISPATCH_FAILURES = "DispatchFailures"

DEFAULT_REVIEW_TIMEOUT = timedelta(hours=24)


class OrderState(StrEnum):
    """The nine workflow states of the seed, in the order an order normally passes them."""

    STARTED = "started"  # workflow initialised, nothing done yet
    PROCESSING = "processing"  # order received and being validated
    AWAITING_MANUAL_REVIEW = "awaiting_manual_review"  # waiting for a person's decision
    MANUAL_REVIEW_COMPLETED = "manual_review_completed"  # approved, payment is next
    PROCESSING_PAYMENT = "processing_payment"  # charging the customer
    SHIPPING = "shipping"  # the ShippingWorkflow child prepares and dispatches
    COMPLETED = "completed"  # dispatched to the carrier: the story is over
    CANCELLED = "cancelled"  # cancelled by staff, rejected in review, or review timed out
    FAILED = "failed"  # validation failed or payment declined

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({OrderState.COMPLETED, OrderState.CANCELLED, OrderState.FAILED})


class Activities:
    """Registered activity names. Workflows refer to activities by name so that this module and
    the workflow module never import the Django-backed implementations."""

    ORDER_RECEIVED = "order_received"
    ORDER_VALIDATED = "order_validated"
    PAYMENT_CHARGED = "payment_charged"
    PAYMENT_REFUNDED = "payment_refunded"
    PACKAGE_PREPARED = "package_prepared"
    CARRIER_DISPATCHED = "carrier_dispatched"
    # Local activity: projects a state change or signal outcome into Postgres.
    RECORD_ORDER_PROGRESS = "record_order_progress"


class Signals:
    CANCEL_ORDER = "CancelOrder"
    UPDATE_ADDRESS = "UpdateAddress"
    COMPLETE_MANUAL_REVIEW = "CompleteManualReview"
    RETRY_SHIPPING = "RetryShipping"
    # Internal: parent <-> ShippingWorkflow.
    SHIPPING_CANCEL = "ShippingCancel"
    SHIPPING_ADDRESS = "ShippingAddress"
    SHIPPING_RETRY = "ShippingRetry"
    SHIPPING_REPORT = "ShippingReport"


class Updates:
    """Workflow Updates: the same actions as the signals, but the caller learns at once whether
    the workflow accepted them (validators reject before anything is written to history)."""

    DECIDE_REVIEW = "DecideReview"
    CHANGE_ADDRESS = "ChangeAddress"
    REQUEST_CANCEL = "RequestCancel"
    RETRY_SHIPPING = "RequestShippingRetry"


class Errors:
    """Error types (ApplicationError.type) and the messages people see. Tests assert on these."""

    VALIDATION_FAILED = "OrderValidationFailed"
    ORDER_CONFLICT = "OrderConflict"
    PAYMENT_DECLINED = "PaymentDeclined"
    DISPATCH_FAILED = "CarrierDispatchFailed"
    REFUSED = "ActionRefused"

    ADDRESS_EMPTY = "The address is empty."
    ADDRESS_TOO_LONG = "The address is longer than {max} characters."
    ADDRESS_CONTROL_CHARS = "The address contains control characters."
    ADDRESS_UNCHANGED = "The address is unchanged."
    ADDRESS_TOO_LATE = "The package has already been dispatched; the address can no longer change."
    NOT_AWAITING_REVIEW = "The order is not awaiting review (it is {state})."
    ALREADY_DECIDED = "The review was already decided."
    REJECT_NEEDS_NOTE = "A rejection needs a reason."
    UNKNOWN_DECISION = "Unknown decision {decision!r}: use 'approve' or 'reject'."
    CANCEL_TOO_LATE = "The package has already been dispatched; the order can no longer be cancelled."
    ALREADY_FINISHED = "The order is already {state}."
    CANCEL_ALREADY_REQUESTED = "Cancellation was already requested."
    NOT_DISPATCH_FAILED = "Shipping can only be retried after a dispatch failure."
    DUPLICATE_ACTION = "This action was already applied."
    REVIEW_TIMED_OUT = "review timed out"


MAX_ADDRESS_LENGTH = 300


def address_error(address: object) -> Optional[str]:
    """Return why an address is unacceptable, or None if it is fine.

    Pure and deterministic: the workflow uses it to refuse signals, Django forms to show errors.
    """
    if not isinstance(address, str) or not address.strip():
        return Errors.ADDRESS_EMPTY
    if len(address) > MAX_ADDRESS_LENGTH:
        return Errors.ADDRESS_TOO_LONG.format(max=MAX_ADDRESS_LENGTH)
    # Category "C*" covers control, format, surrogate and unassigned code points; a plain
    # newline in a multi-line address is the one control character a person may type.
    if any(unicodedata.category(ch).startswith("C") and ch != "\n" for ch in address):
        return Errors.ADDRESS_CONTROL_CHARS
    return None


def normalise_address(address: str) -> str:
    """Trim each line and drop blank ones, so that the same address compares equal."""
    lines = (line.strip() for line in address.replace("\r\n", "\n").split("\n"))
    return "\n".join(line for line in lines if line)


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
    source: str = "temporal-client"
    created_by: str = ""


@dataclass
class ReviewDecision:
    """CompleteManualReview's optional argument. No argument means approve, as in the seed."""

    decision: str = "approve"  # "approve" | "reject"
    reviewer: str = ""
    note: str = ""
    action_id: str = ""


@dataclass
class CancelRequest:
    reason: str = "cancelled by request"
    actor: str = ""
    action_id: str = ""


@dataclass
class AddressChange:
    address: str
    actor: str = ""
    action_id: str = ""


@dataclass
class ShippingRetryRequest:
    actor: str = ""
    action_id: str = ""


@dataclass
class ActionResult:
    """What an Update returns: whether the workflow took the action, and the state after it."""

    accepted: bool
    message: str
    workflow_status: str


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
class OrderRef:
    order_id: str
    workflow_id: str


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


@dataclass
class DispatchInput:
    order_id: str
    address: str


@dataclass
class ShippingOutcome:
    status: str  # "dispatched" | "cancelled"
    tracking_number: str = ""
    address: str = ""


@dataclass
class ShippingReport:
    """Child -> parent: what happened to a forwarded action or to a dispatch attempt."""

    kind: str  # "dispatch_failed" | "dispatch_started" | "ack"
    action_id: str = ""
    accepted: bool = True
    message: str = ""
    address: str = ""


@dataclass
class ProgressRecord:
    """One projection write: a state change, a signal outcome, or both."""

    order_id: str
    event_type: str
    event_key: str
    actor: str = "system"
    source: str = "workflow"
    from_status: str = ""
    to_status: str = ""
    reason: str = ""
    details: dict = field(default_factory=dict)


def shipping_workflow_id(order_workflow_id: str) -> str:
    """The child's id derives from the parent's, so it is deterministic and easy to find."""
    return f"{order_workflow_id}-shipping"
