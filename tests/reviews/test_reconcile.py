"""The reconciler (orderweb/reconcile.py, `manage.py reconcile_orders`) against the real dev server:
what a workflow cannot report itself is found, flagged for staff once, and its review closed;
and what people see when they act on such an order."""

from __future__ import annotations

import asyncio
import uuid
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.urls import reverse
from temporalio import workflow
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from orderweb.models import Order, OrderEvent
from orderweb.simulators import fault_plan
from reviews import services, views
from reviews.models import ReviewTask
from reviews.services import orders_reconcile_with_reviews
from temporal_app.client import (
    WorkersNotAnswering,
    WorkflowCannotAnswer,
    WorkflowGone,
    order_workflow_status,
    worker_silence,
)
from temporal_app.contracts import Signals
from tests.helpers import temporal, wait_until, workflow_status
from tests.orderweb.conftest import place_order
from tests.reviews.conftest import client_for, make_waiting_order

pytestmark = pytest.mark.temporal


def reconcile(*args: str) -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("reconcile_orders", "--grace-seconds", "0", *args, stdout=out)
    except SystemExit as exit:
        return int(exit.code), out.getvalue()
    return 0, out.getvalue()


def test_a_terminated_order_is_flagged_once_and_its_review_closed(system):
    order = place_order()
    temporal(lambda c: c.get_workflow_handle(order.workflow_id).terminate("operator cleanup"))
    code, out = reconcile()
    assert code == 1 and f"{order.order_id}: Its workflow {order.workflow_id} was terminated" in out
    order.refresh_from_db()
    assert order.status == "awaiting_manual_review"  # the last state the workflow reported
    assert order.needs_attention and "terminated" in order.attention_reason
    assert ReviewTask.objects.get(order=order).status == ReviewTask.Status.STOPPED
    flagged = OrderEvent.objects.get(order=order, type="attention_flagged")
    assert (flagged.actor, flagged.details["problem"]) == ("reconciler", "workflow_closed")
    # Idempotent: a second run finds nothing new and writes nothing.
    code, out = reconcile()
    assert f"{order.order_id}:" not in out
    assert OrderEvent.objects.filter(order=order, type="attention_flagged").count() == 1


def test_a_charge_on_a_terminated_order_is_listed_for_a_person(system):
    order = place_order()
    fault_plan(target="carrier_dispatched", order_ref=order.order_id, times=3)
    temporal(lambda c: c.get_workflow_handle(order.workflow_id).signal(Signals.COMPLETE_MANUAL_REVIEW))
    wait_until(lambda: workflow_status(order.workflow_id)["awaiting_shipping_retry"], what="the dispatch failure")
    temporal(lambda c: c.get_workflow_handle(order.workflow_id).terminate("operator mistake"))
    code, out = reconcile()
    assert code == 1
    assert f"charge without shipment or refund: {order.order_id} 25.00" in out
    report = orders_reconcile_with_reviews(grace_seconds=0)
    assert [p.order.order_id for p in report.unsettled_charges] == [order.order_id]


def delete_workflow(workflow_id: str) -> None:
    """What the namespace's retention does to a closed workflow (and an operator may do to any)."""
    from django.conf import settings

    temporal(
        lambda c: c.workflow_service.delete_workflow_execution(
            DeleteWorkflowExecutionRequest(
                namespace=settings.TEMPORAL_NAMESPACE, workflow_execution=WorkflowExecution(workflow_id=workflow_id)
            )
        )
    )

    def gone() -> bool:  # Temporal deletes in the background
        try:
            order_workflow_status(workflow_id)
        except WorkflowGone:
            return True
        except Exception:
            return False
        return False

    wait_until(gone, what=f"Temporal to delete {workflow_id}")


def test_an_order_whose_workflow_is_gone_is_flagged(system):
    order = place_order()
    delete_workflow(order.workflow_id)
    code, out = reconcile()
    assert code == 1 and f"{order.order_id}: Temporal has no workflow {order.workflow_id}" in out
    order.refresh_from_db()
    assert "Temporal has no workflow" in order.attention_reason
    assert ReviewTask.objects.get(order=order).status == ReviewTask.Status.STOPPED
    # The live panel stops polling: nothing more will change.
    live = client_for(_reviewer()).get(reverse("reviews:order_status", args=[order.order_id]), HTTP_HX_REQUEST="true")
    assert live.status_code == 286
    assert "Temporal has no workflow for this order" in live.content.decode()


