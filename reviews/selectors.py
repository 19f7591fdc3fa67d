"""Reads for the review back office. Every page costs a fixed number of queries, whatever the
number of rows: lists join what they show (``select_related``), counts are one aggregate, and the
heavy lists walk partial indexes (see reviews/migrations and docs/benchmarks-review-queue.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Optional
from urllib.parse import urlencode

from django.contrib.auth import get_user_model
from django.core.paginator import Page, Paginator
from django.db.models import Count, F, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from orderweb.models import CancelReason, Order, OrderEvent, OrderLabel
from reviews.models import RejectReason, ReviewTask, RiskAssessment, RiskLevel, claims_active_since
from reviews.risk import risk_reasons_now
from temporal_app.contracts import POLICY_ACTOR

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
    ESCALATED = "escalated"  # the leads' view: reviews that waited too long undecided
    CHOICES = (ALL, MINE, UNCLAIMED, ESCALATED)


class QueueSort:
    DUE = "due"  # the one due soonest first
    RISK = "risk"  # the riskiest first, then by due time
    AMOUNT = "amount"  # the largest first, then by due time
    CHOICES = (DUE, RISK, AMOUNT)
    LABELS = {DUE: "Due soonest", RISK: "Riskiest", AMOUNT: "Largest amount"}


def review_queue_filter_clean(value: Optional[str]) -> str:
    return value if value in QueueFilter.CHOICES else QueueFilter.ALL


def review_search_clean(value: Optional[str]) -> str:
    return (value or "").strip()[:MAX_SEARCH_LENGTH]


@dataclass(frozen=True)
class QueueView:
    """How a reviewer looks at the queue: filter, risk level, sort and search. It travels from
    the queue to the order page and its decisions, so that "next" means the next order of the
    queue as the reviewer sees it."""

    filter: str = QueueFilter.ALL
    risk: str = ""
    sort: str = QueueSort.DUE
    search: str = ""

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> QueueView:
        risk = params.get("risk") or ""
        sort = params.get("sort") or ""
        return cls(
            filter=review_queue_filter_clean(params.get("filter")),
            risk=risk if risk in RiskLevel.values else "",
            sort=sort if sort in QueueSort.CHOICES else QueueSort.DUE,
            search=review_search_clean(params.get("q")),
        )

    @classmethod
    def from_querystring(cls, querystring: str) -> QueueView:
        from django.http import QueryDict

        return cls.from_params(QueryDict(querystring or ""))

    def params(self, **changes: str) -> dict[str, str]:
        values = {"filter": self.filter, "risk": self.risk, "sort": self.sort, "q": self.search, **changes}
        defaults = {"filter": QueueFilter.ALL, "risk": "", "sort": QueueSort.DUE, "q": ""}
        return {key: value for key, value in values.items() if value != defaults[key]}

    @property
    def querystring(self) -> str:
        return urlencode(self.params())

    def with_(self, **changes: str) -> str:
        """The query string of this view with some values changed (for links)."""
        return urlencode(self.params(**changes))


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


SEARCH_LIMIT = 1000


@dataclass(frozen=True)
class SearchMatches:
    """The orders a search matches, found once per request: every list on the page then filters
    on these ids (a btree look-up) instead of repeating the trigram scan."""

    search: str
    ids: list[int]
    truncated: bool  # more than SEARCH_LIMIT matched: only the latest are used

    def __bool__(self) -> bool:
        return bool(self.search)


NO_SEARCH = SearchMatches("", [], False)


def orders_search(*, search: str) -> SearchMatches:
    """The latest orders matching ``search`` (``order_search_q``), at most SEARCH_LIMIT: one query.
    Open reviews are recent orders, so the latest matches hold them unless the search is so broad
    that the page says to narrow it."""
    if not search:
        return NO_SEARCH
    ids = list(
        Order.objects.filter(order_search_q(search))
        .order_by("-created_at", "-id")
        .values_list("pk", flat=True)[: SEARCH_LIMIT + 1]
    )
    return SearchMatches(search, ids[:SEARCH_LIMIT], len(ids) > SEARCH_LIMIT)


def order_search_q(search: str, prefix: str = "") -> Q:
    """Any part of the order id, the customer's name or email, or the shipping address,
    case-insensitively: ``UPPER(col) LIKE '%…%'``, each answered by a trigram index
    (reviews/migrations/0003 and 0007)."""
    return (
        Q(**{f"{prefix}order_id__icontains": search})
        | Q(**{f"{prefix}customer__icontains": search})
        | Q(**{f"{prefix}customer_email__icontains": search})
        | Q(**{f"{prefix}address__icontains": search})
    )


# The queue's orderings: each matches one partial index on the open tasks (reviews/models.py).
_SORT_KEYS = {
    QueueSort.DUE: ("due_at", "id"),
    QueueSort.RISK: (F("risk_score").desc(nulls_last=True), "due_at", "id"),
    QueueSort.AMOUNT: (F("amount").desc(nulls_last=True), "due_at", "id"),
}
_SORT_FIELD = {QueueSort.RISK: "risk_score", QueueSort.AMOUNT: "amount"}


def _held(user, since: datetime) -> Q:
    """Claimed by ``user`` and not lapsed."""
    return Q(claimed_by=user, claimed_at__gt=since)


def _free(since: datetime) -> Q:
    """Nobody's claim is active: unclaimed, or the claim lapsed (claims lapse at read time)."""
    return Q(claimed_by__isnull=True) | Q(claimed_at__lte=since)


