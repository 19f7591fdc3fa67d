"""Orders and their projection of the workflow's progress.

The workflow is the source of truth for an order's state; these rows are its projection, written
by the activities (see temporal_app/activities.py). Pages read them. Invariants are database
constraints so that a retried activity or a racing request cannot break them.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex, OpClass
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Lower, Upper

from temporal_app.contracts import DEFAULT_CURRENCY, MAX_ADDRESS_LENGTH, OrderState


class TimeStampedModel(models.Model):
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class CancelReason(models.TextChoices):
    """Why staff cancel an order, as a code reports can count (``Order.cancel_reason_code``).
    The admin makes staff choose one; ``orderweb.actions.order_cancel`` refuses any other code.
    Clients that send none leave the code empty."""

    SUSPECTED_FRAUD = "suspected_fraud", "Suspected fraud"
    CUSTOMER_REQUEST = "customer_request", "Customer request"
    UNDELIVERABLE_ADDRESS = "undeliverable_address", "Undeliverable address"
    OUT_OF_STOCK = "out_of_stock", "Out of stock"
    OTHER = "other", "Other"


class Order(TimeStampedModel):
    class Status(models.TextChoices):
        STARTED = OrderState.STARTED, "Started"
        PROCESSING = OrderState.PROCESSING, "Processing"
        AWAITING_MANUAL_REVIEW = OrderState.AWAITING_MANUAL_REVIEW, "Awaiting manual review"
        MANUAL_REVIEW_COMPLETED = OrderState.MANUAL_REVIEW_COMPLETED, "Manual review completed"
        PROCESSING_PAYMENT = OrderState.PROCESSING_PAYMENT, "Processing payment"
        SHIPPING = OrderState.SHIPPING, "Shipping"
        COMPLETED = OrderState.COMPLETED, "Completed"
        CANCELLED = OrderState.CANCELLED, "Cancelled"
        FAILED = OrderState.FAILED, "Failed"

    order_id = models.CharField(max_length=64, unique=True)
    workflow_id = models.CharField(max_length=255, unique=True)
    address = models.TextField(max_length=MAX_ADDRESS_LENGTH)
    customer = models.CharField(max_length=200, blank=True)
    # What the client knew about the customer (optional; review and risk rules use it).
    customer_email = models.EmailField(max_length=254, blank=True)
    billing_address = models.TextField(max_length=MAX_ADDRESS_LENGTH, blank=True)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=500, blank=True)
    amount = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    currency = models.CharField(max_length=3, default=DEFAULT_CURRENCY)
    status = models.CharField(max_length=32, choices=Status.choices, default=Status.STARTED)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    cancel_reason = models.TextField(blank=True)
    # Why, as a code reports can count (staff and reviewers choose one; clients may send one).
    cancel_reason_code = models.CharField(max_length=40, blank=True, db_index=True)
    failure_reason = models.TextField(blank=True)
    dispatch_failures = models.PositiveIntegerField(default=0)
    # Set by the reconciler when the workflow cannot report for itself (terminated, deleted,
    # stuck): a flag for staff with its reason, beside the last state the workflow reported.
    attention_reason = models.TextField(blank=True)
    attention_since = models.DateTimeField(null=True, blank=True)
    source = models.CharField(max_length=32, default="temporal-client")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]
        permissions = [
            ("cancel_order", "Can cancel orders"),
            ("change_order_address", "Can change an order's shipping address"),
            ("retry_shipping", "Can retry a failed shipment"),
            # The Temporal Web UI's codec endpoint (orderweb/codec_server.py).
            ("decode_payloads", "Can see decrypted workflow payloads"),
            # A remark on the order for colleagues, without a decision (reviewers, staff).
            ("add_order_note", "Can add notes to orders"),
        ]
        indexes = [
            models.Index(fields=["status", "-created_at"], name="order_status_created"),
            models.Index(
                fields=["-created_at"],
                condition=Q(dispatch_failures__gt=0),
                name="order_dispatch_failed",
            ),
            models.Index(
                fields=["-attention_since"],
                condition=Q(attention_since__isnull=False),
                name="order_needs_attention",
            ),
            # GET /api/v1/orders pages by (updated_at, id).
            models.Index(fields=["updated_at", "id"], name="order_updated_keyset"),
            # Search (the review queue, Recent decisions, the admin's order list): Django's
            # icontains is UPPER(col::text) LIKE UPPER('%…%'), which a trigram index on that
            # expression answers without reading every order (pg_trgm: docs/operations.md).
            *[
                GinIndex(OpClass(Upper(column), name="gin_trgm_ops"), name=name)
                for column, name in (
                    ("order_id", "order_order_id_upper_trgm"),
                    ("customer", "order_customer_upper_trgm"),
                    ("customer_email", "order_email_upper_trgm"),
                    ("address", "order_address_upper_trgm"),
                )
            ],
            # A customer's and an address's latest earlier orders, in time order (the risk rules,
            # the review page's earlier orders): iexact is UPPER(col::text) = UPPER('…').
            *[
                models.Index(Upper(column), F("created_at"), name=name)
                for column, name in (
                    ("customer", "order_customer_upper_time"),
                    ("customer_email", "order_email_upper_time"),
                    ("address", "order_address_upper_time"),
                    ("billing_address", "order_billing_upper_time"),
                )
            ],
            # An order's linked orders from the same client address (the review page).
            models.Index(F("client_ip"), F("created_at"), name="order_client_ip_time"),
            # The shop's latest amounts in one currency (the risk rules' percentile, issue 19).
            models.Index(fields=["currency", "created_at"], name="order_currency_time"),
        ]
        constraints = [
            # Order ids are unique regardless of case: ORDER-1 and order-1 would run as one
            # workflow (order-1). Built concurrently by its migration (0011), the table stays writable.
            models.UniqueConstraint(Lower("order_id"), name="order_id_unique_ignoring_case"),
            models.CheckConstraint(condition=Q(status__in=[s.value for s in OrderState]), name="order_status_valid"),
            models.CheckConstraint(condition=Q(amount__gte=0), name="order_amount_not_negative"),
            models.CheckConstraint(condition=~Q(address=""), name="order_address_not_empty"),
            models.CheckConstraint(
                condition=~Q(status=OrderState.FAILED) | ~Q(failure_reason=""),
                name="order_failed_has_reason",
            ),
            models.CheckConstraint(
                condition=~Q(status=OrderState.CANCELLED) | ~Q(cancel_reason=""),
                name="order_cancelled_has_reason",
            ),
            models.CheckConstraint(
                condition=Q(attention_since__isnull=True, attention_reason="")
                | Q(attention_since__isnull=False) & ~Q(attention_reason=""),
                name="order_attention_has_reason",
            ),
        ]

    def __str__(self) -> str:
        return self.order_id

    @property
    def is_terminal(self) -> bool:
        return OrderState(self.status).is_terminal

    @property
    def needs_attention(self) -> bool:
        return self.attention_since is not None


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    sku = models.CharField(max_length=64)
    name = models.CharField(max_length=200, blank=True)
    quantity = models.PositiveIntegerField(default=1)
    unit_price = models.DecimalField(max_digits=12, decimal_places=2, default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["order", "sku"], name="order_line_unique_sku"),
            models.CheckConstraint(condition=Q(quantity__gt=0), name="order_line_quantity_positive"),
            models.CheckConstraint(condition=Q(unit_price__gte=0), name="order_line_price_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.sku}"

    @property
    def total(self):
        return self.quantity * self.unit_price


class Payment(TimeStampedModel):
    """Our record of a charge or a refund; one of each per order at most."""

    class Kind(models.TextChoices):
        CHARGE = "charge", "Charge"
        REFUND = "refund", "Refund"

    class Status(models.TextChoices):
        SUCCEEDED = "succeeded", "Succeeded"
        DECLINED = "declined", "Declined"

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="payments")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    # Stable key (order:<id>:charge) shared with the gateway: the same charge is never made twice.
    idempotency_key = models.CharField(max_length=128, unique=True)
    provider_reference = models.CharField(max_length=64, blank=True)
    message = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["order", "kind"], name="payment_one_per_kind"),
            models.CheckConstraint(condition=Q(amount__gte=0), name="payment_amount_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount} for {self.order_id}"


class Shipment(TimeStampedModel):
    class Status(models.TextChoices):
        PREPARED = "prepared", "Prepared"
        DISPATCHED = "dispatched", "Dispatched"
        DISPATCH_FAILED = "dispatch_failed", "Dispatch failed"
        CANCELLED = "cancelled", "Cancelled"

    order = models.OneToOneField(Order, on_delete=models.PROTECT, related_name="shipment")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PREPARED)
    address = models.TextField(max_length=MAX_ADDRESS_LENGTH)
    idempotency_key = models.CharField(max_length=128, unique=True)
    tracking_number = models.CharField(max_length=64, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)  # the carrier's last refusal, for staff

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=~Q(status="dispatched") | ~Q(tracking_number=""),
                name="shipment_dispatched_has_tracking",
            ),
        ]

    def __str__(self) -> str:
        return f"shipment of {self.order_id}"


class OrderEvent(models.Model):
    """The audit trail: every state change, message and person's action, with its actor.

    ``event_key`` makes projection writes idempotent: a retried activity writes the same key,
    and the unique constraint keeps one row. Events are written through the constructors in
    ``orderweb.events`` (and ``reviews.events``), one per type.
    """

    class Type(models.TextChoices):
        # The order's life, written by the workflow and its activities.
        ORDER_CREATED = "order_created", "Order created"
        STATUS_CHANGED = "status_changed", "Status changed"
        REVIEW_APPROVED = "review_approved", "Review approved"
        PAYMENT_CHARGED = "payment_charged", "Payment charged"
        PAYMENT_REFUNDED = "payment_refunded", "Payment refunded"
        DISPATCH_FAILED = "dispatch_failed", "Dispatch failed"
        CARRIER_DISPATCHED = "carrier_dispatched", "Dispatched to the carrier"
        ORDER_COMPLETED = "order_completed", "Order completed"
        ORDER_CANCELLED = "order_cancelled", "Order cancelled"
        ORDER_FAILED = "order_failed", "Order failed"
        # Messages the workflow took or refused (signals from any client, Updates, Temporal).
        SIGNAL_APPLIED = "signal_applied", "Signal applied"
        SIGNAL_REFUSED = "signal_refused", "Signal refused"
        UPDATE_APPLIED = "update_applied", "Update applied"
        UPDATE_REFUSED = "update_refused", "Update refused"
        TEMPORAL_CANCEL_REQUESTED = "temporal_cancel_requested", "Cancel requested in Temporal"
        # What people asked for (staff, reviewers, API clients), and answers other than "done".
        CANCEL_REQUESTED = "cancel_requested", "Cancellation requested"
        CANCEL_REFUSED = "cancel_refused", "Cancellation refused"
        CANCEL_UNANSWERED = "cancel_unanswered", "Cancellation not confirmed"
        ADDRESS_CHANGE_REQUESTED = "address_change_requested", "Address change requested"
        ADDRESS_CHANGE_REFUSED = "address_change_refused", "Address change refused"
        ADDRESS_CHANGE_UNANSWERED = "address_change_unanswered", "Address change not confirmed"
        SHIPPING_RETRY_REQUESTED = "shipping_retry_requested", "Shipping retry requested"
        SHIPPING_RETRY_REFUSED = "shipping_retry_refused", "Shipping retry refused"
        SHIPPING_RETRY_UNANSWERED = "shipping_retry_unanswered", "Shipping retry not confirmed"
        REVIEW_DECISION_REQUESTED = "review_decision_requested", "Decision sent"
        REVIEW_DECISION_REFUSED = "review_decision_refused", "Decision refused"
        REVIEW_DECISION_UNANSWERED = "review_decision_unanswered", "Decision not confirmed"
        REVIEW_CLAIMED = "review_claimed", "Review claimed"
        REVIEW_RELEASED = "review_released", "Review released"
        # The review team (issue 20): the leads told of a review waiting too long; a four-eyes
        # order's first approval; claims that lapse, are extended or reassigned by a lead.
        REVIEW_ESCALATED = "review_escalated", "Escalated to the review leads"
        REVIEW_PARTLY_APPROVED = "review_partly_approved", "Approved, 1 of 2"
        REVIEW_CLAIM_EXTENDED = "review_claim_extended", "Claim extended"
        REVIEW_CLAIM_LAPSED = "review_claim_lapsed", "Claim lapsed"
        REVIEW_REASSIGNED = "review_reassigned", "Review reassigned"
        # A person's remark on the order, without a decision: not a state change.
        NOTE_ADDED = "note_added", "Note"
        # How the order turned out (issue 21): an outcome label set or removed (OrderLabel).
        LABEL_ADDED = "label_added", "Label set"
        LABEL_REMOVED = "label_removed", "Label removed"
        # The reconciler: what the workflow could not report itself.
        ATTENTION_FLAGGED = "attention_flagged", "Flagged for staff"

    class Source(models.TextChoices):
        WORKFLOW = "workflow", "Workflow"
        SIGNAL = "signal", "Signal"
        WEB = "web", "Review UI"
        ADMIN = "admin", "Admin"
        API = "api", "API"
        COMMAND = "command", "Command"

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="events")
    type = models.CharField(max_length=64, choices=Type.choices)
    # NULL, not "": events without a key (notes, staff requests) must not collide in the unique
    # (order, event_key) constraint below, and Postgres lets NULLs repeat there.
    event_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001 -- see above
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor = models.CharField(max_length=150, default="system")  # username or "system"
    source = models.CharField(max_length=16, choices=Source.choices)
    from_status = models.CharField(max_length=32, blank=True)
    to_status = models.CharField(max_length=32, blank=True)
    message = models.TextField(blank=True)
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [
            models.Index(fields=["order", "created_at"], name="order_event_timeline"),
            # The webhook sweep: recent status changes (orderweb/webhooks.py).
            models.Index(fields=["created_at"], condition=~Q(to_status=""), name="order_event_status_changes"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["order", "event_key"], name="order_event_unique_key"),
        ]

    def __str__(self) -> str:
        return f"{self.order_id} {self.type} by {self.actor}"

    @property
    def label(self) -> str:
        """What people read on the timeline: the message's name for signals and Updates."""
        if self.type in _MESSAGE_OUTCOMES:
            return f"{self.details.get('signal') or 'Message'} {_MESSAGE_OUTCOMES[self.type]}"
        if self.type in self.Type.values:
            return self.Type(self.type).label
        return self.type.replace("_", " ").capitalize()  # a type from an older release


