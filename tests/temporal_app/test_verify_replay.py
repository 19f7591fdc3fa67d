"""`manage.py verify_replay` against the histories the dev server holds: it passes on the code as
it is, and fails (exit status 1, naming each workflow, the event and the error) on an
incompatible change."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from orderweb.services import order_create
from reviews.services import review_decide
from temporal_app.contracts import LineItem, shipping_workflow_id
from temporal_app.management.commands import verify_replay
from temporal_app.workflows import ShippingWorkflow, WebhookDeliveryWorkflow
from tests.conftest import ARTIFACTS
from tests.helpers import new_order_id, temporal, wait_for_state
from tests.reviews.conftest import make_user
from tests.temporal_app.changed_workflows import StepBeforeReviewOrderWorkflow

pytestmark = pytest.mark.temporal


def _orders(system) -> tuple[str, str]:
    """One order parked in review (running) and one approved and completed (closed)."""
    reviewer = make_user("replay-reviewer", reviewer=True)
    parked = order_create(
        order_id=new_order_id("PARKED"), address="1 Replay Road", line_items=[LineItem("SKU-1", "Widget", 1, "5.00")]
    )
    done = order_create(
        order_id=new_order_id("DONE"), address="2 Replay Road", line_items=[LineItem("SKU-1", "Widget", 1, "5.00")]
    )
    wait_for_state(parked.workflow_id, "awaiting_manual_review")
    wait_for_state(done.workflow_id, "awaiting_manual_review")
    assert review_decide(order=done, user=reviewer, decision="approve").accepted
    temporal(lambda client: client.get_workflow_handle(done.workflow_id).result())
    return parked.workflow_id, done.workflow_id


def _run(*ids: str) -> tuple[str, CommandError | None]:
    query = " OR ".join(f'WorkflowId = "{workflow_id}"' for workflow_id in ids)
    out = io.StringIO()
    try:
        call_command("verify_replay", "--no-progress", "--query", query, stdout=out)
    except CommandError as err:
        return out.getvalue(), err
    return out.getvalue(), None


def test_passes_on_the_code_as_it_is_and_fails_on_an_incompatible_change(system, monkeypatch):
    ARTIFACTS.mkdir(exist_ok=True)
    parked, done = _orders(system)
    ids = (parked, done, shipping_workflow_id(done))

    out, error = _run(*ids)
    (ARTIFACTS / "verify-replay-good.txt").write_text(out)
    assert error is None, out
    assert "Replaying 3 histories (1 running, 2 closed;" in out
    assert "Replayed 3 histories (1 running, 2 closed)" in out
    assert "3 replayed cleanly, 0 non-deterministic, 0 other errors." in out
    assert "FAILED" not in out

    # A copy of OrderWorkflow with a step inserted before the review, as the workers would run it.
    monkeypatch.setattr(
        verify_replay,
        "replay_workflows",
        lambda: [StepBeforeReviewOrderWorkflow, ShippingWorkflow, WebhookDeliveryWorkflow],
    )
    out, error = _run(*ids)
    (ARTIFACTS / "verify-replay-bad.txt").write_text(f"{out}CommandError: {error}\n")
    assert error is not None and error.returncode == 1, out
    assert "do not switch versions" in str(error)
    assert "1 replayed cleanly, 2 non-deterministic, 0 other errors." in out
    failed = [line for line in out.splitlines() if line.startswith("FAILED ")]
    assert len(failed) == 2, out
    for line, workflow_id, state in ((failed[0], parked, "running"), (failed[1], done, "closed")):
        assert line.startswith(f"FAILED {workflow_id} (OrderWorkflow, {state}, run "), line
        # Where the replay diverged: history has the validation (the second local activity) where
        # the changed code starts its timer.
        assert "non-determinism at event " in line and "MarkerRecorded (local activity 2)" in line, line
        assert line.endswith("[TMPRL1100] Nondeterminism error: Missing associated machine for LocalActivity(2)"), line


def test_a_malformed_query_is_one_clear_error(system):
    with pytest.raises(CommandError, match="is --query a valid visibility query"):
        call_command("verify_replay", "--no-progress", "--query", "WorkflowId = = 'x'", stdout=io.StringIO())


def test_nothing_to_replay_is_a_pass(system):
    out, error = _run("no-such-workflow")
    assert error is None
    assert "Replaying 0 histories (0 running, 0 closed;" in out and "OK:" in out
