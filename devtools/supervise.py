"""Process supervision for the dev tooling: ``make run`` (scripts/run_system.py), the chaos run
and ``bench_orders`` start, watch and stop their processes with this module, and only this one.

- A child starts in a session of its own (so in its own process group) with a given environment
  and its output appended to a log file: the terminal's Ctrl-C reaches only the supervisor, which
  decides what each child gets.
- Readiness is something the child answers, never a line in its log: an HTTP URL (the workers'
  ``/readyz``, see ``temporal_app.health``; a web page) or a TCP port (Temporal's frontend).
- A child that died is noticed, with the last line of its log.
- Children stop in reverse order of start: their stop signal to the whole group, a bounded wait,
  SIGKILL as the last resort. ``Supervisor.hurry`` (a second Ctrl-C) shortens every wait, also
  the one in progress.
- The embedded Postgres (``devtools.localdb``) is not a child (``pg_ctl`` detaches it), but it is
  stopped here too: ``stop_embedded_postgres`` is the one place that does it.

Standard library only, no Django: scripts/run_system.py uses it before any settings exist.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Optional, Union

HURRIED_WAIT_SECONDS = 2.0  # what is left of a stop wait once the supervisor hurries
Log = Union[Path, IO, int, None]  # a path (appended to), an open file, subprocess.DEVNULL, or inherit
Hurry = Union[bool, Callable[[], bool]]


class SupervisionError(RuntimeError):
    pass


class ChildExited(SupervisionError):
    """The process ended while we waited for it to get ready."""

    def __init__(self, process: subprocess.Popen) -> None:
        super().__init__(f"exited with code {process.returncode}")
        self.returncode = process.returncode


class NotReady(SupervisionError):
    """The process did not get ready in time (it still runs)."""

    def __init__(self, ready: Readiness, timeout: float) -> None:
        super().__init__(f"{ready} did not answer within {timeout:g} s")
        self.ready, self.timeout = ready, timeout


# -- ports ---------------------------------------------------------------------------------------


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


# -- readiness -----------------------------------------------------------------------------------


def _status_200(status: int) -> bool:
    return status == 200


@dataclass(frozen=True)
class HttpReady:
    """Ready when a GET of ``url`` answers with a status ``accept`` takes (default: 200 only)."""

    url: str
    accept: Callable[[int], bool] = _status_200

    def check(self) -> bool:
        try:
            with urllib.request.urlopen(self.url, timeout=2) as response:
                return self.accept(response.status)
        except urllib.error.HTTPError as err:
            return self.accept(err.code)
        except (OSError, http.client.HTTPException):  # not listening yet, or hung up on us
            return False

    def __str__(self) -> str:
        return self.url


@dataclass(frozen=True)
class PortReady:
    """Ready when something accepts TCP connections on ``host:port``."""

    host: str
    port: int

    def check(self) -> bool:
        return port_in_use(self.host, self.port)

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


Readiness = Union[HttpReady, PortReady]


def wait_ready(
    ready: Readiness, timeout: float, process: Optional[subprocess.Popen] = None, *, interval: float = 0.1
) -> None:
    """Return once ``ready`` holds; raise ChildExited if ``process`` ends first, NotReady after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise ChildExited(process)
        if ready.check():
            return
        if time.monotonic() >= deadline:
            raise NotReady(ready, timeout)
        time.sleep(interval)


def worker_health(host: str = "127.0.0.1", port: Optional[int] = None) -> tuple[dict[str, str], HttpReady]:
    """The environment that makes a ``manage.py run_workers`` child serve its health endpoints
    (on ``port``, or a free one), and the check that it is ready: its ``/readyz`` answers 200."""
    port = port or free_port(host)
    probe = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return (
        {"WORKER_HEALTH_HOST": host, "WORKER_HEALTH_PORT": str(port)},
        HttpReady(f"http://{probe}:{port}/readyz"),
    )


# -- starting and stopping one process ----------------------------------------------------------


def spawn(
    command: Sequence[str],
    *,
    log: Log = subprocess.DEVNULL,
    env: Optional[dict[str, str]] = None,
    cwd: Union[Path, str, None] = None,
) -> subprocess.Popen:
    """Start ``command`` in a session of its own, its stdout and stderr appended to ``log``."""
    # Closed in the finally below, once the child has its own copy; a caller's stream stays open.
    out = open(log, "ab", buffering=0) if isinstance(log, Path) else log  # noqa: SIM115 -- closed below
    try:
        return subprocess.Popen(
            list(command),
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a terminal's Ctrl-C is ours to relay
        )
    finally:
        if isinstance(log, Path):
            out.close()  # the child has its own copy


def _hurrying(hurry: Hurry) -> Callable[[], bool]:
    return hurry if callable(hurry) else (lambda: bool(hurry))


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone already
        os.killpg(process.pid, signum)


def stop_process(
    process: subprocess.Popen,
    *,
    stop_signal: int = signal.SIGTERM,
    timeout: float = 15.0,
    hurry: Hurry = False,
    on_kill: Optional[Callable[[], None]] = None,
) -> int:
    """Stop a process started by ``spawn`` and everything in its group: ``stop_signal``, up to
    ``timeout`` seconds (``HURRIED_WAIT_SECONDS`` once ``hurry`` holds), then SIGKILL
    (``on_kill`` is told first). Returns its exit code."""
    hurrying = _hurrying(hurry)
    if process.poll() is None:
        _signal_group(process, stop_signal)
        started = time.monotonic()
        while process.poll() is None:
            limit = min(timeout, HURRIED_WAIT_SECONDS) if hurrying() else timeout
            if time.monotonic() - started >= limit:
                if on_kill is not None:
                    on_kill()
                break
            time.sleep(0.05)
    # The whole group goes, including anything the child started and left behind.
    _signal_group(process, signal.SIGKILL)
    return process.wait(10)


