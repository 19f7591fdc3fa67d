"""The chaos run: its short form end to end, and proof that each audit check reports a breach.

The short form (`manage.py chaos --orders 22`: every scenario once; one worker SIGKILL, one
timed to fall on an escalation, one Temporal restart, one
Postgres outage) starts its own Postgres, Temporal server and worker processes under tmp_path,
so it disturbs neither the session's Temporal nor the machine's Postgres.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from devtools.chaos import components, scenarios
from devtools.chaos.checks import (
    WorkflowOutcome,
    check_actions_once,
    check_charges,
    check_dispatch,
    check_escalations,
    check_every_order_started,
    check_flags,
    check_four_eyes,
    check_outcomes_expected,
    check_payments_match_ledger,
    check_refunds,
    check_review_tasks,
    check_temporal_matches_postgres,
    check_terminal,
    check_workflows_closed,
    workflow_task_failures,
)
from devtools.chaos.logaudit import DATABASE, INJECTED, TIMED_OUT, scan_worker_log
from devtools.chaos.scenarios import ChaosOrder, scenarios_for
from devtools.supervise import stop_embedded_postgres
from orderweb.models import CarrierLedgerEntry, GatewayLedgerEntry, Order, OrderEvent, Payment
from reviews.models import ReviewTask
from temporal_app.contracts import RefusalCode
from tests.helpers import OWN_SYSTEM

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def chaos_workdir() -> Path:
    """Under var/, not pytest's tmp_path: the embedded Postgres runs as another user when we
    are root, and a concurrent pytest session resets its tmp root to mode 0700."""
    workdir = ROOT / "var" / f"chaos-test-{os.getpid()}"
    yield workdir
    stop_embedded_postgres(workdir / "pg")
    shutil.rmtree(workdir, ignore_errors=True)


def kill_processes_of(workdir: Path) -> None:
    """SIGKILL every process that names `workdir` in its command line or environment: the run's
    workers and Temporal server live in sessions of their own, out of the launcher's group."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            seen = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
        except OSError:
            continue
        if str(workdir).encode() in seen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)


def run_chaos(args: list[str], *, workdir: Path, limit: float) -> tuple[int, str]:
    """Run `manage.py chaos`; past `limit` seconds kill it and everything it started, and fail
    with the output so far."""
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "chaos", *args, "--workdir", str(workdir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ},
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        kill_processes_of(workdir)
        output, _ = proc.communicate()
        pytest.fail(f"the chaos run did not end within {limit:g} s; its output:\n{output[-8000:]}")
    return proc.returncode, output


@pytest.mark.temporal
@pytest.mark.xdist_group(OWN_SYSTEM)
def test_short_chaos_run_passes_every_check(chaos_workdir):
    workdir = chaos_workdir
    # --timeout bounds the wait for orders to end; the run then audits and reports what is stuck.
    code, output = run_chaos(
        [
            "--orders",
            "22",
            "--worker-kills",
            "1",
            "--temporal-restarts",
            "1",
            "--db-outages",
            "1",
            "--db-outage-seconds",
            "5",
            "--timeout",
            "150",
            # Temporal down while the last 18 orders are saved: six sweep batches of 3 (issue 19).
            "--temporal-outage-seconds",
            "20",
            "--sweep-batch",
            "3",
        ],
        workdir=workdir,
        limit=360,
    )
    assert code == 0, output[-8000:]
    assert "CHAOS RUN PASSED" in output
    for check in (
        "every order terminal (Postgres)",
        "Temporal state == Postgres state",
        "exactly one charge per paid order, none before payment",
        "no order dispatched twice",
        "no unhandled exception in the logs",
        "each escalation recorded once",
        "four eyes: two different people approved",
        "every saved order started",
    ):
        line = next(text for text in output.splitlines() if text.startswith(check))
        assert " PASS " in line, line
    assert "CHAOS: SIGKILL worker" in output
    assert "falls due now" in output  # a worker killed as an escalation fell due
    assert "Temporal dev server restarted" in output
    assert "Postgres is back" in output
    assert re.search(r"Temporal is back after \d+ s; ([4-9]|1\d) orders were saved meanwhile", output), output[-8000:]
    # The run stops the Postgres it started.
    assert not (workdir / "pg" / "postmaster.pid").exists()


