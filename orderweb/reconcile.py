"""The reconciler: what an order's workflow cannot report about itself.

A workflow reports every step through its projection, but not its own end when an operator
terminates it, when it times out, when Temporal deletes it after the namespace's retention
period, or while its workflow task keeps failing. The reconciler asks Temporal about the orders
Postgres still shows as running, flags those it finds (``Order.attention_reason``: a flag for
staff, not a tenth state) and lists charges that have neither a shipment nor a refund.

Idempotent: an order is flagged once; running it again changes nothing. A flag clears when the
workflow moves the order on (a stuck workflow fixed by a deploy). It runs in the workers every
``RECONCILE_INTERVAL_SECONDS`` and on demand (``python manage.py reconcile_orders``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import SearchAttributeKey

from orderweb.models import Order, Payment, Shipment
from orderweb.services import order_flag_attention
from temporal_app.client import client_thread
from temporal_app.contracts import TERMINAL_STATES, OrderState
from temporal_app.registry import worker_stopping

logger = logging.getLogger(__name__)

BATCH = 100
# Set by the Temporal server (1.28 and later) once a workflow task has failed several times.
REPORTED_PROBLEMS_KEY = SearchAttributeKey.for_keyword_list("TemporalReportedProblems")

WORKFLOW_CLOSED = "Its workflow {workflow_id} was {status} before the order ended; nothing will move it on."
WORKFLOW_GONE = (
    "Temporal has no workflow {workflow_id} (deleted after the retention period, or never started); "
    "nothing will move the order on."
)
WORKFLOW_STUCK = (
    "Its workflow {workflow_id} has been failing its workflow task since {since} (attempt {attempt}); "
    "it takes no requests until that is fixed (see the Temporal Web UI)."
)

_STATUS_WORDS = {
    WorkflowExecutionStatus.COMPLETED: "completed",
    WorkflowExecutionStatus.FAILED: "failed",
    WorkflowExecutionStatus.CANCELED: "cancelled",
    WorkflowExecutionStatus.TERMINATED: "terminated",
    WorkflowExecutionStatus.CONTINUED_AS_NEW: "continued as new",
    WorkflowExecutionStatus.TIMED_OUT: "timed out",
}


# Problems after which nothing will move the order on (a stuck workflow may, once fixed).
WORKFLOW_CLOSED_PROBLEM = "workflow_closed"
WORKFLOW_GONE_PROBLEM = "workflow_gone"
WORKFLOW_STUCK_PROBLEM = "workflow_stuck"
STOPPED_PROBLEMS = frozenset({WORKFLOW_CLOSED_PROBLEM, WORKFLOW_GONE_PROBLEM})


@dataclass
class Finding:
    order: Order
    problem: str  # one of the *_PROBLEM values
    reason: str
    details: dict = field(default_factory=dict)


@dataclass
class ReconcileReport:
    checked: int = 0
    findings: list[Finding] = field(default_factory=list)
    flagged: list[Order] = field(default_factory=list)  # newly flagged by this run
    unsettled_charges: list[Payment] = field(default_factory=list)
    reviews_closed: int = 0  # set by the caller that closes the reviews of stopped orders

    def summary_lines(self) -> list[str]:
        lines = [
            f"checked {self.checked} running orders; {len(self.findings)} need attention, "
            f"{len(self.flagged)} newly flagged"
        ]
        lines += [f"{f.order.order_id}: {f.reason}" for f in self.findings]
        lines += [
            f"charge without shipment or refund: {p.order.order_id} {p.amount} ({p.provider_reference})"
            for p in self.unsettled_charges
        ]
        if self.reviews_closed:
            lines.append(f"closed {self.reviews_closed} review task(s) of stopped orders")
        return lines


def orders_reconcile(*, now: datetime | None = None, grace_seconds: float | None = None) -> ReconcileReport:
    now = now or timezone.now()
    grace = settings.RECONCILE_GRACE_SECONDS if grace_seconds is None else grace_seconds
    report = ReconcileReport()
    for orders in _running_orders(older_than=now - timedelta(seconds=grace)):
        if worker_stopping():  # the workers are shutting down: the next run carries on
            break
        report.checked += len(orders)
        report.findings += client_thread.run(lambda client, orders=orders: _findings(client, orders, now), timeout=60)
    for finding in report.findings:
        if order_flag_attention(
            order=finding.order, problem=finding.problem, reason=finding.reason, details=finding.details
        ):
            report.flagged.append(finding.order)
    report.unsettled_charges = payments_unsettled()
    return report


def _running_orders(*, older_than: datetime) -> Iterator[list[Order]]:
    """Orders Postgres shows as running, last moved before ``older_than`` (visibility trails a
    fresh start by a moment), in batches by primary key."""
    queryset = (
        Order.objects.exclude(status__in=[s.value for s in TERMINAL_STATES])
        .filter(updated_at__lt=older_than, attention_since__isnull=True)
        .only("id", "order_id", "workflow_id", "status")
        .order_by("pk")
    )
    last = 0
    while True:
        batch = list(queryset.filter(pk__gt=last)[:BATCH])
        if not batch:
            return
        yield batch
        last = batch[-1].pk


async def _findings(client: Client, orders: list[Order], now: datetime) -> list[Finding]:
    by_id = {order.workflow_id: order for order in orders}
    ids = ", ".join(f'"{_quoted(workflow_id)}"' for workflow_id in by_id)
    seen: dict[str, object] = {}
    async for execution in client.list_workflows(f"WorkflowType = 'OrderWorkflow' AND WorkflowId IN ({ids})"):
        # The newest run of an id is the one that counts (list order is not guaranteed).
        current = seen.get(execution.id)
        if current is None or execution.start_time > current.start_time:  # type: ignore[attr-defined]
            seen[execution.id] = execution
    findings = []
    for workflow_id, order in by_id.items():
        execution = seen.get(workflow_id)
        if execution is None:
            if order.status == OrderState.STARTED:
                # Never started (saved while Temporal was down): the outbox sweep's to start
                # (orderweb.activities.orphaned_orders_started), not a workflow that vanished.
                continue
            findings.append(Finding(order, WORKFLOW_GONE_PROBLEM, WORKFLOW_GONE.format(workflow_id=workflow_id)))
            continue
        status = execution.status  # type: ignore[attr-defined]
        if status != WorkflowExecutionStatus.RUNNING:
            findings.append(
                Finding(
                    order,
                    WORKFLOW_CLOSED_PROBLEM,
                    WORKFLOW_CLOSED.format(workflow_id=workflow_id, status=_STATUS_WORDS.get(status, str(status))),
                    {"execution_status": _STATUS_WORDS.get(status, str(status))},
                )
            )
        elif execution.typed_search_attributes.get(REPORTED_PROBLEMS_KEY):  # type: ignore[attr-defined]
            stuck = await _stuck_since(client, workflow_id)
            if stuck is not None and now - stuck[0] >= timedelta(seconds=settings.RECONCILE_STUCK_AFTER_SECONDS):
                findings.append(
                    Finding(
                        order,
                        WORKFLOW_STUCK_PROBLEM,
                        WORKFLOW_STUCK.format(
                            workflow_id=workflow_id, since=stuck[0].isoformat(timespec="seconds"), attempt=stuck[1]
                        ),
                        {"attempt": stuck[1]},
                    )
                )
    return findings


async def _stuck_since(client: Client, workflow_id: str) -> tuple[datetime, int] | None:
    """When the failing workflow task was first scheduled, and its attempt; None if it is not
    failing (any more)."""
    description = await client.get_workflow_handle(workflow_id).describe()
    task = description.raw_description.pending_workflow_task
    if not task.attempt or task.attempt <= 1:
        return None
    return task.original_scheduled_time.ToDatetime(tzinfo=UTC), task.attempt


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def payments_unsettled() -> list[Payment]:
    """Charges the customer paid that neither shipped nor came back, on orders that will not
    move on by themselves (ended, or flagged): for a person to settle."""
    refunded = Payment.objects.filter(order=OuterRef("order"), kind=Payment.Kind.REFUND)
    shipped = Shipment.objects.filter(order=OuterRef("order"), status=Shipment.Status.DISPATCHED)
    return list(
        Payment.objects.filter(kind=Payment.Kind.CHARGE, status=Payment.Status.SUCCEEDED)
        .filter(Q(order__status__in=[s.value for s in TERMINAL_STATES]) | Q(order__attention_since__isnull=False))
        .exclude(Exists(refunded))
        .exclude(Exists(shipped))
        .select_related("order")
        .order_by("created_at")
    )