def _queue_tasks(
    *, user, view: QueueView, matches: SearchMatches = NO_SEARCH, now: Optional[datetime] = None
) -> QuerySet[ReviewTask]:
    tasks = _open_tasks()
    since = claims_active_since(now)
    if view.filter == QueueFilter.MINE:
        tasks = tasks.filter(_held(user, since))
    elif view.filter == QueueFilter.UNCLAIMED:
        tasks = tasks.filter(_free(since))
    elif view.filter == QueueFilter.ESCALATED:
        tasks = tasks.filter(escalated_at__isnull=False)
    if view.risk:
        tasks = tasks.filter(risk_level=view.risk)
    if matches:
        tasks = tasks.filter(order_id__in=matches.ids)
    elif view.search:
        tasks = tasks.filter(order_search_q(view.search, "order__"))
    return tasks


_QUEUE_ROW_FIELDS = (
    "id",
    "due_at",
    "claimed_at",
    "created_at",
    "risk_score",
    "risk_level",
    "amount",
    "escalated_at",
    "approvals_required",
    "first_approval_by",
    "first_approval_at",
    "order__id",
    "order__order_id",
    "order__address",
    "order__customer",
    "order__customer_email",
    "order__amount",
    "order__currency",
    "order__created_at",
    "claimed_by__id",
    "claimed_by__username",
)


def review_queue_list(
    *,
    user,
    view: QueueView = QueueView(),
    page: Any = 1,
    matches: SearchMatches = NO_SEARCH,
    now: Optional[datetime] = None,
) -> Page:
    """Open reviews in the view's order: two queries (count and page), whatever the size. With
    a search, ``matches`` (``orders_search``) holds the orders it found."""
    keys = _SORT_KEYS[view.sort]

    def rows(ids: QuerySet) -> QuerySet[ReviewTask]:
        return (
            ReviewTask.objects.filter(pk__in=ids)
            .select_related("order", "claimed_by")
            .only(*_QUEUE_ROW_FIELDS)
            .order_by(*keys)
        )

    tasks = _queue_tasks(user=user, view=view, matches=matches, now=now)
    return IdWindowPaginator(tasks.order_by(*keys), QUEUE_PAGE_SIZE, rows=rows).get_page(page)


