"""The chaos run: many orders through the real system while it is being broken, then an audit.

Used by ``python manage.py chaos``. The run owns every component it breaks, so it never disturbs
anyone else on the machine: its own embedded Postgres (``<workdir>/pg``), its own Temporal dev
server (``<workdir>/temporal.db``, free ports) and its own worker processes
(``manage.py run_workers``) started with ``ACTIVITY_FAULT_RATE`` set.

Process layout: Django binds its database when settings load, so ``manage.py chaos`` is a
launcher: it starts the embedded Postgres, then re-runs itself (``--inner``) with
``DATABASE_URL``/``TEMPORAL_ADDRESS`` pointing at the chaos components. The inner process starts
the Temporal server and the workers, drives the orders, injects the faults and audits the result.

The pieces: ``scenarios`` (what each order does), ``components`` (the Postgres, Temporal and
workers the run breaks), ``logaudit`` and ``checks`` (the audit, each check tested on its own in
tests/devtools/test_chaos.py) and this module, the run itself.
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from devtools.chaos import webhooks
from devtools.chaos.checks import (
    Check,
    check_actions_once,
    check_charges,
    check_dispatch,
    check_escalations,
    check_every_order_started,
    check_flags,
    check_four_eyes,
    check_logs,
    check_outcomes_expected,
    check_payments_match_ledger,
    check_refunds,
    check_review_tasks,
    check_task_failures,
    check_temporal_matches_postgres,
    check_terminal,
    check_workflows_closed,
    format_table,
    gather_outcomes,
)
from devtools.chaos.components import PostgresControl, TemporalControl, WorkerPool
from devtools.chaos.logaudit import INJECTED, LogAudit, scan_worker_log
from devtools.chaos.scenarios import (
    ADDRESS_CHANGE,
    APPROVE_REJECT_CANCEL,
    APPROVE_SIGNAL_TWICE,
    APPROVE_UPDATE,
    AT_REVIEW,
    CANCEL_AFTER_APPROVE,
    CANCELLED,
    CLIENT_BAD_ADDRESS,
    COMPLETED,
    DISPATCH_FAILURE,
    EARLY_APPROVE,
    EARLY_CANCEL,
    ESCALATE_AFTER,
    ESCALATION_KILL,
    ESCALATION_TIMEOUT_SECONDS,
    FAILED,
    FORGED_REPORT,
    FOUR_EYES,
    FOUR_EYES_AMOUNT,
    FOUR_EYES_SAME,
    FOUR_EYES_TWO,
    FOUR_EYES_UNIT_PRICE,
    MALFORMED_MESSAGES,
    PAYMENT_DECLINE,
    RACE_SIGNALS,
    RACE_UPDATES,
    REJECT,
    REVIEW_TIMEOUT,
    REVIEW_TIMEOUT_SECONDS,
    REVIEWER,
    SECOND_REVIEWER,
    STAFF,
    TEMPORAL_CANCEL,
    TERMINATE_RECONCILE,
    ChaosOrder,
    scenarios_for,
)
from devtools.supervise import Supervisor


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
            with contextlib.suppress(Exception):  # the connection is already broken; closing it may fail too
                connection.close()
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
    # Temporal stopped this long while orders keep being saved (issue 19): the outbox sweep must
    # start every one of them afterwards. 0: no such outage.
    temporal_outage_seconds: float = 90.0
    sweep_batch: int = 0  # the workers' ORDER_START_SWEEP_BATCH; 0: their default (100)
    sweep_seconds: float = 10.0  # the workers' ORDER_START_SWEEP_SECONDS
    escalation_kills: int = 2  # SIGKILLs timed to fall on an escalation (the escalation_kill scenario)
    webhook_hangs: int = 1  # the webhook receiver hangs (devtools/chaos/webhooks.py)
    workers_down: int = 1  # every worker stopped past the webhook lookback
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
        self.outage_until = 0.0  # monotonic end of the Temporal outage in progress, or 0
        self.outage_started = 0.0
        self.temporal_outages: list[str] = []
        self.saved_during_outage = 0
        self.left_to_sweep = 0
        self.started_at = time.monotonic()
        self.supervisor = Supervisor(say=self.say)
        self.temporal = TemporalControl(
            config.workdir / "temporal.db", config.temporal_port, config.ui_port, self.logdir, self.supervisor
        )
        self.postgres = PostgresControl(Path(os.environ["CHAOS_PGDATA"]))
        # Webhooks (issue 19): the run's own receiver; its hangs and the workers' outages.
        self.receiver = webhooks.ChaosReceiver()
        self.receiver_hangs: list[tuple[datetime, datetime]] = []
        self.hang_log_windows: list[tuple[datetime, datetime]] = []  # local time, as the logs stamp
        self.fault_threads: list[threading.Thread] = []
        self.workers_outages: list[tuple[datetime, datetime]] = []
        env = {
            **os.environ,
            "ACTIVITY_FAULT_RATE": str(config.fault_rate),
            "CONN_MAX_AGE": "0",
            # The workers' reconciler runs often here, so terminated workflows are flagged in time.
            "RECONCILE_INTERVAL_SECONDS": "5",
            "RECONCILE_GRACE_SECONDS": "5",
            # The review team's rules the scenarios exercise: four eyes from 1,000.00, escalation
            # at half the review timeout (the 4 s timeouts escalate too).
            "REVIEW_FOUR_EYES_AMOUNT": FOUR_EYES_AMOUNT,
            "REVIEW_ESCALATE_AFTER": str(ESCALATE_AFTER),
            "REVIEW_ESCALATION_EMAILS": "chaos-leads@localhost",
            "EMAIL_URL": "dummymail://",
            # The outbox sweep starts what was saved while Temporal was down.
            "ORDER_START_SWEEP_SECONDS": str(config.sweep_seconds),
            **webhooks.worker_env(self.receiver.url),
        }
        if config.sweep_batch:
            env["ORDER_START_SWEEP_BATCH"] = str(config.sweep_batch)
        self.pool = WorkerPool(config.workers, env, self.logdir, config.threads, self.supervisor)

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

    def update(self, order: ChaosOrder, key: str, name: str, arg: Any) -> None:
        """Send a Workflow Update as the web app does; keep the workflow's answer."""
        from temporalio.service import RPCError

        from temporal_app.client import ActionRefused, TemporalUnavailable, order_workflow_update
        from temporal_app.contracts import RefusalCode

        deadline = time.monotonic() + 300
        lost = False
        while True:
            try:
                result = order_workflow_update(order.workflow_id, name, arg)
                order.answers[key] = (result.accepted, result.code, result.message)
                return
            except ActionRefused as err:
                duplicate = lost and err.code == RefusalCode.DUPLICATE_ACTION
                order.answers[key] = None if duplicate else (False, err.code.value, err.message)
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

    def signal_raw(self, order: ChaosOrder, name: str, args: list) -> None:
        """A signal with whatever arguments, as any client may send."""
        self.temporal_call(lambda c: c.get_workflow_handle(order.workflow_id).signal(name, args=args))

    # -- creation --------------------------------------------------------------------------

    def create(self, order: ChaosOrder) -> None:
        from django.core.exceptions import ValidationError
        from temporalio.exceptions import WorkflowAlreadyStartedError

        from orderweb.models import SimulatedFault
        from orderweb.services import order_create
        from orderweb.simulators import fault_plan
        from temporal_app.contracts import ORDER_TASK_QUEUE, LineItem

        if order.scenario == CLIENT_BAD_ADDRESS:

            async def start(client: Any) -> None:
                from temporal_app.workflows import OrderWorkflow

                with contextlib.suppress(WorkflowAlreadyStartedError):
                    await client.start_workflow(
                        OrderWorkflow.run,
                        args=[order.order_id, "   "],
                        id=order.workflow_id,
                        task_queue=ORDER_TASK_QUEUE,
                    )

            self.temporal_call(start)
            order.created = True
            return
        if order.scenario == DISPATCH_FAILURE:
            db_retry(lambda: fault_plan(target="carrier_dispatched", order_ref=order.order_id, times=3))
        if order.scenario == PAYMENT_DECLINE:
            db_retry(
                lambda: fault_plan(target="payment_charged", order_ref=order.order_id, mode=SimulatedFault.Mode.DECLINE)
            )
        timeout = {REVIEW_TIMEOUT: REVIEW_TIMEOUT_SECONDS, ESCALATION_KILL: ESCALATION_TIMEOUT_SECONDS}.get(
            order.scenario
        )
        line = (
            LineItem("SKU-CHAOS-XL", "Chaos safe", 1, FOUR_EYES_UNIT_PRICE)
            if order.scenario in FOUR_EYES
            else LineItem("SKU-CHAOS", "Chaos widget", 1 + len(order.order_id) % 3, "9.99")
        )
        order.created_at = time.monotonic()
        try:
            db_retry(
                lambda: order_create(
                    order_id=order.order_id,
                    address=order.address,
                    customer="chaos",
                    line_items=[line],
                    review_timeout_seconds=timeout,
                )
            )
        except ValidationError as err:
            if err.code != "order_exists":  # a retry after a lost commit acknowledgement
                raise
            self.notes["order_create retried after a lost commit"] += 1
            with self.lock:
                self.left_to_sweep += 1
        except Exception as err:  # Temporal unreachable after commit: the row is saved
            # As the web tells its user: nothing needs to be sent again. The workers' outbox sweep
            # starts it (the audit's "every saved order started" checks that it did).
            self.notes[f"workflow start failed after commit, left to the sweep ({type(err).__name__})"] += 1
            with self.lock:
                self.left_to_sweep += 1
        order.created = True

    def create_then_early_action(self, order: ChaosOrder) -> None:
        self.create(order)
        if order.scenario in (EARLY_APPROVE, EARLY_CANCEL):
            order.early_done = True
            self.early_action(order)

    # -- actions ---------------------------------------------------------------------------

    def early_action(self, order: ChaosOrder) -> None:
        from temporal_app.contracts import CancelRequest, ReviewDecision, Signals

        if order.scenario == EARLY_APPROVE:
            decision = ReviewDecision("approve", REVIEWER, "early approval", f"{order.order_id}:approve")
            self.signal(order, Signals.COMPLETE_MANUAL_REVIEW, decision)
            self.signal(order, Signals.COMPLETE_MANUAL_REVIEW, decision)  # duplicate, same action id
            self.notes["early signals"] += 2
        elif order.scenario == EARLY_CANCEL:
            self.signal(
                order, Signals.CANCEL_ORDER, CancelRequest("chaos: early cancel", STAFF, f"{order.order_id}:cancel")
            )
            self.notes["early signals"] += 1

    def review_action(self, order: ChaosOrder) -> None:
        from temporal_app.contracts import (
            AddressChange,
            CancelRequest,
            ReviewDecision,
            Signals,
            Updates,
        )

        approve = ReviewDecision("approve", REVIEWER, "", f"{order.order_id}:approve")
        cancel = CancelRequest("chaos: cancelled by staff", STAFF, f"{order.order_id}:cancel")
        s = order.scenario
        if s in (APPROVE_UPDATE, DISPATCH_FAILURE, PAYMENT_DECLINE):
            self.update(order, "approve", Updates.DECIDE_REVIEW, approve)
        elif s == REJECT:
            reject = ReviewDecision("reject", REVIEWER, "chaos: not plausible", f"{order.order_id}:reject")
            self.update(order, "reject", Updates.DECIDE_REVIEW, reject)
        elif s == APPROVE_SIGNAL_TWICE:
            self.signal(order, Signals.COMPLETE_MANUAL_REVIEW, approve)
            self.signal(order, Signals.COMPLETE_MANUAL_REVIEW, approve)
            self.notes["duplicate signals"] += 1
        elif s == ADDRESS_CHANGE:
            change = AddressChange(order.new_address, STAFF, f"{order.order_id}:address")
            self.update(order, "address", Updates.CHANGE_ADDRESS, change)
            self.update(order, "approve", Updates.DECIDE_REVIEW, approve)
        elif s == CANCEL_AFTER_APPROVE:
            self.update(order, "approve", Updates.DECIDE_REVIEW, approve)
            self.update(order, "cancel", Updates.REQUEST_CANCEL, cancel)
        elif s == MALFORMED_MESSAGES:
            self.signal_raw(order, Signals.COMPLETE_MANUAL_REVIEW, ["approve", "twice"])
            self.signal_raw(order, Signals.UPDATE_ADDRESS, [])
            self.signal_raw(order, Signals.CANCEL_ORDER, ["not a request"])
            self.update(order, "malformed", Updates.DECIDE_REVIEW, "approve")
            self.update(order, "approve", Updates.DECIDE_REVIEW, approve)
            self.notes["malformed messages sent"] += 4
        elif s == FORGED_REPORT:
            self.signal_raw(order, Signals.SHIPPING_REPORT, [{"kind": "dispatch_failed", "message": "forged"}])
            self.update(order, "approve", Updates.DECIDE_REVIEW, approve)
            self.notes["forged shipping reports"] += 1
        elif s == TEMPORAL_CANCEL:
            self.temporal_call(lambda c: c.get_workflow_handle(order.workflow_id).cancel())
            self.notes["cancels requested in Temporal"] += 1
        elif s == TERMINATE_RECONCILE:
            self.temporal_call(lambda c: c.get_workflow_handle(order.workflow_id).terminate("chaos: operator"))
            self.notes["workflows terminated"] += 1
        elif s in (RACE_UPDATES, RACE_SIGNALS):
            if s == RACE_UPDATES:
                first = partial(self.update, order, "approve", Updates.DECIDE_REVIEW, approve)
                second = partial(self.update, order, "cancel", Updates.REQUEST_CANCEL, cancel)
            else:
                first = partial(self.signal, order, Signals.COMPLETE_MANUAL_REVIEW, approve)
                second = partial(self.signal, order, Signals.CANCEL_ORDER, cancel)
            self.together(first, second)
            self.notes["concurrent approve+cancel"] += 1
        elif s == APPROVE_REJECT_CANCEL:
            reject = ReviewDecision(
                "reject", REVIEWER, "chaos: on second thoughts", f"{order.order_id}:reject", "suspected_fraud"
            )
            self.together(
                lambda: self.update(order, "approve", Updates.DECIDE_REVIEW, approve),
                lambda: self.update(order, "reject", Updates.DECIDE_REVIEW, reject),
                lambda: self.update(order, "cancel", Updates.REQUEST_CANCEL, cancel),
            )
            self.notes["concurrent approve+reject+cancel"] += 1
        elif s == FOUR_EYES_SAME:
            # One person twice at once (two action ids, a double submit from two tabs): one counts.
            self.together(
                lambda: self.update(
                    order,
                    "approve_a",
                    Updates.DECIDE_REVIEW,
                    ReviewDecision("approve", REVIEWER, "", f"{order.order_id}:approve-a"),
                ),
                lambda: self.update(
                    order,
                    "approve_b",
                    Updates.DECIDE_REVIEW,
                    ReviewDecision("approve", REVIEWER, "", f"{order.order_id}:approve-b"),
                ),
            )
            self.update(
                order,
                "approve_second",
                Updates.DECIDE_REVIEW,
                ReviewDecision("approve", SECOND_REVIEWER, "", f"{order.order_id}:approve-c"),
            )
            self.notes["four-eyes approvals at once by one person"] += 1
        elif s == FOUR_EYES_TWO:
            self.together(
                lambda: self.update(
                    order,
                    "approve_a",
                    Updates.DECIDE_REVIEW,
                    ReviewDecision("approve", REVIEWER, "", f"{order.order_id}:approve-a"),
                ),
                lambda: self.update(
                    order,
                    "approve_b",
                    Updates.DECIDE_REVIEW,
                    ReviewDecision("approve", SECOND_REVIEWER, "", f"{order.order_id}:approve-b"),
                ),
            )
            self.notes["four-eyes approvals at once by two people"] += 1
        elif s == ESCALATION_KILL:
            self.wait_for_escalation(order)
            self.update(order, "approve", Updates.DECIDE_REVIEW, approve)

    def together(self, *actions: Callable[[], None]) -> None:
        """Run the actions at the same moment (released by a barrier), each on its own thread."""
        barrier = threading.Barrier(len(actions))
        errors: list[BaseException] = []

        def fire(fn: Callable[[], None]) -> None:
            try:
                barrier.wait(10)
                fn()
            except BaseException as err:  # re-raised below, in this thread
                errors.append(err)

        others = [threading.Thread(target=fire, args=(fn,), daemon=True) for fn in actions[1:]]
        for thread in others:
            thread.start()
        fire(actions[0])
        for thread in others:
            thread.join()
        if errors:
            raise errors[0]

    def wait_for_escalation(self, order: ChaosOrder) -> None:
        """Until the escalation is in Postgres (or the review ended: the timeout came first)."""
        from reviews.models import ReviewTask

        # A Temporal outage holds the escalation's timer back for as long as it lasts.
        deadline = time.monotonic() + 2 * ESCALATION_TIMEOUT_SECONDS + 60 + self.config.temporal_outage_seconds
        while time.monotonic() < deadline:
            task = db_retry(
                lambda: (
                    ReviewTask.objects.filter(order__order_id=order.order_id)
                    .order_by("-pk")
                    .values("status", "escalated_at")
                    .first()
                )
            )
            if task and (task["escalated_at"] or task["status"] != ReviewTask.Status.OPEN):
                return
            time.sleep(0.5)
        raise RuntimeError(f"{order.order_id} was never escalated")

    def shipping_retry(self, order: ChaosOrder, failures: int) -> None:
        from temporal_app.contracts import ShippingRetryRequest, Updates

        request = ShippingRetryRequest(STAFF, f"{order.order_id}:retry:{failures}")
        self.update(order, f"retry{failures}", Updates.RETRY_SHIPPING, request)
        answer = order.answers.get(f"retry{failures}")
        self.notes[
            "staff shipping retries accepted" if answer is None or answer[0] else "staff shipping retries refused"
        ] += 1

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
        plan = [(max(1, int(n * (0.1 + 0.8 * (i + 0.5) / c.worker_kills))), "kill") for i in range(c.worker_kills)]
        plan += [(max(1, int(n * (0.42 + 0.1 * i))), "temporal") for i in range(c.temporal_restarts)]
        plan += [(max(1, int(n * (0.62 + 0.1 * i))), "postgres") for i in range(c.db_outages)]
        plan += [(max(1, int(n * (0.15 + 0.1 * i))), "webhook_hang") for i in range(c.webhook_hangs)]
        plan += [(max(1, int(n * (0.52 + 0.1 * i))), "workers_down") for i in range(c.workers_down)]
        if c.temporal_outage_seconds > 0:
            plan.append((max(1, int(n * 0.2)), "temporal_outage"))
        return sorted(plan)

    def inject(self, kind: str) -> None:
        if kind == "kill" and self.pool.down:
            self.event("SIGKILL skipped: every worker is down")
        elif kind == "kill":
            index = self.rng.randrange(len(self.pool.children))
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
        elif kind == "temporal_outage":
            self.event(
                f"stopping the Temporal dev server for {self.config.temporal_outage_seconds:g} s; "
                "orders are still saved meanwhile"
            )
            self.temporal.stop()
            self.outage_started = time.monotonic()
            self.outage_until = self.outage_started + self.config.temporal_outage_seconds
        elif kind == "postgres":
            start = datetime.now()
            self.event(f"stopping Postgres for {self.config.db_outage_seconds:g} s")
            self.postgres.stop()
            time.sleep(self.config.db_outage_seconds)
            self.postgres.start()
            self.outages.append((start, datetime.now()))
            self.event("Postgres is back")
        elif kind in ("webhook_hang", "workers_down"):
            self.webhook_fault(kind)

    def wait_for_webhook_cursor(self, timeout: float = 120) -> None:
        """The receiver is configured before the first order: the workers' first webhook sweep
        (a schedule's run) sets its mark. Otherwise a Temporal outage early in the run delays that
        sweep past the run's short lookback, and the mark would start after the first orders' status
        changes, as it does for a receiver configured after them."""
        from orderweb.models import WebhookCursor

        deadline = time.monotonic() + timeout
        while not db_retry(lambda: WebhookCursor.objects.filter(url=self.receiver.url).exists()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the workers' webhook sweep set no mark for {self.receiver.url} in {timeout:g} s")
            time.sleep(0.2)

    def webhook_fault(self, kind: str) -> None:
        """Webhook faults run beside the orders (they must go on, and be saved): each ends on a
        thread of its own."""
        from django.utils import timezone

        start, local_start = timezone.now(), datetime.now()
        if kind == "webhook_hang":
            self.event(f"the webhook receiver hangs for {webhooks.HANG_SECONDS:g} s")
            self.receiver.hang(webhooks.HANG_SECONDS)

            def end() -> None:
                time.sleep(webhooks.HANG_SECONDS)
                self.receiver_hangs.append((start, timezone.now()))
                self.hang_log_windows.append((local_start, datetime.now()))
                self.event("the webhook receiver answers again")
        else:
            # Not during a hang: a worker stopped then waits for its hung attempts (the graceful
            # shutdown), which is another fault than this one.
            while time.monotonic() < self.receiver.hang_until:
                time.sleep(0.2)
            self.pool.stop_for_outage()
            start = timezone.now()
            self.event(
                f"every worker SIGKILLed, down for {webhooks.DOWN_SECONDS:g} s "
                f"(the webhook lookback is {webhooks.LOOKBACK_SECONDS:g} s)"
            )

            def end() -> None:
                time.sleep(webhooks.DOWN_SECONDS)
                self.workers_outages.append((start, timezone.now()))  # they poll a few seconds later
                self.pool.start_all()
                self.pool.down = False  # a start refused meanwhile (Postgres down) is restarted
                self.event("the workers are started again")

        thread = threading.Thread(target=end, name=f"chaos-{kind}", daemon=True)
        self.fault_threads.append(thread)
        thread.start()

    # -- main ------------------------------------------------------------------------------

    def run(self) -> int:
        from concurrent.futures import ThreadPoolExecutor

        from django.core.management import call_command

        c = self.config
        self.say(
            f"chaos run: {c.orders} orders, seed {c.seed}, {c.workers} worker processes, "
            f"fault rate {c.fault_rate:.0%}, workdir {c.workdir}"
        )
        call_command("migrate", verbosity=0)
        self.temporal.start()
        self.say(f"Temporal dev server on 127.0.0.1:{c.temporal_port}; starting workers")
        self.pool.start_all()
        try:
            self.pool.wait_ready()
            self.wait_for_webhook_cursor()
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
                self.driver_errors += [
                    f"driver: an action on {o.order_id} ({o.scenario}) was still running at the deadline"
                    for o in self.orders
                    if o.in_flight
                ]
            rows, info = self.audit(finished)
        finally:
            for thread in self.fault_threads:  # a workers' outage ends with their restart
                thread.join(120)
            self.pool.stop_all()
            self.temporal.stop()
            self.receiver.stop()
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
        timeout = (c.timeout or 300 + 2 * c.orders) + c.temporal_outage_seconds
        deadline = time.monotonic() + timeout
        plan = self.plan_faults()
        created = escalation_kills = 0
        next_create = time.monotonic()
        next_poll = next_progress = 0.0
        statuses: dict[str, tuple[str, int, Any]] = {}
        terminal = {COMPLETED, CANCELLED, FAILED}
        while True:
            now = time.monotonic()
            if self.outage_until and now >= self.outage_until:
                self.temporal.start()
                self.outage_until = 0.0
                self.temporal_outages.append(
                    f"{now - self.outage_started:.0f} s, {self.saved_during_outage} orders saved meanwhile"
                )
                self.event(
                    f"Temporal is back after {now - self.outage_started:.0f} s; "
                    f"{self.saved_during_outage} orders were saved meanwhile"
                )
            # One order per pass: when creating falls behind the rate, the loop still polls,
            # reports progress and injects faults between orders.
            if created < c.orders and now >= next_create:
                order = self.orders[created]
                created += 1
                next_create += 1 / c.rate
                if self.outage_until:
                    # Saved while Temporal is down: each save waits for its start to fail, as a web
                    # request would, so they are made side by side (the rate holds).
                    self.saved_during_outage += 1
                    self.submit(
                        executor,
                        order,
                        lambda o=order: self.create_then_early_action(o),
                        "create during the Temporal outage",
                    )
                else:
                    self.create(order)
                    if order.scenario in (EARLY_APPROVE, EARLY_CANCEL):
                        order.early_done = True
                        self.submit(executor, order, lambda o=order: self.early_action(o), "early signal")
            # A restart of Temporal waits for the outage in progress to end; the faults behind it
            # do not (a workers' outage must fall while orders are still being saved).
            for step in [step for step in plan if created >= step[0]]:
                if self.outage_until and step[1] == "temporal":
                    continue
                plan.remove(step)
                self.inject(step[1])
                now = time.monotonic()
            # A worker SIGKILLed as an escalation falls due (its timer fires on the server; the
            # task and the escalation's activity run on whichever worker is up, or after the restart).
            due = [
                o
                for o in self.orders[:created]
                if o.scenario == ESCALATION_KILL
                and not o.killed_at_escalation
                and now >= o.created_at + ESCALATION_TIMEOUT_SECONDS * ESCALATE_AFTER - 0.5
            ]
            for order in due[: max(0, c.escalation_kills - escalation_kills)]:
                order.killed_at_escalation = True
                escalation_kills += 1
                self.event(f"the escalation of {order.order_id} falls due now:")
                self.inject("kill")
                now = time.monotonic()
            for order in due:
                order.killed_at_escalation = True
            self.pool.check_alive()
            if now >= next_poll:
                ids = [o.order_id for o in self.orders[:created]]
                statuses = {
                    oid: (s, f, flagged)
                    for oid, s, f, flagged in db_retry(
                        lambda ids=ids: list(
                            Order.objects.filter(order_id__in=ids).values_list(
                                "order_id", "status", "dispatch_failures", "attention_since"
                            )
                        )
                    )
                }
                for oid, (status, failures, _) in statuses.items():
                    order = self.by_id[oid]
                    if order.in_flight:
                        continue
                    if status == "awaiting_manual_review" and not order.review_done and order.scenario in AT_REVIEW:
                        order.review_done = True
                        self.submit(executor, order, lambda o=order: self.review_action(o), "review action")
                    elif status == "shipping" and failures > order.shipping_retries:
                        order.shipping_retries = failures
                        self.submit(
                            executor, order, lambda o=order, f=failures: self.shipping_retry(o, f), "shipping retry"
                        )
                next_poll = now + 0.5
            # Done: terminal, or flagged by the reconciler (a workflow terminated on purpose).
            done = sum(1 for s, _, flagged in statuses.values() if s in terminal or flagged)
            if now >= next_progress:
                counts = Counter(s for s, _, _ in statuses.values())
                self.say(
                    f"created {created}/{c.orders} | terminal {done} ("
                    + ", ".join(f"{k} {counts[k]}" for k in (COMPLETED, CANCELLED, FAILED))
                    + f") | awaiting review {counts['awaiting_manual_review']}"
                    + f" | in flight {sum(o.in_flight for o in self.orders)}"
                    + f" | worker kills {self.pool.kills} | faults left {len(plan)}"
                )
                next_progress = now + 5
            faults_over = not any(thread.is_alive() for thread in self.fault_threads) and not self.outage_until
            if (
                created == c.orders
                and not plan
                and faults_over
                and done == c.orders
                and not any(o.in_flight for o in self.orders)
            ):
                self.say(f"all {c.orders} orders are terminal in Postgres (or flagged for staff)")
                return True
            if now > deadline:
                self.say(f"gave up waiting after {timeout:g} s")
                return False
            time.sleep(0.1)

    def wait_for_webhooks(self, ids: list[str], timeout: float = 180) -> None:
        """Until every status change of the run was sent (a delivery retried after the receiver's
        hang waits out its backoff), or ``timeout``: the audit then names what is missing."""
        deadline = time.monotonic() + timeout
        while (left := db_retry(lambda: webhooks.undelivered(ids))) and time.monotonic() < deadline:
            time.sleep(1)
        if left:
            self.say(f"{left} status changes still not sent after {timeout:g} s")

    def audit(self, finished: bool) -> tuple[list[Check], list[tuple[str, Any]]]:
        ids = [o.order_id for o in self.orders]
        outcomes, running = self.temporal_call(lambda client: gather_outcomes(client, self.orders), timeout=900)
        # A workflow closes just after its last projection write; the list of running workflows
        # (visibility) lags behind describe, so both must say it closed.
        for _ in range(60):
            if not running and not any(o.execution_status == "RUNNING" for o in outcomes.values()):
                break
            time.sleep(1)
            outcomes, running = self.temporal_call(lambda client: gather_outcomes(client, self.orders), timeout=900)
        self.wait_for_webhooks(ids)
        audit = LogAudit()
        for path in self.pool.logs:
            part = scan_worker_log(
                path.read_text(errors="replace"),
                source=path.name,
                outages=self.outages,
                receiver_hangs=self.hang_log_windows,
            )
            audit.expected.update(part.expected)
            audit.unexpected += part.unexpected
        scenarios = {o.order_id: o.scenario for o in self.orders}
        rows = db_retry(
            lambda: [
                check_terminal(ids, scenarios),
                check_every_order_started(ids, outcomes, self.left_to_sweep),
                check_workflows_closed(outcomes, running, scenarios),
                check_flags(ids, scenarios),
                check_temporal_matches_postgres(outcomes),
                check_outcomes_expected(self.orders),
                check_charges(ids, scenarios),
                check_refunds(ids),
                check_payments_match_ledger(ids),
                check_dispatch(ids),
                check_actions_once(ids),
                check_review_tasks(ids),
                check_escalations(ids, outcomes, scenarios),
                check_four_eyes(ids, scenarios),
                check_task_failures(outcomes),
                webhooks.check_webhooks_delivered(ids, self.receiver.accepted, self.receiver.bad_signatures),
                webhooks.check_orders_went_on_while_the_receiver_hung(ids, self.receiver_hangs),
                webhooks.check_workers_down_past_the_lookback(ids, self.workers_outages, webhooks.LOOKBACK_SECONDS),
                check_logs(audit, self.pool.unexpected_exits, self.driver_errors),
            ]
        )
        statuses = Counter(o.status for o in outcomes.values() if o.status)
        info: list[tuple[str, Any]] = [
            ("orders", f"{len(ids)} ({', '.join(f'{k} {v}' for k, v in statuses.most_common())})"),
            ("scenarios", ", ".join(f"{k} {v}" for k, v in Counter(scenarios.values()).most_common())),
            ("duration", f"{self.elapsed():.0f} s"),
            ("worker processes SIGKILLed", self.pool.kills),
            ("worker starts refused during an outage (restarted)", self.pool.refused_starts),
            ("  of which exited other than with code 1", self.pool.refused_exit_codes or "none"),
            ("Temporal restarts", self.temporal.starts - 1),
            ("Temporal outages (orders saved meanwhile)", "; ".join(self.temporal_outages) or "none"),
            ("Postgres outages", ", ".join(f"{(e - s).total_seconds():.1f} s" for s, e in self.outages) or "none"),
            (
                "webhook receiver hangs",
                ", ".join(f"{(e - s).total_seconds():.1f} s" for s, e in self.receiver_hangs)
                + f" ({self.receiver.hung} requests hung, answered 503)"
                if self.receiver_hangs
                else "none",
            ),
            (
                f"workers down (webhook lookback {webhooks.LOOKBACK_SECONDS:g} s)",
                ", ".join(f"{(e - s).total_seconds():.1f} s" for s, e in self.workers_outages) or "none",
            ),
            ("injected activity faults (logged)", audit.expected.get(INJECTED, 0)),
            ("fault events", "; ".join(self.events)),
        ]
        info += sorted((k, v) for k, v in self.notes.items())
        return rows, info