def test_scenario_mix_covers_every_scenario_and_is_deterministic():
    mix = scenarios_for(300, seed=1)
    assert set(mix) == set(scenarios.SCENARIO_WEIGHTS)
    assert mix == scenarios_for(300, seed=1)
    assert len(scenarios_for(5, seed=1)) == 5


# -- the log audit --------------------------------------------------------------------------------

INJECTED_TRACEBACK = """\
2026-01-01 10:00:00,001 WARNING temporalio.activity: Completing activity as failed ({'activity_type': 'order_received'})
Traceback (most recent call last):
  File "/x/temporal_app/activities.py", line 63, in wrapper
    raise ApplicationError(f"injected fault in {name}", type=INJECTED_FAULT)
temporalio.exceptions.ApplicationError: InjectedFault: injected fault in order_received
"""
DB_TRACEBACK = """\
2026-01-01 10:00:05,001 WARNING temporalio.activity: Completing activity as failed ({'activity_type': 'order_received'})
Traceback (most recent call last):
  File "/x/psycopg/connection.py", line 1, in connect
psycopg.OperationalError: connection is bad: No such file or directory

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/x/django/db/backends/base/base.py", line 1, in connect
django.db.utils.OperationalError: connection is bad: No such file or directory
Traceback (most recent call last):
  File "/x/psycopg/cursor.py", line 117, in execute
psycopg.errors.AdminShutdown: terminating connection due to administrator command
"""
BUG_TRACEBACK = """\
2026-01-01 10:00:09,001 WARNING temporalio.activity: Completing activity as failed ({'activity_type': 'payment_charged'})
Traceback (most recent call last):
  File "/x/temporal_app/activities.py", line 120, in payment_charged
KeyError: 'amount'
"""  # noqa: E501 -- a temporalio log line as it is written, longer than 120


def test_log_audit_accepts_injected_faults_and_db_errors_inside_the_outage():
    outage = (datetime(2026, 1, 1, 10, 0, 4, 500000), datetime(2026, 1, 1, 10, 0, 6))
    audit = scan_worker_log(INJECTED_TRACEBACK + DB_TRACEBACK, outages=[outage])
    assert audit.unexpected == []
    assert audit.expected[INJECTED] == 1
    assert audit.expected[DATABASE] == 3


def test_log_audit_reports_db_errors_outside_any_outage():
    audit = scan_worker_log(DB_TRACEBACK, source="w.log", outages=[])
    assert len(audit.unexpected) == 3
    assert audit.unexpected[0].startswith("w.log: psycopg.OperationalError")


CANCELLED_TRACEBACK = """\
2026-01-01 10:00:20,001 WARNING temporalio.activity: Completing activity as failed ({'activity_type': 'record_review_outcome'})
Traceback (most recent call last):
  File "/x/psycopg/connection.py", line 495, in wait
temporalio.exceptions.CancelledError: Cancelled
"""  # noqa: E501 -- a temporalio log line as it is written, longer than 120


def test_log_audit_accepts_an_attempt_cancelled_at_its_timeout_only_around_the_outage():
    outage = (datetime(2026, 1, 1, 10, 0, 4), datetime(2026, 1, 1, 10, 0, 6))
    assert scan_worker_log(CANCELLED_TRACEBACK, outages=[outage]).expected[TIMED_OUT] == 1
    assert scan_worker_log(CANCELLED_TRACEBACK, source="w.log", outages=[]).unexpected == [
        "w.log: temporalio.exceptions.CancelledError: Cancelled (logged 10:00:20)"
    ]


def test_log_audit_reports_any_other_exception():
    audit = scan_worker_log(INJECTED_TRACEBACK + BUG_TRACEBACK, source="w.log")
    assert audit.unexpected == ["w.log: KeyError: 'amount' (logged 10:00:09)"]


