"""python manage.py periodic_schedules [--queue Q]

Create or update the periodic jobs' Temporal Schedules (temporal_app/schedules.py), as the
workers do when they start, and print each one: its id, its interval and what was done.
Idempotent. The runs themselves: ``temporal schedule list`` / ``describe --schedule-id ID``, or
the Web UI's Schedules page.
"""

from __future__ import annotations

import asyncio

from django.core.management.base import BaseCommand, CommandError

from temporal_app.client import connect, exit_process
from temporal_app.schedules import all_jobs, ensure_schedules, schedule_id
from temporal_app.worker import QUEUES


class Command(BaseCommand):
    help = "Create or update the periodic jobs' Temporal Schedules, and list them."

    def add_arguments(self, parser):
        parser.add_argument(
            "--queue",
            action="append",
            choices=QUEUES,
            dest="queues",
            help="Only this task queue's jobs (repeatable). Default: every queue.",
        )

    def run_from_argv(self, argv):
        code = 0
        try:
            super().run_from_argv(argv)
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else 1
        exit_process(code)  # the SDK's runtime can hang the interpreter's finalisation

    def handle(self, *args, queues=None, **options):
        queues = queues or list(QUEUES)

        async def ensure() -> dict[str, str]:
            try:
                client = await connect()
            except Exception as err:
                raise CommandError(f"Temporal is unreachable: {str(err).splitlines()[0]}") from None
            return await ensure_schedules(client, queues)

        outcomes = asyncio.run(ensure())
        for job in all_jobs(queues):
            self.stdout.write(
                f"{schedule_id(job)}: every {job.seconds:g} s on {job.queue} ({outcomes.get(schedule_id(job))})"
            )
        if "failed" in outcomes.values():
            raise CommandError("some schedules could not be created or updated (see the log)")
