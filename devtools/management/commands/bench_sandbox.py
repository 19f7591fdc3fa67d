"""python manage.py bench_sandbox [--rounds 5] [--repeat 10]

What the workflow sandbox costs the worker's CPU, apart from everything else an order costs: the
saved histories (tests/temporal_app/histories/) replayed through the production workflow code
with each runner of ``temporal_app.worker.workflow_runner``, in this one process, the runners
taking turns round by round. A replay builds the workflow instance as a worker does for a new
run (in the sandbox: imports the workflow modules afresh) and runs every activation of its
history, so the difference between runners is what the sandbox adds per workflow run. No
Temporal server, no database: CPU time (``time.process_time``), so other processes on the
machine move the figures less than they move wall time.

The last line printed is one JSON object: CPU ms per replayed run for each runner, per round and
the median. Byte-compiled modules matter (the sandbox imports from them): with
PYTHONDONTWRITEBYTECODE set and no ``__pycache__``, every import compiles the source again.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from temporal_app.codec import data_converter
from temporal_app.worker import SANDBOX_PASSTHROUGH_MODULES, workflow_runner
from temporal_app.workflows import OrderWorkflow, ShippingWorkflow

HISTORIES = Path(settings.BASE_DIR) / "tests" / "temporal_app" / "histories"
RUNNERS = {
    "unsandboxed": lambda: workflow_runner(sandbox=False),
    "sandbox, pure modules passed through": lambda: workflow_runner(sandbox=True),
    "sandbox, strict (nothing passed through)": lambda: workflow_runner(sandbox=True, passthrough=()),
}


class Command(BaseCommand):
    help = "CPU per workflow run of each workflow runner (sandbox on, off, strict); JSON last."

    def add_arguments(self, parser):
        parser.add_argument("--rounds", type=int, default=5)
        parser.add_argument("--repeat", type=int, default=10, help="Replays of every history per round and runner.")

    def handle(self, *args, **options):
        histories = []
        for path in sorted(HISTORIES.glob("*.json")):
            saved = json.loads(path.read_text())
            histories.append(WorkflowHistory.from_json(saved["workflow_id"], saved["history"]))
        replayers = {
            name: Replayer(
                workflows=[OrderWorkflow, ShippingWorkflow],
                workflow_runner=make(),
                data_converter=data_converter(settings.TEMPORAL_PAYLOAD_KEYS),
            )
            for name, make in RUNNERS.items()
        }
        per_round: dict[str, list[float]] = {name: [] for name in RUNNERS}
        self.stderr.write(
            f"{len(histories)} histories, {options['repeat']} replays each, "
            f"{options['rounds']} rounds; bytecode writing {'off' if sys.dont_write_bytecode else 'on'}"
        )
        for replayer in replayers.values():  # warm-up: imports, the runners' first workflow
            asyncio.run(self._replay(replayer, histories, 1))
        for number in range(options["rounds"]):
            for name, replayer in replayers.items():
                per_round[name].append(asyncio.run(self._replay(replayer, histories, options["repeat"])))
            self.stderr.write(
                f"round {number + 1}: "
                + ", ".join(f"{name} {figures[-1]:.1f}" for name, figures in per_round.items())
                + " CPU ms per run"
            )
        self.stdout.write(
            json.dumps(
                {
                    "histories": len(histories),
                    "passthrough": list(SANDBOX_PASSTHROUGH_MODULES),
                    "cpu_ms_per_run": {
                        name: {"median": round(statistics.median(figures), 1), "rounds": [round(f, 1) for f in figures]}
                        for name, figures in per_round.items()
                    },
                }
            )
        )

    @staticmethod
    async def _replay(replayer: Replayer, histories: list[WorkflowHistory], repeat: int) -> float:
        """CPU ms per workflow run: one replay worker for all of them (as one worker process
        serves many runs), each history replayed ``repeat`` times, each replay a new run."""

        async def every() -> AsyncIterator[WorkflowHistory]:
            for _ in range(repeat):
                for history in histories:
                    yield history

        started = time.process_time()
        results = await replayer.replay_workflows(every())
        assert not results.replay_failures, results.replay_failures
        return (time.process_time() - started) * 1000 / (repeat * len(histories))
