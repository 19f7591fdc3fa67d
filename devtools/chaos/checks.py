"""The audit of Postgres, the gateway's and carrier's ledgers and Temporal after the run.

Each ``check_*`` takes plain inputs and reads the ORM, so the test suite checks that each one
really reports a breach it is shown. ``gather_outcomes`` reads what Temporal holds.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from devtools.chaos.logaudit import LogAudit
from devtools.chaos.scenarios import (
    APPROVE_REJECT_CANCEL,
    CANCELLED,
    COMPLETED,
    ESCALATION_KILL,
    EXPECTED_OUTCOMES,
    FAILED,
    FORGED_REPORT,
    FOUR_EYES,
    FOUR_EYES_SAME,
    MALFORMED_MESSAGES,
    NEVER_CHARGED,
    TERMINATE_RECONCILE,
    ChaosOrder,
)
from temporal_app.contracts import FIRST_OF_TWO_APPROVALS, RefusalCode


@dataclass
class WorkflowOutcome:
    """What Temporal holds for one order: the execution's status and the workflow's result."""

    execution_status: str  # "COMPLETED", "RUNNING", "FAILED", "TERMINATED", ... or "NOT_FOUND"
    status: str = ""  # OrderResult.status
    reason: str = ""
    tracking_number: str = ""
    task_failures: list[str] = field(default_factory=list)  # WorkflowTaskFailed causes
    escalations: int = 0  # review_escalated activities the order's history scheduled


@dataclass
class Check:
    name: str
    problems: list[str]
    detail: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems


def check_terminal(order_ids: list[str], scenarios: dict[str, str]) -> Check:
    """Every order ended; an order whose workflow was terminated on purpose is flagged instead."""
    from orderweb.models import Order

    found = {
        oid: (status, flagged)
        for oid, status, flagged in Order.objects.filter(order_id__in=order_ids).values_list(
            "order_id", "status", "attention_since"
        )
    }
    problems = [f"{oid}: no order row" for oid in order_ids if oid not in found]
    problems += [
        f"{oid}: {status}"
        for oid, (status, flagged) in sorted(found.items())
        if status not in (COMPLETED, CANCELLED, FAILED) and not (scenarios.get(oid) == TERMINATE_RECONCILE and flagged)
    ]
    return Check(
        "every order terminal (Postgres), or flagged", problems, f"{len(order_ids) - len(problems)}/{len(order_ids)}"
    )


def check_every_order_started(order_ids: list[str], outcomes: dict[str, WorkflowOutcome], left_to_sweep: int) -> Check:
    """Every order saved in Postgres got its workflow, however long Temporal was down when it was
    saved (the outbox sweep starts those): none without a workflow, none left in `started`, none
    flagged as never started or gone."""
    from orderweb.models import Order, OrderEvent

    statuses = dict(Order.objects.filter(order_id__in=order_ids).values_list("order_id", "status"))
    problems = [
        f"{oid}: saved, but Temporal has no workflow"
        for oid in sorted(statuses)
        if oid not in outcomes or outcomes[oid].execution_status == "NOT_FOUND"
    ]
    problems += [
        f"{oid}: still started (its workflow never received it)"
        for oid, status in sorted(statuses.items())
        if status == "started"
    ]
    flagged = OrderEvent.objects.filter(
        order__order_id__in=order_ids,
        type=OrderEvent.Type.ATTENTION_FLAGGED,
        details__problem__in=["workflow_not_started", "workflow_gone"],
    )
    problems += [
        f"{oid}: flagged as never started or gone" for oid in flagged.values_list("order__order_id", flat=True)
    ]
    return Check(
        "every saved order started", problems, f"{len(statuses)} saved orders; {left_to_sweep} left to the outbox sweep"
    )


def check_workflows_closed(
    outcomes: dict[str, WorkflowOutcome], running: list[str], scenarios: dict[str, str]
) -> Check:
    problems = [
        f"{oid}: execution {o.execution_status}"
        for oid, o in sorted(outcomes.items())
        if o.execution_status != "COMPLETED"
        and not (scenarios.get(oid) == TERMINATE_RECONCILE and o.execution_status == "TERMINATED")
    ]
    problems += [f"still running in Temporal: {wid}" for wid in running]
    return Check(
        "no stuck workflow (closed as Completed, or terminated on purpose)",
        problems,
        f"{len(outcomes) - len(problems)}/{len(outcomes)} as expected, {len(running)} running",
    )


def check_flags(order_ids: list[str], scenarios: dict[str, str]) -> Check:
    """The reconciler flagged exactly the orders whose workflow was terminated, once each, and
    closed their reviews; no order that carried on is flagged."""
    from orderweb.models import Order, OrderEvent
    from reviews.models import ReviewTask

    flagged = set(
        Order.objects.filter(order_id__in=order_ids, attention_since__isnull=False).values_list("order_id", flat=True)
    )
    expected = {oid for oid in order_ids if scenarios.get(oid) == TERMINATE_RECONCILE}
    problems = [f"{oid}: not flagged" for oid in sorted(expected - flagged)]
    problems += [f"{oid}: flagged ({scenarios.get(oid)})" for oid in sorted(flagged - expected)]
    events = Counter(
        OrderEvent.objects.filter(order__order_id__in=order_ids, type=OrderEvent.Type.ATTENTION_FLAGGED).values_list(
            "order__order_id", flat=True
        )
    )
    problems += [f"{oid}: flagged {n} times" for oid, n in sorted(events.items()) if n > 1]
    still_open = ReviewTask.objects.filter(order__order_id__in=expected, status=ReviewTask.Status.OPEN)
    problems += [f"{oid}: review still open" for oid in still_open.values_list("order__order_id", flat=True)]
    return Check("reconciler flags the terminated, and only them", problems, f"{len(flagged)} flagged")


def check_temporal_matches_postgres(outcomes: dict[str, WorkflowOutcome]) -> Check:
    from orderweb.models import Order, Shipment

    orders = {o.order_id: o for o in Order.objects.filter(order_id__in=list(outcomes))}
    tracking = dict(
        Shipment.objects.filter(order__order_id__in=list(outcomes)).values_list("order__order_id", "tracking_number")
    )
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
    dispatches = Counter(CarrierLedgerEntry.objects.filter(order_ref__in=order_ids).values_list("order_ref", flat=True))
    return charges, refunds, dispatches


def _reached_payment(order_ids: list[str]) -> set[str]:
    from orderweb.models import OrderEvent

    return set(
        OrderEvent.objects.filter(order__order_id__in=order_ids, to_status="processing_payment").values_list(
            "order__order_id", flat=True
        )
    )


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
    return Check(
        "exactly one charge per paid order, none before payment",
        problems,
        f"{paid} paid orders, {sum(charges.values())} charges",
    )


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

    ours = {
        (p.order.order_id, p.kind): p
        for p in Payment.objects.filter(order__order_id__in=order_ids, status="succeeded").select_related("order")
    }
    theirs = {(e.order_ref, e.kind): e for e in GatewayLedgerEntry.objects.filter(order_ref__in=order_ids)}
    problems = [f"{k[0]}: gateway {k[1]} {theirs[k].reference} has no Payment row" for k in theirs if k not in ours]
    problems += [f"{k[0]}: Payment {k[1]} has no gateway entry" for k in ours if k not in theirs]
    problems += [
        f"{k[0]}: {k[1]} amount {ours[k].amount} != gateway {theirs[k].amount}"
        for k in ours
        if k in theirs and ours[k].amount != theirs[k].amount
    ]
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
    return Check(
        "no order dispatched twice (and only completed ones)", problems, f"{sum(dispatches.values())} dispatches"
    )


def check_actions_once(order_ids: list[str]) -> Check:
    """No action id was applied twice (duplicate signals and retried Updates were refused)."""
    from orderweb.models import OrderEvent

    applied = Counter()
    duplicates_refused = 0
    applied_types = {OrderEvent.Type.SIGNAL_APPLIED, OrderEvent.Type.UPDATE_APPLIED}
    for kind, details in OrderEvent.objects.filter(
        order__order_id__in=order_ids,
        type__in=[*applied_types, OrderEvent.Type.SIGNAL_REFUSED, OrderEvent.Type.UPDATE_REFUSED],
    ).values_list("type", "details"):
        action_id = (details or {}).get("action_id")
        if kind in applied_types and action_id:
            applied[action_id] += 1
        elif (details or {}).get("code") == RefusalCode.DUPLICATE_ACTION:
            duplicates_refused += 1
    problems = [f"action {aid} applied {n} times" for aid, n in applied.items() if n > 1]
    # An accepted review decision is recorded by the state change it causes (review_approved or
    # the cancellation), not as signal_applied: a decision applied twice would enter a state
    # twice. No order enters any state twice.
    entered = Counter(
        OrderEvent.objects.filter(order__order_id__in=order_ids)
        .exclude(to_status="")
        .values_list("order__order_id", "to_status")
    )
    problems += [f"{oid} entered {state} {n} times" for (oid, state), n in sorted(entered.items()) if n > 1]
    return Check(
        "each action id applied at most once",
        problems,
        f"{len(applied)} signal/update actions applied, {duplicates_refused} duplicates refused, "
        f"{sum(entered.values())} state changes",
    )


def check_outcomes_expected(orders: list[ChaosOrder]) -> Check:
    """Each order ended the way its scenario allows, and the answers the workflow gave to our
    Updates agree with how the order ended."""
    from orderweb.models import Order

    rows = {
        oid: (status, address, failures)
        for oid, status, address, failures in Order.objects.filter(
            order_id__in=[o.order_id for o in orders]
        ).values_list("order_id", "status", "address", "dispatch_failures")
    }
    problems = []
    for order in orders:
        status, address, failures = rows.get(order.order_id, (None, None, None))
        if status is None:
            continue
        if order.scenario == FORGED_REPORT and failures:
            problems.append(f"{order.order_id}: a forged shipping report counted as {failures} dispatch failure(s)")
        malformed = order.answers.get("malformed")
        if (
            order.scenario == MALFORMED_MESSAGES
            and malformed is not None
            and malformed[:2] != (False, RefusalCode.MALFORMED)
        ):
            problems.append(f"{order.order_id}: a malformed Update was answered {malformed}")
        change = order.answers.get("address")
        if change is not None and change[0] and address != order.new_address:
            problems.append(f"{order.order_id}: address change was accepted but the order ships to {address!r}")
        if status not in EXPECTED_OUTCOMES[order.scenario]:
            problems.append(f"{order.order_id}: {order.scenario} ended {status}")
        cancel = order.answers.get("cancel")
        if cancel is not None:
            accepted, code, message = cancel
            if accepted and status != CANCELLED:
                problems.append(f"{order.order_id}: cancel was accepted ({message}) but the order is {status}")
            # Refused because it was already on its way (a racing signal, or a retry of this one)
            # is the one refusal that may end cancelled.
            already = code in (
                RefusalCode.CANCEL_ALREADY_REQUESTED,
                RefusalCode.DUPLICATE_ACTION,
                RefusalCode.ALREADY_FINISHED,
                RefusalCode.WORKFLOW_CLOSED,
            )
            if not accepted and status == CANCELLED and not already:
                problems.append(f"{order.order_id}: cancel was refused ({message}) but the order is cancelled")
        approve = order.answers.get("approve")
        if approve is not None and not approve[0] and status == COMPLETED:
            problems.append(f"{order.order_id}: approval was refused ({approve[2]}) but the order completed")
        reject = order.answers.get("reject")
        if reject is not None and reject[0] and status != CANCELLED:
            problems.append(f"{order.order_id}: rejection was accepted but the order is {status}")
        if order.scenario == APPROVE_REJECT_CANCEL and approve and reject and approve[0] and reject[0]:
            problems.append(f"{order.order_id}: both the approval and the rejection were accepted")
        problems += _four_eyes_answers(order, status)
    return Check("outcome allowed by scenario; answers agree", problems, "")


def _four_eyes_answers(order: ChaosOrder, status: str) -> list[str]:
    """Four eyes: of two approvals at once by one person, one counts (the first of two) and the
    other is refused as the same reviewer; by two people, both count, one as the first of two."""
    a, b = order.answers.get("approve_a"), order.answers.get("approve_b")
    if order.scenario not in FOUR_EYES or a is None or b is None:
        return []  # an answer lost to an outage (its retry met DUPLICATE_ACTION): nothing to compare
    if order.scenario == FOUR_EYES_SAME:
        accepted = [answer for answer in (a, b) if answer[0]]
        refused = [answer[1] for answer in (a, b) if not answer[0]]
        # Refused as the same reviewer; or, when both came before the workflow reached review (its
        # rules not known yet), as already decided: the held one then counts as the first of two.
        same = refused in ([RefusalCode.SAME_REVIEWER], [RefusalCode.ALREADY_DECIDED])
        if len(accepted) != 1 or not same or accepted[0][1] != FIRST_OF_TWO_APPROVALS:
            return [f"{order.order_id}: one person's two approvals answered {a[:2]} and {b[:2]}"]
    elif not (a[0] and b[0]) or sorted((a[1], b[1])) != ["", FIRST_OF_TWO_APPROVALS]:
        return [f"{order.order_id}: two people's approvals answered {a[:2]} and {b[:2]}"]
    return []


def check_review_tasks(order_ids: list[str]) -> Check:
    from reviews.models import ReviewTask

    open_ = list(
        ReviewTask.objects.filter(order__order_id__in=order_ids, status="open")
        .exclude(order__status__in=["started", "processing", "awaiting_manual_review"])
        .values_list("order__order_id", "order__status")
    )
    return Check("no open review task on a finished order", [f"{oid}: {s}" for oid, s in open_], "")


def check_escalations(order_ids: list[str], outcomes: dict[str, WorkflowOutcome], scenarios: dict[str, str]) -> Check:
    """Each escalation the workflow made is in Postgres once (its audit row, the task's
    escalated_at), and Postgres holds none the workflow did not make; the escalation_kill
    orders escalated, worker kill or not."""
    from orderweb.models import OrderEvent
    from reviews.models import ReviewTask

    audited = Counter(
        OrderEvent.objects.filter(order__order_id__in=order_ids, type=OrderEvent.Type.REVIEW_ESCALATED).values_list(
            "order__order_id", flat=True
        )
    )
    marked = set(
        ReviewTask.objects.filter(order__order_id__in=order_ids, escalated_at__isnull=False).values_list(
            "order__order_id", flat=True
        )
    )
    problems = []
    for oid in order_ids:
        made = outcomes[oid].escalations if oid in outcomes else 0
        if made > 1:
            problems.append(f"{oid}: the workflow escalated {made} times")
        if audited[oid] != min(made, 1) or (oid in marked) != bool(made):
            problems.append(
                f"{oid}: escalated {made} time(s) in Temporal, {audited[oid]} audit row(s), "
                f"task {'marked' if oid in marked else 'not marked'}"
            )
        if scenarios.get(oid) == ESCALATION_KILL and not made:
            problems.append(f"{oid}: never escalated")
    return Check(
        "each escalation recorded once (Temporal == Postgres)", problems, f"{sum(audited.values())} escalations"
    )


def check_four_eyes(order_ids: list[str], scenarios: dict[str, str]) -> Check:
    """Every four-eyes order that was approved was approved by two different people."""
    from reviews.models import ReviewTask

    problems = []
    tasks = ReviewTask.objects.filter(order__order_id__in=order_ids).values_list(
        "order__order_id", "approvals_required", "status", "first_approval_by", "decided_by_name"
    )
    approved = 0
    for oid, required, status, first, second in tasks:
        if scenarios.get(oid) in FOUR_EYES and required != 2:
            problems.append(f"{oid}: needed {required} approval(s), not 2")
        if required == 2 and status == ReviewTask.Status.APPROVED:
            approved += 1
            if not first or first == second:
                problems.append(f"{oid}: approved by {first or 'nobody'} and {second}")
    return Check("four eyes: two different people approved", problems, f"{approved} four-eyes orders approved")


def check_task_failures(outcomes: dict[str, WorkflowOutcome]) -> Check:
    problems = [f"{oid}: {cause}" for oid, o in sorted(outcomes.items()) for cause in o.task_failures]
    return Check("no workflow task failure in any history", problems, "order and shipping workflows")


def check_logs(audit: LogAudit, unexpected_exits: list[str], driver_errors: list[str]) -> Check:
    counts = ", ".join(f"{n} {name}" for name, n in audit.expected.most_common()) or "none"
    return Check(
        "no unhandled exception in the logs",
        audit.unexpected + unexpected_exits + driver_errors,
        f"expected tracebacks: {counts}",
    )


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


def workflow_task_failures(events: list[Any]) -> list[str]:
    """The workflow task failures in one history that show a fault in the workflow's code.

    Two kinds are by design: UNHANDLED_COMMAND (a signal arrived while the task completed; the
    SDK runs the task again) and FORCE_CLOSE_COMMAND written just before WorkflowExecutionTerminated
    (terminating a workflow while one of its tasks runs makes the server fail that task first,
    in the same batch: part of the operator's terminate, not a failure of the code)."""
    from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause

    found: list[str] = []
    force_closed = False
    for event in events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED and force_closed:
            found.pop()
        force_closed = False
        if event.event_type != EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            continue
        attrs = event.workflow_task_failed_event_attributes
        if attrs.cause == WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND:
            continue
        found.append(f"{WorkflowTaskFailedCause.Name(attrs.cause)} {attrs.failure.message}".rstrip())
        force_closed = attrs.cause == WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_FORCE_CLOSE_COMMAND
    return found


async def gather_outcomes(client: Any, orders: list[ChaosOrder]) -> tuple[dict[str, WorkflowOutcome], list[str]]:
    import asyncio

    from temporalio.api.enums.v1 import EventType
    from temporalio.service import RPCError, RPCStatusCode

    from temporal_app.contracts import Activities, OrderResult, shipping_workflow_id

    semaphore = asyncio.Semaphore(16)
    outcomes: dict[str, WorkflowOutcome] = {}

    async def history(workflow_id: str) -> list[Any]:
        try:
            return [e async for e in client.get_workflow_handle(workflow_id).fetch_history_events()]
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            return []

    def task_failures(workflow_id: str, events: list[Any]) -> list[str]:
        return [f"{workflow_id}: {failure}" for failure in workflow_task_failures(events)]

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
                    result.status,
                    result.reason,
                    result.tracking_number,
                )
            events = await history(order.workflow_id)
            child = shipping_workflow_id(order.workflow_id)
            outcome.task_failures = task_failures(order.workflow_id, events) + task_failures(
                child, await history(child)
            )
            outcome.escalations = sum(
                1
                for e in events
                if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
                and e.activity_task_scheduled_event_attributes.activity_type.name == Activities.REVIEW_ESCALATED
            )
            outcomes[order.order_id] = outcome

    await asyncio.gather(*(one(o) for o in orders))
    running = [e.id async for e in client.list_workflows('ExecutionStatus="Running"')]
    return outcomes, running
