"""Replaying live histories through the code on disk: can this code run the orders Temporal holds?

``manage.py verify_replay`` (the deploy check of DESIGN.md rule 15, runbook in
docs/operations.md) lists workflows from the Temporal the settings point at, running ones first
(the ones a new version must take over), then the most recently closed, fetches each history and
replays it with the workers' own workflows and data converter (the payload codec included), in
temporalio's sandbox. A history the code cannot reproduce command for command is a
non-determinism: deploying the code would wedge that workflow at its next workflow task.

Django-free apart from what the caller passes in.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Optional

from temporalio.client import Client, WorkflowExecution, WorkflowHistory
from temporalio.converter import DataConverter
from temporalio.worker import Replayer, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner
from temporalio.workflow import NondeterminismError

# How many histories are fetched ahead of the one being replayed.
FETCH_AHEAD = 8

# Core names where replay diverged as "HistoryEvent(id: 11, TimerStarted)", or, for a local
# activity, by its sequence number ("LocalActivity(2)": the second local-activity marker).
_EVENT = re.compile(r"HistoryEvent\(id: (\d+), (\w+)")
_LOCAL_ACTIVITY = re.compile(r"LocalActivity\((\d+)\)")
# The SDK wraps core's failure in Rust debug output; the message inside is the part for people.
_INNER_MESSAGE = re.compile(r'message: "((?:[^"\\]|\\.)*)"')
LOCAL_ACTIVITY_MARKER = "core_local_activity"


@dataclass(frozen=True)
class Candidate:
    """A workflow run to replay, as the visibility listing named it."""

    workflow_id: str
    run_id: str
    workflow_type: str
    running: bool

    @classmethod
    def of(cls, execution: WorkflowExecution, *, running: bool) -> Candidate:
        return cls(execution.id, execution.run_id, execution.workflow_type, running)


@dataclass(frozen=True)
class Failure:
    candidate: Candidate
    nondeterministic: bool
    event: str  # "11 TimerStarted", or "" when the error names none
    error: str  # the error's first line

    def describe(self) -> str:
        kind = "non-determinism" if self.nondeterministic else "replay error"
        state = "running" if self.candidate.running else "closed"
        where = f" at event {self.event}" if self.event else ""
        return (
            f"{self.candidate.workflow_id} ({self.candidate.workflow_type}, {state}, run "
            f"{self.candidate.run_id}): {kind}{where}: {self.error}"
        )


@dataclass
class Report:
    running: int = 0
    closed: int = 0
    failures: list[Failure] = field(default_factory=list)

    @property
    def replayed(self) -> int:
        return self.running + self.closed

    @property
    def nondeterministic(self) -> list[Failure]:
        return [f for f in self.failures if f.nondeterministic]

    @property
    def ok(self) -> bool:
        return not self.failures


def visibility_query(*, running: bool, workflow_types: Sequence[str], query: str = "") -> str:
    parts = ['ExecutionStatus = "Running"' if running else 'ExecutionStatus != "Running"']
    if workflow_types:
        parts.append("(" + " OR ".join(f'WorkflowType = "{name}"' for name in workflow_types) + ")")
    if query.strip():
        parts.append(f"({query})")
    return " AND ".join(parts)


async def list_candidates(
    client: Client,
    *,
    limit: int,
    workflow_types: Sequence[str],
    query: str = "",
) -> list[Candidate]:
    """Up to ``limit`` runs: every running one first (up to the limit), then closed ones, the most
    recently closed first (the visibility store's own order for closed runs)."""
    found: list[Candidate] = []
    for running in (True, False):
        remaining = limit - len(found)
        if remaining <= 0:
            break
        listing = client.list_workflows(
            visibility_query(running=running, workflow_types=workflow_types, query=query),
            limit=remaining,
        )
        found += [Candidate.of(execution, running=running) async for execution in listing]
    return found


async def fetch_histories(
    client: Client,
    candidates: Sequence[Candidate],
    ahead: int = FETCH_AHEAD,
) -> AsyncIterator[WorkflowHistory]:
    """The candidates' histories in order, ``ahead`` of them fetched concurrently."""

    async def fetch(candidate: Candidate) -> WorkflowHistory:
        return await client.get_workflow_handle(candidate.workflow_id, run_id=candidate.run_id).fetch_history()

    pending: list[asyncio.Task[WorkflowHistory]] = []
    upcoming = iter(candidates)
    try:
        for candidate in upcoming:
            pending.append(asyncio.ensure_future(fetch(candidate)))
            if len(pending) >= ahead:
                yield await pending.pop(0)
        while pending:
            yield await pending.pop(0)
    finally:
        for task in pending:
            task.cancel()


def describe_failure(candidate: Candidate, error: BaseException, history: WorkflowHistory) -> Failure:
    text = str(error).strip() or type(error).__name__
    inner = _INNER_MESSAGE.search(text)
    message = (inner.group(1) if inner else text).splitlines()[0]
    return Failure(candidate, isinstance(error, NondeterminismError), _diverging_event(text, history), message)


def _diverging_event(text: str, history: WorkflowHistory) -> str:
    """The event replay stopped at, "11 MarkerRecorded", when the error says which; else ""."""
    found = _EVENT.search(text)
    if found:
        return f"{found.group(1)} {found.group(2)}"
    found = _LOCAL_ACTIVITY.search(text)
    if found:
        markers = [
            event
            for event in history.events
            if event.HasField("marker_recorded_event_attributes")
            and event.marker_recorded_event_attributes.marker_name == LOCAL_ACTIVITY_MARKER
        ]
        position = int(found.group(1))
        if 0 < position <= len(markers):
            return f"{markers[position - 1].event_id} MarkerRecorded (local activity {position})"
    return ""


async def replay(
    client: Client,
    candidates: Sequence[Candidate],
    *,
    workflows: Sequence[type],
    data_converter: DataConverter,
    runner: Optional[WorkflowRunner] = None,
    progress: Callable[[Candidate, Optional[Failure]], None] = lambda candidate, failure: None,
) -> Report:
    """Replay each candidate's history; ``progress`` is called after each one."""
    report = Report()
    if not candidates:
        return report
    replayer = Replayer(
        workflows=list(workflows),
        workflow_runner=runner or SandboxedWorkflowRunner(),
        data_converter=data_converter,
    )
    async with replayer.workflow_replay_iterator(fetch_histories(client, candidates)) as results:
        # Results come in the order of the histories given (a reset run's history names its
        # original run, so it is matched by position, not by run id).
        position = 0
        async for result in results:
            candidate = candidates[position]
            position += 1
            if candidate.running:
                report.running += 1
            else:
                report.closed += 1
            failure = None
            if result.replay_failure is not None:
                failure = describe_failure(candidate, result.replay_failure, result.history)
                report.failures.append(failure)
            progress(candidate, failure)
    return report
