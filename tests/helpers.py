"""Helpers for tests that drive the real system from outside, as a client would."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from temporalio.client import Client, WorkflowHandle

T = TypeVar("T")

# The xdist group of the tests that start a whole system of their own (many processes, much CPU):
# one xdist worker runs them one after another, never beside each other (tests/conftest.py).
OWN_SYSTEM = "own-system"


def temporal(fn: Callable[[Client], Awaitable[T]], timeout: float = 60) -> T:
    """Run ``fn(client)`` with the process's Temporal client (the same one the web app uses)."""
    from temporal_app.client import client_thread

    return client_thread.run(fn, timeout=timeout)


def handle(workflow_id: str) -> WorkflowHandle:
    """A typed handle: ``result()`` returns an OrderResult."""
    from temporal_app.workflows import OrderWorkflow

    return temporal(lambda c: _async(c.get_workflow_handle_for(OrderWorkflow.run, workflow_id)))


async def _async(value: T) -> T:
    return value


def new_order_id(prefix: str = "ORDER") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10].upper()}"


def wait_until(predicate: Callable[[], Any], *, timeout: float = 30, what: str = "condition") -> Any:
    """Poll until ``predicate()`` is truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


def workflow_status(workflow_id: str) -> dict[str, Any]:
    from temporal_app.client import order_workflow_status

    return order_workflow_status(workflow_id)


def wait_for_status(
    workflow_id: str, predicate: Callable[[dict[str, Any]], bool], what: str, timeout: float = 30
) -> dict[str, Any]:
    """Poll the workflow's get_status until `predicate` holds; a timeout names the last status.

    Only "not yet" is waited out: a workflow not started yet (its start is sent after a commit)
    or a query the busy worker did not answer in time. Any other error (the query handler
    failed, a workflow task keeps failing) is the answer, and raised at once."""
    from temporal_app.client import TemporalNoAnswer, WorkflowGone

    last: dict[str, Any] = {}
    last_error: Exception | None = None

    def reached() -> bool:
        nonlocal last, last_error
        try:
            last = workflow_status(workflow_id)
        except (WorkflowGone, TemporalNoAnswer) as err:
            last_error = err
            return False
        return predicate(last)

    try:
        wait_until(reached, timeout=timeout, what=f"{workflow_id} to {what}")
    except AssertionError as err:
        seen = (
            f"last status: {last.get('workflow_status')} {last}" if last else f"no status; last error: {last_error!r}"
        )
        raise AssertionError(f"{err}; {seen}") from None
    return last


def wait_for_state(workflow_id: str, state: str, timeout: float = 30) -> dict[str, Any]:
    return wait_for_status(workflow_id, lambda status: status["workflow_status"] == state, f"reach {state}", timeout)


def wait_until_passed(workflow_id: str, state: str, timeout: float = 30) -> dict[str, Any]:
    """Wait until the order has been in `state`, whether it is still there or already past it
    (a fast step, such as a declined charge, can leave a state before a poll sees it)."""
    return wait_for_status(
        workflow_id,
        lambda status: any(entry["state"] == state for entry in status["state_history"]),
        f"pass through {state}",
        timeout,
    )


def terminate_running_workflows() -> None:
    async def run(client: Client) -> None:
        async for execution in client.list_workflows('ExecutionStatus="Running"'):
            with contextlib.suppress(Exception):  # it finished meanwhile
                await client.get_workflow_handle(execution.id, run_id=execution.run_id).terminate("test ended")

    temporal(run)
