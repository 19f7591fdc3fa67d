"""devtools.supervise, with real processes: own session, environment and log; readiness by HTTP
and by port; a dead child noticed with its last log line; reverse-order stop, SIGKILL as the last
resort, a hurry that shortens the wait in progress; the embedded Postgres left alone when its pid
file names another process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from devtools.supervise import (
    ChildExited,
    HttpReady,
    NotReady,
    PortReady,
    Supervisor,
    embedded_postgres_running,
    free_port,
    pid_alive,
    stop_embedded_postgres,
    wait_ready,
    worker_health,
)

ROOT = Path(__file__).resolve().parents[2]


def python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


# A child that ignores its stop signal and leaves a grandchild in its group.
STUBBORN = """
    import signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    print("grandchild", grandchild.pid, flush=True)
    time.sleep(300)
"""


def grandchild_pid(log: Path) -> int:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if line.startswith("grandchild "):
                return int(line.split()[1])
        time.sleep(0.05)
    raise AssertionError(f"no grandchild in {log}")


@pytest.fixture
def supervisor():
    said: list[str] = []
    supervisor = Supervisor(say=said.append)
    supervisor.said = said
    yield supervisor
    for child in supervisor.children:  # whatever a failed test left running
        child.kill()


def test_a_child_runs_in_its_own_session_with_its_environment_and_log(supervisor, tmp_path):
    log = tmp_path / "logs" / "child.log"
    child = supervisor.start(
        "child",
        python("import os; print('value', os.environ['SUPERVISE_TEST'])"),
        log_path=log,
        env={**os.environ, "SUPERVISE_TEST": "42"},
    )
    assert child.process.wait(20) == 0
    assert log.read_text() == "value 42\n"
    assert child.last_line() == "value 42"


def test_own_session(supervisor, tmp_path):
    child = supervisor.start("sleeper", python("import time; time.sleep(30)"), log_path=tmp_path / "s.log")
    assert os.getsid(child.pid) == child.pid != os.getsid(0)
    assert os.getpgid(child.pid) == child.pid


class _Answer(BaseHTTPRequestHandler):
    status = 503

    def do_GET(self):
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_http_readiness_takes_200_only_by_default():
    handler = type("Answer", (_Answer,), {})
    server = HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/readyz"
        assert not HttpReady(url).check()
        assert HttpReady(url, accept=lambda status: status < 600).check()
        with pytest.raises(NotReady):
            wait_ready(HttpReady(url), 0.3)
        handler.status = 200
        wait_ready(HttpReady(url), 5)
    finally:
        server.shutdown()
        server.server_close()
    assert not HttpReady(url).check()  # nothing listens any more


def test_port_readiness_waits_for_the_child_to_listen(supervisor, tmp_path):
    port = free_port()
    child = supervisor.start(
        "listener",
        python(f"""
        import socket, time
        time.sleep(0.5)
        s = socket.socket(); s.bind(("127.0.0.1", {port})); s.listen(); time.sleep(30)
    """),
        log_path=tmp_path / "l.log",
    )
    assert not PortReady("127.0.0.1", port).check()
    child.wait_ready(PortReady("127.0.0.1", port), 20)


def test_a_child_that_dies_before_it_is_ready_says_so_with_its_last_line(supervisor, tmp_path):
    child = supervisor.start(
        "worker",
        python("print('starting'); print(); print('CommandError: boom'); raise SystemExit(3)"),
        log_path=tmp_path / "w.log",
    )
    with pytest.raises(ChildExited) as exited:
        child.wait_ready(HttpReady(f"http://127.0.0.1:{free_port()}/readyz"), 30)
    assert exited.value.returncode == 3
    assert child.last_line() == "CommandError: boom"


def test_the_supervisor_notices_a_dead_child(supervisor, tmp_path):
    supervisor.start("alive", python("import time; time.sleep(30)"), log_path=tmp_path / "a.log")
    assert supervisor.died() is None
    dead = supervisor.start(
        "dead",
        python("import os, signal; print('bye', flush=True); os.kill(os.getpid(), signal.SIGKILL)"),
        log_path=tmp_path / "d.log",
    )
    dead.process.wait(20)
    assert supervisor.died() is dead
    assert dead.exit_code() == -signal.SIGKILL
    assert dead.last_line() == "bye"


def test_children_stop_in_reverse_order_with_their_own_signal(supervisor, tmp_path):
    record = tmp_path / "stopped.txt"
    for name, signum in (("first", signal.SIGTERM), ("second", signal.SIGINT), ("third", signal.SIGTERM)):
        child = supervisor.start(
            name,
            python(f"""
            import signal, sys, time
            def stop(signum, frame):
                open({str(record)!r}, "a").write(f"{name} {{signal.Signals(signum).name}}\\n")
                sys.exit(0)
            signal.signal(signal.{signal.Signals(signum).name}, stop)
            print("ready", flush=True)
            time.sleep(30)
        """),
            log_path=tmp_path / f"{name}.log",
            stop_signal=signum,
        )
        wait_until_logged(child.log_path, "ready")
    codes = []
    supervisor.stop_all(lambda child, code: codes.append((child.name, code)))
    assert record.read_text().splitlines() == ["third SIGTERM", "second SIGINT", "first SIGTERM"]
    assert codes == [("third", 0), ("second", 0), ("first", 0)]
    assert supervisor.children == [] and supervisor.said == []


def wait_until_logged(log: Path, text: str) -> None:
    deadline = time.monotonic() + 20
    while text not in log.read_text():
        assert time.monotonic() < deadline, f"{text!r} not in {log}"
        time.sleep(0.05)


def test_sigkill_is_the_last_resort_and_takes_the_whole_group(supervisor, tmp_path):
    child = supervisor.start("stubborn", python(STUBBORN), log_path=tmp_path / "s.log", stop_timeout=0.5)
    grandchild = grandchild_pid(child.log_path)
    started = time.monotonic()
    assert supervisor.stop(child) == -signal.SIGKILL
    # It was not waited out (the child sleeps 300 s); the bound leaves a busy machine room.
    assert time.monotonic() - started < 60
    assert supervisor.said == ["  stubborn did not stop in time; killing it"]
    deadline = time.monotonic() + 10
    while pid_alive(grandchild):
        assert time.monotonic() < deadline, "the grandchild outlived its group's SIGKILL"
        time.sleep(0.05)


def test_a_second_ctrl_c_hurries_the_wait_in_progress(tmp_path):
    """The supervisor as scripts/run_system.py uses it: stopping a child that ignores its signal
    would take 120 s; a SIGINT while stopping cuts the wait to HURRIED_WAIT_SECONDS."""
    # The child notes its stop signal (and ignores it), so the test knows the wait has begun.
    stubborn = STUBBORN.replace(
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)",
        "signal.signal(signal.SIGTERM, lambda *_: print('asked to stop', flush=True))",
    )
    script = tmp_path / "supervisor.py"
    script.write_text(
        textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from pathlib import Path
        from devtools.supervise import Supervisor
        supervisor = Supervisor(say=lambda line: print(line, flush=True))
        child = supervisor.start("stubborn", [sys.executable, "-c", {textwrap.dedent(stubborn)!r}],
                                 log_path=Path({str(tmp_path / "stubborn.log")!r}), stop_timeout=120)
        while "grandchild" not in child.log_path.read_text():
            time.sleep(0.05)
        supervisor.hurry_on_signals()
        print("stopping", flush=True)
        started = time.monotonic()
        supervisor.stop_all()
        print(f"stopped after {{time.monotonic() - started:.1f}} s", flush=True)
    """)
    )
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout.readline() == "stopping\n"
        wait_until_logged(tmp_path / "stubborn.log", "asked to stop")  # the wait has begun
        os.killpg(proc.pid, signal.SIGINT)  # the second Ctrl-C (only the supervisor's group gets it)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    lines = out.splitlines()
    assert lines[0] == "  stubborn did not stop in time; killing it"
    # Hurried: HURRIED_WAIT_SECONDS (2 s) and no longer the 120 s; the bound leaves a busy
    # machine room and still tells the two apart.
    assert float(lines[1].split()[2]) < 60


def test_worker_health_gives_a_free_port_and_its_readyz():
    env, ready = worker_health()
    assert env["WORKER_HEALTH_HOST"] == "127.0.0.1"
    assert ready.url == f"http://127.0.0.1:{env['WORKER_HEALTH_PORT']}/readyz"
    assert worker_health("0.0.0.0", 8123)[1].url == "http://127.0.0.1:8123/readyz"


def test_a_stale_postgres_pid_file_never_gets_another_process_signalled(tmp_path):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / "postmaster.pid").write_text(f"{other.pid}\n{tmp_path}\n")
        assert not embedded_postgres_running(tmp_path)
        assert stop_embedded_postgres(tmp_path) is False
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()
    assert stop_embedded_postgres(tmp_path / "nothing") is False
