"""The order system's contracts: names, states, inputs, refusal codes and the input rules.

Imported by workflow code, by outside Temporal clients and by Django code, so it stays pure:
standard library only, no Django, no I/O. Renaming a registered name (task queues, signals,
updates, activities, search attributes, states) breaks clients that integrate with the workflows.

No ``from __future__ import annotations`` here: the SDK turns every payload into these
dataclasses with ``typing.get_type_hints``, which compiles string annotations again on each call
(about 5 % of a loaded worker's time, by py-spy; docs/benchmarks.md).
"""

import ipaddress
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, Optional

# -- Task queues and search attributes -----------------------------------------------------------

ORDER_TASK_QUEUE = "order-tq"
SHIPPING_TASK_QUEUE = "shipping-tq"
# Webhook deliveries (WebhookDeliveryWorkflow and its activities): a queue and worker of their
# own, so a slow receiver holds up nothing on the order's queues.
WEBHOOK_TASK_QUEUE = "webhook-tq"

# Keyword: the order's workflow_status, so the Temporal Web UI can filter by it.
SEARCH_ATTRIBUTE_ORDER_STATUS = "OrderStatus"
# Int: how many times carrier dispatch exhausted its retries for this order.
SEARCH_ATTRIBUTE_DISPATCH_FAILURES = "DispatchFailures"
# Bool: the undecided review was escalated to the review leads (set once, when it happens).
SEARCH_ATTRIBUTE_REVIEW_ESCALATED = "ReviewEscalated"

DEFAULT_REVIEW_TIMEOUT = timedelta(hours=24)
# The reason an order is cancelled with when nobody reviewed it in time.
REVIEW_TIMED_OUT = "review timed out"


class TimeoutAction(StrEnum):
    """What the review's timeout does to an undecided order (REVIEW_TIMEOUT_ACTION_<LEVEL>)."""

    EXPIRE = "expire"  # cancelled, "review timed out": the seed's story and the default
    APPROVE = "approve"  # approved by the actor "policy", naming the rule


class OrderState(StrEnum):
    """The nine workflow states of the seed, in the order an order normally passes them."""

    STARTED = "started"  # workflow initialised, nothing done yet
    PROCESSING = "processing"  # order received and being validated
    AWAITING_MANUAL_REVIEW = "awaiting_manual_review"  # waiting for a person's decision
    MANUAL_REVIEW_COMPLETED = "manual_review_completed"  # approved, payment is next
    PROCESSING_PAYMENT = "processing_payment"  # charging the customer
    SHIPPING = "shipping"  # the ShippingWorkflow child prepares and dispatches
    COMPLETED = "completed"  # dispatched to the carrier: the story is over
    CANCELLED = "cancelled"  # cancelled by staff, a client or Temporal, rejected, or review timed out
    FAILED = "failed"  # bad input, payment declined, or a fault no retry could fix

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({OrderState.COMPLETED, OrderState.CANCELLED, OrderState.FAILED})


class Activities:
    """Registered activity names. Workflows call activities by name, so workflow code never
    imports their Django-backed implementations."""

    ORDER_RECEIVED = "order_received"
    ORDER_VALIDATED = "order_validated"
    PAYMENT_CHARGED = "payment_charged"
    PAYMENT_REFUNDED = "payment_refunded"
    PACKAGE_PREPARED = "package_prepared"
    CARRIER_DISPATCHED = "carrier_dispatched"
    # What the carrier holds for an order whose shipping workflow stopped without an answer.
    SHIPMENT_CHECKED = "shipment_checked"
    # A start that cannot be an order (no usable order id): recorded for staff, nothing else.
    START_REFUSED = "order_start_refused"
    # Who asked Temporal to cancel the workflow, read from its history (Django-free).
    CANCEL_REQUEST_READ = "cancel_request_read"
    # A periodic job (temporal_app.registry.periodic), run once per period by its Temporal
    # Schedule's PeriodicJobWorkflow (temporal_app/schedules.py).
    PERIODIC_JOB_RAN = "periodic_job_ran"
    # Local activities: project a transition or a message's outcome into Postgres.
    RECORD_ORDER_PROGRESS = "record_order_progress"
    RECORD_REVIEW_OUTCOME = "record_review_outcome"
    # The review team (issue 20): an undecided review escalated to the leads; the first of two
    # approvals of a four-eyes order (a local activity, like the projection's).
    REVIEW_ESCALATED = "review_escalated"
    RECORD_REVIEW_APPROVAL = "record_review_approval"
    # Webhooks (WebhookDeliveryWorkflow): send one status change; record that sending gave up.
    WEBHOOK_DELIVERED = "webhook_delivered"
    WEBHOOK_GAVE_UP = "webhook_gave_up"


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
    """Workflow Updates: the same actions as the signals, but the caller learns whether the
    workflow took them (validators refuse before anything is written to history)."""

    DECIDE_REVIEW = "DecideReview"
    CHANGE_ADDRESS = "ChangeAddress"
    REQUEST_CANCEL = "RequestCancel"
    RETRY_SHIPPING = "RequestShippingRetry"

    ALL = frozenset({DECIDE_REVIEW, CHANGE_ADDRESS, REQUEST_CANCEL, RETRY_SHIPPING})


