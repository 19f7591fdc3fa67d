"""Review tasks: the person-facing side of the workflow's manual-review wait.

A task is opened by the ``order_validated`` activity when the workflow starts waiting, and closed
by the workflow's own progress (approved, rejected, expired, cancelled), or by the reconciler
when the workflow stopped without an ending (stopped). Claiming is the only
change a reviewer makes here directly: it is coordination between people, not order state.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Optional

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from orderweb.models import Order
from temporal_app.contracts import TimeoutAction as TimeoutActionValue


class TimeoutAction(models.TextChoices):
    EXPIRE = TimeoutActionValue.EXPIRE, "Expires (cancelled)"
    APPROVE = TimeoutActionValue.APPROVE, "Approved by policy"


class RejectReason(models.TextChoices):
    """Why a reviewer rejects an order, as a code reports can count (``ReviewTask.reason_code``,
    and the order's ``cancel_reason_code``). ``review_decide`` refuses a rejection without one;
    “other” needs the reviewer's own words."""

    SUSPECTED_FRAUD = "suspected_fraud", "Suspected fraud"
    CUSTOMER_REQUEST = "customer_request", "Customer request"
    UNDELIVERABLE_ADDRESS = "undeliverable_address", "Undeliverable address"
    OUT_OF_STOCK = "out_of_stock", "Out of stock"
    OTHER = "other", "Other"


class RiskLevel(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"


class RiskAssessment(models.Model):
    """What reviews/risk.py found when the order was validated: once per order, never changed
    afterwards (a retried activity finds it and answers the same). ``reasons`` holds each
    matching rule with its points, its sentence for people and its figures."""

    order = models.OneToOneField(Order, on_delete=models.CASCADE, related_name="risk")
    score = models.PositiveSmallIntegerField()
    level = models.CharField(max_length=8, choices=RiskLevel.choices)
    reasons = models.JSONField(default=list, blank=True)
    # What the review policy did with it: "" (a person reviews) or the rule that let it through.
    approved_by_policy = models.TextField(blank=True)
    # The policy version it was scored under (None: before policies were data, or none active:
    # the RISK_* settings) and the facts it used (``RiskFacts``, recorded), so that a backtest
    # scores the order again without reading its history again.
    policy = models.ForeignKey("RiskPolicy", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    facts = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            # The backtest: the assessments of a date range.
            models.Index(fields=["created_at"], name="risk_assessment_time"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(score__lte=100), name="risk_score_at_most_100"),
            models.CheckConstraint(condition=Q(level__in=RiskLevel.values), name="risk_level_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.get_level_display()} risk ({self.score}/100)"


class ReviewTask(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "Open"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"
        EXPIRED = "expired", "Expired (review timed out)"
        CANCELLED = "cancelled", "Cancelled (order cancelled)"
        # Closed by the reconciler: the order's workflow stopped without ending the review.
        STOPPED = "stopped", "Closed (workflow stopped)"

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="review_tasks")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    due_at = models.DateTimeField()
    claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # When the claim was taken or last extended: it lapses REVIEW_CLAIM_TIMEOUT_MINUTES later
    # (``claim_lapses_at``), and a lapsed claim is free for anyone to take (read-time, no job).
    claimed_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_by_name = models.CharField(max_length=150, blank=True)  # also for outside clients
    decided_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True)
    reason_code = models.CharField(max_length=40, blank=True)  # a rejection's reason, as a code
    # When the workflow escalated the undecided review to the leads (its escalation timer fired).
    escalated_at = models.DateTimeField(null=True, blank=True)
    # The review's rules, as the workflow got them when the task opened (order_validated): how many
    # people must approve (2: four eyes, and why) and what its timeout does.
    approvals_required = models.PositiveSmallIntegerField(default=1)
    four_eyes_rule = models.CharField(max_length=200, blank=True)
    timeout_action = models.CharField(max_length=8, choices=TimeoutAction.choices, default=TimeoutAction.EXPIRE)
    # Four eyes: the first approval, projected when the workflow took it; the second closes the task.
    first_approval_by = models.CharField(max_length=150, blank=True)
    first_approval_at = models.DateTimeField(null=True, blank=True)
    first_approval_note = models.TextField(blank=True)
    # Copied from the order's RiskAssessment and the order when the task opens (neither changes
    # afterwards), so that the queue sorts and filters on the open-task indexes alone.
    risk_score = models.PositiveSmallIntegerField(null=True, blank=True)
    risk_level = models.CharField(max_length=8, choices=RiskLevel.choices, blank=True)
    amount = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["due_at", "pk"]
        permissions = [
            ("decide_review", "Can approve or reject orders in manual review"),
            # The `review_lead` group: release or reassign anyone's claim, the Escalated view, the
            # team's insights, the allow/block lists and the risk policy.
            ("lead_review", "Can lead the review team"),
        ]
        indexes = [
            # The queue: open tasks, oldest due first.
            models.Index(fields=["due_at", "id"], condition=Q(status="open"), name="review_open_queue"),
            models.Index(fields=["-decided_at"], condition=~Q(status="open"), name="review_recent"),
            # The queue sorted by risk or by amount, and filtered by risk level.
            models.Index(
                F("risk_score").desc(nulls_last=True),
                "due_at",
                "id",
                condition=Q(status="open"),
                name="review_open_risk",
            ),
            models.Index(
                F("amount").desc(nulls_last=True), "due_at", "id", condition=Q(status="open"), name="review_open_amount"
            ),
            models.Index(fields=["risk_level", "due_at", "id"], condition=Q(status="open"), name="review_open_level"),
            # Recent decisions of one reviewer.
            models.Index(
                F("decided_by_name"), F("decided_at").desc(), condition=~Q(status="open"), name="review_recent_by"
            ),
            # The leads' Escalated view (open escalated reviews, due first), and escalations over
            # time (the metric, the insights).
            models.Index(
                fields=["due_at", "id"],
                condition=Q(status="open", escalated_at__isnull=False),
                name="review_open_escalated",
            ),
            models.Index(fields=["escalated_at"], condition=Q(escalated_at__isnull=False), name="review_escalated"),
            # Decisions by outcome (the Prometheus counter): an index-only count of the closed tasks.
            models.Index(fields=["status"], condition=~Q(status="open"), name="review_closed_status"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["order"], condition=Q(status="open"), name="review_one_open_per_order"),
            models.CheckConstraint(
                condition=Q(status="open") | Q(decided_at__isnull=False),
                name="review_closed_has_time",
            ),
            models.CheckConstraint(
                condition=Q(claimed_by__isnull=True) | Q(claimed_at__isnull=False),
                name="review_claim_has_time",
            ),
            models.CheckConstraint(condition=Q(approvals_required__in=[1, 2]), name="review_one_or_two_approvals"),
            models.CheckConstraint(
                condition=Q(timeout_action__in=TimeoutAction.values), name="review_timeout_action_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"review of {self.order.order_id} ({self.status})"

    @property
    def is_open(self) -> bool:
        return self.status == self.Status.OPEN

    @property
    def claim_lapses_at(self) -> Optional[datetime]:
        if self.claimed_by_id is None or self.claimed_at is None:
            return None
        return self.claimed_at + claim_timeout()

    def claim_active(self, now: Optional[datetime] = None) -> bool:
        """Held by someone whose claim has not lapsed."""
        lapses = self.claim_lapses_at
        return lapses is not None and lapses > (now or timezone.now())

    def holder(self, now: Optional[datetime] = None):
        """Who holds the review now: the claimer while the claim is active, else nobody."""
        return self.claimed_by if self.claim_active(now) else None

    @property
    def is_four_eyes(self) -> bool:
        return self.approvals_required > 1


def claim_timeout() -> timedelta:
    return timedelta(minutes=settings.REVIEW_CLAIM_TIMEOUT_MINUTES)


def claims_active_since(now: Optional[datetime] = None) -> datetime:
    """Claims taken or extended after this are active; older ones have lapsed."""
    return (now or timezone.now()) - claim_timeout()


# -- Risk rules as data (issue 21): the policy's versions, the allow/block lists, their audit ------


class RiskPolicy(models.Model):
    """A version of the risk rules' weights and thresholds (reviews/risk.py reads the active one).

    A policy moves from draft (leads edit it) to active (one at a time, never edited again: the
    assessments made under it name it) to retired (when another is activated). ``points`` maps a
    rule to its weight; ``thresholds`` holds ``RiskThresholds``' fields and the review threshold."""

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        ACTIVE = "active", "Active"
        RETIRED = "retired", "Retired"

    version = models.PositiveIntegerField(unique=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.DRAFT)
    points = models.JSONField(default=dict)
    thresholds = models.JSONField(default=dict)
    note = models.TextField(blank=True)  # what this version changes, and why
    based_on = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by_name = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)  # a draft's last edit
    activated_at = models.DateTimeField(null=True, blank=True)
    activated_by_name = models.CharField(max_length=150, blank=True)
    # Why it could be activated: the backtest that was run on it, or the lead's reason without one.
    activation_reason = models.TextField(blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "risk policies"
        ordering = ["-version"]
        constraints = [
            models.UniqueConstraint(fields=["status"], condition=Q(status="active"), name="risk_policy_one_active"),
            models.CheckConstraint(
                condition=Q(status__in=["draft", "active", "retired"]), name="risk_policy_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(status="draft") | Q(activated_at__isnull=False), name="risk_policy_activated_has_time"
            ),
        ]

    def __str__(self) -> str:
        return f"risk policy v{self.version} ({self.status})"

    @property
    def is_draft(self) -> bool:
        return self.status == self.Status.DRAFT


class RiskListEntry(models.Model):
    """An allow or block list entry: a value that an order's customer email, shipping address,
    customer name or client IP is matched against (``value_key``, normalised by
    ``reviews.lists.list_key``). Removed, never deleted; an expired entry stops matching."""

    class Kind(models.TextChoices):
        ALLOW = "allow", "Allow"
        BLOCK = "block", "Block"

    class Field(models.TextChoices):
        EMAIL = "email", "Customer email"
        ADDRESS = "address", "Shipping address"
        NAME = "name", "Customer name"
        IP = "ip", "Client IP"

    kind = models.CharField(max_length=5, choices=Kind.choices)
    field = models.CharField(max_length=8, choices=Field.choices)
    value = models.TextField(max_length=300)  # as people read it
    value_key = models.CharField(max_length=300)  # as orders are matched against it
    reason = models.TextField(max_length=500)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by_name = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    # The order it was added from ("Block this address" on an order page), if any.
    order = models.ForeignKey(Order, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    removed_at = models.DateTimeField(null=True, blank=True)
    removed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    removed_by_name = models.CharField(max_length=150, blank=True)
    removal_reason = models.TextField(blank=True)

    class Meta:
        verbose_name = "allow/block list entry"
        verbose_name_plural = "allow/block list entries"
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(fields=["field", "value_key"], condition=Q(removed_at__isnull=True), name="risk_list_match"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "field", "value_key"],
                condition=Q(removed_at__isnull=True),
                name="risk_list_one_live_entry",
            ),
            models.CheckConstraint(condition=Q(kind__in=["allow", "block"]), name="risk_list_kind_valid"),
            models.CheckConstraint(
                condition=Q(field__in=["email", "address", "name", "ip"]), name="risk_list_field_valid"
            ),
            models.CheckConstraint(condition=~Q(value_key="") & ~Q(reason=""), name="risk_list_has_value_and_reason"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.field}: {self.value}"

    def is_live(self, now: Optional[datetime] = None) -> bool:
        return self.removed_at is None and (self.expires_at is None or self.expires_at > (now or timezone.now()))


class RiskBacktest(models.Model):
    """A policy scored over past orders' recorded facts (reviews/backtest.py): what it would have
    sent to review against the active policy, and which bad orders it would have caught."""

    policy = models.ForeignKey(RiskPolicy, on_delete=models.CASCADE, related_name="backtests")
    compared_to = models.ForeignKey(RiskPolicy, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # The draft's rules as they were scored: an edit afterwards makes the backtest another draft's.
    fingerprint = models.CharField(max_length=64)
    since = models.DateTimeField()
    until = models.DateTimeField()
    result = models.JSONField(default=dict)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"backtest of v{self.policy.version} at {self.created_at:%Y-%m-%d %H:%M}"


class RiskAuditEvent(models.Model):
    """Every change to the lists and the policies, with its actor (they are no order's, so they
    are not on an order's timeline; an entry added from an order names it)."""

    class Type(models.TextChoices):
        LIST_ENTRY_ADDED = "list_entry_added", "List entry added"
        LIST_ENTRY_REMOVED = "list_entry_removed", "List entry removed"
        POLICY_DRAFTED = "policy_drafted", "Policy drafted"
        POLICY_EDITED = "policy_edited", "Policy draft edited"
        POLICY_ACTIVATED = "policy_activated", "Policy activated"
        POLICY_RETIRED = "policy_retired", "Policy retired"
        BACKTEST_RUN = "backtest_run", "Backtest run"

    type = models.CharField(max_length=32, choices=Type.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor = models.CharField(max_length=150)
    source = models.CharField(max_length=16)  # web, admin, command
    entry = models.ForeignKey(RiskListEntry, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit")
    policy = models.ForeignKey(RiskPolicy, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit")
    order = models.ForeignKey(Order, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    message = models.TextField()
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.get_type_display()} by {self.actor}"
