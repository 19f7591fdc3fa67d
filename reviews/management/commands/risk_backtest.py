"""python manage.py risk_backtest --policy N [--days 30 | --since D --until D] [--csv FILE]

Scores risk policy version N over past orders' recorded facts against the active policy
(reviews/backtest.py), keeps the result (a draft's activation accepts it for 24 hours) and prints
a few readable lines, the per-rule table, and last a line that is one JSON object with at least
``orders``, ``would_review``, ``would_review_active``, ``caught`` and ``missed``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, time

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from reviews.backtest import MAX_ORDERS, backtest_csv, backtest_range, backtest_summary, risk_backtest_run
from reviews.models import RiskPolicy


def _day(text: str) -> datetime:
    try:
        return datetime.combine(datetime.strptime(text, "%Y-%m-%d").date(), time.min, tzinfo=UTC)
    except ValueError:
        raise CommandError(f"{text!r} is not a date (YYYY-MM-DD).") from None


class Command(BaseCommand):
    help = "Score a risk policy over past orders (what it would send to review, which bad orders it catches)."

    def add_arguments(self, parser):
        parser.add_argument("--policy", type=int, required=True, help="The policy's version number.")
        parser.add_argument("--days", type=float, default=None, help="The last N days (default 30).")
        parser.add_argument("--since", default=None, help="From this day (YYYY-MM-DD, UTC), instead of --days.")
        parser.add_argument("--until", default=None, help="Up to this day, excluded (default: now).")
        parser.add_argument("--limit", type=int, default=MAX_ORDERS, help="At most this many orders, the latest.")
        parser.add_argument("--csv", default=None, help="Also write the result as CSV to this file.")

    def handle(self, *args, policy, days, since, until, limit, csv, **options):
        found = RiskPolicy.objects.filter(version=policy).first()
        if found is None:
            raise CommandError(f"There is no risk policy v{policy}.")
        try:
            start, end = backtest_range(
                days=days, since=_day(since) if since else None, until=_day(until) if until else None
            )
        except ValidationError as err:
            raise CommandError(" ".join(err.messages)) from None
        backtest = risk_backtest_run(
            policy=found, actor="command", since=start, until=end, limit=min(limit, MAX_ORDERS), source="command"
        )
        result = backtest.result
        against = f"v{result['active']}" if result["active"] else "the settings"
        self.stdout.write(
            f"Backtest #{backtest.pk}: v{found.version} ({found.status}) against {against}, "
            f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC, in {result['seconds']:.2f} s"
        )
        self.stdout.write(
            f"  orders scored {result['orders']} (unscored, no recorded facts: {result['unscored']})"
            + (f"; only the latest {result['limit']}" if result["truncated"] else "")
        )
        self.stdout.write(
            f"  would review {result['would_review']} (active: {result['would_review_active']}, "
            f"change {result['review_change']:+d})"
        )
        self.stdout.write(
            f"  bad orders {result['bad']}: caught {result['caught']}, missed {result['missed']} "
            f"(active: caught {result['caught_active']}, missed {result['missed_active']})"
        )
        if result["gathering_changed"]:
            self.stdout.write(
                "  changed how facts are gathered (shows on new orders only): " + ", ".join(result["gathering_changed"])
            )
        self.stdout.write(f"  {'rule':<20} {'points':>6} {'matched':>8} {'bad':>6} {'alone':>6}")
        for row in result["rules"]:
            if row["matched"] or row["matched_active"]:
                self.stdout.write(
                    f"  {row['rule']:<20} {row['points']:>6} {row['matched']:>8} "
                    f"{row['matched_bad']:>6} {row['decisive']:>6}"
                )
        if csv:
            with open(csv, "w", newline="") as out:
                out.write(backtest_csv(backtest))
            self.stdout.write(f"  CSV written to {csv}")
        self.stdout.write(json.dumps({"backtest": backtest.pk, **backtest_summary(result)}))