def test_log_audit_reports_a_critical_record():
    audit = scan_worker_log("2026-01-01 10:00:00,001 CRITICAL x: worker lost\n", source="w.log")
    assert audit.unexpected == ["w.log: 2026-01-01 10:00:00,001 CRITICAL x: worker lost"]


# -- the database and Temporal audit: each check fails when shown a breach -----------------------


def _order(order_id: str, status: str = "completed", **fields) -> Order:
    reason = {"cancelled": {"cancel_reason": "cancelled"}, "failed": {"failure_reason": "failed"}}
    return Order.objects.create(
        order_id=order_id,
        workflow_id=order_id.lower(),
        address="1 Way",
        amount=Decimal("10.00"),
        status=status,
        **{**reason.get(status, {}), **fields},
    )


def _charge(order_id: str, reference: str = "") -> GatewayLedgerEntry:
    return GatewayLedgerEntry.objects.create(
        idempotency_key=f"order:{order_id}:charge{reference}",
        kind="charge",
        reference=f"ch_{order_id}{reference}",
        order_ref=order_id,
        amount=Decimal("10.00"),
    )


def _reached_payment(order: Order) -> None:
    OrderEvent.objects.create(
        order=order,
        type="status_changed",
        source="workflow",
        to_status="processing_payment",
        event_key="payment:started",
    )


@pytest.mark.django_db
def test_check_terminal_reports_unfinished_and_missing_orders():
    _order("A-1", "completed")
    _order("A-2", "shipping")
    _order("A-4", "awaiting_manual_review")  # terminated on purpose, but the reconciler missed it
    check = check_terminal(["A-1", "A-2", "A-3", "A-4"], {"A-4": scenarios.TERMINATE_RECONCILE})
    assert not check.ok
    assert check.problems == ["A-3: no order row", "A-2: shipping", "A-4: awaiting_manual_review"]


@pytest.mark.django_db
def test_check_every_order_started_reports_a_saved_order_without_workflow_or_flagged_as_gone():
    _order("S-1", "completed")
    _order("S-2", "started")  # saved while Temporal was down; the sweep never started it
    gone = _order("S-3", "awaiting_manual_review")
    OrderEvent.objects.create(
        order=gone,
        type="attention_flagged",
        source="reconciler",
        details={"problem": "workflow_gone"},
        event_key="attention:workflow_gone",
    )
    check = check_every_order_started(
        ["S-1", "S-2", "S-3", "S-4"],
        {
            "S-1": WorkflowOutcome("COMPLETED", "completed"),
            "S-2": WorkflowOutcome("NOT_FOUND"),
            "S-3": WorkflowOutcome("TERMINATED"),
        },
        left_to_sweep=2,
    )
    assert check.problems == [
        "S-2: saved, but Temporal has no workflow",
        "S-2: still started (its workflow never received it)",
        "S-3: flagged as never started or gone",
    ]
    assert check_every_order_started(["S-1"], {"S-1": WorkflowOutcome("COMPLETED", "completed")}, 0).ok


def test_check_workflows_closed_reports_running_and_terminated():
    check = check_workflows_closed(
        {
            "A-1": WorkflowOutcome("COMPLETED", "completed"),
            "A-2": WorkflowOutcome("TERMINATED"),
            "A-4": WorkflowOutcome("TERMINATED"),
        },
        running=["a-3"],
        scenarios={"A-4": scenarios.TERMINATE_RECONCILE},
    )
    assert check.problems == ["A-2: execution TERMINATED", "still running in Temporal: a-3"]


