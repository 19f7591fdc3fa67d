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
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
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
            models.Index(F("risk_score").desc(nulls_last=True), "due_at", "id", condition=Q(status="open"),
                         name="review_open_risk"),
            models.Index(F("amount").desc(nulls_last=True), "due_at", "id", condition=Q(status="open"),
                         name="review_open_amount"),
            models.Index(fields=["risk_level", "due_at", "id"], condition=Q(status="open"), name="review_open_level"),
            # Recent decisions of one reviewer.
            models.Index(F("decided_by_name"), F("decided_at").desc(), condition=~Q(status="open"),
                         name="review_recent_by"),
            # The leads' Escalated view (open escalated reviews, due first), and escalations over
            # time (the metric, the insights).
            models.Index(fields=["due_at", "id"], condition=Q(status="open", escalated_at__isnull=False),
                         name="review_open_escalated"),
            models.Index(fields=["escalated_at"], condition=Q(escalated_at__isnull=False), name="review_escalated"),
            # Decisions by outcome (the Prometheus counter): an index-only count of the closed tasks.
            models.Index(fields=["status"], condition=~Q(status="open"), name="review_closed_status"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["order"], condition=Q(status="open"), name="review_one_open_per_order"
            ),
            models.CheckConstraint(
                condition=Q(status="open") | Q(decided_at__isnull=False),
                name="review_closed_has_time",
            ),
            models.CheckConstraint(
                condition=Q(claimed_by__isnull=True) | Q(claimed_at__isnull=False),
                name="review_claim_has_time",
            ),
            models.CheckConstraint(condition=Q(approvals_required__in=[1, 2]), name="review_one_or_two_approvals"),
            models.CheckConstraint(condition=Q(timeout_action__in=TimeoutAction.values), name="review_timeout_action_valid"),
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
