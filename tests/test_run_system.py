"""`make run`'s orchestrator (scripts/run_system.py), started as a person would start it.

SYSTEM TEST, about 30-60 s: it starts the real thing twice in a temporary var dir on free ports
(embedded Postgres, Temporal dev server, migrations, demo users, workers, runserver), drives an
order to manual review from outside, presses Ctrl-C (SIGINT to the process group, as a terminal
does), proves that nothing it started is still running, starts again and finds the order still
waiting for review in Temporal and in Postgres, approves it, and stops again.
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import psycopg
import pytest
from temporalio.client import Client

from devtools.supervise import free_port, port_in_use
from temporal_app.workflows import OrderWorkflow
from tests.helpers import OWN_SYSTEM, new_order_id, wait_until

pytestmark = [pytest.mark.temporal, pytest.mark.xdist_group(OWN_SYSTEM)]

BASE_DIR = Path(__file__).resolve().parent.parent
RUN_SYSTEM = BASE_DIR / "scripts" / "run_system.py"
START_TIMEOUT = 150
STOP_TIMEOUT = 60


class RunningSystem:
    def __init__(self, var_dir: Path, ports: dict[str, int]) -> None:
        self.var_dir = var_dir
        self.ports = ports
        self.output = var_dir.parent / f"make-run-{time.monotonic_ns()}.out"
        # make run as a person runs it, with versioned workers (tests/env.py turns versioning off
        # for the session's shared dev server; this run has its own).
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("DATABASE_URL", "TEMPORAL_UI_URL", "TEMPORAL_WORKER_VERSIONING")
        }
        env.update(
            RUN_VAR_DIR=str(var_dir),
            WEB_PORT=str(ports["web"]),
            TEMPORAL_ADDRESS=f"localhost:{ports['temporal']}",
            TEMPORAL_UI_PORT=str(ports["ui"]),
            RUN_WRITE_DOTENV="0",
            DEBUG="1",
        )
        with open(self.output, "wb") as out:
            # Its own session: SIGINT to its group is exactly a terminal's Ctrl-C, and not ours.
            self.process = subprocess.Popen(
                [sys.executable, str(RUN_SYSTEM)],
                cwd=BASE_DIR,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_until_up(self) -> dict:
        def up():
            if self.process.poll() is not None:
                raise AssertionError(f"make run exited with {self.process.returncode}:\n{self.text()}")
            return "is running. Press Ctrl-C" in self.text()

        wait_until(up, timeout=START_TIMEOUT, what="make run to print that the system is running")
        return json.loads((self.var_dir / "run" / "system.json").read_text())

    def ctrl_c(self) -> int:
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            return self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            raise AssertionError(f"make run did not stop within {STOP_TIMEOUT} s:\n{self.text()}") from None


def processes_of_run(var_dir: Path) -> list[str]:
    """Every live process that this run started: they all carry ORDERWEB_RUN_DIR=<var dir>."""
    marker = f"ORDERWEB_RUN_DIR={var_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append(f"{entry.name}: {command[:120]}")
        except OSError:
            continue  # gone meanwhile, or a zombie
    return found


def assert_nothing_left(var_dir: Path, ports: dict[str, int]) -> None:
    left = processes_of_run(var_dir)
    assert left == [], f"processes left running: {left}"
    for name, port in ports.items():
        assert not port_in_use("127.0.0.1", port), f"port {port} ({name}) still answers"


def login(web: str, username: str, password: str) -> str:
    """Log in through the real login form (CSRF and all); returns where it redirected."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(f"{web}/accounts/login/", timeout=10).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    data = urllib.parse.urlencode({"csrfmiddlewaretoken": token, "username": username, "password": password}).encode()
    response = opener.open(
        urllib.request.Request(f"{web}/accounts/login/", data=data, headers={"Referer": f"{web}/accounts/login/"}),
        timeout=10,
    )
    return response.geturl()


def temporal(address: str, fn):
    async def run():
        client = await Client.connect(address)
        return await fn(client)

    return asyncio.run(run())


def workflow_state(address: str, workflow_id: str) -> str:
    async def query(client):
        status = await client.get_workflow_handle(workflow_id).query(OrderWorkflow.get_status)
        return status["workflow_status"]

    return temporal(address, query)


def order_row_status(database_url: str, order_id: str) -> str:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT status FROM orderweb_order WHERE order_id = %s", (order_id,)).fetchone()
    return row[0] if row else ""


