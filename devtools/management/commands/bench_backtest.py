"""Time the risk backtest at 100,000 orders, in a database of its own.

    python manage.py bench_backtest                     # 100,000 orders, 7 runs
    python manage.py bench_backtest --orders 10000 --runs 5 --explain

It creates ``<your database>_bench_backtest`` (``--database`` to choose), migrates it, seeds
``--orders`` orders over the last 30 days, each with a risk assessment and the facts it recorded
(a mix that makes every rule match some orders: unknown and first-time customers, amounts over
the usual and the shop's percentile, velocity, address changes, country mismatches, PO boxes,
forwarders, quantity spikes, a block entry on 1 in 211 and an allow entry on 1 in 307), labels
1 in 50 orders a chargeback or a confirmed fraud (a tenth of those labels removed again) and
cancels 1 in 70 as suspected fraud, then runs ANALYZE. It then runs the backtest of a draft
(review from 20 instead of 30, PO boxes 30 instead of 15) against the active policy over the
last 30 days, ``--runs`` times after a warm-up, as the page and the command do
(``reviews.backtest.risk_backtest_run``: the read, the scoring, the stored result), and reports
the median wall time, its read (SQL and JSON decoding) and the scoring, and the figures. Nothing
talks to Temporal.
"""

from __future__ import annotations

import random
import statistics
import time
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.utils import timezone

from devtools.management.commands.bench_review_queue import Command as QueueBench
from orderweb.models import Order, OrderLabel
from reviews.backtest import _RANGE_SQL, MAX_ORDERS, _bad_sql, risk_backtest_run
from reviews.models import RiskAssessment, RiskBacktest, RiskPolicy
from reviews.risk import RiskFacts, RiskThresholds

BATCH = 5000
BLOCK = {
    "entry": 1,
    "kind": "block",
    "field": "address",
    "value": "1 Fraud Lane",
    "reason": "chargeback on BENCH-1",
    "by": "bench-lead",
    "added": "2026-11-20T10:00:00+00:00",
    "order": "BENCH-0000001",
}
ALLOW = {**BLOCK, "entry": 2, "kind": "allow", "field": "email", "value": "vip@bench.example", "reason": "verified"}


def bench_facts(i: int, rng: random.Random) -> dict:
    """Facts as risk_facts_gather records them, varied so that every rule matches some orders."""
    known = i % 10 != 0
    earlier = rng.randint(0, 12) if known else 0
    return RiskFacts(
        amount=Decimal(rng.randint(500, 60_000)) / 100,
        currency="USD",
        customer=f"customer{i % 7919}@bench.example" if known else "",
        lines=1 + i % 3,
        items=1 + i % 13,
        max_quantity=1 + i % 13,
        max_quantity_sku=f"SKU-{i % 50}",
        address_changes=1 if i % 53 == 0 else 0,
        customer_orders=earlier,
        customer_orders_in_currency=earlier,
        customer_median=Decimal(rng.randint(2000, 9000)) / 100 if earlier >= 2 else None,
        customer_recent=(2 if rng.random() < 0.05 else rng.randint(0, 1)) if known else 0,
        address_recent=2 if rng.random() < 0.05 else rng.randint(0, 1),
        shop_percentile=Decimal("480.00"),
        shop_sample=1000,
        client_ip=f"203.0.113.{i % 250}",
        shipping_country="DE" if i % 17 == 0 else "US",
        billing_country="US",
        po_box="PO Box" if i % 23 == 0 else "",
        forwarding_service="Shipito" if i % 31 == 0 else "",
        lists=(BLOCK,) if i % 211 == 0 else (ALLOW,) if i % 307 == 0 else (),
    ).record()