def last_line(path: Optional[Path]) -> str:
    """The last non-empty line of a log, for a one-line report of why a process ended."""
    if path is None:
        return "(no log)"
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    return lines[-1].strip() if lines else "(empty log)"


def describe_exit(code: int) -> str:
    return f"killed by signal {-code}" if code < 0 else f"exit code {code}"


# -- children and their supervisor --------------------------------------------------------------


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    log_path: Optional[Path] = None
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = 20.0

    @property
    def pid(self) -> int:
        return self.process.pid

    def exit_code(self) -> Optional[int]:
        """None while it runs."""
        return self.process.poll()

    def last_line(self) -> str:
        return last_line(self.log_path)

    def wait_ready(self, ready: Readiness, timeout: float) -> None:
        wait_ready(ready, timeout, self.process)

    def stop(self, *, hurry: Hurry = False, on_kill: Optional[Callable[[], None]] = None) -> int:
        return stop_process(
            self.process, stop_signal=self.stop_signal, timeout=self.stop_timeout, hurry=hurry, on_kill=on_kill
        )

    def kill(self) -> int:
        """SIGKILL, at once (a crash, on purpose)."""
        _signal_group(self.process, signal.SIGKILL)
        return self.process.wait(10)


@dataclass
class Supervisor:
    """The children of one tool, stopped in reverse order of start.

    ``say`` reports what a person should know while stopping (a child that had to be killed).
    """

    say: Callable[[str], None] = lambda message: None
    children: list[Child] = field(default_factory=list)
    hurry: bool = False

    def start(
        self,
        name: str,
        command: Sequence[str],
        *,
        log_path: Path,
        env: Optional[dict[str, str]] = None,
        cwd: Union[Path, str, None] = None,
        stop_signal: int = signal.SIGTERM,
        stop_timeout: float = 20.0,
    ) -> Child:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        process = spawn(command, log=log_path, env=env, cwd=cwd)
        return self.adopt(name, process, log_path=log_path, stop_signal=stop_signal, stop_timeout=stop_timeout)

    def adopt(
        self,
        name: str,
        process: subprocess.Popen,
        *,
        log_path: Optional[Path] = None,
        stop_signal: int = signal.SIGTERM,
        stop_timeout: float = 20.0,
    ) -> Child:
        """Supervise a process that ``spawn`` started elsewhere (``devtools.devserver``)."""
        child = Child(name, process, log_path, stop_signal, stop_timeout)
        self.children.append(child)
        return child

    def died(self) -> Optional[Child]:
        """The first child that is no longer running, if any."""
        return next((child for child in self.children if child.exit_code() is not None), None)

    def stop(self, child: Child) -> int:
        code = child.stop(
            hurry=lambda: self.hurry, on_kill=lambda: self.say(f"  {child.name} did not stop in time; killing it")
        )
        if child in self.children:
            self.children.remove(child)
        return code

    def kill(self, child: Child) -> int:
        """SIGKILL a child at once (a crash, on purpose) and forget it."""
        code = child.kill()
        if child in self.children:
            self.children.remove(child)
        return code

    def stop_all(self, on_stopped: Callable[[Child, int], None] = lambda child, code: None) -> None:
        """Stop every child, the last started first; ``on_stopped`` hears each one's exit code."""
        for child in reversed(list(self.children)):
            on_stopped(child, self.stop(child))

    def hurry_on_signals(self, *signums: int) -> None:
        """From now on SIGINT and SIGTERM (or ``signums``) hurry the stopping instead of
        interrupting it. Main thread only (Python's rule for signal handlers)."""

        def hurry(signum, frame) -> None:
            self.hurry = True

        for signum in signums or (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, hurry)


# -- the embedded Postgres ----------------------------------------------------------------------


def pid_alive(pid: int) -> bool:
    """Whether a process runs (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc here: kill(0) is all we know


def postmaster_pid(pgdata: Path) -> Optional[int]:
    try:
        return int((pgdata / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None


def _is_postgres(pid: int) -> bool:
    """A pid file can outlive its server and its pid be reused: signal only a postgres."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() in ("postgres", "postmaster")
    except OSError:
        return True  # no /proc here: trust the pid file, as pg_ctl does


def embedded_postgres_running(pgdata: Path) -> bool:
    pid = postmaster_pid(pgdata)
    return pid is not None and pid_alive(pid) and _is_postgres(pid)


def stop_embedded_postgres(
    pgdata: Path, *, hurry: Hurry = False, say: Callable[[str], None] = lambda message: None
) -> bool:
    """Stop the embedded Postgres whose data is ``pgdata``, if it runs; returns whether it ran.

    SIGINT is Postgres's "fast" shutdown (roll back, checkpoint, exit), as ``pg_ctl stop -m
    fast``; after 30 s (5 once hurried) SIGQUIT, its immediate shutdown. Signalled directly
    rather than through pg_ctl: as root the server runs as another user, and pg_ctl would have
    to run as that user."""
    if not embedded_postgres_running(pgdata):
        return False
    pid = postmaster_pid(pgdata)
    assert pid is not None
    hurrying = _hurrying(hurry)
    os.kill(pid, signal.SIGINT)
    started = time.monotonic()
    while pid_alive(pid) and time.monotonic() - started < (5 if hurrying() else 30):
        time.sleep(0.1)
    if pid_alive(pid):
        say("  postgres did not stop in time; killing it")
        os.kill(pid, signal.SIGQUIT)
        deadline = time.monotonic() + 10
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    return True