# Who did something when no person did: the workflow itself, an outside client that named
# nobody, an operator's cancel in Temporal (Web UI or CLI).
SYSTEM_ACTOR = "system"
CLIENT_ACTOR = "temporal-client"
TEMPORAL_ACTOR = "temporal"
POLICY_ACTOR = "policy"  # the review policy, when it approves an order without a person


class Errors:
    """ApplicationError types raised by activities and validators."""

    VALIDATION_FAILED = "OrderValidationFailed"
    ORDER_CONFLICT = "OrderConflict"
    PAYMENT_DECLINED = "PaymentDeclined"
    PAYMENT_UNAVAILABLE = "PaymentGatewayUnavailable"
    DISPATCH_FAILED = "CarrierDispatchFailed"
    # A fault that no retry can fix (a data or integrity error): the step gives up at once.
    PERMANENT = "PermanentActivityError"
    # A refusal: the error's first detail is the RefusalCode, its message is for people.
    REFUSED = "ActionRefused"


# -- Refusals ------------------------------------------------------------------------------------


class RefusalCode(StrEnum):
    """Why the workflow (or Temporal on its behalf) did not take an action. Code matches codes;
    the messages below are for people and may be reworded freely."""

    MALFORMED = "malformed"  # the payload is not what this signal or update takes
    ADDRESS_INVALID = "address_invalid"
    ADDRESS_UNCHANGED = "address_unchanged"
    ADDRESS_TOO_LATE = "address_too_late"
    NOT_AWAITING_REVIEW = "not_awaiting_review"
    ALREADY_DECIDED = "already_decided"
    UNKNOWN_DECISION = "unknown_decision"
    REJECT_NEEDS_NOTE = "reject_needs_note"
    CANCEL_TOO_LATE = "cancel_too_late"
    CANCEL_ALREADY_REQUESTED = "cancel_already_requested"
    ALREADY_FINISHED = "already_finished"
    NOT_DISPATCH_FAILED = "not_dispatch_failed"
    DUPLICATE_ACTION = "duplicate_action"
    NOT_FROM_CHILD = "not_from_child"  # a shipping report that is not from this order's child
    NOT_FROM_PARENT = "not_from_parent"  # a shipping instruction that is not from the child's parent
    SAME_REVIEWER = "same_reviewer"  # a four-eyes order's second approval by the person who gave the first
    # Temporal answers these for the workflow: it has closed, or there is no such workflow.
    WORKFLOW_CLOSED = "workflow_closed"
    WORKFLOW_NOT_FOUND = "workflow_not_found"


REFUSAL_MESSAGES: dict[RefusalCode, str] = {
    RefusalCode.MALFORMED: "{name} could not be read: {detail}.",
    RefusalCode.ADDRESS_INVALID: "{detail}",
    RefusalCode.ADDRESS_UNCHANGED: "The address is unchanged.",
    RefusalCode.ADDRESS_TOO_LATE: "The package has already been dispatched; the address can no longer change.",
    RefusalCode.NOT_AWAITING_REVIEW: "The order is not awaiting review (it is {state}).",
    RefusalCode.ALREADY_DECIDED: "The review was already decided.",
    RefusalCode.UNKNOWN_DECISION: "Unknown decision {decision!r}: use 'approve' or 'reject'.",
    RefusalCode.REJECT_NEEDS_NOTE: "A rejection needs a reason.",
    RefusalCode.CANCEL_TOO_LATE: "The package has already been dispatched; the order can no longer be cancelled.",
    RefusalCode.CANCEL_ALREADY_REQUESTED: "Cancellation was already requested.",
    RefusalCode.ALREADY_FINISHED: "The order is already {state}.",
    RefusalCode.NOT_DISPATCH_FAILED: "Shipping can only be retried after a dispatch failure.",
    RefusalCode.DUPLICATE_ACTION: "This action was already applied.",
    RefusalCode.NOT_FROM_CHILD: "A shipping report is accepted only from this order's running shipping workflow.",
    RefusalCode.NOT_FROM_PARENT: "A shipping instruction is accepted only from this shipment's order workflow.",
    RefusalCode.SAME_REVIEWER: (
        "{reviewer} already approved this order; it needs a second approval from someone else (four eyes)."
    ),
    RefusalCode.WORKFLOW_CLOSED: "The order's workflow has already finished; nothing was changed.",
    RefusalCode.WORKFLOW_NOT_FOUND: "The order's workflow {workflow_id!r} was not found in Temporal.",
}


