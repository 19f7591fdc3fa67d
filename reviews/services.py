"""Review task services. Opening and closing follow the workflow (activities call them);
claiming and releasing are a reviewer's own coordination."""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth import get_user_model
from django.db import transaction

from orderweb.models import Order
from reviews.models import ReviewTask

# How a workflow's review outcome maps onto the task.
_OUTCOME_STATUS = {
    "approved": ReviewTask.Status.APPROVED,
    "rejected": ReviewTask.Status.REJECTED,
    "expired": ReviewTask.Status.EXPIRED,
    "cancelled": ReviewTask.Status.CANCELLED,
}


def review_task_open(*, order: Order, due_at: datetime) -> ReviewTask:
    """Open the order's review task, once: a retried activity finds the task it opened."""
    with transaction.atomic():
        task = ReviewTask.objects.filter(order=order).order_by("-pk").first()
        if task is not None:
            return task
        return ReviewTask.objects.create(order=order, due_at=due_at)


def review_task_close(
    *, order: Order, outcome: str, actor: str, note: str, decided_at: datetime
) -> None:
    """Close the open task with the workflow's outcome. A closed task is left as it is."""
    user = get_user_model().objects.filter(username=actor).first() if actor else None
    ReviewTask.objects.filter(order=order, status=ReviewTask.Status.OPEN).update(
        status=_OUTCOME_STATUS[outcome],
        decided_by=user if outcome in ("approved", "rejected") else None,
        decided_by_name=actor if outcome in ("approved", "rejected") else "",
        decided_at=decided_at,
        note=note,
    )
