"""The review leads' insights (issue 21): how the team decides, and how its decisions turned out.

One SQL statement answers the whole page, whatever the range or the number of reviews: the
reviews closed in the range (and those escalated in it that are still open), grouped three ways
at once (``GROUPING SETS``: per reviewer, per day, the team), joined to the orders' standing
outcome labels. Definitions (docs/review-ui.md, "Insights"):

- **Decision**: a review a person approved or rejected (not the review policy's approval at a
  timeout). Its **time** runs from the task opening (the order reaching review) to the decision.
- **Active hours**: the clock hours (UTC) in which the person decided at least one review;
  **decisions per active hour** divides by them. For the team and a day, the reviewers' active
  hours are added up (two people deciding in the same hour are two active hours), so the team's
  figure is per reviewer-hour and compares with each person's.
- **Expiry**: a review that timed out undecided (expired, or approved by the review policy at its
  timeout). It counts against whoever held the claim then; unclaimed ones count for the team.
- **Escalation**: a review the workflow escalated to the leads, counted for the person who then
  decided it (or held its claim).
- **Within SLA**: decided within ``REVIEW_SLA_MINUTES`` of opening. The share is over decisions and
  expiries, so a review left to time out counts as missed.
- **Outcomes**: approvals whose order now carries ``chargeback`` or ``fraud_confirmed``, rejections
  whose order carries ``genuine_confirmed`` (standing labels).

Days are UTC days; ``until`` is inclusive.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Optional

from django.conf import settings
from django.db import connection, transaction

from orderweb.models import OrderLabel
from reviews.models import ReviewTask
from temporal_app.contracts import POLICY_ACTOR

MAX_DAYS = 366
DEFAULT_DAYS = 30

_SQL = """
WITH l AS (
  -- Labels set since the range began (a label "later" than a decision in the range is), standing.
  SELECT order_id,
         max(created_at) FILTER (WHERE label IN ('chargeback', 'fraud_confirmed')) AS bad_at,
         max(created_at) FILTER (WHERE label = 'genuine_confirmed') AS genuine_at
    FROM {labels}
   WHERE removed_at IS NULL AND created_at >= %(since)s
   GROUP BY order_id
),
t AS (
  SELECT t.decided_at, t.escalated_at IS NOT NULL AS escalated,
         CASE WHEN t.status IN ('approved', 'rejected') AND t.decided_by_name <> %(policy)s
              THEN t.status::text END AS decision,
         (t.status = 'expired' OR (t.status = 'approved' AND t.decided_by_name = %(policy)s)) AS timed_out,
         -- Grouped by byte order ("C"): sorting by the database's collation costs several times more.
         (CASE WHEN t.status IN ('approved', 'rejected') AND t.decided_by_name <> %(policy)s THEN t.decided_by_name
               ELSE COALESCE(u.username, '') END) COLLATE "C" AS person,
         EXTRACT(EPOCH FROM t.decided_at - t.created_at)::float8 AS seconds,
         -- The clock hour of a person's decision (none for the rest).
         CASE WHEN t.status IN ('approved', 'rejected') AND t.decided_by_name <> %(policy)s
              THEN (EXTRACT(EPOCH FROM t.decided_at)::bigint / 3600)::int END AS hour,
         (COALESCE(t.decided_at, t.escalated_at) AT TIME ZONE 'UTC')::date AS day,
         l.bad_at, l.genuine_at
    FROM {tasks} t
    LEFT JOIN {users} u ON u.id = t.claimed_by_id
    LEFT JOIN l ON l.order_id = t.order_id
   WHERE (t.status <> 'open' AND t.decided_at >= %(since)s AND t.decided_at < %(until)s)
      OR (t.status = 'open' AND t.escalated_at >= %(since)s AND t.escalated_at < %(until)s)
),
-- A person's first decision in each clock hour marks an active hour: summed in every grouping
-- set, it counts reviewer-hours (a DISTINCT over (person, hour) in each group cost more than the
-- rest of the statement). The window's sort by person also orders the rows for the grouping.
h AS (
  SELECT t.*, (t.hour IS NOT NULL AND row_number() OVER (PARTITION BY t.person, t.hour) = 1) AS first_in_hour
    FROM t
)
SELECT GROUPING(h.person) AS by_person, GROUPING(h.day) AS by_day, h.person, h.day,
       count(h.decision) AS decisions,
       count(*) FILTER (WHERE h.decision = 'approved') AS approved,
       count(*) FILTER (WHERE h.decision = 'rejected') AS rejected,
       percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY h.seconds) FILTER (WHERE h.decision IS NOT NULL)
         AS percentiles,
       count(*) FILTER (WHERE h.first_in_hour) AS active_hours,
       count(*) FILTER (WHERE h.timed_out) AS expiries,
       count(*) FILTER (WHERE h.escalated) AS escalations,
       count(*) FILTER (WHERE h.decision IS NOT NULL AND h.seconds <= %(sla)s) AS within_sla,
       count(*) FILTER (WHERE h.decision = 'approved' AND h.bad_at >= h.decided_at) AS approvals_labelled_bad,
       count(*) FILTER (WHERE h.decision = 'rejected' AND h.genuine_at >= h.decided_at) AS rejections_labelled_genuine
  FROM h
 GROUP BY GROUPING SETS ((h.person), (h.day), ())
