"""`manage.py run_workers` as an operator runs it: in its own process, its readiness read from
its health endpoint (WORKER_HEALTH_PORT)."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest

from devtools.supervise import free_port

ROOT = Path(__file__).resolve().parents[2]


def run_workers(*args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "run_workers", *args],
        # The settings' defaults apply (the sandbox setting is not inherited from this shell).
        cwd=ROOT,
        env={**{k: v for k, v in os.environ.items() if k != "TEMPORAL_WORKFLOW_SANDBOX"}, "DEBUG": "1", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def database_url() -> str:
    from django.db import connection

    s = connection.settings_dict
    if s["OPTIONS"].get("host"):  # the embedded Postgres listens on a socket directory
        return f"postgres://{s['USER']}@/{s['NAME']}?host={quote(s['OPTIONS']['host'])}"
    return f"postgres://{s['USER']}@{s['HOST']}:{s['PORT'] or 5432}/{s['NAME']}"


@pytest.mark.django_db
def test_unreachable_temporal_is_one_clear_line():
    proc = run_workers(env={"TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}", "DATABASE_URL": database_url()})
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "CommandError: Temporal is unreachable at 127.0.0.1:" in out
    assert "Traceback" not in out


def test_unreachable_postgres_is_one_clear_line():
    proc = run_workers(env={"DATABASE_URL": f"postgres://postgres@127.0.0.1:{free_port()}/nothing"})
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "CommandError: Postgres is unreachable" in out
    assert "Traceback" not in out


def test_unknown_queue_is_refused():
    proc = run_workers("--queue", "nope-tq", env={})
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "invalid choice: 'nope-tq'" in out


def readyz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except OSError:  # not listening yet
        return 0, ""


@pytest.mark.django_db
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_runs_one_queue_and_stops_gracefully(temporal_server, stop_signal):
    health_port = free_port()
    proc = run_workers(
        "--queue",
        "shipping-tq",
        "--threads",
        "4",
        env={
            "TEMPORAL_ADDRESS": temporal_server,
            "DATABASE_URL": database_url(),
            "WORKER_HEALTH_PORT": str(health_port),
        },
    )
    # Read on a thread: the pipe must not fill up, and a blocking readline must not outlive the
    # test's deadline.
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True)
    reader.start()
    # Ready is what the health endpoint says, not a log line.
    answer = (0, "")
    deadline = time.monotonic() + 60
    while answer[0] != 200 and proc.poll() is None and time.monotonic() < deadline:
        answer = readyz(health_port)
        time.sleep(0.1)
    if answer[0] != 200:
        proc.kill()
        proc.wait(10)
        seen = "".join(lines.get() for _ in range(lines.qsize()))
        pytest.fail(f"/readyz did not answer 200 within 60 s (last: {answer}); output:\n{seen}")
    assert answer == (200, "ready: polling shipping-tq\n")
    proc.send_signal(stop_signal)
    proc.wait(timeout=30)
    reader.join(10)  # it ends at the end of the output
    out = "".join(lines.get() for _ in range(lines.qsize()))
    assert proc.returncode == 0, out
    # The line for people is still written, with the options it was given.
    assert "workers running on shipping-tq (4 activity threads, workflow sandbox off)" in out
    assert "workers stopped" in out
    assert "Traceback" not in out