_MESSAGE_OUTCOMES = {
    OrderEvent.Type.SIGNAL_APPLIED: "applied",
    OrderEvent.Type.SIGNAL_REFUSED: "refused",
    OrderEvent.Type.UPDATE_APPLIED: "applied",
    OrderEvent.Type.UPDATE_REFUSED: "refused",
}


class RefusedStart(models.Model):
    """An OrderWorkflow start whose arguments could not make an order (no usable order id):
    nothing was received or charged; staff see here what was sent and why it was refused."""

    workflow_id = models.CharField(max_length=1000)
    run_id = models.CharField(max_length=64)
    reason = models.TextField()
    arguments = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["workflow_id", "run_id"], name="refused_start_once_per_run"),
        ]

    def __str__(self) -> str:
        return f"refused start of {self.workflow_id}"


# -- The simulated external services ------------------------------------------------------------
# The payment provider and the carrier are external by nature, so they are simulated, each with
# its own ledger keyed by the idempotency key we send: a test counts real charges and dispatches
# there, independently of our own Payment and Shipment rows.


class GatewayLedgerEntry(models.Model):
    class Kind(models.TextChoices):
        CHARGE = "charge", "Charge"
        REFUND = "refund", "Refund"

    idempotency_key = models.CharField(max_length=128, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    reference = models.CharField(max_length=64, unique=True)
    order_ref = models.CharField(max_length=64, db_index=True)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    # A refund names the charge it returns.
    refunds = models.OneToOneField("self", null=True, blank=True, on_delete=models.PROTECT, related_name="refunded_by")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "gateway ledger entries"
        constraints = [
            models.CheckConstraint(
                condition=Q(kind="charge", refunds__isnull=True) | Q(kind="refund", refunds__isnull=False),
                name="gateway_refund_names_charge",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.reference} for {self.order_ref}"


class CarrierLedgerEntry(models.Model):
    idempotency_key = models.CharField(max_length=128, unique=True)
    order_ref = models.CharField(max_length=64, db_index=True)
    address = models.TextField()
    tracking_number = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "carrier ledger entries"

    def __str__(self) -> str:
        return f"shipment {self.tracking_number} for {self.order_ref}"


class SimulatedFault(models.Model):
    """A planned misbehaviour of a simulated service or activity, for tests and demos.

    ``target`` is an activity name (``payment_charged``, ``carrier_dispatched``...). ``transient``
    faults fail the next ``remaining`` attempts and then let them succeed; ``decline`` makes the
    gateway decline the payment (a business failure, not retried).
    """

    class Mode(models.TextChoices):
        TRANSIENT = "transient", "Transient failure"
        DECLINE = "decline", "Payment declined"

    target = models.CharField(max_length=64)
    order_ref = models.CharField(max_length=64)
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.TRANSIENT)
    remaining = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["target", "order_ref"], name="fault_one_per_target"),
        ]

    def __str__(self) -> str:
        return f"{self.mode} fault of {self.target} for {self.order_ref}"


