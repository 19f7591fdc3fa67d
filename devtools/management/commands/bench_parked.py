"""python manage.py bench_parked [--parked 10000] [--sample 100] [--start-dev-server]

Many orders waiting for review at once, as after a busy day, and what that does to the system:

1. a baseline: ``--sample`` orders created, parked and approved through the review UI's path
   (``review_decide``) with nothing else waiting: approve -> charged latencies;
2. ``--parked`` orders created through ``order_create`` and left waiting for review;
3. the worker's memory with all of them parked (VmRSS and VmHWM);
4. ``--sample`` of the parked orders approved: approve -> charged latencies, beside the baseline;
5. the workers restarted (SIGINT, a new process) with all of them parked: the time until the
   new workers are ready, and until the first approval after the restart is charged;
6. nothing lost: every order still parked is awaiting review in Postgres and in Temporal, every
   approved one completed.

The last line printed is one JSON object with the figures. Starts its own workers (and, with
``--start-dev-server``, its own Temporal dev server); uses the database of DATABASE_URL.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections, connection
from tqdm import tqdm

from devtools.bench import (
    AutovacuumStandIn,
    Workers,
    approver,
    bench_dev_server,
    bench_reviewer,
    check_temporal,
    percentile,
)
from devtools.supervise import stop_process
from orderweb.models import Order, OrderEvent, Payment
from orderweb.services import order_create
from temporal_app.client import TemporalUnavailable, client_thread
from temporal_app.contracts import LineItem, OrderState

POLL_SECONDS = 0.5


def vm_rss_mb(pid: int) -> Optional[float]:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Command(BaseCommand):
    help = "Park many orders in review; measure memory, approval latency and a worker restart (JSON last)."

    def add_arguments(self, parser):
        parser.add_argument("--parked", type=int, default=10_000, help="Orders left waiting for review.")
        parser.add_argument("--sample", type=int, default=100, help="Orders approved in each measurement.")
        parser.add_argument("--concurrency", type=int, default=16, help="Threads creating and approving.")
        parser.add_argument(
            "--start-dev-server", action="store_true", help="Start a fresh Temporal dev server for this run only."
        )
        parser.add_argument("--timeout", type=float, default=1800.0, help="Seconds each phase may take.")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, parked: int, sample: int, **options):
        if parked < sample or sample < 1:
            raise CommandError("--parked must be at least --sample, and --sample at least 1")
        server = bench_dev_server() if options["start_dev_server"] else None
        try:
            with AutovacuumStandIn(say=self.say):
                result = self._run(parked, sample, options)
        finally:
            if server is not None:
                stop_process(server[0])
                server[1].cleanup()
        self.stdout.write(json.dumps(result))
        if result["lost"]:
            raise CommandError(f"{result['lost']} orders were not where they should be: {result['lost_examples']}")

    def _run(self, parked: int, sample: int, options: dict[str, Any]) -> dict[str, Any]:
        check_temporal()
        self.reviewer = bench_reviewer()
        self.options = options
        self.pool = ThreadPoolExecutor(options["concurrency"], thread_name_prefix="bench-parked")
        workers = Workers(None)
        workers.wait_ready(120)
        try:
            prefix = f"PARK-{uuid.uuid4().hex[:6].upper()}"
            self.say(f"baseline: {sample} orders, nothing else waiting")
            baseline_ids = [f"{prefix}-B{i:05d}" for i in range(sample)]
            self._create(baseline_ids, "baseline orders")
            self._wait_for(baseline_ids, OrderState.AWAITING_MANUAL_REVIEW, "baseline orders in review")
            baseline = self._approve(baseline_ids)

            self.say(f"parking {parked} orders")
            parked_ids = [f"{prefix}-P{i:05d}" for i in range(parked)]
            started = time.monotonic()
            self._create(parked_ids, "parked orders")
            self._wait_for(parked_ids, OrderState.AWAITING_MANUAL_REVIEW, "parked orders in review")
            park_seconds = time.monotonic() - started
            memory = {"rss_mb": vm_rss_mb(workers.child.pid), "peak_rss_mb": workers.peak_rss_mb()}

            self.say(f"approving {sample} of the parked orders")
            sampled = parked_ids[:: max(1, parked // sample)][:sample]
            loaded = self._approve(sampled)

            self.say("restarting the workers with everything parked")
            restart_begin = time.monotonic()
            workers.stop()
            workers = Workers(None)
            workers.wait_ready(120)
            ready_after = time.monotonic() - restart_begin
            first = [oid for oid in parked_ids if oid not in set(sampled)][0]
            after_restart = self._approve([first])
            first_approval_after = time.monotonic() - restart_begin

            approved = set(baseline_ids) | set(sampled) | {first}
            lost = self._audit(baseline_ids + parked_ids, approved)
            return {
                "parked": parked,
                "sample": sample,
                "park_seconds": round(park_seconds, 1),
                "parked_per_s": round(parked / park_seconds, 1),
                "worker_rss_mb_with_all_parked": _round(memory["rss_mb"]),
                "worker_peak_rss_mb": _round(memory["peak_rss_mb"]),
                "restarted_worker_peak_rss_mb": _round(workers.peak_rss_mb()),
                "approve_to_charged_ms_baseline": baseline,
                "approve_to_charged_ms_with_parked": loaded,
                "p95_ratio": round(loaded["p95"] / baseline["p95"], 2) if baseline["p95"] else None,
                "restart_ready_s": round(ready_after, 2),
                "restart_first_approval_charged_s": round(first_approval_after, 2),
                "first_approval_after_restart_ms": after_restart["p50"],
                "lost": len(lost),
                "lost_examples": lost[:5],
                "temporal_address": settings.TEMPORAL_ADDRESS,
            }
        finally:
            for _ in range(options["concurrency"]):
                self.pool.submit(connection.close)
            self.pool.shutdown(wait=True)
            workers.stop()

    # -- phases ---------------------------------------------------------------------------------

    def say(self, message: str) -> None:
        self.stderr.write(f"[{time.strftime('%H:%M:%S')}] {message}")

    def _create(self, ids: list[str], what: str) -> None:
        errors: dict[str, str] = {}

        def create(order_id: str) -> None:
            try:
                order_create(
                    order_id=order_id,
                    address=f"{order_id} Parking Lane, Springfield",
                    line_items=[LineItem("SKU-PARK", "Parked widget", 1, "9.99")],
                    customer="bench",
                    user=self.reviewer,
                    source=OrderEvent.Source.COMMAND,
                )
            except Exception as err:  # noqa: BLE001  (reported below, never swallowed)
                errors[order_id] = f"{type(err).__name__}: {err}"
            finally:
                close_old_connections()

        with tqdm(
            total=len(ids),
            desc=f"creating {what}",
            unit="order",
            file=sys.stderr,
            disable=self.options["no_progress"],
            dynamic_ncols=True,
        ) as progress:
            for future in [self.pool.submit(create, order_id) for order_id in ids]:
                future.result()
                progress.update(1)
        if errors:
            raise CommandError(f"{len(errors)} orders could not be created, e.g. {next(iter(errors.items()))}")

    def _wait_for(self, ids: Iterable[str], status: str, what: str) -> None:
        ids = list(ids)
        deadline = time.monotonic() + self.options["timeout"]
        with tqdm(
            total=len(ids),
            desc=f"waiting: {what}",
            unit="order",
            file=sys.stderr,
            disable=self.options["no_progress"],
            dynamic_ncols=True,
        ) as progress:
            done = 0
            while done < len(ids):
                if time.monotonic() > deadline:
                    raise CommandError(f"{len(ids) - done} of {len(ids)} {what} after {self.options['timeout']:g} s")
                time.sleep(POLL_SECONDS)
                count = sum(
                    Order.objects.filter(order_id__in=chunk, status=status).count() for chunk in _chunks(ids, 1000)
                )
                progress.update(count - done)
                done = count

    def _approve(self, ids: list[str]) -> dict[str, Optional[float]]:
        """Approve through the review UI's path, wait for the charges; approve -> charged ms."""
        approve = approver()
        sent: dict[str, float] = {}
        problems: dict[str, str] = {}
        lock = threading.Lock()

        def decide(order_id: str) -> None:
            try:
                order = Order.objects.get(order_id=order_id)
                with lock:
                    sent[order_id] = time.time()
                problem = approve(order=order, user=self.reviewer)
                if problem:
                    problems[order_id] = problem
            except TemporalUnavailable:
                pass  # sent, answer late: the charge below still tells when it happened
            finally:
                close_old_connections()

        for future in [self.pool.submit(decide, order_id) for order_id in ids]:
            future.result()
        if problems:
            raise CommandError(f"{len(problems)} approvals refused, e.g. {next(iter(problems.items()))}")
        self._wait_for(ids, OrderState.COMPLETED, "approved orders completed")
        charged = dict(
            Payment.objects.filter(order__order_id__in=ids, kind=Payment.Kind.CHARGE).values_list(
                "order__order_id", "created_at"
            )
        )
        latencies = [(charged[oid].timestamp() - at) * 1000 for oid, at in sent.items() if oid in charged]
        return {"p50": _round(percentile(latencies, 50)), "p95": _round(percentile(latencies, 95)), "n": len(latencies)}

    def _audit(self, ids: list[str], approved: set[str]) -> list[str]:
        """Every order where it should be, in Postgres and in Temporal."""
        rows = {}
        for chunk in _chunks(ids, 1000):
            rows.update(Order.objects.filter(order_id__in=chunk).values_list("order_id", "status"))
        lost = [
            f"{oid}: {rows.get(oid)}"
            for oid in ids
            if rows.get(oid) != (OrderState.COMPLETED if oid in approved else OrderState.AWAITING_MANUAL_REVIEW)
        ]

        async def waiting(client) -> int:
            return (
                await client.count_workflows(
                    'WorkflowType = "OrderWorkflow" AND ExecutionStatus = "Running" '
                    'AND OrderStatus = "awaiting_manual_review"'
                )
            ).count

        in_temporal = client_thread.run(waiting, timeout=60)
        expected = sum(1 for oid in ids if oid not in approved)
        if in_temporal < expected:
            lost.append(f"Temporal shows {in_temporal} workflows awaiting review, {expected} expected")
        return lost


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _round(value: Optional[float]) -> Optional[float]:
    return round(value, 1) if value is not None else None
