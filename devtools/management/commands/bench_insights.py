"""Time the review leads' insights (issue 21) at 100,000 decided orders, in a database of its own.

    python manage.py bench_insights                         # 100,000 decided orders, 15 runs
    python manage.py bench_insights --orders 100000 --runs 21 --explain

It empties the bench database (``<your database>_bench_insights``, created and migrated here, so
your own data is never touched), seeds ``--orders`` orders with closed review tasks in one SQL
statement each (decided over the last 90 days by 12 reviewers: 60 % approved, 25 % rejected,
10 % expired, half of those claimed, 5 % cancelled; 3 % escalated; times from reaching review
to the decision between a minute and eight hours), labels 2 % of them (chargeback, confirmed
fraud, confirmed genuine; a tenth removed again), runs ANALYZE, then times:

- ``review_insights`` for the last 30 days and for all 90 (the one SQL statement and the Python
  around it), and the page through Django's whole request stack (``/reviews/insights/`` as a lead,
  the default 30 days, and its CSV), with the number of SQL queries per request;
- the two Prometheus readers of issue 21 (decisions by outcome, labels by kind).

Medians of ``--runs`` after two warm-ups, in milliseconds: wall time and the Python CPU time of
this thread (other processes on a busy machine do not count in it), and the CPU time of the
connection's Postgres backend when Postgres runs on this machine (``/proc/<pid>/schedstat``: what
the statement costs the database, hardly changed by other processes' load, unlike the wall time
on a shared machine). ``--explain`` prints the
insights statement's plan (EXPLAIN ANALYZE, BUFFERS). Nothing talks to Temporal.
"""

from __future__ import annotations

import statistics
import time
from datetime import timedelta
from pathlib import Path
from typing import Optional

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from devtools.management.commands.bench_review_queue import Command as QueueBench
from orderweb.models import Order, OrderEvent, OrderLabel, OrderLine
from reviews.insights import _SQL, review_insights, sla_seconds
from reviews.models import ReviewTask, RiskAssessment
from temporal_app.contracts import POLICY_ACTOR

REVIEWERS = 12

_SEED_ORDERS = """
INSERT INTO orderweb_order (created_at, updated_at, order_id, workflow_id, address, customer, amount, status,
    status_changed_at, cancel_reason, failure_reason, dispatch_failures, source, attention_reason, billing_address,
    currency, customer_email, user_agent, cancel_reason_code)
SELECT now() - interval '91 days', now(), 'INS-' || lpad(i::text, 7, '0'), 'ins-' || lpad(i::text, 7, '0'),
       i || ' Insight Street', 'Customer ' || (i %% 7919), (i %% 9999) + 1, 'completed', now(), '', '', 0, 'bench',
       '', '', 'USD', '', '', ''
  FROM generate_series(1, %(n)s) AS i
"""

# Each order's one closed task: the outcome from the order's number, the decision time drawn.
_SEED_TASKS = """
INSERT INTO reviews_reviewtask (order_id, status, due_at, decided_by_name, decided_at, note, created_at, reason_code,
    risk_level, approvals_required, first_approval_by, first_approval_note, four_eyes_rule, timeout_action,
    claimed_by_id, claimed_at, escalated_at)
SELECT id, status, decided + interval '24 hours',
       CASE WHEN status IN ('approved', 'rejected') THEN reviewer ELSE '' END,
       decided, '', decided - took, CASE WHEN status = 'rejected' THEN 'suspected_fraud' ELSE '' END, 'medium', 1, '',
       '', '', 'expire',
       CASE WHEN status = 'expired' AND k %% 2 = 0 THEN %(claimer)s END,
       CASE WHEN status = 'expired' AND k %% 2 = 0 THEN decided - took END,
       CASE WHEN k %% 33 = 0 THEN decided - took / 2 END
  FROM (
    SELECT o.id, k, 'bench-reviewer-' || (k %% %(reviewers)s) AS reviewer,
           CASE WHEN k %% 20 < 12 THEN 'approved' WHEN k %% 20 < 17 THEN 'rejected' WHEN k %% 20 < 19 THEN 'expired'
                ELSE 'cancelled' END AS status,
           now() - random() * interval '90 days' AS decided,
           interval '1 minute' + random() * random() * interval '8 hours' AS took
      FROM (SELECT id, row_number() OVER (ORDER BY id) AS k FROM orderweb_order) o
  ) s
"""