# -- The HTTP API's clients (orderweb/api/, docs/api.md) -----------------------------------------


class ApiKey(models.Model):
    """One client of the HTTP API: a service that creates or follows orders.

    The key itself is shown once, at creation; only its public prefix (for lookup) and a SHA-256
    hash of the whole key are stored. A key is revoked, never deleted, so the orders and audit
    rows that name it keep their client."""

    class Scope(models.TextChoices):
        CREATE = "create", "Create orders"
        READ = "read", "Read orders"
        ACT = "act", "Cancel orders and change addresses"
        LABEL = "label", "Set outcome labels"

    name = models.CharField(max_length=100, unique=True, help_text="The client's name: the actor in the audit trail.")
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)  # hex SHA-256 of the whole key
    scope_create = models.BooleanField("create orders", default=False)
    scope_read = models.BooleanField("read orders", default=True)
    scope_act = models.BooleanField("cancel and change addresses", default=False)
    scope_label = models.BooleanField("set outcome labels", default=False)
    # None: the API_RATE_LIMIT_PER_MINUTE setting.
    rate_limit_per_minute = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "API key"
        permissions = [("revoke_apikey", "Can revoke API keys")]
        constraints = [
            models.CheckConstraint(condition=~Q(name=""), name="api_key_has_name"),
            models.CheckConstraint(
                condition=Q(rate_limit_per_minute__isnull=True) | Q(rate_limit_per_minute__gt=0),
                name="api_key_rate_limit_positive",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def scopes(self) -> list[str]:
        return [s.value for s in self.Scope if getattr(self, f"scope_{s.value}")]

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class ApiRateWindow(models.Model):
    """A fixed-window request counter per API key: one row per key and minute, counted by one
    INSERT ... ON CONFLICT DO UPDATE per request, so every web process shares the count."""

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+")
    window_start = models.DateTimeField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["api_key", "window_start"], name="api_rate_one_row_per_window"),
        ]

    def __str__(self) -> str:
        return f"{self.count} requests of key {self.api_key_id} from {self.window_start:%Y-%m-%d %H:%M} UTC"


