"""The production profile, run as the README's "Deploy" section says (SYSTEM TEST, ~60 s).

DEBUG=0 with a random SECRET_KEY, its own Postgres database, the Procfile's `release` step,
`collectstatic`, a Temporal dev server, one `run_workers --queue ...` process per queue (the
Procfile's `worker-order` and `worker-shipping` lines) and gunicorn with two worker processes
(the Procfile's `web` line), payload encryption on with a generated key, JSON logs, metrics on
with a token. Every command comes from the Procfile or from DEPLOY_STEPS below, which the README
copies; all processes are started and stopped with devtools.supervise, and none may be left.

It checks, as an operator and a reviewer would:
- the admin's CSS and the review UI's htmx come from gunicorn (WhiteNoise), hashed and cached;
- every health endpoint is green: the web's /healthz and /readyz, each worker's /healthz and
  /readyz;
- an order started by a Temporal client waits for review; a reviewer signs in in Chromium,
  approves it, and watches it complete live (htmx polling through gunicorn);
- /metrics moved: a business gauge (orders completed) and a request counter (the decision's
  POST); each worker's SDK metrics count the completed workflow;
- the order's history in Temporal holds no plain-text address, and the same history decrypted
  with the key does (the control);
- /readyz turns red naming the part, the web's and each worker's: the database (it refuses
  connections for a moment), then Temporal (the dev server stops); /healthz stays green (no
  restart for an outage). A worker stopped with SIGTERM drains and exits 0.
The series seen to move are written to test-artifacts/production-metrics.txt.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import psycopg
import pytest
from cryptography.fernet import Fernet
from temporalio.client import Client

from devtools.devserver import start_dev_server
from devtools.supervise import Child, HttpReady, Supervisor, free_port
from temporal_app.codec import FernetPayloadCodec, data_converter, payloads_in
from tests.helpers import OWN_SYSTEM, new_order_id, wait_until

pytestmark = [pytest.mark.temporal, pytest.mark.browser, pytest.mark.xdist_group(OWN_SYSTEM)]

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
SHOTS = Path(os.environ.get("PRODUCTION_SCREENSHOTS", ARTIFACTS / "screenshots"))
MARKER = "ORDERWEB_PRODUCTION_TEST"
# This test serves plain http on loopback, with no TLS proxy in front: only for that are the
# https-only settings turned off (a real deployment keeps them on, and `check --deploy` passes).
HTTP_ONLY = {"SECURE_SSL_REDIRECT": "0", "SESSION_COOKIE_SECURE": "0", "CSRF_COOKIE_SECURE": "0"}

# The README's "Deploy" section, in this order (the Procfile's `release` line runs between).
DEPLOY_STEPS = [
    "python manage.py check --deploy --fail-level WARNING",  # without HTTP_ONLY: as behind TLS
    "python manage.py collectstatic --noinput",
    "<release>",
    "python manage.py createsuperuser --noinput",
]


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip() and not line.startswith("#"))


# -- small helpers -----------------------------------------------------------------------------


def http(url: str, *, headers: Optional[dict[str, str]] = None, timeout: float = 10) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()
    except OSError:  # nothing listens (any more), or it hung up
        return 0, {}, b""


def run_async(make: Callable[[], object]):
    """asyncio.run on a thread of its own: Playwright's sync API keeps a loop in this one."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result(120)


