"""python manage.py workers_status [--json]

Each version of the Worker Deployment ``TEMPORAL_DEPLOYMENT_NAME``, newest first: current,
ramping, draining, drained or inactive; its pollers on each task queue; how many running orders
last ran a workflow task on it; and whether its workers can stop (docs/operations.md, "Upgrading
the workers").
"""

from __future__ import annotations

import asyncio
import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from temporal_app.client import connect, exit_process
from temporal_app.versioning import POLLER_SEEN_SECONDS, VersionStatus, code_build_id, count_open, deployment_status
from temporal_app.worker import QUEUES

UNREACHABLE = "Temporal is unreachable at {address} (namespace {namespace}): {detail}"
NO_DEPLOYMENT = (
    "Temporal knows no worker deployment {name!r} (no versioned worker has polled yet; "
    "TEMPORAL_WORKER_VERSIONING is {versioning})."
)


class Command(BaseCommand):
    help = "Show each worker version: current or ramping, pollers, open orders, drained."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", dest="as_json", help="One JSON object instead of the table.")

    def run_from_argv(self, argv):
        code = 0
        try:
            super().run_from_argv(argv)
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else 1
        exit_process(code)  # the SDK's runtime ran: no interpreter finalisation (client.exit_process)

    def handle(self, *args, as_json: bool = False, **options):
        name = settings.TEMPORAL_DEPLOYMENT_NAME
        versions, unversioned = asyncio.run(self._read(name))
        if versions is None:
            raise CommandError(
                NO_DEPLOYMENT.format(name=name, versioning="on" if settings.TEMPORAL_WORKER_VERSIONING else "off")
            )
        here = settings.TEMPORAL_BUILD_ID or code_build_id()
        if as_json:
            self.stdout.write(
                json.dumps(
                    {
                        "deployment": name,
                        "this_code": here,
                        "unversioned_open_orders": unversioned,
                        "versions": [{**vars(v), "can_stop": v.can_stop} for v in versions],
                    }
                )
            )
            return
        self.stdout.write(
            f"Worker deployment {name} on {settings.TEMPORAL_ADDRESS} "
            f"(namespace {settings.TEMPORAL_NAMESPACE}); the code on disk is build {here}"
        )
        queues = " / ".join(QUEUES)
        rows = [("build id", "state", f"pollers ({queues})", "open orders", "")]
        for version in versions:
            rows.append(
                (
                    version.build_id,
                    _state(version),
                    " / ".join(str(version.pollers[q]) for q in QUEUES),
                    str(version.open_orders),
                    _note(version),
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        for row in rows:
            self.stdout.write(
                "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[4]
            )
        self.stdout.write(
            f"pollers: workers that polled in the last {POLLER_SEEN_SECONDS:g} s; open orders: running "
            "orders whose last workflow task ran on that version (auto-upgrade: they move to the "
            "current version at their next step)."
        )
        if unversioned:
            self.stdout.write(
                f"{unversioned} open orders last ran on unversioned workers; "
                "they move to the current version at their next step."
            )

    async def _read(self, name: str) -> tuple[list[VersionStatus] | None, int]:
        try:
            client = await connect()
        except Exception as err:
            raise CommandError(
                UNREACHABLE.format(
                    address=settings.TEMPORAL_ADDRESS,
                    namespace=settings.TEMPORAL_NAMESPACE,
                    detail=str(err).splitlines()[0],
                )
            ) from None
        versions = await deployment_status(client, name, QUEUES)
        return versions, await count_open(client, "OrderWorkflow", None)


def _state(version: VersionStatus) -> str:
    if version.state == "ramping":
        return f"ramping {version.ramp_percentage:g} %"
    return version.state


def _note(version: VersionStatus) -> str:
    pollers = sum(version.pollers.values())
    if version.state == "drained":
        return "drained: its workers can stop" if pollers else "drained, stopped"
    if version.state == "draining":
        return "draining: keep its workers until it says drained"
    if version.state == "inactive" and not version.ever_current:
        return "not current yet: verify_replay, then set-current-version"
    if version.can_stop:
        return "no longer routed to: its workers can stop" if pollers else "stopped"
    return ""
