"""Reads for the leads' risk pages, each a fixed number of queries (tests/reviews/test_risk_pages.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Q
from django.utils import timezone

from orderweb.models import Order
from reviews.lists import list_key
from reviews.models import RiskBacktest, RiskListEntry, RiskPolicy

RECENTLY_ENDED = 20


@dataclass
class ListsPage:
    kind: str
    live: list[RiskListEntry]
    ended: list[RiskListEntry]  # removed or expired, the latest
    counts: dict[str, int]


def risk_lists_page(*, kind: str = "") -> ListsPage:
    """The live entries (of one kind, or both), and the latest that were removed or expired: two
    queries (the counts by kind are taken from the live list, which is short)."""
    now = timezone.now()
    live_q = Q(removed_at__isnull=True) & (Q(expires_at__isnull=True) | Q(expires_at__gt=now))
    live = list(RiskListEntry.objects.filter(live_q).select_related("order").order_by("kind", "-created_at", "-pk"))
    ended = list(
        RiskListEntry.objects.exclude(live_q).select_related("order").order_by("-created_at", "-pk")[:RECENTLY_ENDED]
    )
    counts = {"block": sum(e.kind == "block" for e in live), "allow": sum(e.kind == "allow" for e in live)}
    return ListsPage(kind, [e for e in live if not kind or e.kind == kind], ended, counts)


def order_list_entries(*, order: Order) -> list[RiskListEntry]:
    """The live entries that match the order now (one query): what its page shows leads."""
    keys = {
        "email": list_key("email", order.customer_email),
        "address": list_key("address", order.address),
        "name": list_key("name", order.customer),
        "ip": list_key("ip", order.client_ip or ""),
    }
    match = Q(pk__in=[])
    for field, key in keys.items():
        if key:
            match |= Q(field=field, value_key=key)
    now = timezone.now()
    return list(
        RiskListEntry.objects.filter(match, removed_at__isnull=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .order_by("kind", "pk")
    )


def risk_policies_page() -> list[dict[str, Any]]:
    """Every version, newest first, with its latest backtest: two queries."""
    policies = list(RiskPolicy.objects.order_by("-version"))
    latest: dict[int, RiskBacktest] = {}
    for backtest in (
        RiskBacktest.objects.filter(policy__in=policies).order_by("policy_id", "-created_at").distinct("policy_id")
    ):
        latest[backtest.policy_id] = backtest
    return [{"policy": p, "backtest": latest.get(p.pk)} for p in policies]


def backtest_view(backtest: RiskBacktest) -> dict[str, Any]:
    """What the result page draws: the bars' widths (of the larger review count) and the rules
    that matched anything, heaviest contribution first."""
    r = backtest.result
    top = max(r.get("would_review", 0), r.get("would_review_active", 0), 1)
    rules = sorted(
        (row for row in r.get("rules", []) if row["matched"] or row["matched_active"]),
        key=lambda row: (-row["decisive"], -row["matched"], row["rule"]),
    )
    orders = r.get("orders", 0) or 0
    return {
        "bar_draft": round(300 * r.get("would_review", 0) / top),
        "bar_active": round(300 * r.get("would_review_active", 0) / top),
        "rules": rules,
        "share": f"{100 * r.get('would_review', 0) / orders:.1f}" if orders else "0.0",
        "share_active": f"{100 * r.get('would_review_active', 0) / orders:.1f}" if orders else "0.0",
    }