@pytest.mark.django_db
def test_check_flags_reports_a_missed_and_a_wrong_flag_and_an_open_review():
    from django.utils import timezone

    missed = _order("A-1", "awaiting_manual_review")
    ReviewTask.objects.create(order=missed, due_at=timezone.now() + timedelta(hours=1))
    wrong = _order("A-2", "completed")
    Order.objects.filter(pk=wrong.pk).update(attention_since=timezone.now(), attention_reason="gone")
    check = check_flags(["A-1", "A-2"], {"A-1": scenarios.TERMINATE_RECONCILE, "A-2": scenarios.APPROVE_UPDATE})
    assert check.problems == ["A-1: not flagged", "A-2: flagged (approve_update)", "A-1: review still open"]


@pytest.mark.django_db
def test_check_temporal_matches_postgres_reports_disagreement():
    _order("A-1", "completed")
    _order("A-2", "cancelled", cancel_reason="rejected")
    check = check_temporal_matches_postgres(
        {
            "A-1": WorkflowOutcome("COMPLETED", "cancelled", "cancelled"),
            "A-2": WorkflowOutcome("COMPLETED", "cancelled", "review timed out"),
        }
    )
    assert check.problems == [
        "A-1: Temporal cancelled, Postgres completed",
        "A-2: cancel reason 'rejected' != 'review timed out'",
    ]


@pytest.mark.django_db
def test_check_charges_reports_double_and_early_charges():
    for oid, status in (("A-1", "completed"), ("A-2", "cancelled"), ("A-3", "completed"), ("A-4", "failed")):
        _reached_payment(_order(oid, status))
    _charge("A-1")
    _charge("A-1", "-again")  # a second real charge for one order
    _charge("A-2")  # cancelled: must be refunded (check_refunds) but one charge is allowed here
    _order("A-5", "cancelled")
    _charge("A-5")  # never reached payment
    _charge("A-4")
    _charge("A-4", "-again")
    check = check_charges(["A-1", "A-2", "A-3", "A-4", "A-5"], {"A-5": scenarios.EARLY_CANCEL})
    assert check.problems == [
        "A-1: completed with 2 charges",
        "A-3: completed with 0 charges",
        "A-4: failed with 2 charges",
        f"A-5: charged although cancelled/failed before payment ({scenarios.EARLY_CANCEL})",
    ]


@pytest.mark.django_db
def test_check_refunds_reports_missing_and_mismatched_refunds():
    _order("A-1", "cancelled")
    _charge("A-1")
    _order("A-2", "cancelled")
    charge = _charge("A-2")
    GatewayLedgerEntry.objects.create(
        idempotency_key="order:A-2:refund",
        kind="refund",
        reference="re_1",
        order_ref="A-2",
        amount=Decimal("3.00"),
        refunds=charge,
    )
    _order("A-3", "failed")
    _charge("A-3")  # the payment step gave up after the gateway charged: must be refunded
    check = check_refunds(["A-1", "A-2", "A-3"])
    assert check.problems == [
        "A-2: refund re_1 does not match charge ch_A-2",
        "A-1: cancelled with 1 charges and 0 refunds",
        "A-3: failed with 1 charges and 0 refunds",
    ]


@pytest.mark.django_db
def test_check_payments_match_ledger_reports_both_directions():
    _order("A-1")
    a2 = _order("A-2")
    _charge("A-1")
    Payment.objects.create(
        order=a2, kind="charge", status="succeeded", amount=Decimal("10.00"), idempotency_key="order:A-2:charge"
    )
    check = check_payments_match_ledger(["A-1", "A-2"])
    assert check.problems == [
        "A-1: gateway charge ch_A-1 has no Payment row",
        "A-2: Payment charge has no gateway entry",
    ]


@pytest.mark.django_db
def test_check_dispatch_reports_double_and_wrong_dispatches():
    _order("A-1", "completed")
    _order("A-2", "cancelled")
    for key, oid in (("k1", "A-1"), ("k2", "A-1"), ("k3", "A-2")):
        CarrierLedgerEntry.objects.create(
            idempotency_key=key, order_ref=oid, address="1 Way", tracking_number=f"T{key}"
        )
    check = check_dispatch(["A-1", "A-2"])
    assert "A-1: dispatched 2 times" in check.problems
    assert "A-1: completed but dispatched 2 times" in check.problems
    assert "A-2: cancelled but dispatched" in check.problems


