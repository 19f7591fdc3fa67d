"""Review tasks: the person-facing side of the workflow's manual-review wait.

A task is opened by the ``order_validated`` activity when the workflow starts waiting, and closed
by the workflow's own progress (approved, rejected, expired, cancelled), or by the reconciler
when the workflow stopped without an ending (stopped). Claiming is the only
change a reviewer makes here directly: it is coordination between people, not order state.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from orderweb.models import Order


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
    claimed_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_by_name = models.CharField(max_length=150, blank=True)  # also for outside clients
    decided_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True)
    reason_code = models.CharField(max_length=40, blank=True)  # a rejection's reason, as a code
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["due_at", "pk"]
        permissions = [("decide_review", "Can approve or reject orders in manual review")]
        indexes = [
            # The queue: open tasks, oldest due first.
            models.Index(fields=["due_at", "id"], condition=Q(status="open"), name="review_open_queue"),
            models.Index(fields=["-decided_at"], condition=~Q(status="open"), name="review_recent"),
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
        ]

    def __str__(self) -> str:
        return f"review of {self.order.order_id} ({self.status})"

    @property
    def is_open(self) -> bool:
        return self.status == self.Status.OPEN
