"""Backtest: a risk policy scored over past orders from the facts their assessments recorded.

For a date range (by default the last 30 days, at most ``MAX_ORDERS`` orders, the latest first)
it answers, against the active policy scored over the same facts:

- how many orders each would send to a person (as under ``REVIEW_POLICY=risky``: a score at the
  review threshold or above, or on the block list; never an order on the allow list alone);
- of the bad orders (an active ``chargeback`` or ``fraud_confirmed`` label, or rejected or
  cancelled as suspected fraud), how many each would have caught and missed;
- each rule's contribution: the orders it matched, and those it alone sent to review.

One statement reads the range (the assessments' time index, the orders by primary key); the
rest is Python over the recorded facts, with the same rule functions as the live assessment
(reviews/risk.py), so a backtest and the hot path cannot disagree. Orders assessed before facts
were recorded are counted as ``unscored``. 100,000 orders take a few seconds (docs/benchmarks.md).
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Optional

import orjson
from django.db import connection, transaction
from django.utils import timezone

from orderweb.models import CancelReason, Order, OrderLabel
from reviews.models import RiskAssessment, RiskAuditEvent, RiskBacktest, RiskPolicy
from reviews.risk import RULE_LABELS, RULES, RiskFacts, RiskThresholds
from reviews.risk_services import _audit, _require_lead, active_policy, policy_fingerprint, policy_rules

MAX_ORDERS = 100_000
DEFAULT_DAYS = 30
BAD_LABELS = (OrderLabel.Kind.CHARGEBACK.value, OrderLabel.Kind.FRAUD_CONFIRMED.value)
RANGE_INVALID = "The range must end after it starts."


def _bad_sql() -> str:
    """When an order counts as bad: an active chargeback or fraud label (by the labels' unique
    index on (order, label) of the live ones), or rejected or cancelled as suspected fraud."""
    labels = ", ".join(f"'{label}'" for label in BAD_LABELS)
    return (
        f"(o.cancel_reason_code = '{CancelReason.SUSPECTED_FRAUD.value}' OR EXISTS (SELECT 1 FROM "
        f"{OrderLabel._meta.db_table} l WHERE l.order_id = o.id AND l.removed_at IS NULL AND l.label IN ({labels})))"
    )


_RANGE_SQL = """
SELECT a.facts::text, {bad} AS bad, o.order_id
  FROM {assessments} a JOIN {orders} o ON o.id = a.order_id
 WHERE a.created_at >= %(since)s AND a.created_at < %(until)s {latest}
"""
# The latest ``limit`` of a range that holds more: the cut-off time first (the time index alone),
# so that the range's statement needs no sort of its wide rows.
_CUTOFF_SQL = """
SELECT created_at FROM {assessments}
 WHERE created_at >= %(since)s AND created_at < %(until)s
 ORDER BY created_at DESC OFFSET %(limit)s LIMIT 1