@dataclass(frozen=True)
class Refusal:
    code: RefusalCode
    message: str


def refusal(code: RefusalCode, **detail: Any) -> Refusal:
    return Refusal(code, REFUSAL_MESSAGES[code].format(**detail))


# -- Input rules: one of each, for the workflow's boundary and for Django forms and services -------

MAX_ORDER_ID_LENGTH = 64
MAX_ADDRESS_LENGTH = 300
MAX_CUSTOMER_LENGTH = 200
MAX_ACTOR_LENGTH = 150
MAX_ACTION_ID_LENGTH = 64
MAX_REASON_CODE_LENGTH = 40
MAX_NOTE_LENGTH = 2000
MAX_SKU_LENGTH = 64
MAX_LINE_NAME_LENGTH = 200
MAX_LINE_QUANTITY = 2_147_483_647  # OrderLine.quantity is a Postgres integer
MAX_AMOUNT = Decimal("9999999999.99")  # Order.amount holds 12 digits, 2 after the point
MAX_REVIEW_TIMEOUT_SECONDS = 30 * 24 * 3600
MAX_EMAIL_LENGTH = 254
MAX_USER_AGENT_LENGTH = 500
DEFAULT_CURRENCY = "USD"
MAX_PAYMENT_ATTEMPTS = 100

ORDER_ID_INVALID = "An order id is 1 to 64 characters: letters, digits, '-', '_' or '.'."
ADDRESS_EMPTY = "The address is empty."
ADDRESS_TOO_LONG = "The address is longer than {max} characters."
ADDRESS_CONTROL_CHARS = "The address contains control characters."
AMOUNT_INVALID = "The amount must be a number of at most 2 decimals, not negative."
TOTAL_TOO_LARGE = "The order total is too large: at most 9999999999.99."
CUSTOMER_INVALID = "The customer name is longer than 200 characters or contains control characters."
LINE_INVALID = "Line item {sku!r}: quantity must be a positive whole number and price not negative."
LINE_SKU_INVALID = (
    "Line item {sku!r}: a SKU is 1 to 64 characters and a name at most 200, without control characters."
)
LINE_DUPLICATE_SKU = "SKU {sku!r} appears on more than one line; put the quantity on one line."
EMAIL_INVALID = "The customer's email address is not valid."
BILLING_ADDRESS_INVALID = "The billing address: {problem}"
CLIENT_IP_INVALID = "The client IP address is not an IPv4 or IPv6 address."
USER_AGENT_INVALID = "The user agent is longer than 500 characters or contains control characters."
CURRENCY_INVALID = "The currency must be a three-letter ISO 4217 code, such as USD or EUR."

_EMAIL = re.compile(r"\A[^@\s]+@[^@\s]+\.[^@\s]+\Z")
_CURRENCY = re.compile(r"\A[A-Z]{3}\Z")


def order_id_error(order_id: object) -> Optional[str]:
    """Why ``order_id`` cannot be an order id, or None. Ids are compared as given: callers
    that accept typed input strip it first."""
    if (
        not isinstance(order_id, str)
        or not 1 <= len(order_id) <= MAX_ORDER_ID_LENGTH
        or not all(ch.isascii() and (ch.isalnum() or ch in "-_.") for ch in order_id)
    ):
        return ORDER_ID_INVALID
    return None