def review_queue_counts(*, user, now: Optional[datetime] = None) -> dict[str, int]:
    """The numbers on the filter tabs, in one aggregate query over the open-review index."""
    since = claims_active_since(now)
    return _open_tasks().aggregate(
        all=Count("id"),
        mine=Count("id", filter=_held(user, since)),
        unclaimed=Count("id", filter=_free(since)),
        escalated=Count("id", filter=Q(escalated_at__isnull=False)),
    )


MATCHES_LIMIT = 10


def orders_matching(*, matches: SearchMatches, limit: int = MATCHES_LIMIT) -> list[Order]:
    """Orders outside the queue that a search matched (decided, cancelled, not yet in review):
    the latest first, each with how its latest review ended. One query."""
    latest = ReviewTask.objects.filter(order=OuterRef("pk")).order_by("-pk")
    return list(
        Order.objects.filter(pk__in=matches.ids)
        .exclude(status=Order.Status.AWAITING_MANUAL_REVIEW)
        .annotate(
            review_status=Subquery(latest.values("status")[:1]),
            review_by=Subquery(latest.values("decided_by_name")[:1]),
        )
        .only(
            "id",
            "order_id",
            "customer",
            "customer_email",
            "address",
            "amount",
            "currency",
            "status",
            "created_at",
            "cancel_reason_code",
        )
        .order_by("-created_at", "-id")[:limit]
    )


def _after(field_name: Optional[str], task: ReviewTask, *, forward: bool) -> Q:
    """Rows after (or before) ``task`` in a queue ordering ``field DESC NULLS LAST, due_at, id``
    (or ``due_at, id`` without a field): a keyset condition the ordering's index answers."""
    if forward:
        tail = Q(due_at__gt=task.due_at) | Q(due_at=task.due_at, id__gt=task.pk)
    else:
        tail = Q(due_at__lt=task.due_at) | Q(due_at=task.due_at, id__lt=task.pk)
    if field_name is None:
        return tail
    value = getattr(task, field_name)
    null = Q(**{f"{field_name}__isnull": True})
    if value is None:
        return null & tail if forward else ~null | (null & tail)
    same = Q(**{field_name: value}) & tail
    if forward:
        return Q(**{f"{field_name}__lt": value}) | null | same
    return Q(**{f"{field_name}__gt": value}) | same


def _reversed(keys: tuple) -> list:
    flipped = []
    for key in keys:
        if isinstance(key, str):
            flipped.append(F(key).desc())
        else:  # F(x).desc(nulls_last=True)
            flipped.append(F(key.expression.name).asc(nulls_first=True))
    return flipped


def review_neighbour(*, user, view: QueueView, task: ReviewTask, forward: bool = True) -> Optional[str]:
    """The order id next to ``task`` (after it, or before it) in the reviewer's queue, among the
    reviews they can decide (unclaimed, or claimed by them): what "& next", j and k move to.
    ``task`` may be closed already (just decided): its place in the ordering is kept. One query."""
    keys = _SORT_KEYS[view.sort]
    tasks = (
        _decidable(_queue_tasks(user=user, view=view), user)
        .filter(_after(_SORT_FIELD.get(view.sort), task, forward=forward))
        .exclude(pk=task.pk)
    )
    ordered = tasks.order_by(*keys) if forward else tasks.order_by(*_reversed(keys))
    return ordered.values_list("order__order_id", flat=True).first()


def review_first(*, user, view: QueueView) -> Optional[str]:
    """The first decidable order of the reviewer's queue (where "next" goes from nowhere)."""
    tasks = _decidable(_queue_tasks(user=user, view=view), user)
    return tasks.order_by(*_SORT_KEYS[view.sort]).values_list("order__order_id", flat=True).first()


