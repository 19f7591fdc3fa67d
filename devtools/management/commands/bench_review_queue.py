"""Time the review pages at two sizes, in a database of their own.

    python manage.py bench_review_queue                       # 100 and 100,000 orders
    python manage.py bench_review_queue --sizes 100:10 100000:10000 --runs 21 --explain

For each size ``orders:awaiting`` it empties the bench database, seeds that many orders in bulk
(``awaiting`` of them waiting for review with an open task, a third of those claimed; the rest
finished, with closed review tasks, line items and timeline events as real orders leave them;
every order with a customer, an email and a risk assessment, about 13 orders per customer;
since issue 20: a billing address and a client IP shared by a few orders each, a note on some,
a twentieth of the open reviews escalated, the high-risk ones needing four eyes, a third of those
approved once, and claims of every age, so that some have lapsed),
runs ANALYZE, then renders each review page through Django's full request stack (middleware,
session, permissions, templates) ``--runs`` times after warm-ups, and reports the median and the
Python CPU time (this thread only, so other processes on a busy machine do not count) and
the time spent waiting for SQL, in milliseconds, and the number of SQL queries per request.
It also times the risk rules' two queries (``reviews.risk.risk_facts_gather``) for an order
at that size, and ``--explain`` prints their plans with the queue's.

The bench database is ``<your database>_bench_reviews`` on the same server (``--database`` to
choose): the command creates it, migrates it and points this process's connection at it, so
your own data is never touched. Nothing talks to Temporal (the live status panel loads apart).
"""

from __future__ import annotations

import random
import statistics
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orderweb.models import Order, OrderEvent, OrderLine
from reviews.models import ReviewTask, RiskAssessment
from reviews.risk import RiskThresholds, risk_evaluate, risk_facts_gather

BATCH = 5000
REVIEWERS = 5