def address_error(address: object) -> Optional[str]:
    """Why an address is unacceptable, or None if it is fine."""
    if not isinstance(address, str) or not address.strip():
        return ADDRESS_EMPTY
    if len(address) > MAX_ADDRESS_LENGTH:
        return ADDRESS_TOO_LONG.format(max=MAX_ADDRESS_LENGTH)
    # Category "C*" covers control, format, surrogate and unassigned code points; a plain
    # newline in a multi-line address is the one control character a person may type.
    if any(unicodedata.category(ch).startswith("C") and ch != "\n" for ch in address):
        return ADDRESS_CONTROL_CHARS
    return None


def normalise_address(address: str) -> str:
    """Trim each line and drop blank ones, so that the same address compares equal."""
    lines = (line.strip() for line in address.replace("\r\n", "\n").split("\n"))
    return "\n".join(line for line in lines if line)


def has_control_chars(text: str) -> bool:
    """Control characters (Postgres cannot store NUL) and lone surrogates (cannot be encoded)."""
    return any(unicodedata.category(ch) in ("Cc", "Cs") for ch in text)


def amount_parse(value: object) -> Decimal:
    """A money amount from text or a number; ValueError(AMOUNT_INVALID) if it is not one."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise ValueError(AMOUNT_INVALID)
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise ValueError(AMOUNT_INVALID) from None
    if not amount.is_finite() or amount < 0 or amount != amount.quantize(Decimal("0.01")):
        raise ValueError(AMOUNT_INVALID)
    if amount > MAX_AMOUNT:
        raise ValueError(TOTAL_TOO_LARGE)
    return amount.quantize(Decimal("0.01"))


def line_items_clean(items: "list[LineItem]") -> "list[LineItem]":
    """Checked, normalised line items; ValueError with the first problem's message."""
    lines: list[LineItem] = []
    for item in items:
        sku = item.sku.strip() if isinstance(item.sku, str) else ""
        name = item.name if isinstance(item.name, str) else ""
        quantity = item.quantity
        if isinstance(quantity, bool) or not isinstance(quantity, int) or not 0 < quantity <= MAX_LINE_QUANTITY:
            raise ValueError(LINE_INVALID.format(sku=sku))
        try:
            price = amount_parse(item.unit_price)
        except ValueError:
            raise ValueError(LINE_INVALID.format(sku=sku)) from None
        if not sku or len(sku) > MAX_SKU_LENGTH or len(name) > MAX_LINE_NAME_LENGTH or has_control_chars(sku + name):
            raise ValueError(LINE_SKU_INVALID.format(sku=sku))
        if any(line.sku == sku for line in lines):
            raise ValueError(LINE_DUPLICATE_SKU.format(sku=sku))
        lines.append(LineItem(sku, name, quantity, str(price)))
    return lines


def order_total(lines: "list[LineItem]", amount: object = None) -> Decimal:
    """The amount to charge: the given one, else the sum of the lines; ValueError if invalid."""
    if amount is not None and amount != "":
        return amount_parse(amount)
    total = sum((Decimal(line.unit_price) * line.quantity for line in lines), Decimal("0.00"))
    if total > MAX_AMOUNT:
        raise ValueError(TOTAL_TOO_LARGE)
    return total


def customer_error(customer: object) -> Optional[str]:
    if not isinstance(customer, str) or len(customer) > MAX_CUSTOMER_LENGTH or has_control_chars(customer):
        return CUSTOMER_INVALID
    return None


def customer_details_problems(
    *, email: object = "", billing_address: object = "", client_ip: object = "", user_agent: object = "",
    currency: object = DEFAULT_CURRENCY,
) -> list[str]:
    """Why the optional customer details cannot be taken (empty means "not given")."""
    problems = []
    if email and (not isinstance(email, str) or len(email) > MAX_EMAIL_LENGTH or has_control_chars(email)
                  or not _EMAIL.match(email)):
        problems.append(EMAIL_INVALID)
    if billing_address and address_error(billing_address):
        problems.append(BILLING_ADDRESS_INVALID.format(problem=address_error(billing_address)))
    if client_ip:
        try:
            ipaddress.ip_address(client_ip if isinstance(client_ip, str) else "")
        except ValueError:
            problems.append(CLIENT_IP_INVALID)
    if user_agent and (not isinstance(user_agent, str) or len(user_agent) > MAX_USER_AGENT_LENGTH
                       or has_control_chars(user_agent)):
        problems.append(USER_AGENT_INVALID)
    if not isinstance(currency, str) or not _CURRENCY.match(currency):
        problems.append(CURRENCY_INVALID)
    return problems


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