def _decidable(tasks: QuerySet[ReviewTask], user) -> QuerySet[ReviewTask]:
    """What "next" offers ``user``: reviews nobody else holds, and not a four-eyes order they
    already approved (it waits for someone else)."""
    return tasks.filter(_free(claims_active_since()) | Q(claimed_by=user)).exclude(
        first_approval_by=user.get_username()
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


@dataclass(frozen=True)
class RecentFilter:
    """What Recent decisions is narrowed to. Empty values filter nothing."""

    mine: bool = False
    search: str = ""
    by: str = ""  # who decided (a username, or "policy")
    reason: str = ""  # a reason code
    outcome: str = ""  # a closed task status
    since: Optional[date] = None
    until: Optional[date] = None  # inclusive

    @property
    def active(self) -> bool:
        return any((self.search, self.by, self.reason, self.outcome, self.since, self.until))

    def params(self, **changes: Any) -> dict[str, str]:
        values = {
            "mine": "1" if self.mine else "",
            "q": self.search,
            "by": self.by,
            "reason": self.reason,
            "outcome": self.outcome,
            "since": self.since.isoformat() if self.since else "",
            "until": self.until.isoformat() if self.until else "",
            **changes,
        }
        return {key: value for key, value in values.items() if value}

    def with_(self, **changes: Any) -> str:
        return urlencode(self.params(**changes))


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())


def review_recent_list(
    *, user, filter: RecentFilter = RecentFilter(), page: Any = 1, matches: SearchMatches = NO_SEARCH
) -> RecentPage:
    """Closed reviews, the latest decision first (approved, rejected, timed out, cancelled):
    one query, the page plus one row to know whether an older page exists. A search
    (``filter.search``) is answered from ``matches`` when given, else in the same query."""
    try:
        number = min(max(int(page), 1), MAX_RECENT_PAGE)
    except (TypeError, ValueError):
        number = 1
    tasks = ReviewTask.objects.exclude(status=ReviewTask.Status.OPEN)
    if filter.mine:
        tasks = tasks.filter(decided_by=user)
    if filter.by:
        tasks = tasks.filter(decided_by_name=filter.by)
    if filter.outcome:
        tasks = tasks.filter(status=filter.outcome)
    if filter.reason:
        # A rejection's own code, or the code of the cancellation that ended the review.
        tasks = tasks.filter(Q(reason_code=filter.reason) | Q(reason_code="", order__cancel_reason_code=filter.reason))
    if filter.since:
        tasks = tasks.filter(decided_at__gte=_day_start(filter.since))
    if filter.until:
        tasks = tasks.filter(decided_at__lt=_day_start(filter.until + timedelta(days=1)))
    if matches:
        tasks = tasks.filter(order_id__in=matches.ids)
    elif filter.search:
        tasks = tasks.filter(order_search_q(filter.search, "order__"))
    offset = (number - 1) * RECENT_PAGE_SIZE
    rows = list(
        tasks.select_related("order")
        .only(
            "id",
            "status",
            "decided_at",
            "decided_by_name",
            "note",
            "due_at",
            "reason_code",
            "risk_level",
            "risk_score",
            "order__id",
            "order__order_id",
            "order__amount",
            "order__currency",
            "order__status",
            "order__address",
            "order__customer",
            "order__cancel_reason_code",
        )
        .order_by("-decided_at", "-id")[offset : offset + RECENT_PAGE_SIZE + 1]
    )
    return RecentPage(rows[:RECENT_PAGE_SIZE], number, len(rows) > RECENT_PAGE_SIZE)


def reviewer_names() -> list[str]:
    """Who can have decided a review, for the Recent decisions filter: the people with
    ``reviews.decide_review`` (by group or directly) and superusers, and the review policy. One
    query."""
    perm = Q(groups__permissions__codename="decide_review", groups__permissions__content_type__app_label="reviews") | Q(
        user_permissions__codename="decide_review", user_permissions__content_type__app_label="reviews"
    )
    names = (
        get_user_model()
        .objects.filter(perm | Q(is_superuser=True), is_active=True)
        .values_list("username", flat=True)
        .distinct()
        .order_by("username")
    )
    return [*names, POLICY_ACTOR]