class ApiOrderRequest(models.Model):
    """Which API client created an order, and a fingerprint of what it sent (a hash per field),
    so a repeated POST can be told from a different order with the same id."""

    order = models.OneToOneField(Order, on_delete=models.CASCADE, primary_key=True, related_name="api_request")
    api_key = models.ForeignKey(ApiKey, on_delete=models.PROTECT, related_name="+")
    fingerprint = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"API request of key {self.api_key_id} for order {self.order_id}"


class ApiIdempotencyKey(models.Model):
    """An ``Idempotency-Key`` a client sent with a POST: the request's fingerprint and the first
    response, replayed for a repeat. Kept for API_IDEMPOTENCY_KEY_HOURS, then purged
    (``orderweb.api.services.api_idempotency_keys_purge``)."""

    api_key = models.ForeignKey(ApiKey, on_delete=models.PROTECT, related_name="+")
    key = models.CharField(max_length=255)
    fingerprint = models.JSONField()
    status_code = models.PositiveSmallIntegerField()
    response = models.JSONField()
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["api_key", "key"], name="api_idempotency_key_once_per_client"),
        ]
        indexes = [
            # The hourly purge finds the expired keys by age (built concurrently: migration 0013).
            models.Index(fields=["created_at"], name="api_idempotency_key_created"),
        ]

    def __str__(self) -> str:
        return f"idempotency key {self.key!r} of key {self.api_key_id}"