"""


@dataclass
class _Tally:
    matched: int = 0
    matched_bad: int = 0
    decisive: int = 0  # orders it alone sends to review: without it, they would go through
    decisive_bad: int = 0


_NAMED_RULES = tuple((rule.__name__.removeprefix("rule_"), rule) for rule in RULES)


def _weighed(t: RiskThresholds) -> list[tuple[str, Any, int]]:
    """The rules a policy weighs (``risk_evaluate`` leaves out a rule at 0 points, but not the
    allow list), with their points."""
    return [(name, rule, t.points[name]) for name, rule in _NAMED_RULES if t.points[name] > 0 or name == "allow_list"]


def _matched(facts: RiskFacts, t: RiskThresholds, weighed: list[tuple[str, Any, int]]) -> list[tuple[str, int]]:
    """The (rule, points) the policy finds in the facts: the live assessment's rules, without
    the sentences, which a backtest does not show."""
    return [(name, points) for name, rule, points in weighed if rule(facts, t, False) is not None]


def _review_decisive(found: list[tuple[str, int]], t: RiskThresholds) -> tuple[bool, tuple[str, ...]]:
    """Whether the policy sends the order to a person (as ``review_pass_text``: blocked, never
    when allowed only, else the score against the review threshold), and the rules that alone
    send it: without any one of them it would go through."""
    names = [name for name, _ in found]
    if "block_list" in names:
        others = [(n, p) for n, p in found if n != "block_list"]
        alone = not ("allow_list" not in names and min(100, sum(p for _, p in others)) >= t.review_threshold)
        return True, ("block_list",) if alone else ()
    if "allow_list" in names:
        return False, ()
    total = sum(points for _, points in found)
    threshold = t.review_threshold
    if min(100, total) < threshold:
        return False, ()
    return True, tuple(name for name, points in found if min(100, total - points) < threshold)


def backtest_compute(
    *,
    policy: RiskThresholds,
    active: RiskThresholds,
    since: datetime,
    until: datetime,
    limit: int = MAX_ORDERS,
    rows: Optional[Iterable] = None,
) -> dict[str, Any]:
    """The figures (a JSON-able dict) of ``policy`` against ``active`` over the range."""
    started = time.perf_counter()
    truncated = False
    if rows is None:
        table = RiskAssessment._meta.db_table
        with transaction.atomic(), connection.cursor() as cursor:
            # JIT compiling this one statement took a second of the 2.5 s it ran at 100,000 orders.
            cursor.execute("SET LOCAL jit = off")
            params = {"since": since, "until": until, "limit": limit}
            cursor.execute(_CUTOFF_SQL.format(assessments=table), params)
            cutoff = cursor.fetchone()
            truncated = cutoff is not None
            latest = "AND a.created_at > %(cutoff)s" if truncated else ""
            cursor.execute(
                _RANGE_SQL.format(bad=_bad_sql(), assessments=table, orders=Order._meta.db_table, latest=latest),
                {**params, "cutoff": cutoff[0] if cutoff else None},
            )
            rows = [(orjson.loads(facts), bad, order_id) for facts, bad, order_id in cursor.fetchall()]
    else:
        truncated, rows = len(rows) > limit, rows[:limit]
    read = time.perf_counter()
    tallies = {rule: _Tally() for rule in RULE_LABELS}
    active_tallies = {rule: _Tally() for rule in RULE_LABELS}
    figures = dict(
        orders=0,
        unscored=0,
        bad=0,
        would_review=0,
        would_review_active=0,
        caught=0,
        missed=0,
        caught_active=0,
        missed_active=0,
        newly_reviewed=0,
        no_longer_reviewed=0,
    )
    weighed, weighed_active = _weighed(policy), _weighed(active)
    caught_ids: list[str] = []
    missed_ids: list[str] = []
    for record, bad, order_id in rows:
        if not record:
            figures["unscored"] += 1
            continue
        facts = RiskFacts.from_record(record)
        figures["orders"] += 1
        found, found_active = _matched(facts, policy, weighed), _matched(facts, active, weighed_active)
        review, decisive = _review_decisive(found, policy)
        review_active, decisive_active = _review_decisive(found_active, active)
        figures["would_review"] += review
        figures["would_review_active"] += review_active
        figures["newly_reviewed"] += review and not review_active
        figures["no_longer_reviewed"] += review_active and not review
        if bad:
            figures["bad"] += 1
            figures["caught" if review else "missed"] += 1
            figures["caught_active" if review_active else "missed_active"] += 1
            if len(missed_ids) < 50 and not review:
                missed_ids.append(order_id)
            if len(caught_ids) < 50 and review and not review_active:
                caught_ids.append(order_id)
        for rule, _ in found:
            tally = tallies[rule]
            tally.matched += 1
            tally.matched_bad += bad
        for rule in decisive:
            tallies[rule].decisive += 1
            tallies[rule].decisive_bad += bad
        for rule, _ in found_active:
            active_tallies[rule].matched += 1
        for rule in decisive_active:
            active_tallies[rule].decisive += 1
    orders = figures["orders"]
    figures["review_change"] = figures["would_review"] - figures["would_review_active"]
    figures["review_share"] = round(figures["would_review"] / orders, 4) if orders else 0.0
    figures["review_share_active"] = round(figures["would_review_active"] / orders, 4) if orders else 0.0
    figures["rules"] = [
        {
            "rule": rule,
            "label": RULE_LABELS[rule],
            "points": policy.points.get(rule, 0),
            "points_active": active.points.get(rule, 0),
            "matched": tallies[rule].matched,
            "matched_bad": tallies[rule].matched_bad,
            "decisive": tallies[rule].decisive,
            "decisive_bad": tallies[rule].decisive_bad,
            "matched_active": active_tallies[rule].matched,
            "decisive_active": active_tallies[rule].decisive,
        }
        for rule in RULE_LABELS
    ]
    figures["gathering_changed"] = [
        name for name in RiskThresholds.GATHERING if getattr(policy, name) != getattr(active, name)
    ]
    figures.update(
        truncated=truncated,
        limit=limit,
        since=since.isoformat(),
        until=until.isoformat(),
        caught_only_by_this=caught_ids,
        missed_orders=missed_ids,
        seconds_read=round(read - started, 3),
        seconds=round(time.perf_counter() - started, 3),
    )
    return figures


def backtest_range(
    *,
    days: Optional[float] = None,
    since: Optional[datetime] = None,
    until: Optional[datetime] = None,
    now: Optional[datetime] = None,
) -> tuple[datetime, datetime]:
    now = now or timezone.now()
    until = until or now
    since = since or until - timedelta(days=days or DEFAULT_DAYS)
    if until <= since:
        from django.core.exceptions import ValidationError

        raise ValidationError(RANGE_INVALID, code="range_invalid")
    return since, until


def risk_backtest_run(
    *,
    policy: RiskPolicy,
    user=None,
    actor: str = "",
    since: datetime,
    until: datetime,
    limit: int = MAX_ORDERS,
    source: str = "web",
) -> RiskBacktest:
    """Score ``policy`` over the range against the active policy, and keep the result (a
    draft's activation looks for it), audited. A person must be a lead; the command runs as
    itself (``actor``)."""
    if user is not None:
        _require_lead(user)
    policy = RiskPolicy.objects.get(pk=policy.pk)  # as it is now: the fingerprint says what was scored
    current = active_policy()
    active_rules = policy_rules(current) if current is not None else RiskThresholds.from_settings()
    result = backtest_compute(policy=policy_rules(policy), active=active_rules, since=since, until=until, limit=limit)
    result.update(policy=policy.version, active=current.version if current else None)
    actor = actor or (user.get_username() if user is not None else "command")
    with transaction.atomic():
        backtest = RiskBacktest.objects.create(
            policy=policy,
            compared_to=current,
            since=since,
            until=until,
            result=result,
            created_by=user,
            actor=actor,
            fingerprint=policy_fingerprint(points=policy.points, thresholds=policy.thresholds),
        )
        _audit(
            type=RiskAuditEvent.Type.BACKTEST_RUN,
            user=user,
            actor=actor,
            source=source,
            policy=policy,
            message=(
                f"backtest of v{policy.version} over {result['orders']} orders: would review "
                f"{result['would_review']} (active: {result['would_review_active']}), caught "
                f"{result['caught']} of {result['bad']} bad orders"
            ),
            details={"backtest": backtest.pk},
        )
    return backtest


SUMMARY_FIELDS = (
    "orders",
    "unscored",
    "would_review",
    "would_review_active",
    "review_change",
    "bad",
    "caught",
    "missed",
    "caught_active",
    "missed_active",
    "newly_reviewed",
    "no_longer_reviewed",
)
RULE_FIELDS = (
    "rule",
    "label",
    "points",
    "points_active",
    "matched",
    "matched_bad",
    "decisive",
    "decisive_bad",
    "matched_active",
    "decisive_active",
)


def backtest_summary(result: dict[str, Any]) -> dict[str, Any]:
    """The command's last line: the figures without the per-rule table."""
    return {
        name: result.get(name)
        for name in ("policy", "active", "since", "until", *SUMMARY_FIELDS, "truncated", "seconds")
    }


def backtest_csv(backtest: RiskBacktest) -> str:
    """The result as CSV: one row per rule, then the totals as rows of their own."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(RULE_FIELDS)
    for row in backtest.result.get("rules", []):
        writer.writerow([row.get(name, "") for name in RULE_FIELDS])
    writer.writerow([])
    writer.writerow(["figure", "value"])
    writer.writerow(["policy", f"v{backtest.policy.version}"])
    writer.writerow(["compared_to", f"v{backtest.compared_to.version}" if backtest.compared_to else "settings"])
    writer.writerow(["since", backtest.since.isoformat()])
    writer.writerow(["until", backtest.until.isoformat()])
    for name in SUMMARY_FIELDS:
        writer.writerow([name, backtest.result.get(name, "")])
    return out.getvalue()