REASON_LABELS = {**dict(CancelReason.choices), **dict(RejectReason.choices)}


def reason_label(code: str) -> str:
    """A reason code as people read it (an unknown code, from an outside client, as it is)."""
    return REASON_LABELS.get(code, code)


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


LINKED_ORDERS_LIMIT = 10


@dataclass
class OrderReview:
    """Everything the order page shows from Postgres (the live workflow status loads apart)."""

    order: Order
    lines: list
    events: list[OrderEvent]
    task: Optional[ReviewTask]  # the latest review task, open or closed
    address_history: list[AddressChange]
    risk: Optional[RiskAssessment]
    risk_reasons: list[dict[str, Any]]  # the assessment's reasons, and what a rule flags since
    linked_orders: list[Order] = field(default_factory=list)  # orders sharing a customer, address or IP
    notes: list[OrderEvent] = field(default_factory=list)  # people's notes, oldest first
    labels: list[OrderLabel] = field(default_factory=list)  # outcome labels, removed ones too, oldest first

    @property
    def current_labels(self) -> list[OrderLabel]:
        return [label for label in self.labels if label.removed_at is None]

    @property
    def is_open(self) -> bool:
        return self.task is not None and self.task.status == ReviewTask.Status.OPEN

    @property
    def link_terms(self) -> str:
        """What linked orders are looked for by, in words: "email, shipping address or client IP"."""
        terms = [Link.LABELS[link].removeprefix("same ") for link in links_of(self.order)]
        return terms[0] if len(terms) == 1 else ", ".join(terms[:-1]) + " or " + terms[-1]


def _applied_address_change(event: OrderEvent) -> bool:
    """One entry per change the workflow applied (the request and its refusals carry no
    ``new_address``: only the applied signal or Update does)."""
    return event.type in (OrderEvent.Type.SIGNAL_APPLIED, OrderEvent.Type.UPDATE_APPLIED) and bool(
        event.details.get("new_address")
    )


class Link:
    """Why another order is linked to this one."""

    EMAIL = "email"
    NAME = "name"
    ADDRESS = "address"
    BILLING = "billing"
    IP = "ip"
    LABELS = {
        EMAIL: "same email",
        NAME: "same customer name",
        ADDRESS: "same shipping address",
        BILLING: "same billing address",
        IP: "same client IP",
    }
    ORDER = list(LABELS)  # the order the page names them in


# Each part walks its (expression, created_at) index backwards and stops after ``limit`` rows
# (reviews/migrations/0008 and 0010), so an address shared by thousands of orders costs what a
# new one does; an OR of the four would read every match before sorting them.
_LINK_PARTS = {
    Link.EMAIL: "UPPER(customer_email) = UPPER(%(email)s)",
    Link.NAME: "UPPER(customer) = UPPER(%(name)s)",
    Link.ADDRESS: "UPPER(address) = UPPER(%(address)s)",
    Link.BILLING: "UPPER(billing_address) = UPPER(%(billing)s)",
    Link.IP: "client_ip = %(ip)s::inet",
}
_ORDER_TABLE, _TASK_TABLE = Order._meta.db_table, ReviewTask._meta.db_table
_LINKED_SQL = """
WITH linked AS ({parts}),
grouped AS (SELECT id, array_agg(DISTINCT link) AS links FROM linked GROUP BY id)
SELECT o.id, o.order_id, o.amount, o.currency, o.status, o.created_at, o.cancel_reason, o.cancel_reason_code,
       o.address, g.links,
       t.status AS review_status, t.decided_by_name AS review_by
  FROM grouped g JOIN {orders} o ON o.id = g.id
  LEFT JOIN LATERAL (SELECT status, decided_by_name FROM {tasks} WHERE order_id = o.id ORDER BY id DESC LIMIT 1) t
    ON TRUE
 ORDER BY o.created_at DESC, o.id DESC
 LIMIT %(limit)s
"""