def test_a_finished_order_whose_workflow_temporal_no_longer_has_is_finished_for_the_live_panel(system):
    """After the namespace's retention period Temporal answers "not found" for a finished order's
    workflow (the dev server deletes closed workflows only in its own time, so the test uses an
    order whose workflow Temporal never had: the same answer)."""
    order = make_waiting_order(order_id=f"GONE-{uuid.uuid4().hex[:6].upper()}")
    Order.objects.filter(pk=order.pk).update(status="cancelled", cancel_reason="customer called")
    live = client_for(_reviewer()).get(reverse("reviews:order_status", args=[order.order_id]), HTTP_HX_REQUEST="true")
    assert live.status_code == 286
    assert views.LIVE_STATUS_GONE_FINISHED in live.content.decode()


def _reviewer():
    from tests.reviews.conftest import make_user

    return make_user(f"r-{uuid.uuid4().hex[:6]}", reviewer=True)


# -- a workflow whose task keeps failing ----------------------------------------------------------


@workflow.defn(name="OrderWorkflow", sandboxed=False)
class BrokenOrderWorkflow:
    """Stands for a deploy with a bug: every workflow task fails."""

    @workflow.run
    async def run(self, *args) -> None:
        raise RuntimeError("a bug in the new release")

    @workflow.update(name="DecideReview")
    async def decide(self, *args) -> None:
        return None


@pytest.fixture
def stuck_order(system):
    """An order in review whose workflow (on a queue of its own, run by a broken worker) fails
    every workflow task; ready once Temporal refuses requests for it."""
    from temporal_app.client import client_thread

    queue = f"stuck-{uuid.uuid4().hex[:8]}"
    order = make_waiting_order(order_id=f"STUCK-{uuid.uuid4().hex[:6].upper()}")

    async def start(client):
        worker = Worker(
            client, task_queue=queue, workflows=[BrokenOrderWorkflow], workflow_runner=UnsandboxedWorkflowRunner()
        )
        running = asyncio.ensure_future(worker.run())
        await client.start_workflow(
            "OrderWorkflow", args=[order.order_id, order.address], id=order.workflow_id, task_queue=queue
        )
        return worker, running

    worker, running = client_thread.run(start, timeout=30)

    def refused() -> bool:
        try:
            order_workflow_status(order.workflow_id)
        except WorkflowCannotAnswer:
            return True
        except Exception:
            return False
        return False

    with override_settings(TEMPORAL_RPC_TIMEOUT_SECONDS=3):
        wait_until(refused, timeout=90, what="Temporal to refuse requests to the stuck workflow")
        yield order
    client_thread.run(lambda client: _stop(worker, running), timeout=30)


async def _stop(worker: Worker, running) -> None:
    await worker.shutdown()
    await running


def test_a_decision_on_a_stuck_workflow_gets_words_and_gives_the_claim_back(stuck_order):
    reviewer = _reviewer()
    outcome = services.review_decide(order=stuck_order, user=reviewer, decision="approve")
    assert (outcome.accepted, outcome.message) == (
        False,
        services.DECISION_WORKFLOW_STUCK.format(order_id=stuck_order.order_id),
    )
    task = ReviewTask.objects.get(order=stuck_order)
    assert (task.status, task.claimed_by) == ("open", None)
    answer = OrderEvent.objects.get(order=stuck_order, type="review_decision_unanswered")
    assert answer.details["code"] == "workflow_stuck"
    page = client_for(reviewer).get(reverse("reviews:order_status", args=[stuck_order.order_id]))
    assert views.LIVE_STATUS_STUCK in page.content.decode()


def test_a_stuck_workflows_answer_is_not_taken_for_silent_workers(stuck_order):
    """The server's "failed state" for one order is an answer: workers are running it. A silence
    noticed before (a query that timed out while the task was first failing) is forgotten, so
    the next request of any order is sent instead of being told the workers are down."""
    with override_settings(TEMPORAL_WORKERS_RECHECK_SECONDS=0):  # the next caller asks again
        worker_silence.noticed(WorkersNotAnswering("a query timed out"))
        with pytest.raises(WorkflowCannotAnswer):
            order_workflow_status(stuck_order.workflow_id)
    assert worker_silence.known() is None


def test_a_stuck_workflow_is_flagged_after_the_threshold(stuck_order):
    with override_settings(RECONCILE_STUCK_AFTER_SECONDS=0):
        # The server marks the workflow (TemporalReportedProblems) after 2 failed tasks here.
        wait_until(
            lambda: orders_reconcile_with_reviews(grace_seconds=0).flagged,
            timeout=60,
            what="the reconciler to flag the stuck workflow",
        )
    stuck_order.refresh_from_db()
    assert "has been failing its workflow task since" in stuck_order.attention_reason
    # Stuck is not stopped: a fixed release can carry on, so the review stays open.
    assert ReviewTask.objects.get(order=stuck_order).status == ReviewTask.Status.OPEN