class WebhookDelivery(models.Model):
    """One order status change sent to the webhook URL (orderweb/webhooks.py). One per event; its
    workflow (``webhook-<id>``) sends it and Temporal retries it."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed (gave up)"

    event = models.OneToOneField(OrderEvent, on_delete=models.CASCADE, related_name="webhook_delivery")
    url = models.URLField(max_length=1000)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    workflow_started_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        indexes = [
            models.Index(fields=["id"], condition=Q(workflow_started_at__isnull=True), name="webhook_to_start"),
            models.Index(fields=["-created_at"], condition=~Q(status="sent"), name="webhook_not_sent"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=~Q(status="sent") | Q(sent_at__isnull=False), name="webhook_sent_has_time"
            ),
        ]

    def __str__(self) -> str:
        return f"webhook for event {self.event_id} ({self.status})"


class WebhookCursor(models.Model):
    """The webhook sweep's high-water mark for one receiver URL (orderweb/webhooks.py): every
    status change up to ``event_id`` has its delivery. Created by the first sweep after the URL is
    configured, at the last event older than ORDER_WEBHOOK_LOOKBACK_SECONDS; from then on the
    sweep moves it forward only, whatever the time the workers were down, so nothing is dropped."""

    url = models.URLField(max_length=1000, unique=True)
    event_id = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"webhook cursor of {self.url} at event {self.event_id}"


# -- How an order turned out, after the decision (issue 21) --------------------------------------


class OrderLabel(models.Model):
    """An outcome learned after the decision: a chargeback, a confirmed fraud, a customer
    confirmed genuine. Set by staff (the admin, the review page) or another service (the API).

    An order's current labels are its rows with ``removed_at`` null; removing one sets
    ``removed_at`` and ``removed_by`` and keeps the row, so the order keeps its label history
    (who, when, from where). A kind is active at most once per order (a partial unique
    constraint): setting it again while it stands changes nothing. Written through
    ``orderweb.labels`` (audited on the order's timeline), never directly."""

    class Kind(models.TextChoices):
        CHARGEBACK = "chargeback", "Chargeback"
        FRAUD_CONFIRMED = "fraud_confirmed", "Fraud confirmed"
        GENUINE_CONFIRMED = "genuine_confirmed", "Genuine confirmed"

    class Source(models.TextChoices):
        ADMIN = "admin", "Admin"
        REVIEW = "review", "Review UI"
        API = "api", "API"

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="labels")
    label = models.CharField(max_length=32, choices=Kind.choices)
    note = models.TextField(blank=True)
    # The other system's reference: a chargeback's case number, a ticket.
    source_reference = models.CharField(max_length=200, blank=True)
    actor = models.CharField(max_length=150)  # who set it: a username or an API client's name
    source = models.CharField(max_length=16, choices=Source.choices)
    created_at = models.DateTimeField(auto_now_add=True)
    removed_at = models.DateTimeField(null=True, blank=True)
    removed_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [
            # Labels of one kind set in a date range (the insights, the backtest, the metric).
            models.Index(fields=["label", "created_at"], name="order_label_kind_time"),
        ]
        constraints = [
            # Also the index of an order's current labels (the order page, the insights' outcomes).
            models.UniqueConstraint(
                fields=["order", "label"],
                condition=Q(removed_at__isnull=True),
                name="order_label_active_once",
            ),
            models.CheckConstraint(
                condition=Q(label__in=["chargeback", "fraud_confirmed", "genuine_confirmed"]),
                name="order_label_kind_valid",
            ),
            models.CheckConstraint(condition=Q(source__in=["admin", "review", "api"]), name="order_label_source_valid"),
            models.CheckConstraint(
                condition=Q(removed_at__isnull=True, removed_by="") | Q(removed_at__isnull=False) & ~Q(removed_by=""),
                name="order_label_removal_has_actor",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_label_display()} on {self.order_id}"

    @property
    def is_active(self) -> bool:
        return self.removed_at is None
