"""python manage.py verify_replay [--limit N] [--query Q] [--workflow-type T ...]

Can the code on disk run the workflows Temporal holds? Lists workflows from the Temporal the
settings point at (running ones first, then the most recently closed), replays each history
through the workers' own workflows and data converter (payload codec included), and prints a
summary with each failure's workflow id, the event where replay diverged and the error. Exit
status 1 on any failure, so a deploy pipeline runs it before it switches worker versions
(docs/operations.md, "Upgrading the workers").
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Optional

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from temporal_app.client import connect, data_converter, exit_process
from temporal_app.replay import Candidate, Failure, Report, list_candidates, replay
from temporal_app.worker import replay_workflows, workflow_runner, workflow_type

DEFAULT_LIMIT = 1000
UNREACHABLE = "Temporal is unreachable at {address} (namespace {namespace}): {detail}"
BAD_QUERY = "Temporal refused the listing (is --query a valid visibility query?): {detail}"


class Command(BaseCommand):
    help = "Replay live workflow histories through the code on disk; exit 1 on any non-determinism."

    def add_arguments(self, parser):
        types = sorted({workflow_type(defn) for defn in replay_workflows()})
        parser.add_argument(
            "--limit",
            type=int,
            default=DEFAULT_LIMIT,
            help="Histories to replay, running ones first (default: %(default)s).",
        )
        parser.add_argument(
            "--query",
            default="",
            help="A visibility query that narrows the listing, e.g. 'StartTime > \"2026-12-01T00:00:00Z\"'.",
        )
        parser.add_argument(
            "--workflow-type",
            action="append",
            dest="workflow_types",
            choices=types,
            help="Only this workflow type (repeatable). Default: every type the workers run.",
        )
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")

    def run_from_argv(self, argv):
        # From the command line: exit without the interpreter finalisation that the SDK's runtime
        # can hang (temporal_app.client.exit_process); call_command (tests) returns or raises.
        code = 0
        try:
            super().run_from_argv(argv)
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else 1
        exit_process(code)

    def handle(self, *args, limit, query, workflow_types, no_progress, **options):
        if limit < 1:
            raise CommandError("--limit must be at least 1")
        workflows = replay_workflows()
        names = workflow_types or sorted({workflow_type(defn) for defn in workflows})
        started = time.monotonic()
        report = asyncio.run(
            self._verify(limit=limit, query=query, names=names, workflows=workflows, progress_off=no_progress)
        )
        self._summary(report, time.monotonic() - started)
        if not report.ok:
            # Django prints "CommandError: ..." and exits with its returncode (1).
            raise CommandError(self._verdict(report))

    async def _verify(
        self, *, limit: int, query: str, names: list[str], workflows: list[type], progress_off: bool
    ) -> Report:
        try:
            client = await connect()
        except Exception as err:  # the SDK's RuntimeError, or TemporalMisconfigured
            raise CommandError(
                UNREACHABLE.format(
                    address=settings.TEMPORAL_ADDRESS,
                    namespace=settings.TEMPORAL_NAMESPACE,
                    detail=str(err).splitlines()[0],
                )
            ) from None
        try:
            candidates = await list_candidates(client, limit=limit, workflow_types=names, query=query)
        except Exception as err:  # RPCError INVALID_ARGUMENT for a malformed query
            raise CommandError(BAD_QUERY.format(detail=getattr(err, "message", str(err)).splitlines()[0])) from None
        running = sum(c.running for c in candidates)
        self.stdout.write(
            f"Replaying {len(candidates)} histories ({running} running, {len(candidates) - running} closed; "
            f"{', '.join(names)}) from {settings.TEMPORAL_ADDRESS} (namespace {settings.TEMPORAL_NAMESPACE}) "
            "through the code on disk"
        )
        bar = tqdm(total=len(candidates), unit="history", file=sys.stderr, disable=progress_off, dynamic_ncols=True)

        failed = 0

        def progress(candidate: Candidate, failure: Optional[Failure]) -> None:
            nonlocal failed
            if failure is not None:
                failed += 1
                bar.set_postfix(failed=failed, refresh=False)
            bar.update(1)

        try:
            # The strict sandbox (nothing of ours passed through), as the test suite's workers:
            # stricter than production's runner (it refuses wall clocks, randomness and I/O in
            # workflow code, the pure modules' included).
            return await replay(
                client,
                candidates,
                workflows=workflows,
                data_converter=data_converter(),
                runner=workflow_runner(sandbox=True, passthrough=()),
                progress=progress,
            )
        finally:
            bar.close()

    def _summary(self, report: Report, seconds: float) -> None:
        for failure in report.failures:
            self.stdout.write(f"FAILED {failure.describe()}")
        other = len(report.failures) - len(report.nondeterministic)
        self.stdout.write(
            f"Replayed {report.replayed} histories ({report.running} running, {report.closed} closed) in "
            f"{seconds:.1f} s: {report.replayed - len(report.failures)} replayed cleanly, "
            f"{len(report.nondeterministic)} non-deterministic, {other} other errors."
        )
        if report.ok:
            self.stdout.write("OK: the code on disk replays every history it was given.")

    @staticmethod
    def _verdict(report: Report) -> str:
        running = sum(1 for f in report.failures if f.candidate.running)
        if report.nondeterministic:
            return (
                f"{len(report.nondeterministic)} histories are not deterministic under this code, "
                f"{running} of them running workflows it would wedge: do not switch versions "
                "(docs/determinism.md)"
            )
        return f"{len(report.failures)} histories could not be replayed ({running} running); see above"