class Command(BaseCommand):
    help = "Seed orders in bulk into a separate database and time the review queue pages."

    def add_arguments(self, parser):
        parser.add_argument(
            "--sizes",
            nargs="+",
            default=["100:10", "100000:10000"],
            help="orders:awaiting pairs (default: 100:10 100000:10000)",
        )
        parser.add_argument("--runs", type=int, default=15, help="timed runs per page (median reported)")
        parser.add_argument("--database", default="", help="bench database name (default <NAME>_bench_reviews)")
        parser.add_argument("--explain", action="store_true", help="print the plan of the queue's queries")
        parser.add_argument("--keep", action="store_true", help="keep the bench database afterwards")

    def handle(self, *args, sizes, runs, database, explain, keep, **options):
        base = settings.DATABASES["default"]["NAME"]
        name = database or f"{base}_bench_reviews"
        if name == base:
            raise CommandError("The bench database must not be the database you work in.")
        self._use_database(name)
        try:
            call_command("migrate", verbosity=0)
            results = []
            for size in sizes:
                orders, awaiting = (int(x) for x in size.split(":"))
                seconds = self._seed(orders, awaiting)
                self.stdout.write(f"seeded {orders:,} orders ({awaiting:,} awaiting review) in {seconds:.1f} s")
                results.append((orders, awaiting, self._measure(runs, explain)))
            self._report(results, runs)
        finally:
            connection.close()
            if not keep:
                self._drop(name)

    # -- database ------------------------------------------------------------------------------

    def _admin_cursor_run(self, sql: str) -> None:
        import psycopg

        params = dict(settings.DATABASES["default"])
        with psycopg.connect(
            host=params.get("HOST") or None,
            port=params.get("PORT") or None,
            user=params.get("USER") or None,
            password=params.get("PASSWORD") or None,
            dbname="postgres",
            autocommit=True,
        ) as admin:
            admin.execute(sql)

    def _use_database(self, name: str) -> None:
        connection.close()
        self._admin_cursor_run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._admin_cursor_run(f'CREATE DATABASE "{name}"')
        connections["default"].settings_dict["NAME"] = name
        self.stdout.write(f"bench database: {name}")

    def _drop(self, name: str) -> None:
        self._admin_cursor_run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    # -- seeding -------------------------------------------------------------------------------

    def _seed(self, n_orders: int, n_awaiting: int) -> float:
        started = time.monotonic()
        tables = [m._meta.db_table for m in (ReviewTask, RiskAssessment, OrderEvent, OrderLine, Order)]
        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {', '.join(tables)} CASCADE")
        User = get_user_model()
        User.objects.filter(username__startswith="bench-").delete()
        group, _ = Group.objects.get_or_create(name="reviewer")
        group.permissions.add(Permission.objects.get(codename="decide_review", content_type__app_label="reviews"))
        reviewers = []
        for i in range(REVIEWERS):
            user = User.objects.create(username=f"bench-reviewer-{i}")
            user.groups.add(group)
            reviewers.append(user)
        lead = User.objects.create(username="bench-lead")
        lead.groups.add(group)
        lead.user_permissions.add(Permission.objects.get(codename="lead_review", content_type__app_label="reviews"))

        rng = random.Random(42)
        now = timezone.now()
        finished = [(Order.Status.COMPLETED, 80), (Order.Status.CANCELLED, 15), (Order.Status.FAILED, 5)]
        statuses = [s for s, weight in finished for _ in range(weight)]
        orders = []
        for i in range(n_orders):
            waiting = i < n_awaiting
            status = Order.Status.AWAITING_MANUAL_REVIEW if waiting else rng.choice(statuses)
            created = now - timedelta(seconds=rng.randint(60, 86_000 if waiting else 90 * 86_400))
            customer = i % 7919
            orders.append(
                Order(
                    order_id=f"BENCH-{i:07d}",
                    workflow_id=f"bench-{i:07d}",
                    address=f"{rng.randint(1, 999)} Bench Street\nTown {i % 500}, ST {10000 + i % 89999}",
                    customer=f"Customer {customer}",
                    customer_email=f"customer{customer}@bench.example",
                    amount=Decimal(rng.randint(100, 99_999)) / 100,
                    status=status,
                    status_changed_at=created,
                    cancel_reason="rejected in review: bench" if status == Order.Status.CANCELLED else "",
                    cancel_reason_code=rng.choice(["suspected_fraud", "customer_request", "out_of_stock"])
                    if status == Order.Status.CANCELLED
                    else "",
                    failure_reason="payment declined: bench" if status == Order.Status.FAILED else "",
                    source="api",
                    # Linked orders: a billing address shared by ~5 orders, a client IP by ~20.
                    billing_address=f"{i % 20011} Billing Road\nTown {i % 500}",
                    client_ip=f"198.51.{(i % 4999) // 250}.{(i % 4999) % 250}",
                )
            )
        Order.objects.bulk_create(orders, batch_size=BATCH)
        # created_at is auto_now_add: spread it as real orders arrive.
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {Order._meta.db_table} SET created_at = status_changed_at, updated_at = status_changed_at"
            )
        ids = list(Order.objects.order_by("pk").values_list("pk", "status", "status_changed_at"))

        OrderLine.objects.bulk_create(
            (
                OrderLine(
                    order_id=pk,
                    sku=f"SKU-{pk % 300}",
                    name="Bench item",
                    quantity=1 + pk % 3,
                    unit_price=Decimal("9.99"),
                )
                for pk, _, _ in ids
            ),
            batch_size=BATCH,
        )
        events = []
        for pk, status, _created in ids:
            events.append(
                OrderEvent(
                    order_id=pk, type="order_created", source="api", to_status="started", event_key="received:created"
                )
            )
            events.append(
                OrderEvent(
                    order_id=pk,
                    type="status_changed",
                    source="workflow",
                    from_status="processing",
                    to_status="awaiting_manual_review",
                    event_key="validated",
                )
            )
            if status != Order.Status.AWAITING_MANUAL_REVIEW:
                events.append(
                    OrderEvent(
                        order_id=pk, type="status_changed", source="workflow", to_status=status, event_key="finished"
                    )
                )
            if pk % 10 == 0:
                events.append(
                    OrderEvent(
                        order_id=pk,
                        type="note_added",
                        source="web",
                        actor="bench-reviewer-1",
                        message="Called the customer: the address is right.",
                    )
                )
        OrderEvent.objects.bulk_create(events, batch_size=BATCH)

        # Every order was scored at validation: mostly low, some medium, a tenth high.
        risks = {}
        assessments = []
        for pk, _, _ in ids:
            score = rng.choice([0] * 40 + [15] * 30 + [35] * 12 + [45] * 8 + [70] * 7 + [100] * 3)
            level = "high" if score >= 60 else "medium" if score >= 30 else "low"
            risks[pk] = (score, level)
            reasons = (
                []
                if not score
                else [
                    {
                        "rule": "first_order",
                        "points": 15,
                        "text": "First order from x.",
                        "figures": {"earlier_orders": 0},
                    }
                ]
            )
            assessments.append(RiskAssessment(order_id=pk, score=score, level=level, reasons=reasons))
        RiskAssessment.objects.bulk_create(assessments, batch_size=BATCH)
        amounts = dict(Order.objects.values_list("pk", "amount"))

        tasks = []
        # A cancelled order's review was rejected, timed out, or ended with the order.
        cancelled_outcomes = (
            [ReviewTask.Status.REJECTED] * 6 + [ReviewTask.Status.EXPIRED] * 2 + [ReviewTask.Status.CANCELLED] * 2
        )
        for pk, status, created in ids:
            if status == Order.Status.AWAITING_MANUAL_REVIEW:
                claimer = rng.choice(reviewers) if rng.random() < 1 / 3 else None
                four_eyes = risks[pk][1] == "high"
                first = rng.choice(reviewers) if four_eyes and rng.random() < 1 / 3 else None
                tasks.append(
                    ReviewTask(
                        order_id=pk,
                        due_at=created + timedelta(hours=24),
                        claimed_by=claimer,
                        # Claims of every age up to two hours: about half have lapsed (60 minutes).
                        claimed_at=now - timedelta(minutes=rng.randint(0, 120)) if claimer else None,
                        risk_score=risks[pk][0],
                        risk_level=risks[pk][1],
                        amount=amounts[pk],
                        escalated_at=now - timedelta(minutes=5) if rng.random() < 1 / 20 else None,
                        approvals_required=2 if four_eyes else 1,
                        four_eyes_rule="high risk (REVIEW_FOUR_EYES_LEVELS=high)" if four_eyes else "",
                        first_approval_by=first.username if first else "",
                        first_approval_at=now if first else None,
                    )
                )
            elif status != Order.Status.FAILED:
                outcome = (
                    ReviewTask.Status.APPROVED if status == Order.Status.COMPLETED else rng.choice(cancelled_outcomes)
                )
                decider = rng.choice(reviewers)
                tasks.append(
                    ReviewTask(
                        order_id=pk,
                        status=outcome,
                        due_at=created + timedelta(hours=24),
                        decided_at=created + timedelta(minutes=rng.randint(1, 600)),
                        decided_by=decider if outcome in ("approved", "rejected") else None,
                        decided_by_name=decider.username if outcome in ("approved", "rejected") else "",
                        note="bench" if outcome == "rejected" else "",
                        reason_code="suspected_fraud" if outcome == "rejected" else "",
                        risk_score=risks[pk][0],
                        risk_level=risks[pk][1],
                        amount=amounts[pk],
                    )
                )
        ReviewTask.objects.bulk_create(tasks, batch_size=BATCH)
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
        return time.monotonic() - started

    # -- measuring -----------------------------------------------------------------------------

    def _pages(self) -> list[tuple[str, str]]:
        waiting = ReviewTask.objects.filter(status="open").select_related("order").order_by("due_at", "id").first()
        order_id = waiting.order.order_id if waiting else Order.objects.values_list("order_id", flat=True).first()
        count = ReviewTask.objects.filter(status="open").count()
        last_page = max(1, (count + 24) // 25)
        decided = Order.objects.filter(status=Order.Status.COMPLETED).order_by("pk").first()
        waiting_order = Order.objects.get(order_id=order_id)
        customer = waiting_order.customer
        street = waiting_order.address.split("\n")[1]  # "Town 123, ST 10456"
        since = (timezone.localdate() - timedelta(days=7)).isoformat()
        return [
            ("queue, all open", "/reviews/"),
            ("queue, unclaimed", "/reviews/?filter=unclaimed"),
            ("queue, mine", "/reviews/?filter=mine"),
            ("queue, htmx poll", "/reviews/?filter=all#htmx"),
            ("queue, riskiest first", "/reviews/?sort=risk"),
            ("queue, largest first", "/reviews/?sort=amount"),
            ("queue, high risk only", "/reviews/?risk=high"),
            ("queue, search order id", f"/reviews/?q={order_id[-5:]}"),
            ("queue, search customer", f"/reviews/?q={customer.replace(' ', '+')}"),
            ("queue, search address", f"/reviews/?q={street.replace(' ', '+').replace(',', '%2C')}"),
            ("queue, search decided", f"/reviews/?q={decided.order_id}" if decided else "/reviews/?q=none"),
            ("queue, last page", f"/reviews/?page={last_page}"),
            ("recent decisions", "/reviews/decided/"),
            ("recent, search customer", f"/reviews/decided/?q={customer.replace(' ', '+')}"),
            ("recent, reviewer + dates", f"/reviews/decided/?by=bench-reviewer-3&since={since}"),
            ("recent, reason", "/reviews/decided/?reason=suspected_fraud"),
            ("order page", f"/reviews/orders/{order_id}/"),
            # Issue 20, as the lead sees them: the Escalated view, and the order page (with the
            # reviewers to reassign to: one query more).
            ("queue, escalated (lead)", "/reviews/?filter=escalated#lead"),
            ("order page (lead)", f"/reviews/orders/{order_id}/#lead"),
        ]

    def _measure(self, runs: int, explain: bool) -> list[tuple[str, float, float, int]]:
        client = Client(HTTP_HOST="localhost")
        client.force_login(get_user_model().objects.get(username="bench-reviewer-0"))
        lead = Client(HTTP_HOST="localhost")
        lead.force_login(get_user_model().objects.get(username="bench-lead"))
        rows = []
        reviewer = client
        for label, url in self._pages():
            headers = {"HTTP_HX_REQUEST": "true"} if url.endswith("#htmx") else {}
            client = lead if url.endswith("#lead") else reviewer
            url = url.removesuffix("#htmx").removesuffix("#lead")
            for _ in range(3):  # warm-up: connection, template cache, Postgres buffers
                self._get(client, url, headers)
            timings, cpu_times, sql_times, counts = [], [], [], set()
            for _ in range(runs):
                with CaptureQueriesContext(connection) as ctx:
                    started, cpu_started = time.perf_counter(), time.thread_time()
                    self._get(client, url, headers)
                    timings.append((time.perf_counter() - started) * 1000)
                    cpu_times.append((time.thread_time() - cpu_started) * 1000)
                sql_times.append(sum(float(q["time"]) for q in ctx.captured_queries) * 1000)
                counts.add(len(ctx.captured_queries))
            if explain and label.startswith(("queue, ", "recent", "order page")):
                self.stdout.write(f"\n=== {label}")
                self._explain(ctx.captured_queries)
            rows.append(
                (
                    label,
                    statistics.median(timings),
                    statistics.median(cpu_times),
                    statistics.median(sql_times),
                    max(counts),
                )
            )
        rows.append(self._measure_risk(runs, explain))
        return rows

    def _measure_risk(self, runs: int, explain: bool) -> tuple[str, float, float, float, int]:
        """The risk rules' facts for a waiting order of a frequent customer (reviews/risk.py), as
        order_validated gathers them: their time, and their plans."""
        order = Order.objects.filter(status=Order.Status.AWAITING_MANUAL_REVIEW).order_by("pk").first()
        RiskAssessment.objects.filter(order=order).delete()  # as at validation: not assessed yet
        thresholds = RiskThresholds.from_settings()
        timings, cpu_times, sql_times, counts = [], [], [], set()
        for _ in range(3 + runs):
            with CaptureQueriesContext(connection) as ctx:
                started, cpu_started = time.perf_counter(), time.thread_time()
                facts, _ = risk_facts_gather(order_pk=order.pk, thresholds=thresholds)
                risk_evaluate(facts, thresholds)
                timings.append((time.perf_counter() - started) * 1000)
                cpu_times.append((time.thread_time() - cpu_started) * 1000)
            sql_times.append(sum(float(q["time"]) for q in ctx.captured_queries) * 1000)
            counts.add(len(ctx.captured_queries))
        if explain:
            self.stdout.write(
                f"\n=== risk rules for {order.order_id} ({facts.customer_orders} earlier orders of its customer)"
            )
            self._explain(ctx.captured_queries, everything=True)
        return (
            "risk rules (2 queries)",
            statistics.median(timings[3:]),
            statistics.median(cpu_times[3:]),
            statistics.median(sql_times[3:]),
            max(counts),
        )

    def _get(self, client: Client, url: str, headers: dict) -> None:
        response = client.get(url, secure=True, **headers)
        if response.status_code != 200:
            raise CommandError(f"GET {url} answered {response.status_code}")

    def _explain(self, queries, everything: bool = False) -> None:
        with connection.cursor() as cursor:
            for query in queries:
                sql = query["sql"]
                if not everything and "reviews_reviewtask" not in sql and "orderweb_order" not in sql:
                    continue
                if sql.startswith(('SELECT "django_session"', 'SELECT "auth_')):
                    continue
                cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS OFF, TIMING OFF, SUMMARY ON) {sql}")
                self.stdout.write("\n" + sql[:200] + "...")
                for (line,) in cursor.fetchall():
                    self.stdout.write("    " + line)

    def _report(self, results, runs: int) -> None:
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        self.stdout.write(
            f"\nmedian of {runs} runs, ms: wall time of the whole request / Python CPU time "
            f"of it / waiting for SQL; queries per request (load average {load})"
        )
        labels = [label for label, *_ in results[0][2]]
        header = f"{'page':<26}" + "".join(f"{f'{o:,} orders ({a:,} open)':>38}" for o, a, _ in results)
        self.stdout.write(header)
        for i, label in enumerate(labels):
            cells = ""
            for _, _, rows in results:
                _, wall, cpu, sql, queries = rows[i]
                cells += f"{f'{wall:6.1f} / {cpu:5.1f} / {sql:5.1f} ms, {queries} q':>38}"
            self.stdout.write(f"{label:<26}{cells}")