@pytest.mark.django_db
def test_check_actions_once_reports_an_action_applied_twice():
    order = _order("A-1")
    for n in (1, 2):
        OrderEvent.objects.create(
            order=order,
            type="signal_applied",
            source="signal",
            event_key=f"r:{n}",
            details={"action_id": "A-1:approve"},
        )
    for n in (1, 2):  # a decision applied twice: the order is approved twice
        OrderEvent.objects.create(
            order=order,
            type="review_approved",
            source="workflow",
            event_key=f"a:{n}",
            to_status="manual_review_completed",
        )
    check = check_actions_once(["A-1"])
    assert check.problems == ["action A-1:approve applied 2 times", "A-1 entered manual_review_completed 2 times"]


@pytest.mark.django_db
def test_check_outcomes_expected_reports_wrong_outcome_and_contradicting_answer():
    _order("A-1", "cancelled")
    _order("A-2", "completed")
    orders = [
        ChaosOrder("A-1", scenarios.APPROVE_UPDATE, "1 Way"),
        ChaosOrder("A-2", scenarios.RACE_UPDATES, "1 Way", answers={"cancel": (True, "", "Order cancelled: x")}),
    ]
    orders.append(
        ChaosOrder(
            "A-3",
            scenarios.ADDRESS_CHANGE,
            "1 Way",
            new_address="2 New Way",
            answers={"address": (True, "", "address updated")},
        )
    )
    _order("A-3", "completed")
    check = check_outcomes_expected(orders)
    assert check.problems == [
        "A-1: approve_update ended cancelled",
        "A-2: cancel was accepted (Order cancelled: x) but the order is completed",
        "A-3: address change was accepted but the order ships to '1 Way'",
    ]


@pytest.mark.django_db
def test_check_outcomes_expected_reports_four_eyes_and_decision_races_answered_wrong():
    from temporal_app.contracts import FIRST_OF_TWO_APPROVALS

    first = (True, FIRST_OF_TWO_APPROVALS, "Approved, 1 of 2")
    orders = [
        # One person's two approvals at once: both counted.
        ChaosOrder("A-1", scenarios.FOUR_EYES_SAME, "1 Way", answers={"approve_a": first, "approve_b": first}),
        # Two people's approvals: the order never waited for the second.
        ChaosOrder(
            "A-2",
            scenarios.FOUR_EYES_TWO,
            "1 Way",
            answers={"approve_a": (True, "", "ok"), "approve_b": (True, "", "ok")},
        ),
        # An approval and a rejection at once, both accepted; the rejection did not end it.
        ChaosOrder(
            "A-3",
            scenarios.APPROVE_REJECT_CANCEL,
            "1 Way",
            answers={"approve": (True, "", "ok"), "reject": (True, "", "ok")},
        ),
        # As it should be: one counted, one refused as the same reviewer.
        ChaosOrder(
            "A-4",
            scenarios.FOUR_EYES_SAME,
            "1 Way",
            answers={"approve_a": first, "approve_b": (False, RefusalCode.SAME_REVIEWER, "already approved")},
        ),
    ]
    for oid in ("A-1", "A-2", "A-3", "A-4"):
        _order(oid, "completed")
    assert check_outcomes_expected(orders).problems == [
        "A-1: one person's two approvals answered (True, 'first_of_two_approvals') and "
        "(True, 'first_of_two_approvals')",
        "A-2: two people's approvals answered (True, '') and (True, '')",
        "A-3: rejection was accepted but the order is completed",
        "A-3: both the approval and the rejection were accepted",
    ]