class Command(BaseCommand):
    help = "Seed orders with recorded risk facts into a separate database and time the backtest."

    def add_arguments(self, parser):
        parser.add_argument("--orders", type=int, default=MAX_ORDERS)
        parser.add_argument("--runs", type=int, default=7, help="timed runs (median reported)")
        parser.add_argument("--database", default="", help="bench database name (default <NAME>_bench_backtest)")
        parser.add_argument("--explain", action="store_true", help="print the plan of the range's statement")
        parser.add_argument("--keep", action="store_true", help="keep the bench database afterwards")

    def handle(self, *args, orders, runs, database, explain, keep, **options):
        base = settings.DATABASES["default"]["NAME"]
        name = database or f"{base}_bench_backtest"
        if name == base:
            raise CommandError("The bench database must not be the database you work in.")
        helper = QueueBench(stdout=self.stdout, stderr=self.stderr)
        helper._use_database(name)
        try:
            call_command("migrate", verbosity=0)
            seconds = self._seed(orders)
            self.stdout.write(f"seeded {orders:,} orders with assessments and facts in {seconds:.1f} s")
            self._measure(runs, explain)
        finally:
            connection.close()
            if not keep:
                helper._drop(name)

    def _seed(self, n: int) -> float:
        started = time.monotonic()
        rng = random.Random(21)
        now = timezone.now()
        RiskPolicy.objects.all().delete()
        points, thresholds = RiskThresholds().stored()
        RiskPolicy.objects.create(
            version=1, status="active", points=points, thresholds=thresholds, activated_at=now, created_by_name="bench"
        )
        for start in range(0, n, BATCH):
            rows = range(start, min(n, start + BATCH))
            created = {i: now - timedelta(seconds=rng.randint(60, 30 * 86_400 - 3600)) for i in rows}
            fraud = {i for i in rows if i % 70 == 0}
            made = Order.objects.bulk_create(
                [
                    Order(
                        order_id=f"BENCH-{i:07d}",
                        workflow_id=f"bench-{i:07d}",
                        address=f"{i % 9000} Bench Street\nTown",
                        customer=f"Customer {i % 7919}",
                        amount=Decimal("10.00"),
                        status=Order.Status.CANCELLED if i in fraud else Order.Status.COMPLETED,
                        cancel_reason="rejected in review: suspected fraud" if i in fraud else "",
                        cancel_reason_code="suspected_fraud" if i in fraud else "",
                    )
                    for i in rows
                ]
            )
            RiskAssessment.objects.bulk_create(
                [
                    RiskAssessment(order=order, score=0, level="low", facts=bench_facts(i, rng))
                    for i, order in zip(rows, made, strict=True)
                ]
            )
            OrderLabel.objects.bulk_create(
                [
                    OrderLabel(
                        order=order,
                        label=("chargeback", "fraud_confirmed")[i % 2],
                        actor="bench",
                        source="api",
                        removed_at=now if i % 500 == 0 else None,
                        removed_by="bench" if i % 500 == 0 else "",
                    )
                    for i, order in zip(rows, made, strict=True)
                    if i % 50 == 0
                ]
            )
            with connection.cursor() as cursor:  # the assessment's own time, spread over 30 days
                cursor.execute(
                    f"UPDATE {RiskAssessment._meta.db_table} a SET created_at = v.t FROM (VALUES "
                    + ", ".join(["(%s, %s::timestamptz)"] * len(made))
                    + ") v(id, t) WHERE a.order_id = v.id",
                    [x for i, order in zip(rows, made, strict=True) for x in (order.pk, created[i])],
                )
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        return time.monotonic() - started

    def _measure(self, runs: int, explain: bool) -> None:
        active = RiskPolicy.objects.get(version=1)
        draft = RiskPolicy.objects.create(
            version=2,
            points={**active.points, "po_box": 30},
            thresholds={**active.thresholds, "review_threshold": 20},
            created_by_name="bench",
        )
        until = timezone.now() + timedelta(minutes=1)
        since = until - timedelta(days=30, minutes=1)
        if explain:
            with connection.cursor() as cursor:
                cursor.execute(
                    "EXPLAIN (ANALYZE, BUFFERS) "
                    + _RANGE_SQL.format(
                        bad=_bad_sql(),
                        assessments=RiskAssessment._meta.db_table,
                        orders=Order._meta.db_table,
                        latest="",
                    ),
                    {"since": since, "until": until},
                )
                self.stdout.write("\n".join(row[0] for row in cursor.fetchall()))
        risk_backtest_run(policy=draft, actor="bench", since=since, until=until)  # warm-up
        walls, reads, results = [], [], []
        for _ in range(runs):
            started = time.perf_counter()
            backtest = risk_backtest_run(policy=draft, actor="bench", since=since, until=until)
            walls.append(time.perf_counter() - started)
            reads.append(backtest.result["seconds_read"])
            results.append(backtest.result)
        r = results[-1]
        wall, read = statistics.median(walls), statistics.median(reads)
        self.stdout.write(
            f"backtest of {r['orders']:,} orders (unscored {r['unscored']}), {runs} runs: median {wall:.2f} s "
            f"(read {read:.2f} s, scoring and storing {wall - read:.2f} s; min {min(walls):.2f}, max {max(walls):.2f})"
        )
        self.stdout.write(
            f"  would review {r['would_review']:,} (active {r['would_review_active']:,}); bad {r['bad']:,}: caught "
            f"{r['caught']:,}, missed {r['missed']:,} (active {r['caught_active']:,} / {r['missed_active']:,})"
        )
        self.stdout.write(f"  backtests stored: {RiskBacktest.objects.count()}")
