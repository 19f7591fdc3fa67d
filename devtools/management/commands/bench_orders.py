"""python manage.py bench_orders --orders N [--use-running-workers] [--compare-bare PATH] [--rounds R]

End-to-end throughput of the real system against the Temporal server at TEMPORAL_ADDRESS:
N orders created through ``order_create`` (the service every entry point uses: row, audit event,
workflow start after commit), each approved through ``review_decide`` (what the review UI calls:
audit, then the DecideReview Workflow Update) as soon as the projection shows it awaiting
review, and followed until Postgres shows it completed. All N are in flight at once, like the
bare baseline's ``asyncio.gather``.

The last line printed is one JSON object: orders, seconds, orders_per_s,
approve_to_charged_ms {p50, p95} (approval sent -> charge row written by the worker),
peak_worker_rss_mb (VmHWM of the worker process), temporal_actions_per_order (Temporal Cloud's
billable Actions in one completed order's histories, devtools/actions.py). With ``--compare-bare`` the bare-engine
baseline runs on the same server in the same invocation, alternating with ours, and the JSON
also holds its figure and the ratio (medians over the rounds).
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections, connection
from temporalio.client import WorkflowUpdateRPCTimeoutOrCancelledError
from tqdm import tqdm

from devtools.actions import order_actions
from devtools.bench import (
    AutovacuumStandIn,
    Workers,
    approver,
    bench_dev_server,
    bench_reviewer,
    check_temporal,
    percentile,
    running_worker_pids,
    vm_hwm_mb,
)
from devtools.supervise import stop_process
from orderweb.models import Order, OrderEvent, Payment
from orderweb.services import order_create
from temporal_app.client import TemporalUnavailable
from temporal_app.contracts import TERMINAL_STATES, LineItem, OrderState

POLL_SECONDS = 0.1
BARE_RESULT = re.compile(r"(\d+) workflows completed in ([\d.]+) s -> ([\d.]+) workflows/s")

NOT_ALL_COMPLETED = "{failed} of {orders} orders did not complete (first: {example})"


class Command(BaseCommand):
    help = "Run N orders end to end (order_create -> review approval -> completed) and print JSON."

    def add_arguments(self, parser):
        parser.add_argument("--orders", type=int, default=100, help="Orders per round (default: 100).")
        parser.add_argument("--rounds", type=int, default=1, help="Rounds; figures are medians (default: 1).")
        parser.add_argument(
            "--use-running-workers",
            action="store_true",
            help="Do not start workers; use those already polling the task queues.",
        )
        parser.add_argument(
            "--worker-threads",
            type=int,
            default=None,
            help="--threads for the workers this command starts (default: the settings').",
        )
        parser.add_argument(
            "--concurrency", type=int, default=16, help="Threads creating and approving orders (default: 16)."
        )
        parser.add_argument(
            "--compare-bare",
            metavar="PATH",
            default=None,
            help="Also run the bare-engine baseline script with N, alternating rounds.",
        )
        parser.add_argument(
            "--start-dev-server",
            action="store_true",
            help="Start a fresh Temporal dev server (temporary db) for this run only, "
            "instead of using TEMPORAL_ADDRESS.",
        )
        parser.add_argument("--timeout", type=float, default=600.0, help="Seconds a round may take.")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")

    def handle(self, *args, **options):
        orders = options["orders"]
        if orders < 1 or options["rounds"] < 1 or options["concurrency"] < 1:
            raise CommandError("--orders, --rounds and --concurrency must be at least 1")
        server = self._start_dev_server() if options["start_dev_server"] else None
        try:
            with AutovacuumStandIn(say=self.stderr.write):
                self._run(orders, options)
        finally:
            if server is not None:
                stop_process(server[0])
                server[1].cleanup()

    def _start_dev_server(self):
        server = bench_dev_server()
        self.stderr.write(f"started a Temporal dev server at {settings.TEMPORAL_ADDRESS}")
        return server

    def _run(self, orders: int, options: dict[str, Any]) -> None:
        self._check_temporal()
        reviewer = self._bench_reviewer()
        workers = None
        if not options["use_running_workers"]:
            workers = Workers(options["worker_threads"])
            workers.wait_ready(120)
        rounds: list[dict[str, Any]] = []
        bare: list[float] = []
        # One pair of pools for all rounds: each thread keeps one database connection.
        creators = ThreadPoolExecutor(options["concurrency"], thread_name_prefix="bench-create")
        approvers = ThreadPoolExecutor(options["concurrency"], thread_name_prefix="bench-approve")
        try:
            for index in range(options["rounds"]):
                rounds.append(self._round(orders, reviewer, options, index, creators, approvers))
                if options["compare_bare"]:
                    bare.append(self._bare(options["compare_bare"], orders))
            peak = workers.peak_rss_mb() if workers else self._running_workers_peak()
        finally:
            for pool in (creators, approvers):
                for _ in range(options["concurrency"]):
                    pool.submit(connection.close)
                pool.shutdown(wait=True)
            if workers:
                workers.stop()
        result = self._summary(orders, rounds, bare, peak, options)
        result.update(self._actions(rounds))
        self.stdout.write(json.dumps(result))
        failed = sum(r["failed"] for r in rounds)
        if failed:
            raise CommandError(
                NOT_ALL_COMPLETED.format(
                    failed=failed,
                    orders=orders * len(rounds),
                    example=next(r["example_failure"] for r in rounds if r["failed"]),
                )
            )

    # -- set-up ------------------------------------------------------------------------------

    def _check_temporal(self) -> None:
        check_temporal()

    def _bench_reviewer(self):
        return bench_reviewer()

    def _running_workers_peak(self) -> Optional[float]:
        peaks = [vm_hwm_mb(pid) for pid in running_worker_pids()]
        peaks = [p for p in peaks if p is not None]
        return max(peaks) if peaks else None

    # -- one round ---------------------------------------------------------------------------

    def _round(
        self,
        orders: int,
        reviewer,
        options: dict[str, Any],
        index: int,
        creators: ThreadPoolExecutor,
        approvers: ThreadPoolExecutor,
    ) -> dict[str, Any]:
        prefix = f"BENCH-{uuid.uuid4().hex[:6].upper()}"
        ids = [f"{prefix}-{i:05d}" for i in range(orders)]
        approve = _approver()
        created_errors: dict[str, str] = {}
        approve_sent: dict[str, float] = {}  # wall clock, to compare with the worker's timestamps
        approve_errors: dict[str, str] = {}
        unconfirmed: list[str] = []
        lock = threading.Lock()

        def create(order_id: str) -> None:
            try:
                order_create(
                    order_id=order_id,
                    address=f"{order_id} Bench Street, Springfield",
                    line_items=[LineItem("SKU-BENCH", "Benchmark widget", 1, "9.99")],
                    customer="bench",
                    user=reviewer,
                    source=OrderEvent.Source.COMMAND,
                )
            except Exception as err:  # noqa: BLE001  (reported in the JSON, never swallowed)
                created_errors[order_id] = f"{type(err).__name__}: {err}"
            finally:
                close_old_connections()

        def decide(order_id: str) -> None:
            try:
                order = Order.objects.get(order_id=order_id)
                with lock:
                    approve_sent[order_id] = time.time()
                problem = approve(order=order, user=reviewer)
                if problem:
                    approve_errors[order_id] = problem
            except (TemporalUnavailable, WorkflowUpdateRPCTimeoutOrCancelledError):
                # The Update was sent but its answer did not come in time (a loaded machine):
                # like a reviewer reloading the page, keep watching the order.
                with lock:
                    unconfirmed.append(order_id)
            except Exception as err:  # noqa: BLE001
                approve_errors[order_id] = f"{type(err).__name__}: {err}"
            finally:
                close_old_connections()

        progress = tqdm(
            total=orders,
            desc=f"round {index + 1}",
            unit="order",
            file=sys.stderr,
            disable=options["no_progress"],
            dynamic_ncols=True,
        )
        waiting_review = set(ids)
        waiting_end: set[str] = set()
        finished: dict[str, str] = {}
        started = time.perf_counter()
        deadline = time.monotonic() + options["timeout"]
        for order_id in ids:
            creators.submit(create, order_id)
        # One cheap query per tick for the whole round (ids and states only), like a
        # reviewer's queue page: this loop shares the CPU with what it measures.
        round_orders = Order.objects.filter(order_id__startswith=f"{prefix}-")
        while (waiting_review or waiting_end) and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
            waiting_review -= created_errors.keys()
            waiting_end -= approve_errors.keys()
            states = dict(
                round_orders.exclude(status__in=[OrderState.STARTED, OrderState.PROCESSING]).values_list(
                    "order_id", "status"
                )
            )
            for order_id in [oid for oid in waiting_review if oid in states]:
                waiting_review.discard(order_id)
                if states[order_id] == OrderState.AWAITING_MANUAL_REVIEW:
                    waiting_end.add(order_id)
                    approvers.submit(decide, order_id)
                else:  # failed or cancelled before review
                    finished[order_id] = states[order_id]
                    progress.update(1)
            for order_id in [oid for oid in waiting_end if states.get(oid) in TERMINAL_STATES]:
                waiting_end.discard(order_id)
                finished[order_id] = states[order_id]
                progress.update(1)
        seconds = time.perf_counter() - started
        progress.close()
        connection.close()

        charged = dict(
            Payment.objects.filter(order__order_id__in=ids, kind=Payment.Kind.CHARGE).values_list(
                "order__order_id", "created_at"
            )
        )
        latencies = [
            (charged[order_id].timestamp() - sent) * 1000
            for order_id, sent in approve_sent.items()
            if order_id in charged
        ]
        completed = sum(1 for status in finished.values() if status == OrderState.COMPLETED)
        sample = next((oid for oid, status in finished.items() if status == OrderState.COMPLETED), None)
        problems = {**created_errors, **approve_errors}
        problems.update({oid: f"ended {status}" for oid, status in finished.items() if status != OrderState.COMPLETED})
        problems.update({oid: "timed out" for oid in (waiting_review | waiting_end) - problems.keys()})
        return {
            "seconds": seconds,
            "completed": completed,
            "failed": orders - completed,
            "example_failure": next(iter(problems.items()), None),
            "latencies": latencies,
            "unconfirmed": len(unconfirmed),
            "sample": sample,  # a completed order, whose histories the summary counts Actions in
        }

    def _actions(self, rounds: list[dict[str, Any]]) -> dict[str, Any]:
        """Temporal Cloud Actions of one completed order (its history and its child's), by kind
        (devtools/actions.py): after the measured rounds, so they cost the figures nothing."""
        sample = next((r["sample"] for r in reversed(rounds) if r["sample"]), None)
        if sample is None:
            return {}
        counts = order_actions(Order.objects.get(order_id=sample).workflow_id)
        return {"temporal_actions_per_order": sum(counts.values()), "temporal_actions_by_kind": dict(counts)}

    def _bare(self, path: str, orders: int) -> float:
        env = {**os.environ, "TEMPORAL_ADDRESS": settings.TEMPORAL_ADDRESS}
        result = subprocess.run(
            [sys.executable, path, str(orders)], env=env, capture_output=True, text=True, timeout=900
        )
        match = BARE_RESULT.search(result.stdout)
        if result.returncode != 0 or not match:
            raise CommandError(f"the bare baseline failed: {(result.stderr or result.stdout).strip()[-300:]}")
        self.stderr.write(f"bare baseline: {match.group(0)}")
        return float(match.group(3))

    def _summary(self, orders, rounds, bare, peak, options) -> dict[str, Any]:
        rates = [r["completed"] / r["seconds"] for r in rounds]
        median_round = sorted(rounds, key=lambda r: r["completed"] / r["seconds"])[len(rounds) // 2]
        latencies = [ms for r in rounds for ms in r["latencies"]]
        result: dict[str, Any] = {
            "orders": orders,
            "rounds": len(rounds),
            "completed": sum(r["completed"] for r in rounds),
            "seconds": round(median_round["seconds"], 2),
            "orders_per_s": round(statistics.median(rates), 2),
            "orders_per_s_rounds": [round(rate, 2) for rate in rates],
            "approve_to_charged_ms": {
                "p50": round(percentile(latencies, 50), 1) if latencies else None,
                "p95": round(percentile(latencies, 95), 1) if latencies else None,
            },
            "peak_worker_rss_mb": round(peak, 1) if peak is not None else None,
            # Approvals whose Update answer took longer than TEMPORAL_RPC_TIMEOUT_SECONDS.
            "approvals_unconfirmed": sum(r["unconfirmed"] for r in rounds),
            "workers": "running" if options["use_running_workers"] else "started",
            "temporal_address": settings.TEMPORAL_ADDRESS,
        }
        if bare:
            result["bare_orders_per_s"] = round(statistics.median(bare), 2)
            result["bare_orders_per_s_rounds"] = [round(rate, 2) for rate in bare]
            result["ratio_to_bare"] = round(result["orders_per_s"] / result["bare_orders_per_s"], 2)
            # Each round next to the bare run that followed it (the fairest pairs on a busy machine).
            result["ratio_rounds"] = [
                round(ours / theirs, 2) for ours, theirs in zip(rates, bare, strict=False)
            ]  # a round may lack its bare run
        return result


def _approver():
    return approver()
