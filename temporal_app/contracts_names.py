"""The contracts' names: task queues, search attributes, states, activity, signal and update names,
actors, error types, refusal codes and the limits of the input rules.

Part of ``temporal_app.contracts``, which re-exports it: import from there. Pure like it: standard
library only, no Django, no I/O (the workflow sandbox passes it through, temporal_app/worker.py).
Renaming a registered name breaks clients that integrate with the workflows.

No ``from __future__ import annotations`` here, as in every part of the contracts: the SDK reads
the dataclasses' annotations at runtime (contracts.py says why).
"""

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

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


# -- Limits of the input rules (contracts_rules.py), shared with the models and forms -------------

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