def metric(text: str, name: str) -> float:
    """The value of one series (name with its labels, as exposed); 0 when absent."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def series_matching(text: str, pattern: str) -> dict[str, float]:
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if not line.startswith("#") and re.search(pattern, line.rsplit(" ", 1)[0])
    }


def database_url(name: str) -> str:
    from django.db import connection

    s = connection.settings_dict
    if s["OPTIONS"].get("host"):  # the embedded Postgres listens on a socket directory
        from urllib.parse import quote

        return f"postgres://{s['USER']}@/{name}?host={quote(s['OPTIONS']['host'])}"
    password = f":{s['PASSWORD']}" if s["PASSWORD"] else ""
    return f"postgres://{s['USER']}{password}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{name}"


def processes_marked(marker: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if f"{MARKER}={marker}".encode() in (entry / "environ").read_bytes().split(b"\0"):
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ")[:100].decode(errors="replace")
                found.append(f"{entry.name}: {command}")
        except OSError:
            continue
    return found


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return found


# -- the system ----------------------------------------------------------------------------------


class Production:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.marker = uuid.uuid4().hex
        self.supervisor = Supervisor()
        self.key = Fernet.generate_key()
        self.metrics_token = secrets.token_urlsafe(32)
        self.password = secrets.token_urlsafe(16)
        self.db_name = f"orderweb_production_{self.marker[:12]}"
        self.temporal_port, self.web_port = free_port(), free_port()
        self.web = f"http://127.0.0.1:{self.web_port}"
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("TEMPORAL_", "DJANGO_", "WORKER_", "PROMETHEUS_"))
            and k not in ("DEBUG", "SECRET_KEY", "DATABASE_URL", "ALLOWED_HOSTS", "CONN_MAX_AGE", "PORT")
        }
        self.env.update(
            {
                MARKER: self.marker,
                "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",  # `python`, `gunicorn`
                "PYTHONUNBUFFERED": "1",
                # The README's "Deploy" environment.
                "DEBUG": "0",
                "SECRET_KEY": secrets.token_urlsafe(50),
                "ALLOWED_HOSTS": "127.0.0.1,localhost",
                "DATABASE_URL": database_url(self.db_name),
                "TEMPORAL_ADDRESS": f"127.0.0.1:{self.temporal_port}",
                "TEMPORAL_NAMESPACE": "default",
                "TEMPORAL_PAYLOAD_KEYS": self.key.decode(),
                "METRICS_TOKEN": self.metrics_token,
                "LOG_FORMAT": "json",
                "STATIC_ROOT": str(tmp / "staticfiles"),
                **HTTP_ONLY,
                "DJANGO_SUPERUSER_USERNAME": "ops",
                "DJANGO_SUPERUSER_EMAIL": "ops@example.com",
                "DJANGO_SUPERUSER_PASSWORD": self.password,
            }
        )
        self.workers: dict[str, tuple[Child, int, int]] = {}  # queue -> (child, health port, metrics port)
        self.gunicorn: Optional[Child] = None
        self.temporal: Optional[Child] = None

    def admin_sql(self, sql: str) -> None:
        from django.db import connection

        s = connection.settings_dict
        url = database_url("postgres")
        with psycopg.connect(url, autocommit=True, password=s["PASSWORD"] or None) as conn:
            conn.execute(sql)

    def shell(self, command: str, log: str, timeout: float = 180) -> str:
        """A one-off deploy command, as a shell runs it (Procfile lines are shell lines)."""
        env = self.env if "--deploy" not in command else {k: v for k, v in self.env.items() if k not in HTTP_ONLY}
        out = subprocess.run(
            ["sh", "-c", command],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            start_new_session=True,
        )
        (self.tmp / f"{log}.log").write_text(out.stdout + out.stderr)
        assert out.returncode == 0, f"{command} failed:\n{out.stdout}\n{out.stderr}"
        return out.stdout + out.stderr

    def start(self, name: str, line: str, env: dict[str, str]) -> Child:
        return self.supervisor.start(
            name,
            ["sh", "-c", f"exec {line}"],
            log_path=self.tmp / f"{name}.log",
            env={**self.env, **env},
            cwd=ROOT,
            stop_signal=signal.SIGTERM,
            stop_timeout=20,
        )

    def up(self) -> None:
        lines = procfile()
        self.admin_sql(f'CREATE DATABASE "{self.db_name}"')
        process = start_dev_server(
            db_file=self.tmp / "temporal.db",
            port=self.temporal_port,
            ui_port=free_port(),
            headless=True,
            log=self.tmp / "temporal.log",
        )
        self.temporal = self.supervisor.adopt("temporal", process, log_path=self.tmp / "temporal.log")
        for number, step in enumerate(DEPLOY_STEPS, start=1):
            self.shell(lines["release"] if step == "<release>" else step, log=f"deploy-step-{number}")
        for queue, name in (("order-tq", "worker-order"), ("shipping-tq", "worker-shipping")):
            health, metrics = free_port(), free_port()
            child = self.start(
                name, lines[name], {"WORKER_HEALTH_PORT": str(health), "TEMPORAL_METRICS_PORT": str(metrics)}
            )
            self.workers[queue] = (child, health, metrics)
        self.gunicorn = self.start("web", lines["web"], {"PORT": str(self.web_port), "WEB_CONCURRENCY": "2"})
        for child, health, _ in self.workers.values():
            child.wait_ready(HttpReady(f"http://127.0.0.1:{health}/readyz"), 90)
        self.gunicorn.wait_ready(HttpReady(f"{self.web}/readyz"), 60)

    def down(self) -> None:
        self.supervisor.stop_all()
        with contextlib.suppress(psycopg.Error):
            self.admin_sql(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')

    def scrape(self) -> str:
        status, _, body = http(f"{self.web}/metrics", headers={"Authorization": f"Bearer {self.metrics_token}"})
        assert status == 200, body
        return body.decode()

    def client(self, *, codec: bool = True):
        return Client.connect(
            f"127.0.0.1:{self.temporal_port}", data_converter=data_converter([self.key] if codec else [])
        )


@pytest.fixture
def production(tmp_path):
    system = Production(tmp_path)
    try:
        system.up()
        yield system
    finally:
        system.down()
        # Nothing this test started is left: every process carries the marker in its environment.
        assert (
            wait_until(
                lambda: processes_marked(system.marker) == [],
                timeout=20,
                what="every process of the production test to end",
            )
            is True
        )


def test_production_profile(production: Production, tmp_path):
    p = production
    web = p.web

    # -- gunicorn with two worker processes, from the Procfile's line -------------------------
    gunicorn_workers = children_of(p.gunicorn.pid)
    assert len(gunicorn_workers) >= 2, f"gunicorn runs {len(gunicorn_workers)} worker processes"

    # -- static files through gunicorn (WhiteNoise): admin CSS, htmx ---------------------------
    status, _, page = http(f"{web}/admin/login/")
    assert status == 200
    css = re.search(rb'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', page)
    assert css, "the admin links no hashed base.css"
    status, headers, _ = http(f"{web}{css.group(1).decode()}", headers={"Accept-Encoding": "gzip"})
    assert status == 200 and headers["Content-Type"].startswith("text/css")
    assert headers.get("Content-Encoding") == "gzip" and "immutable" in headers["Cache-Control"]
    status, _, login = http(f"{web}/accounts/login/")
    htmx = re.search(rb'src="(/static/reviews/vendor/htmx-2\.0\.11\.min\.[0-9a-f]{12}\.js)"', login)
    assert status == 200 and htmx, "the review UI links no hashed htmx"
    status, headers, _ = http(f"{web}{htmx.group(1).decode()}")
    assert status == 200 and "javascript" in headers["Content-Type"]

    # -- the HTTP API: its docs page's Swagger UI from our static files; one key's rate limit is
    # shared by gunicorn's worker processes (counted in Postgres, docs/api.md) ------------------
    status, _, docs = http(f"{web}/api/v1/docs")
    bundle = re.search(rb'src="(/static/ninja/swagger-ui-bundle\.[0-9a-f]{12}\.js)"', docs)
    assert status == 200 and bundle, "the API docs page links no hashed Swagger UI"
    assert http(f"{web}{bundle.group(1).decode()}")[0] == 200
    created = p.shell("python manage.py api_key_create prod-client --scope read --rate-limit 6", log="api-key")
    api_key = re.search(r"\bow_[0-9a-f]{8}_[A-Za-z0-9_-]{43}\b", created).group(0)  # its stdout's last line
    if time.time() % 60 > 45:  # keep the burst inside one minute's window
        time.sleep(61 - time.time() % 60)
    answers = [
        http(f"{web}/api/v1/orders?limit=1", headers={"Authorization": f"Bearer {api_key}"})[0] for _ in range(10)
    ]
    assert sorted(answers) == [200] * 6 + [429] * 4, answers

    # -- every health endpoint is green ------------------------------------------------------
    assert http(f"{web}/healthz")[:3:2] == (200, b"alive\n")
    assert http(f"{web}/readyz")[:3:2] == (200, b"ready\ndatabase: ok\ntemporal: ok\n")
    for queue, (_, health, _) in p.workers.items():
        assert http(f"http://127.0.0.1:{health}/healthz")[:3:2] == (200, b"alive\n")
        assert http(f"http://127.0.0.1:{health}/readyz")[:3:2] == (200, f"ready: polling {queue}\n".encode())

    before = p.scrape()

    # -- an order from a Temporal client (with the codec), approved in Chromium -----------------
    order_id, address = new_order_id("PROD"), "742 Evergreen Terrace, Springfield 49007"
    workflow_id = order_id.lower()

    async def start():
        client = await p.client()
        await client.start_workflow("OrderWorkflow", args=[order_id, address], id=workflow_id, task_queue="order-tq")

    run_async(start)

    from playwright.sync_api import expect, sync_playwright

    from tests.browser.conftest import CHROMIUM_ARGS, chromium_path

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(base_url=web, viewport={"width": 1280, "height": 860})
            context.set_default_timeout(30_000)
            page = context.new_page()
            page.goto("/reviews/")
            page.get_by_label("Username").fill("ops")
            page.get_by_label("Password").fill(p.password)
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("heading", name="Review queue")).to_be_visible()
            row = page.locator(f'tr[data-order="{order_id}"]')
            expect(row).to_be_visible()  # the order reached review (by htmx polling, or on load)
            assert page.evaluate("typeof htmx") == "object", "htmx did not load"
            waiting = wait_until(
                lambda: (text := p.scrape()) and metric(text, "orderweb_reviews_open") == 1 and text,
                timeout=20,
                what="/metrics to count the open review",
            )
            page.screenshot(path=str(SHOTS / "production-review-queue.png"), full_page=True)
            row.get_by_role("link", name=order_id).click()
            expect(page.locator("#workflow-status")).to_have_text("awaiting_manual_review")
            page.locator(".approve-form textarea").fill("Fine.")
            page.get_by_role("button", name="Approve", exact=True).click()  # not "Approve & next"
            expect(page.locator("#workflow-status")).to_have_text("completed", timeout=60_000)  # live, htmx
            page.screenshot(path=str(SHOTS / "production-order-completed.png"), full_page=True)
            page.goto("/admin/orderweb/order/")
            expect(page.locator("#result_list")).to_contain_text(order_id)
            color = page.evaluate("getComputedStyle(document.querySelector('#header')).backgroundColor")
            assert color not in ("rgba(0, 0, 0, 0)", "transparent"), "the admin has no CSS"
            page.screenshot(path=str(SHOTS / "production-admin-orders.png"), full_page=True)
        finally:
            browser.close()

    async def result():
        client = await p.client()
        return await client.get_workflow_handle(workflow_id).result()

    assert run_async(result)["status"] == "completed"  # an untyped handle: the result as JSON

    # -- the metrics moved ------------------------------------------------------------------------
    after = wait_until(
        lambda: (
            (text := p.scrape())
            and metric(text, 'orderweb_orders_last_24h{status="completed"}')
            > metric(before, 'orderweb_orders_last_24h{status="completed"}')
            and text
        ),
        timeout=20,
        what="/metrics to count the completed order",
    )
    decide = 'orderweb_http_requests_total{method="POST",route="reviews:decide",status="302"}'
    moved = {
        name: (metric(before, name), metric(waiting, name), metric(after, name))
        for name in (
            'orderweb_orders_last_24h{status="completed"}',
            'orderweb_orders_in_flight{status="awaiting_manual_review"}',
            "orderweb_reviews_open",
            decide,
            'orderweb_temporal_client_calls_total{outcome="ok"}',
        )
    }
    assert moved['orderweb_orders_last_24h{status="completed"}'] == (0, 0, 1)
    assert moved['orderweb_orders_in_flight{status="awaiting_manual_review"}'] == (0, 1, 0)
    assert moved["orderweb_reviews_open"] == (0, 1, 0)
    assert moved[decide] == (0, 0, 1)
    sdk, families = {}, set()
    for queue, (_, _, metrics_port) in p.workers.items():
        status, _, body = http(f"http://127.0.0.1:{metrics_port}/metrics")
        assert status == 200
        families |= {line.split()[2] for line in body.decode().splitlines() if line.startswith("# TYPE")}
        sdk.update(
            {
                f"{queue} {name}": value
                for name, value in series_matching(
                    body.decode(),
                    r"^temporal_(workflow_completed|activity_execution_latency_count|"
                    r"workflow_task_schedule_to_start_latency_count|activity_schedule_to_start_latency_count)",
                ).items()
            }
        )
    assert any("OrderWorkflow" in name and value >= 1 for name, value in sdk.items() if "workflow_completed" in name), (
        sdk
    )
    assert any(
        "ShippingWorkflow" in name and value >= 1 for name, value in sdk.items() if "workflow_completed" in name
    ), sdk
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "production-metrics.txt").write_text(
        "web /metrics (before the order -> while it waits for review -> after it completed)\n"
        + "".join(f"  {n} {a:g} -> {w:g} -> {b:g}\n" for n, (a, w, b) in moved.items())
        + "worker SDK metrics (after)\n"
        + "".join(f"  {n} {v:g}\n" for n, v in sorted(sdk.items()))
        + "worker SDK metric families\n"
        + "".join(f"  {n}\n" for n in sorted(families))
    )

    # -- Temporal holds no plain-text address --------------------------------------------------
    async def histories():
        client = await p.client(codec=False)  # what Temporal stores and its Web UI shows
        found = []
        for wid in (workflow_id, f"{workflow_id}-shipping"):
            found.append(await client.get_workflow_handle(wid).fetch_history())
        return found

    events = [event for history in run_async(histories) for event in history.events]
    raw = b"".join(event.SerializeToString() for event in events)
    assert len(events) > 20 and workflow_id.encode() in raw  # the raw history is there
    assert address.encode() not in raw and order_id.encode() not in raw  # and its payloads are not readable
    codec = FernetPayloadCodec([p.key])
    decoded = b"".join(codec.decode_one(payload).data for event in events for payload in payloads_in(event))
    assert address.encode() in decoded  # the control: the key opens the same history

    # -- /readyz turns red, naming the part ------------------------------------------------------
    p.admin_sql(f'ALTER DATABASE "{p.db_name}" ALLOW_CONNECTIONS false')
    try:
        status, _, body = http(f"{web}/readyz")
        assert (status, body.decode().splitlines()[:2]) == (
            503,
            ["not ready: database", "database: unreachable (OperationalError)"],
        ), body
        assert http(f"{web}/healthz")[0] == 200  # alive: no restart for a database outage
        for queue, (_, health, _) in p.workers.items():
            assert http(f"http://127.0.0.1:{health}/readyz")[::2] == (
                503,
                f"not ready: database unreachable (OperationalError) (polling {queue})\n".encode(),
            )
    finally:
        p.admin_sql(f'ALTER DATABASE "{p.db_name}" ALLOW_CONNECTIONS true')
    wait_until(lambda: http(f"{web}/readyz")[0] == 200, timeout=20, what="/readyz to be green again")

    shipping, health, _ = p.workers["shipping-tq"]
    shipping.process.send_signal(signal.SIGTERM)  # a stopping worker says so until it is gone
    states = set()

    def stopped() -> bool:
        code, _, text = (
            http(f"http://127.0.0.1:{health}/readyz", timeout=2) if shipping.exit_code() is None else (0, {}, b"")
        )
        states.add((code, text.decode().strip()))
        return shipping.exit_code() is not None

    wait_until(stopped, timeout=30, what="the shipping worker to stop")
    assert shipping.exit_code() == 0, shipping.last_line()
    p.supervisor.children.remove(shipping)

    p.supervisor.stop(p.temporal)
    status, _, body = http(f"{web}/readyz")
    lines = body.decode().splitlines()
    assert status == 503 and lines[:2] == ["not ready: temporal", "database: ok"], body
    # "connection refused" from a process that connects anew, "the connection failed" from one
    # whose connection broke: gunicorn's processes may be in either state.
    assert lines[2] in ("temporal: unreachable (connection refused)", "temporal: unreachable (the connection failed)")
    _, order_health, _ = p.workers["order-tq"]
    worker_ready = wait_until(
        lambda: (answer := http(f"http://127.0.0.1:{order_health}/readyz", timeout=5))[0] == 503 and answer,
        timeout=20,
        what="the order worker's /readyz to say Temporal is gone",
    )
    assert worker_ready[2].decode().startswith("not ready: temporal unreachable ("), worker_ready
    assert http(f"http://127.0.0.1:{order_health}/healthz")[0] == 200  # alive: its loop answers
    (ARTIFACTS / "production-readiness.txt").write_text(
        f"shipping worker /readyz while stopping: {sorted(states)}\nweb /readyz without Temporal:\n{body.decode()}"
        f"order worker /readyz without Temporal: {worker_ready[2].decode()}"
    )