@pytest.mark.django_db
def test_check_escalations_reports_a_double_a_missing_and_an_unmade_escalation():
    from django.utils import timezone

    due = timezone.now() + timedelta(hours=1)
    for oid in ("A-1", "A-2", "A-3", "A-4", "A-5"):
        ReviewTask.objects.create(order=_order(oid, "completed"), due_at=due, status="approved", decided_at=due)
    for oid, times in (("A-1", 2), ("A-3", 1), ("A-5", 1)):  # audit rows
        for n in range(times):
            OrderEvent.objects.create(
                order=Order.objects.get(order_id=oid),
                type="review_escalated",
                source="workflow",
                event_key=f"review:escalated:{n}",
            )
    ReviewTask.objects.filter(order__order_id__in=["A-1", "A-3", "A-5"]).update(escalated_at=due)
    outcomes = {
        "A-1": WorkflowOutcome("COMPLETED", escalations=1),
        "A-2": WorkflowOutcome("COMPLETED", escalations=1),
        "A-3": WorkflowOutcome("COMPLETED"),
        "A-4": WorkflowOutcome("COMPLETED"),
        "A-5": WorkflowOutcome("COMPLETED", escalations=1),
    }
    check = check_escalations(["A-1", "A-2", "A-3", "A-4", "A-5"], outcomes, {"A-4": scenarios.ESCALATION_KILL})
    assert check.problems == [
        "A-1: escalated 1 time(s) in Temporal, 2 audit row(s), task marked",
        "A-2: escalated 1 time(s) in Temporal, 0 audit row(s), task not marked",
        "A-3: escalated 0 time(s) in Temporal, 1 audit row(s), task marked",
        "A-4: never escalated",
    ]


@pytest.mark.django_db
def test_check_four_eyes_reports_one_person_approving_twice():
    from django.utils import timezone

    now = timezone.now()
    rows = (("A-1", 2, "alice", "alice"), ("A-2", 2, "", "bob"), ("A-3", 1, "", "bob"), ("A-4", 2, "alice", "bob"))
    for oid, required, first, second in rows:
        ReviewTask.objects.create(
            order=_order(oid, "completed"),
            due_at=now,
            status="approved",
            decided_at=now,
            approvals_required=required,
            first_approval_by=first,
            decided_by_name=second,
        )
    check = check_four_eyes(["A-1", "A-2", "A-3", "A-4"], {"A-3": scenarios.FOUR_EYES_TWO})
    assert check.problems == [
        "A-1: approved by alice and alice",
        "A-2: approved by nobody and bob",
        "A-3: needed 1 approval(s), not 2",
    ]


@pytest.mark.django_db
def test_check_review_tasks_reports_open_task_of_finished_order():
    order = _order("A-1", "cancelled")
    ReviewTask.objects.create(order=order, due_at=datetime.now().astimezone() + timedelta(hours=1))
    assert check_review_tasks(["A-1"]).problems == ["A-1: cancelled"]


def _history(*steps: tuple[str, str]) -> list:
    """History events: ("failed", CAUSE) for a WorkflowTaskFailed, ("terminated", "") or
    ("completed", "") for the close, ("scheduled", "") for a new workflow task."""
    from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
    from temporalio.api.history.v1 import HistoryEvent, WorkflowTaskFailedEventAttributes

    kinds = {
        "terminated": EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
        "completed": EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
        "scheduled": EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
    }
    events = []
    for kind, cause in steps:
        if kind == "failed":
            events.append(
                HistoryEvent(
                    event_type=EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
                    workflow_task_failed_event_attributes=WorkflowTaskFailedEventAttributes(
                        cause=WorkflowTaskFailedCause.Value(f"WORKFLOW_TASK_FAILED_CAUSE_{cause}")
                    ),
                )
            )
        else:
            events.append(HistoryEvent(event_type=kinds[kind]))
    return events