_SEED_LABELS = """
INSERT INTO orderweb_orderlabel (order_id, label, note, source_reference, actor, source, created_at, removed_at,
    removed_by)
SELECT t.order_id,
       CASE WHEN t.status = 'rejected' THEN 'genuine_confirmed' WHEN t.order_id %% 2 = 0 THEN 'chargeback'
            ELSE 'fraud_confirmed' END,
       '', '', 'bench', 'api', t.decided_at + interval '3 days',
       CASE WHEN t.order_id %% 10 = 0 THEN t.decided_at + interval '4 days' END,
       CASE WHEN t.order_id %% 10 = 0 THEN 'bench' ELSE '' END
  FROM reviews_reviewtask t
 WHERE t.status IN ('approved', 'rejected') AND t.order_id %% 50 IN (7, 13)
"""


def _median(values: list[float]) -> float:
    return statistics.median(values)


class Command(BaseCommand):
    help = "Seed decided orders in bulk into a separate database and time the leads' insights."

    def add_arguments(self, parser):
        parser.add_argument("--orders", type=int, default=100_000, help="decided orders (default 100,000)")
        parser.add_argument("--runs", type=int, default=15, help="timed runs each (median reported)")
        parser.add_argument("--database", default="", help="bench database name (default <NAME>_bench_insights)")
        parser.add_argument("--explain", action="store_true", help="print the insights statement's plan")
        parser.add_argument("--keep", action="store_true", help="keep the bench database afterwards")

    def handle(self, *args, orders, runs, database, explain, keep, **options):
        base = settings.DATABASES["default"]["NAME"]
        name = database or f"{base}_bench_insights"
        if name == base:
            raise CommandError("The bench database must not be the database you work in.")
        helper = QueueBench(stdout=self.stdout, stderr=self.stderr)
        helper._use_database(name)
        try:
            call_command("migrate", verbosity=0)
            seeded = self._seed(orders)
            self.stdout.write(
                f"seeded {orders:,} decided orders ({seeded['labels']:,} labels) in {seeded['seconds']:.1f} s"
            )
            self._measure(runs, explain)
        finally:
            connection.close()
            if not keep:
                helper._drop(name)

    # -- seeding -------------------------------------------------------------------------------

    def _seed(self, n: int) -> dict:
        started = time.monotonic()
        tables = [m._meta.db_table for m in (OrderLabel, ReviewTask, RiskAssessment, OrderEvent, OrderLine, Order)]
        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {', '.join(tables)} CASCADE")
        User = get_user_model()
        User.objects.filter(username__startswith="bench-").delete()
        group, _ = Group.objects.get_or_create(name="reviewer")
        group.permissions.add(Permission.objects.get(codename="decide_review", content_type__app_label="reviews"))
        claimer = User.objects.create(username="bench-reviewer-0")
        claimer.groups.add(group)
        self.lead = User.objects.create(username="bench-lead")
        self.lead.groups.add(group)
        self.lead.user_permissions.add(
            Permission.objects.get(codename="lead_review", content_type__app_label="reviews")
        )
        with connection.cursor() as cursor:
            cursor.execute(_SEED_ORDERS, {"n": n})
            cursor.execute(_SEED_TASKS, {"claimer": claimer.pk, "reviewers": REVIEWERS})
            cursor.execute(_SEED_LABELS, {})
            cursor.execute("ANALYZE")
        return {"seconds": time.monotonic() - started, "labels": OrderLabel.objects.count()}

    # -- measuring -----------------------------------------------------------------------------

    def _backend_cpu_ns(self) -> Optional[int]:
        """The CPU time (ns) of this connection's Postgres backend so far, when Postgres runs on this
        machine (``/proc/<pid>/schedstat``): unlike the wall time, other processes' load hardly
        changes it."""
        if self._backend is None:
            return None
        try:
            return int(Path(f"/proc/{self._backend}/schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _time(self, fn, runs: int) -> tuple[float, float, Optional[float]]:
        for _ in range(2):
            fn()
        walls, cpus, pg = [], [], []
        for _ in range(runs):
            before = self._backend_cpu_ns()
            wall, cpu = time.perf_counter(), time.thread_time()
            fn()
            walls.append((time.perf_counter() - wall) * 1000)
            cpus.append((time.thread_time() - cpu) * 1000)
            after = self._backend_cpu_ns()
            if before is not None and after is not None:
                pg.append((after - before) / 1e6)
        return _median(walls), _median(cpus), (_median(pg) if pg else None)

    def _measure(self, runs: int, explain: bool) -> None:
        from orderweb.metrics import label_metrics
        from reviews.metrics import review_decision_metrics

        today = timezone.now().date()
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            self._backend = cursor.fetchone()[0]
        # One connection (one backend to read the CPU of) for the whole run: requests through the
        # test client would otherwise close it at their end, as CONN_MAX_AGE says.
        request_started.disconnect(close_old_connections)
        request_finished.disconnect(close_old_connections)
        client = Client(HTTP_HOST="localhost")
        client.force_login(self.lead)
        client.get("/reviews/insights/", secure=True)  # the session's first write

        def page(params=None):
            response = client.get("/reviews/insights/", params or {}, secure=True)
            assert response.status_code == 200, response.status_code

        def queries(fn) -> int:
            with CaptureQueriesContext(connection) as ctx:
                fn()
            return len(ctx.captured_queries)

        cases = [
            (
                "review_insights, last 30 days",
                lambda: review_insights(since=today - timedelta(days=29), until=today),
                None,
            ),
            (
                "review_insights, all 90 days",
                lambda: review_insights(since=today - timedelta(days=90), until=today),
                None,
            ),
            ("GET /reviews/insights/ (30 days)", page, page),
            (
                "GET /reviews/insights/?format=csv (30 days)",
                lambda: page({"format": "csv"}),
                lambda: page({"format": "csv"}),
            ),
            (
                "GET /reviews/insights/ (90 days)",
                lambda: page({"since": str(today - timedelta(days=90))}),
                lambda: page({"since": str(today - timedelta(days=90))}),
            ),
            ("metrics: decisions by outcome", lambda: list(review_decision_metrics()), None),
            ("metrics: labels by kind", lambda: list(label_metrics()), None),
        ]
        first = review_insights(since=today - timedelta(days=90), until=today)
        self.stdout.write(
            f"in the 90 days: {first.team.decisions:,} decisions, {first.team.expiries:,} timed out, "
            f"{len(first.reviewers)} reviewers, {first.team.approvals_labelled_bad} approvals labelled "
            f"bad, {first.team.rejections_labelled_genuine} rejections labelled genuine"
        )
        self.stdout.write(f"{'case':<48} {'median ms':>10} {'CPU ms':>8} {'PG CPU ms':>10} {'queries':>8}")
        for label, fn, counted in cases:
            wall, cpu, pg = self._time(fn, runs)
            count = queries(counted) if counted else queries(fn)
            pg_text = f"{pg:>10.1f}" if pg is not None else f"{'n/a':>10}"
            self.stdout.write(f"{label:<48} {wall:>10.1f} {cpu:>8.1f} {pg_text} {count:>8}")
        if explain:
            start = timezone.now() - timedelta(days=30)
            sql = _SQL.format(tasks=ReviewTask._meta.db_table, users='"auth_user"', labels=OrderLabel._meta.db_table)
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SELECT set_config('work_mem', '64MB', true), set_config('jit', 'off', true)")
                cursor.execute(
                    "EXPLAIN (ANALYZE, BUFFERS) " + sql,
                    {"policy": POLICY_ACTOR, "since": start, "until": timezone.now(), "sla": sla_seconds()},
                )
                self.stdout.write("\n".join(row[0] for row in cursor.fetchall()))