def links_of(order: Order) -> list[str]:
    """What this order can be linked by: its customer (email, else name), shipping address, and
    billing address and client IP when it has them."""
    customer = Link.EMAIL if order.customer_email else Link.NAME if order.customer.strip() else None
    links = [
        customer,
        Link.ADDRESS,
        Link.BILLING if order.billing_address else None,
        Link.IP if order.client_ip else None,
    ]
    return [link for link in links if link is not None]


def linked_orders(*, order: Order, limit: int = LINKED_ORDERS_LIMIT) -> list[Order]:
    """Other orders that share this one's customer (email, else name), shipping address,
    billing address or client IP, latest first, with what links them (``links``) and how each
    ended (status, its latest review and who decided it, the cancel reason code): one query."""
    parts = [
        f"(SELECT id, '{link}' AS link FROM {_ORDER_TABLE} WHERE {_LINK_PARTS[link]} AND id <> %(pk)s "
        f"ORDER BY created_at DESC LIMIT %(limit)s)"
        for link in links_of(order)
    ]
    params = {
        "pk": order.pk,
        "limit": limit,
        "email": order.customer_email,
        "name": order.customer,
        "address": order.address,
        "billing": order.billing_address,
        "ip": order.client_ip or None,
    }
    sql = _LINKED_SQL.format(parts=" UNION ALL ".join(parts), orders=_ORDER_TABLE, tasks=_TASK_TABLE)
    found = list(Order.objects.raw(sql, params))
    for linked in found:
        linked.link_labels = [Link.LABELS[link] for link in sorted(linked.links, key=Link.ORDER.index)]
    return found


def review_order_detail(*, order_id: str) -> OrderReview:
    """The order with its risk, its lines, timeline (notes included), review, linked orders and
    outcome labels, in six queries. Raises Order.DoesNotExist."""
    order = Order.objects.select_related("created_by", "risk").get(order_id=order_id)
    lines = list(order.lines.order_by("pk"))
    events = list(order.events.select_related("user").order_by("created_at", "pk"))
    task = ReviewTask.objects.filter(order=order).select_related("claimed_by", "decided_by").order_by("-pk").first()
    history = [
        AddressChange(e.created_at, e.actor, e.details.get("old_address", ""), e.details["new_address"])
        for e in events
        if _applied_address_change(e)
    ]
    risk = getattr(order, "risk", None)
    return OrderReview(
        order,
        lines,
        events,
        task,
        history,
        risk,
        risk_reasons_now(assessment=risk, address_changes=len(history)),
        linked_orders(order=order),
        [e for e in events if e.type == OrderEvent.Type.NOTE_ADDED],
        list(order.labels.order_by("created_at", "pk")),
    )


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
        "review_approvals": status.get("review_approvals", []),
        "review_approvals_required": status.get("review_approvals_required", 1),
        "review_escalated_at": status.get("review_escalated_at"),
        "review_escalates_at": status.get("review_escalates_at"),
        "review_timeout_action": status.get("review_timeout_action", "expire"),
        "address": status.get("address", ""),
        "state_history": status.get("state_history", []),
        "signals": status.get("signals", [])[-10:],
    }


# -- bulk decisions' answers ----------------------------------------------------------------------

BULK_OUTCOMES = ("applied", "refused", "unanswered")


def bulk_counts(*, lines: list[dict[str, Any]]) -> dict[str, int]:
    return {status: sum(line["status"] == status for line in lines) for status in BULK_OUTCOMES}


def bulk_summary(*, lines: list[dict[str, Any]]) -> str:
    """ "9 applied, 1 refused" (the outcomes that happened, in that order)."""
    counts = bulk_counts(lines=lines)
    return ", ".join(f"{counts[status]} {status}" for status in BULK_OUTCOMES if counts[status]) or "nothing"