@pytest.mark.parametrize(
    "steps, found",
    [
        # An operator's terminate while a task ran: the server fails the task in the same batch.
        ([("failed", "FORCE_CLOSE_COMMAND"), ("terminated", "")], []),
        # A signal during the task's completion: the SDK runs the task again.
        ([("failed", "UNHANDLED_COMMAND"), ("scheduled", ""), ("completed", "")], []),
        # The workflow's own code failed, even if an operator terminated it later.
        (
            [("failed", "WORKFLOW_WORKER_UNHANDLED_FAILURE"), ("terminated", "")],
            ["WORKFLOW_TASK_FAILED_CAUSE_WORKFLOW_WORKER_UNHANDLED_FAILURE"],
        ),
        (
            [("failed", "NON_DETERMINISTIC_ERROR"), ("scheduled", ""), ("completed", "")],
            ["WORKFLOW_TASK_FAILED_CAUSE_NON_DETERMINISTIC_ERROR"],
        ),
        # A force close not followed by a terminate has another cause, and is reported.
        (
            [("failed", "FORCE_CLOSE_COMMAND"), ("scheduled", ""), ("completed", "")],
            ["WORKFLOW_TASK_FAILED_CAUSE_FORCE_CLOSE_COMMAND"],
        ),
    ],
)
def test_task_failure_check_tells_a_terminate_from_a_code_failure(steps, found):
    assert workflow_task_failures(_history(*steps)) == found


class _ScriptedPool(components.WorkerPool):
    """A worker pool whose 'workers' run a given script instead of manage.py run_workers."""

    def __init__(self, logdir: Path, script: str) -> None:
        super().__init__(1, dict(os.environ), logdir, threads=1)
        self.script = script

    def command(self) -> list[str]:
        return [sys.executable, "-c", self.script]


@pytest.mark.parametrize(
    "script, refused, breaches",
    [
        ("print('CommandError: Temporal is unreachable at x: refused'); raise SystemExit(1)", 1, 0),
        # Seen once in a chaos run: the refusal printed, then SIGSEGV while the interpreter exited.
        (
            "import os, signal; print('CommandError: Postgres is unreachable (x)', flush=True); "
            "os.kill(os.getpid(), signal.SIGSEGV)",
            1,
            0,
        ),
        ("raise RuntimeError('worker bug')", 0, 1),
        ("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", 0, 1),
    ],
)
def test_worker_pool_tells_a_refused_start_from_a_crash(tmp_path, script, refused, breaches):
    pool = _ScriptedPool(tmp_path, script)
    pool.start(0)
    pool.children[0].process.wait(30)
    generation = pool.generation[0]
    pool.check_alive()
    assert (pool.refused_starts, len(pool.unexpected_exits)) == (refused, breaches)
    assert pool.generation[0] == generation + 1  # restarted, as a supervisor would
    pool.children[0].process.wait(30)


# -- webhooks (issue 19): the receiver, its faults and their checks --------------------------------


def _status_change(order: Order, to_status: str, n: int, at: datetime | None = None) -> OrderEvent:
    event = OrderEvent.objects.create(
        order=order, type="status_changed", source="workflow", to_status=to_status, event_key=f"s:{n}"
    )
    if at is not None:
        OrderEvent.objects.filter(pk=event.pk).update(created_at=at)
    return event


@pytest.mark.django_db
def test_check_webhooks_delivered_reports_missing_unsent_unaccepted_foreign_and_badly_signed():
    from collections import Counter

    from devtools.chaos.webhooks import check_webhooks_delivered
    from orderweb.models import WebhookDelivery

    order = _order("A-1")
    events = [
        _status_change(order, status, n) for n, status in enumerate(("processing", "shipping", "completed", "failed"))
    ]
    no_delivery, pending, unaccepted, fine = events
    for event, status in ((pending, "pending"), (unaccepted, "sent"), (fine, "sent")):
        WebhookDelivery.objects.create(
            event=event,
            url="http://x/",
            status=status,
            sent_at=datetime.now().astimezone() if status == "sent" else None,
        )
    accepted = Counter({f"evt_{fine.pk}": 2, "evt_999999": 1})
    check = check_webhooks_delivered(["A-1"], accepted, ["evt_77"])
    assert check.problems == [
        f"A-1: status change evt_{no_delivery.pk} (processing) has no delivery",
        f"A-1: status change evt_{pending.pk} (shipping) delivery pending",
        f"A-1: status change evt_{unaccepted.pk} (completed) marked sent, never accepted",
        "the receiver accepted evt_999999, no delivery of the run",
        "bad signature on evt_77",
    ]
    assert "1 of them again after a lost answer" in check.detail