"""

_COLUMNS = (
    "decisions",
    "approved",
    "rejected",
    "percentiles",
    "active_hours",
    "expiries",
    "escalations",
    "within_sla",
    "approvals_labelled_bad",
    "rejections_labelled_genuine",
)


def sla_seconds() -> float:
    return float(settings.REVIEW_SLA_MINUTES) * 60


@dataclass
class Figures:
    """One row of the insights: a reviewer, a day or the team."""

    name: str = ""
    day: Optional[date] = None
    decisions: int = 0
    approved: int = 0
    rejected: int = 0
    median_seconds: Optional[float] = None
    p90_seconds: Optional[float] = None
    active_hours: int = 0
    expiries: int = 0
    escalations: int = 0
    within_sla: int = 0
    approvals_labelled_bad: int = 0
    rejections_labelled_genuine: int = 0

    @property
    def approval_share(self) -> Optional[float]:
        return self.approved / self.decisions if self.decisions else None

    @property
    def per_active_hour(self) -> Optional[float]:
        return self.decisions / self.active_hours if self.active_hours else None

    @property
    def sla_share(self) -> Optional[float]:
        """Decided within the SLA, over the reviews decided or left to time out."""
        due = self.decisions + self.expiries
        return self.within_sla / due if due else None


@dataclass
class Insights:
    since: date
    until: date  # inclusive
    sla_minutes: float
    team: Figures
    reviewers: list[Figures]
    days: list[Figures]  # every day of the range, oldest first (empty days as zeros)
    unattributed_expiries: int = 0  # timed out with nobody holding the claim
    chart: dict = field(default_factory=dict)


def _bounds(since: date, until: date) -> tuple[datetime, datetime]:
    start = datetime.combine(since, time.min, tzinfo=UTC)
    return start, datetime.combine(until + timedelta(days=1), time.min, tzinfo=UTC)


def default_range(today: Optional[date] = None) -> tuple[date, date]:
    today = today or datetime.now(UTC).date()
    return today - timedelta(days=DEFAULT_DAYS - 1), today


def review_insights(*, since: date, until: date) -> Insights:
    """The figures of ``since`` to ``until`` (inclusive, UTC days): one query (after the one that
    sets its transaction's memory and JIT)."""
    start, end = _bounds(since, until)
    sql = _SQL.format(
        tasks=ReviewTask._meta.db_table, users=connection.ops.quote_name("auth_user"), labels=OrderLabel._meta.db_table
    )
    with transaction.atomic(), connection.cursor() as cursor:
        # One statement that sorts tens of thousands of narrow rows a few times: in memory, not
        # in temporary files (the default 4 MB work_mem spills at 30,000 reviews), and without
        # JIT compilation, which its estimated cost would trigger and which costs more than it
        # saves here (docs/benchmarks.md, "Insights").
        cursor.execute("SELECT set_config('work_mem', '64MB', true), set_config('jit', 'off', true)")
        cursor.execute(sql, {"policy": POLICY_ACTOR, "since": start, "until": end, "sla": sla_seconds()})
        rows = cursor.fetchall()
    team, reviewers, by_day, unattributed = Figures(name="Team"), [], {}, 0
    for by_person, by_day_flag, person, day, *values in rows:
        figures = dict(zip(_COLUMNS, values, strict=True))
        median, p90 = figures.pop("percentiles") or (None, None)
        figures["median_seconds"], figures["p90_seconds"] = median, p90
        if by_person and by_day_flag:
            team = Figures(name="Team", **figures)
        elif not by_person:  # grouped by person
            if person:
                reviewers.append(Figures(name=person, **figures))
            else:
                unattributed = figures["expiries"]
        else:
            by_day[day] = Figures(name=day.isoformat(), day=day, **figures)
    reviewers.sort(key=lambda f: (-f.decisions, f.name))
    days = []
    day = since
    while day <= until:
        days.append(by_day.get(day) or Figures(name=day.isoformat(), day=day))
        day += timedelta(days=1)
    insights = Insights(since, until, float(settings.REVIEW_SLA_MINUTES), team, reviewers, days, unattributed)
    insights.chart = daily_chart(days)
    return insights


# -- the chart: server-side SVG, no script ---------------------------------------------------------

CHART_WIDTH, CHART_HEIGHT = 720, 240
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 60, 16, 40


def _nice_ceiling(value: int) -> int:
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 2500, 5000, 10000, 20000, 50000):
        if value <= step * 4:
            return step * 4
    return ((value // 10000) + 1) * 10000


def daily_chart(days: list[Figures]) -> dict:
    """What the template draws: stacked bars per day (approved, rejected, timed out) on the left
    axis, the share decided within the SLA as a line on the right axis (0 to 100 %)."""
    plot_w = CHART_WIDTH - _LEFT - _RIGHT
    plot_h = CHART_HEIGHT - _TOP - _BOTTOM
    top = _nice_ceiling(max([d.decisions + d.expiries for d in days] + [1]))
    slot = plot_w / max(len(days), 1)
    bar_w = max(1.0, slot * 0.7)
    scale = plot_h / top
    bars, points = [], []
    label_every = max(1, -(-len(days) // 7))  # at most 7 date labels (they fit at 390 px too)
    for i, d in enumerate(days):
        x = _LEFT + i * slot + (slot - bar_w) / 2
        y = _TOP + plot_h
        parts = []
        for kind, n in (("approved", d.approved), ("rejected", d.rejected), ("expired", d.expiries)):
            h = n * scale
            y -= h
            if n:
                parts.append({"kind": kind, "y": round(y, 1), "h": round(h, 1), "n": n})
        share = d.sla_share
        if share is not None:
            points.append((round(x + bar_w / 2, 1), round(_TOP + plot_h * (1 - share), 1)))
        bars.append(
            {
                "x": round(x, 1),
                "w": round(bar_w, 1),
                "parts": parts,
                "day": d.day,
                "label": d.day.strftime("%d %b") if i % label_every == 0 else "",
                "label_x": round(x + bar_w / 2, 1),
                "title": (
                    f"{d.day:%Y-%m-%d}: {d.decisions} decided ({d.approved} approved, {d.rejected} rejected), "
                    f"{d.expiries} timed out" + (f", {share:.0%} within the SLA" if share is not None else "")
                ),
            }
        )
    ticks = [{"y": round(_TOP + plot_h - v * scale, 1), "v": v} for v in range(0, top + 1, top // 4)]
    sla_ticks = [{"y": round(_TOP + plot_h * (1 - p / 100), 1), "v": p} for p in (0, 50, 100)]
    return {
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "left": _LEFT,
        "right": CHART_WIDTH - _RIGHT,
        "top": _TOP,
        "bottom": _TOP + plot_h,
        "bars": bars,
        "ticks": ticks,
        "sla_ticks": sla_ticks,
        "sla_line": " ".join(f"{x},{y}" for x, y in points),
        "sla_points": points,
        "label_y": _TOP + plot_h + 20,
    }


# -- CSV --------------------------------------------------------------------------------------------

CSV_HEADER = [
    "scope",
    "name",
    "decisions",
    "approved",
    "rejected",
    "approval_share",
    "median_minutes",
    "p90_minutes",
    "decisions_per_active_hour",
    "active_hours",
    "expiries",
    "escalations",
    "within_sla",
    "sla_share",
    "approvals_labelled_chargeback_or_fraud",
    "rejections_labelled_genuine",
]


def _minutes(seconds: Optional[float]) -> str:
    return "" if seconds is None else f"{seconds / 60:.1f}"


def _share(value: Optional[float]) -> str:
    return "" if value is None else f"{value:.4f}"


def insights_csv(insights: Insights) -> str:
    """The team, each reviewer, then each day, one row each (shares as fractions, times in minutes)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_HEADER)
    rows = (
        [("team", insights.team)] + [("reviewer", f) for f in insights.reviewers] + [("day", d) for d in insights.days]
    )
    for scope, f in rows:
        per_hour = f.per_active_hour
        writer.writerow(
            [
                scope,
                _csv_text(f.name),
                f.decisions,
                f.approved,
                f.rejected,
                _share(f.approval_share),
                _minutes(f.median_seconds),
                _minutes(f.p90_seconds),
                "" if per_hour is None else f"{per_hour:.2f}",
                f.active_hours,
                f.expiries,
                f.escalations,
                f.within_sla,
                _share(f.sla_share),
                f.approvals_labelled_bad,
                f.rejections_labelled_genuine,
            ]
        )
    return out.getvalue()


def _csv_text(value: str) -> str:
    """A name a spreadsheet would run as a formula (=, +, -, @) is quoted with an apostrophe."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
