"""python manage.py bench_reviewers [--reviewers 20] [--duration 120] [--rate 1.5] [--start-dev-server]
                                   [--workers-down 60]

Reviewers under load: a real load tool (Locust, devtools/load/reviewers.py) drives reviewers who
sign in, claim and approve through the web app, while orders arrive at a steady rate; first one
reviewer alone (the idle figure), then all of them. The system is the real one: the web app
(gunicorn if installed, else runserver) and run_workers as subprocesses, the Temporal at
TEMPORAL_ADDRESS (or a dev server of its own), the database of DATABASE_URL.

With ``--workers-down N`` a third phase follows: the workers are stopped (Temporal stays up), and
the same reviewers keep working for N seconds, each open order page polling its live status
(``ReviewerWorkersDown``). Every page must answer from Postgres, the status panel saying the live
status is unavailable; the figures show whether the web stayed fast while nothing answered.

The last line printed is one JSON object: requests and errors per phase, the approve POST's
p50/p95 under load beside the idle p50, orders created and approved.
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Optional

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections

from devtools.bench import AutovacuumStandIn, Workers, bench_dev_server, check_temporal
from devtools.supervise import HttpReady, Supervisor, free_port, stop_process
from orderweb.models import Order, OrderEvent
from orderweb.services import order_create
from temporal_app.contracts import LineItem, OrderState

LOCUSTFILE = Path(settings.BASE_DIR) / "devtools" / "load" / "reviewers.py"


class Command(BaseCommand):
    help = "Reviewers under load (Locust) while orders arrive; JSON last."

    def add_arguments(self, parser):
        parser.add_argument("--reviewers", type=int, default=20)
        parser.add_argument("--duration", type=int, default=120, help="Seconds under load.")
        parser.add_argument("--idle-seconds", type=int, default=30, help="Seconds with one reviewer first.")
        parser.add_argument("--rate", type=float, default=1.5, help="Orders arriving per second.")
        parser.add_argument("--start-dev-server", action="store_true")
        parser.add_argument(
            "--workers-down",
            type=int,
            default=0,
            metavar="SECONDS",
            help="Then stop the workers and let the reviewers work this long.",
        )
        parser.add_argument(
            "--skip-load",
            action="store_true",
            help="With --workers-down: only the idle phase before it, not the load phase.",
        )

    def handle(self, *args, **options):
        if shutil.which("locust", path=str(Path(sys.executable).parent)) is None:
            raise CommandError("locust is missing: pip install -r requirements-dev.txt")
        server = bench_dev_server() if options["start_dev_server"] else None
        try:
            with AutovacuumStandIn(say=self.stderr.write):
                result = self._run(options)
        finally:
            if server is not None:
                stop_process(server[0])
                server[1].cleanup()
        self.stdout.write(json.dumps(result))
        failed = sum(result[phase]["errors"] for phase in ("idle", "load", "workers_down") if result.get(phase))
        if failed:
            raise CommandError(f"{failed} requests failed")

    def _run(self, options: dict[str, Any]) -> dict[str, Any]:
        check_temporal()
        prefix = f"load-{uuid.uuid4().hex[:6]}"
        self.password = secrets.token_urlsafe(16)  # this run's reviewers only
        self._reviewers(prefix, options["reviewers"])
        workdir = Path(tempfile.mkdtemp(prefix="bench-reviewers-"))
        workers = Workers(None)
        supervisor = Supervisor()
        port = free_port()
        # Plain http on loopback: no HTTPS redirect, cookies sent over http.
        env = {
            **os.environ,
            "TEMPORAL_ADDRESS": settings.TEMPORAL_ADDRESS,
            "PYTHONUNBUFFERED": "1",
            "SECURE_SSL_REDIRECT": "0",
            "SESSION_COOKIE_SECURE": "0",
            "CSRF_COOKIE_SECURE": "0",
        }
        if not settings.DEBUG:
            # DEBUG off: pages link hashed static files, which exist only once collected (as in
            # every deploy); without them every page answers 500.
            env["STATIC_ROOT"] = str(workdir / "staticfiles")
            self.stderr.write(f"collecting static files into {env['STATIC_ROOT']}")
            subprocess.run(
                [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "collectstatic", "--noinput", "-v0"],
                env=env,
                check=True,
            )
        web = supervisor.start(
            "web",
            self._web_command(port),
            log_path=workdir / "web.log",
            env=env,
            stop_signal=signal.SIGTERM,
            stop_timeout=20,
        )
        stop_feeding = threading.Event()
        created: list[str] = []
        try:
            workers.wait_ready(120)
            web.wait_ready(HttpReady(f"http://127.0.0.1:{port}/accounts/login/"), 60)
            feeder = threading.Thread(
                target=self._feed, args=(prefix, options["rate"], stop_feeding, created), daemon=True
            )
            feeder.start()
            host = f"http://127.0.0.1:{port}"
            self.stderr.write(f"idle: 1 reviewer for {options['idle_seconds']} s")
            idle = self._locust(host, prefix, 1, options["idle_seconds"], workdir / "idle")
            load = None
            if not (options["skip_load"] and options["workers_down"]):
                self.stderr.write(
                    f"load: {options['reviewers']} reviewers for {options['duration']} s, "
                    f"orders arriving at {options['rate']:g}/s"
                )
                load = self._locust(host, prefix, options["reviewers"], options["duration"], workdir / "load")
            down = None
            if options["workers_down"]:
                self.stderr.write(
                    f"workers down: stopping them; {options['reviewers']} reviewers keep working "
                    f"for {options['workers_down']} s"
                )
                workers.stop()
                waiting = Order.objects.filter(order_id__in=created, status=OrderState.AWAITING_MANUAL_REVIEW).count()
                self.stderr.write(f"  {waiting} orders wait for review")
                down = self._locust(
                    host,
                    prefix,
                    options["reviewers"],
                    options["workers_down"],
                    workdir / "down",
                    user_class="ReviewerWorkersDown",
                )
                down["orders_waiting_for_review"] = waiting
        finally:
            stop_feeding.set()
            supervisor.stop_all()
            workers.stop()
        approved = (
            Order.objects.filter(order_id__in=created)
            .exclude(status__in=[OrderState.STARTED, OrderState.PROCESSING, OrderState.AWAITING_MANUAL_REVIEW])
            .count()
        )
        return {
            "reviewers": options["reviewers"],
            "orders_created": len(created),
            "orders_past_review": approved,
            "idle": idle,
            "load": load,
            "workers_down": down,
            "approve_p95_load_over_idle_p50": (
                round(load["approve"]["p95"] / idle["approve"]["p50"], 2)
                if load and idle["approve"]["p50"] and load["approve"]["p95"]
                else None
            ),
            "web_server": Path(self._web_command(port)[0]).name,
            "logs": str(workdir),
        }

    def _reviewers(self, prefix: str, count: int) -> None:
        User = get_user_model()
        group = Group.objects.get(name="reviewer")
        for n in range(1, count + 1):
            user = User.objects.create_user(f"{prefix}-{n}", password=self.password)
            user.groups.add(group)

    def _web_command(self, port: int) -> list[str]:
        gunicorn = Path(sys.executable).parent / "gunicorn"
        if gunicorn.exists():
            return [
                str(gunicorn),
                "orderweb.wsgi",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
                "--threads",
                "4",
                "--access-logfile",
                "-",
            ]
        return [
            sys.executable,
            str(Path(settings.BASE_DIR) / "manage.py"),
            "runserver",
            f"127.0.0.1:{port}",
            "--noreload",
        ]

    def _feed(self, prefix: str, rate: float, stop: threading.Event, created: list[str]) -> None:
        """Orders arriving at a steady rate, through order_create (the workflow starts on commit)."""
        n = 0
        next_at = time.monotonic()
        while not stop.is_set():
            order_id = f"{prefix.upper()}-{n:05d}"
            try:
                order_create(
                    order_id=order_id,
                    address=f"{n} Load Street\nSpringfield",
                    line_items=[LineItem("SKU-LOAD", "Load widget", 1, "4.99")],
                    source=OrderEvent.Source.COMMAND,
                )
                created.append(order_id)
            except Exception as err:  # noqa: BLE001  (the run goes on; the count tells)
                self.stderr.write(f"feeder: {order_id}: {type(err).__name__}: {err}")
            finally:
                close_old_connections()
            n += 1
            next_at += 1 / rate
            stop.wait(max(0.0, next_at - time.monotonic()))

    def _locust(
        self, host: str, prefix: str, users: int, seconds: int, out: Path, user_class: str = "Reviewer"
    ) -> dict[str, Any]:
        import subprocess

        env = {**os.environ, "LOAD_REVIEWER_PREFIX": prefix, "LOAD_REVIEWER_PASSWORD": self.password}
        command = [
            str(Path(sys.executable).parent / "locust"),
            "-f",
            str(LOCUSTFILE),
            user_class,
            "--headless",
            "-u",
            str(users),
            "-r",
            str(max(1, users // 5)),
            "-t",
            f"{seconds}s",
            "--host",
            host,
            "--csv",
            str(out),
            "--only-summary",
            "--stop-timeout",
            "10",
        ]
        subprocess.run(command, env=env, capture_output=True, text=True, timeout=seconds + 120)
        return _stats(Path(f"{out}_stats.csv"))


def _stats(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise CommandError(f"locust wrote no statistics ({path})")
    rows = {row["Name"]: row for row in csv.DictReader(path.open())}
    total = rows.get("Aggregated", {})

    def figures(name: str) -> dict[str, Optional[float]]:
        row = rows.get(name)
        if not row or not int(row["Request Count"]):
            return {"requests": 0, "p50": None, "p95": None, "max": None}
        return {
            "requests": int(row["Request Count"]),
            "p50": float(row["50%"]),
            "p95": float(row["95%"]),
            "max": float(row["Max Response Time"]),
        }

    return {
        "requests": int(total.get("Request Count", 0)),
        "errors": int(total.get("Failure Count", 0)),
        "approve": figures("approve"),
        "claim": figures("claim"),
        "queue": figures("queue"),
        "order_page": figures("order page"),
        "live_status": figures("live status"),
    }