@pytest.mark.django_db
def test_the_hang_and_outage_checks_report_orders_that_stood_still_and_an_outage_too_short():
    from django.utils import timezone

    from devtools.chaos.webhooks import (
        check_orders_went_on_while_the_receiver_hung,
        check_workers_down_past_the_lookback,
    )

    now = timezone.now()
    order = _order("A-1")
    _status_change(order, "processing", 1, at=now - timedelta(seconds=100))
    quiet = (now - timedelta(seconds=60), now - timedelta(seconds=30))
    busy = (now - timedelta(seconds=110), now - timedelta(seconds=90))
    assert check_orders_went_on_while_the_receiver_hung(["A-1"], [busy]).ok
    assert check_orders_went_on_while_the_receiver_hung(["A-1"], [quiet]).problems == [
        f"no status change written while the receiver hung ({quiet[0]:%H:%M:%S} to {quiet[1]:%H:%M:%S})"
    ]
    assert check_workers_down_past_the_lookback(["A-1"], [busy], 5).ok  # saved 10 s before they came back
    assert check_workers_down_past_the_lookback(["A-1"], [busy], 15).problems == [
        f"no status change saved while the workers were down ({busy[0]:%H:%M:%S} to {busy[1]:%H:%M:%S}) "
        "was older than the lookback when they came back"
    ]
    short = (now - timedelta(seconds=105), now - timedelta(seconds=98))
    assert check_workers_down_past_the_lookback(["A-1"], [short], 10).problems == [
        "down 7 s, not past the 10 s lookback"
    ]


def test_the_receiver_hangs_then_refuses_and_accepts_only_signed_posts():
    import json as json_
    import time as time_
    import urllib.error
    import urllib.request

    from devtools.chaos.webhooks import SECRET, ChaosReceiver
    from orderweb.webhooks import EVENT_ID_HEADER, SIGNATURE_HEADER, webhook_signature

    receiver = ChaosReceiver()
    try:

        def post(event_id: str, secret: str = SECRET) -> int:
            body = json_.dumps({"id": event_id}).encode()
            request = urllib.request.Request(
                receiver.url,
                data=body,
                method="POST",
                headers={
                    EVENT_ID_HEADER: event_id,
                    SIGNATURE_HEADER: webhook_signature(secret, int(time_.time()), body),
                },
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return response.status
            except urllib.error.HTTPError as err:
                return err.code

        assert post("evt_1") == 200
        assert post("evt_2", secret="another-secret-0123456") == 400
        receiver.hang(0.5)
        assert post("evt_3") == 503  # hung, then refused: never counted as accepted
        assert post("evt_1") == 200
        assert receiver.accepted == {"evt_1": 2} and receiver.bad_signatures == ["evt_2"] and receiver.hung == 1
    finally:
        receiver.stop()


def test_log_audit_accepts_webhook_timeouts_only_while_the_receiver_hung():
    line = (
        "2026-01-01 10:00:05,001 WARNING temporalio.activity: Completing activity as failed\n"
        'Traceback (most recent call last):\n  File "/x/orderweb/webhooks.py", line 1, in webhook_send\n'
        "temporalio.exceptions.ApplicationError: WebhookNotAccepted: The receiver could not be reached: timed out\n"
    )
    hang = (datetime(2026, 1, 1, 10, 0, 0), datetime(2026, 1, 1, 10, 0, 4))
    assert scan_worker_log(line, receiver_hangs=[hang]).unexpected == []
    late = scan_worker_log(line, source="w.log", receiver_hangs=[], grace=timedelta(0))
    assert late.unexpected == [
        "w.log: temporalio.exceptions.ApplicationError: WebhookNotAccepted: "
        "The receiver could not be reached: timed out (logged 10:00:05)"
    ]
