"""What the benchmarks share: the workers they start, the dev server, the reviewer account, the
review UI's approval path, planner statistics where autovacuum is off, and the figures' arithmetic."""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import CommandError
from django.db import connection
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest

from devtools.devserver import DevServerError, start_dev_server
from devtools.supervise import ChildExited, NotReady, Supervisor, free_port, worker_health
from temporal_app.client import TemporalUnavailable, client_thread

BENCH_USER = "bench-reviewer"
WORKERS_DID_NOT_START = "The workers did not start within {timeout:g} s: {detail}"


def percentile(values: list[float], q: float) -> Optional[float]:
    """Nearest-rank percentile: small samples give a real observed value."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def vm_hwm_mb(pid: int) -> Optional[float]:
    """Peak resident set size of a process (Linux VmHWM), in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def running_worker_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"run_workers" in cmdline and any(part.endswith(b"manage.py") for part in cmdline):
                pids.append(int(entry.name))
    return pids


class Workers:
    """`manage.py run_workers` as a subprocess, as in production, under devtools.supervise; ready
    when its /readyz says every worker polls; stopped with SIGINT."""

    def __init__(self, threads: Optional[int]) -> None:
        fd, name = tempfile.mkstemp(prefix="bench-workers-", suffix=".log")
        os.close(fd)
        self.log = Path(name)
        command = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "run_workers"]
        if threads:
            command += ["--threads", str(threads)]
        health_env, self.ready = worker_health()
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TEMPORAL_ADDRESS": settings.TEMPORAL_ADDRESS, **health_env}
        self.supervisor = Supervisor()
        self.child = self.supervisor.start(
            "workers", command, log_path=self.log, env=env, stop_signal=signal.SIGINT, stop_timeout=30
        )

    def wait_ready(self, timeout: float) -> None:
        try:
            self.child.wait_ready(self.ready, timeout)
        except ChildExited as exited:
            detail = self.child.last_line() if self.log.stat().st_size else f"exit code {exited.returncode}"
            raise CommandError(WORKERS_DID_NOT_START.format(timeout=timeout, detail=detail)) from None
        except NotReady:
            self.stop()
            raise CommandError(WORKERS_DID_NOT_START.format(timeout=timeout, detail=f"see {self.log}")) from None

    def peak_rss_mb(self) -> Optional[float]:
        return vm_hwm_mb(self.child.pid)

    def stop(self) -> None:
        self.supervisor.stop_all()


def bench_dev_server() -> tuple[Any, tempfile.TemporaryDirectory]:
    """A dev server of our own: same binary and pragmas as `make run`, nobody else's load.
    Points TEMPORAL_ADDRESS at it; returns the process and its directory (to stop and clean)."""
    workdir = tempfile.TemporaryDirectory(prefix="bench-temporal-")
    port = free_port()
    try:
        process = start_dev_server(
            db_file=Path(workdir.name) / "temporal.db",
            port=port,
            ui_port=free_port(),
            headless=True,
            log=Path(workdir.name) / "temporal.log",
        )
    except DevServerError as err:
        workdir.cleanup()
        raise CommandError(str(err)) from None
    settings.TEMPORAL_ADDRESS = f"127.0.0.1:{port}"
    return process, workdir


class AutovacuumStandIn:
    """Planner statistics kept fresh during a benchmark, as autovacuum keeps them in production.

    Where Postgres runs with ``autovacuum = off`` (this machine's does), nothing ever ANALYZEs the
    tables a benchmark fills, and the planner takes the risk rules' history read
    (``reviews/risk.py``) for a handful of rows: it reads every earlier order of the customer
    instead of walking the index to the latest 1,000. Measured on a database of 10,700 orders:
    27.7 ms per read without statistics, 3.9 ms with; Postgres 42 against 19 CPU ms per order
    (docs/benchmarks.md). So, only when autovacuum is off, a thread runs ``ANALYZE`` every
    ``seconds``; with autovacuum on it does nothing. Use as a context manager."""

    def __init__(self, seconds: float = 30.0, say: Callable[[str], Any] = lambda message: None) -> None:
        self.seconds = seconds
        self.say = say
        self.analyzed = 0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def __enter__(self) -> AutovacuumStandIn:
        with connection.cursor() as cursor:
            cursor.execute("SHOW autovacuum")
            if cursor.fetchone()[0] == "on":
                return self
        self.say(f"Postgres runs with autovacuum off: ANALYZE every {self.seconds:g} s, as autovacuum would")
        self._analyze()  # before the first order: a reused database may hold thousands
        self._thread = threading.Thread(target=self._loop, name="bench-analyze", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()

    def _loop(self) -> None:
        try:
            while not self._stop.wait(self.seconds):
                self._analyze()
        finally:
            connection.close()  # this thread's own connection

    def _analyze(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        self.analyzed += 1


def check_temporal() -> None:
    async def ping(client):
        return await client.workflow_service.get_system_info(GetSystemInfoRequest())

    try:
        client_thread.run(ping, timeout=10)
    except TemporalUnavailable as err:
        raise CommandError(str(err)) from None


def bench_reviewer():
    """A reviewer account for the approvals (no usable password: it cannot log in)."""
    User = get_user_model()
    user, created = User.objects.get_or_create(username=BENCH_USER)
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    group = Group.objects.filter(name="reviewer").first()
    if group is not None:
        user.groups.add(group)
    return user


NOT_SENT_RETRY_SECONDS = 1.0
NOT_SENT_GIVE_UP_SECONDS = 120.0


def approver() -> Callable[..., Optional[str]]:
    """The review UI's own path: ``review_decide`` (audit, then the DecideReview Update).
    Returns a function that approves and returns None, or a problem description; it raises
    TemporalUnavailable when the decision was sent but its answer did not come in time. A
    decision that was not sent (Temporal unreachable, or this process knows the workers are not
    answering: ``temporal_app.client.WorkerSilence``) is decided again a second later, as a
    reviewer would, for up to two minutes."""
    from orderweb.actions import Unanswered
    from reviews.services import review_decide

    def approve(*, order, user) -> Optional[str]:
        give_up = time.monotonic() + NOT_SENT_GIVE_UP_SECONDS
        while True:
            outcome = review_decide(order=order, user=user, decision="approve")
            if outcome.accepted:
                return None
            if outcome.code in (Unanswered.UNREACHABLE, Unanswered.WORKERS_DOWN) and time.monotonic() < give_up:
                time.sleep(NOT_SENT_RETRY_SECONDS)
                continue
            if outcome.code in (Unanswered.NO_ANSWER, Unanswered.UNREACHABLE, Unanswered.WORKERS_DOWN):
                raise TemporalUnavailable(outcome.message)
            return outcome.message

    return approve