def test_make_run_starts_everything_stops_on_ctrl_c_and_resumes_a_waiting_order(var_tmp_path):
    var_dir = var_tmp_path / "var"
    ports = {"web": free_port(), "temporal": free_port(), "ui": free_port()}
    address = f"127.0.0.1:{ports['temporal']}"
    order_id = new_order_id()
    workflow_id = order_id.lower()

    # First run: everything answers, and an order started as the seed does reaches review.
    system = RunningSystem(var_dir, ports)
    try:
        state = system.wait_until_up()
        web = f"http://127.0.0.1:{ports['web']}"
        assert urllib.request.urlopen(f"{web}/accounts/login/", timeout=10).status == 200
        assert urllib.request.urlopen(f"http://127.0.0.1:{ports['ui']}/", timeout=10).status == 200
        assert login(web, "reviewer", "reviewer").endswith("/reviews/")
        assert "log in as reviewer / reviewer" in system.text()

        temporal(
            address,
            lambda client: client.start_workflow(
                OrderWorkflow.run,
                args=[order_id, "123 Main St, City, State 12345"],
                id=workflow_id,
                task_queue="order-tq",
            ),
        )
        wait_until(
            lambda: workflow_state(address, workflow_id) == "awaiting_manual_review",
            timeout=60,
            what="the order to await review",
        )
        wait_until(
            lambda: order_row_status(state["database_url"], order_id) == "awaiting_manual_review",
            timeout=30,
            what="Postgres to show the order awaiting review",
        )
    finally:
        code = system.ctrl_c()
    assert code == 0, system.text()
    assert "Stopped." in system.text()
    assert_nothing_left(var_dir, ports)

    # Second run, same var dir: the order is still waiting, in Temporal and in Postgres.
    system = RunningSystem(var_dir, ports)
    try:
        state = system.wait_until_up()
        assert workflow_state(address, workflow_id) == "awaiting_manual_review"
        assert order_row_status(state["database_url"], order_id) == "awaiting_manual_review"

        async def approve(client):
            handle = client.get_workflow_handle_for(OrderWorkflow.run, workflow_id)
            await handle.signal(OrderWorkflow.complete_manual_review)
            return await asyncio.wait_for(handle.result(), 60)

        assert temporal(address, approve).status == "completed"
        assert order_row_status(state["database_url"], order_id) == "completed"
    finally:
        code = system.ctrl_c()
    assert code == 0, system.text()
    assert_nothing_left(var_dir, ports)


def test_make_run_refuses_a_taken_port_in_one_line(tmp_path):
    ports = {"web": free_port(), "temporal": free_port(), "ui": free_port()}
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports["web"]))
        taken.listen()
        system = RunningSystem(tmp_path / "var", ports)
        code = system.process.wait(60)
    lines = [line for line in system.text().splitlines() if line.strip()]
    assert code == 1
    assert lines == [f"make run: port {ports['web']} (web) is already in use on 127.0.0.1; set WEB_PORT to use another"]
    assert not (tmp_path / "var").exists()  # nothing was started or written


# -- the demo users make run creates (DEBUG only) ----------------------------------------------


@pytest.mark.django_db
def test_demo_users_are_never_created_without_debug(settings):
    from django.contrib.auth import get_user_model
    from django.core.management import CommandError, call_command

    from orderweb.management.commands.ensure_demo_users import DEMO_USERS_NEED_DEBUG

    settings.DEBUG = False
    with pytest.raises(CommandError, match=re.escape(DEMO_USERS_NEED_DEBUG)):
        call_command("ensure_demo_users")
    assert not get_user_model().objects.filter(username__in=["reviewer", "lead", "admin"]).exists()


@pytest.mark.django_db
def test_demo_users_with_debug_can_log_in_with_the_printed_passwords(settings):
    from django.contrib.auth import SESSION_KEY, get_user_model
    from django.core.management import call_command
    from django.test import Client

    settings.DEBUG = True
    call_command("ensure_demo_users")
    call_command("ensure_demo_users")  # a second run changes nothing and does not fail
    # Through the sign-in pages the README points to (django-axes needs the request to count
    # attempts, so a bare authenticate() without one is refused).
    users = get_user_model().objects
    for page, username, landing in (
        ("/accounts/login/", "reviewer", "/reviews/"),
        ("/accounts/login/", "lead", "/reviews/"),
        ("/admin/login/", "admin", "/admin/"),
    ):
        client = Client()
        response = client.post(page, {"username": username, "password": username, "next": landing})
        assert response.status_code == 302 and response.url == landing, (username, response.status_code)
        assert client.session[SESSION_KEY] == str(users.get(username=username).pk)
    reviewer, lead, admin = users.get(username="reviewer"), users.get(username="lead"), users.get(username="admin")
    assert list(reviewer.groups.values_list("name", flat=True)) == ["reviewer"]
    assert reviewer.has_perm("reviews.decide_review") and not reviewer.is_staff
    assert not reviewer.has_perm("reviews.lead_review")
    assert sorted(lead.groups.values_list("name", flat=True)) == ["review_lead", "reviewer"]
    assert lead.has_perm("reviews.decide_review") and lead.has_perm("reviews.lead_review") and not lead.is_staff
    assert admin.is_superuser and admin.is_staff
