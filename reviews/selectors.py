"""Reads for the review back office. Every page costs a fixed number of queries, whatever the
number of rows: lists join what they show (``select_related``), counts are one aggregate, and the
heavy lists walk partial indexes (see reviews/migrations and docs/benchmarks-review-queue.md)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Optional

from django.core.paginator import Page, Paginator
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from orderweb.models import Order, OrderEvent
from reviews.models import ReviewTask

QUEUE_PAGE_SIZE = 25
RECENT_PAGE_SIZE = 25
MAX_SEARCH_LENGTH = 64

# A review due within this time is shown as urgent (red), within SOON as a warning (amber).
URGENT_WITHIN = timedelta(hours=1)
SOON_WITHIN = timedelta(hours=4)


class QueueFilter:
    ALL = "all"
    MINE = "mine"
    UNCLAIMED = "unclaimed"
    CHOICES = (ALL, MINE, UNCLAIMED)


def review_queue_filter_clean(value: Optional[str]) -> str:
    return value if value in QueueFilter.CHOICES else QueueFilter.ALL


def review_search_clean(value: Optional[str]) -> str:
    return (value or "").strip()[:MAX_SEARCH_LENGTH]


class IdWindowPaginator(Paginator):
    """Pages by choosing the page's ids first, inside the page query (``pk IN (SELECT id ...
    OFFSET n LIMIT 25)``): the offset is walked on the narrow partial index alone, and only the
    25 chosen rows are joined to their orders. With OFFSET on the joined query, the last page of
    10,000 open reviews joined 10,000 orders to throw 9,975 away."""

    def __init__(self, object_list: QuerySet, per_page: int, *, rows) -> None:
        super().__init__(object_list, per_page)
        self._rows = rows

    def page(self, number: Any) -> Page:
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        top = bottom + self.per_page
        if top + self.orphans >= self.count:
            top = self.count
        return self._get_page(self._rows(self.object_list.values("pk")[bottom:top]), number, self)


def _open_tasks() -> QuerySet[ReviewTask]:
    return ReviewTask.objects.filter(status=ReviewTask.Status.OPEN)


def review_queue_list(*, user, filter: str = QueueFilter.ALL, search: str = "", page: Any = 1) -> Page:
    """Open reviews, the one due soonest first: two queries (count and page), whatever the size.
    Search matches any part of the order id, case-insensitively."""
    tasks = _open_tasks()
    if filter == QueueFilter.MINE:
        tasks = tasks.filter(claimed_by=user)
    elif filter == QueueFilter.UNCLAIMED:
        tasks = tasks.filter(claimed_by__isnull=True)
    if search:
        tasks = tasks.filter(order__order_id__icontains=search)

    def rows(ids: QuerySet) -> QuerySet[ReviewTask]:
        return ReviewTask.objects.filter(pk__in=ids).select_related("order", "claimed_by").only(
            "id", "due_at", "claimed_at", "created_at",
            "order__id", "order__order_id", "order__address", "order__customer", "order__amount",
            "order__created_at", "claimed_by__id", "claimed_by__username",
        ).order_by("due_at", "id")

    return IdWindowPaginator(tasks.order_by("due_at", "id"), QUEUE_PAGE_SIZE, rows=rows).get_page(page)


def review_queue_counts(*, user) -> dict[str, int]:
    """The numbers on the filter tabs, in one aggregate query over the open-review index."""
    return _open_tasks().aggregate(
        all=Count("id"),
        mine=Count("id", filter=Q(claimed_by=user)),
        unclaimed=Count("id", filter=Q(claimed_by__isnull=True)),
    )


@dataclass
class RecentPage:
    """A page of recent decisions. No total: counting every decision ever made grows without
    bound (85,000 rows at 100,000 orders), and a history needs only "newer" and "older"."""

    object_list: list[ReviewTask]
    number: int
    has_next: bool

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    def next_page_number(self) -> int:
        return self.number + 1

    def previous_page_number(self) -> int:
        return self.number - 1


MAX_RECENT_PAGE = 400


def review_recent_list(*, user, mine: bool = False, page: Any = 1) -> RecentPage:
    """Closed reviews, the latest decision first (approved, rejected, timed out, cancelled):
    one query, the page plus one row to know whether an older page exists."""
    try:
        number = min(max(int(page), 1), MAX_RECENT_PAGE)
    except (TypeError, ValueError):
        number = 1
    tasks = ReviewTask.objects.exclude(status=ReviewTask.Status.OPEN)
    if mine:
        tasks = tasks.filter(decided_by=user)
    offset = (number - 1) * RECENT_PAGE_SIZE
    rows = list(tasks.select_related("order").only(
        "id", "status", "decided_at", "decided_by_name", "note", "due_at",
        "order__id", "order__order_id", "order__amount", "order__status", "order__address",
    ).order_by("-decided_at", "-id")[offset:offset + RECENT_PAGE_SIZE + 1])
    return RecentPage(rows[:RECENT_PAGE_SIZE], number, len(rows) > RECENT_PAGE_SIZE)


@dataclass
class Deadline:
    """How much time a review has left, for people: text and an urgency class for styling."""

    remaining: timedelta
    level: str  # "overdue" | "urgent" | "soon" | "ok"

    @property
    def text(self) -> str:
        if self.remaining <= timedelta(0):
            return "overdue"
        return duration_text(self.remaining)


def review_deadline(*, due_at: datetime, now: Optional[datetime] = None) -> Deadline:
    remaining = due_at - (now or timezone.now())
    if remaining <= timedelta(0):
        return Deadline(remaining, "overdue")
    if remaining <= URGENT_WITHIN:
        return Deadline(remaining, "urgent")
    if remaining <= SOON_WITHIN:
        return Deadline(remaining, "soon")
    return Deadline(remaining, "ok")


def duration_text(delta: timedelta) -> str:
    """Compact, like a person says it: 45s, 12m, 3h 20m, 2d 4h."""
    seconds = max(int(delta.total_seconds()), 0)
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m"
    return f"{seconds}s"


@dataclass
class AddressChange:
    at: datetime
    actor: str
    old: str
    new: str


@dataclass
class OrderReview:
    """Everything the order page shows from Postgres (the live workflow status loads apart)."""

    order: Order
    lines: list
    events: list[OrderEvent]
    task: Optional[ReviewTask]  # the latest review task, open or closed
    address_history: list[AddressChange]

    @property
    def is_open(self) -> bool:
        return self.task is not None and self.task.status == ReviewTask.Status.OPEN


def review_order_detail(*, order_id: str) -> OrderReview:
    """The order, its lines, timeline and review, in four queries. Raises Order.DoesNotExist."""
    order = Order.objects.select_related("created_by").get(order_id=order_id)
    lines = list(order.lines.order_by("pk"))
    events = list(order.events.select_related("user").order_by("created_at", "pk"))
    task = (
        ReviewTask.objects.filter(order=order).select_related("claimed_by", "decided_by").order_by("-pk").first()
    )
    history = [
        AddressChange(e.created_at, e.actor, e.details.get("old_address", ""), e.details["new_address"])
        for e in events
        if e.details.get("new_address")
    ]
    return OrderReview(order, lines, events, task, history)


def order_status_summary(*, status: dict[str, Any]) -> dict[str, Any]:
    """The parts of the workflow's ``get_status`` the order page shows."""
    return {
        "workflow_status": status.get("workflow_status", ""),
        "order_id": status.get("order_id", ""),
        "reason": status.get("reason", ""),
        "review_due": status.get("review_due"),
        "review_decision": status.get("review_decision"),
        "cancel_requested": status.get("cancel_requested", False),
        "tracking_number": status.get("tracking_number", ""),
        "address": status.get("address", ""),
        "state_history": status.get("state_history", []),
        "signals": status.get("signals", [])[-10:],
    }
