"""The workers' health endpoints (temporal_app.health), as a supervisor reads them over HTTP:
/readyz is 200 only once every worker polls and 503 again once shutdown begins; /healthz is 503
while the workers' event loop is blocked or a worker stopped by itself. Off by default."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from django.core.management import CommandError
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from devtools.supervise import free_port
from temporal_app import worker as worker_module
from temporal_app.health import (
    ALIVE,
    LOOP_BLOCKED,
    NOT_POLLING,
    NOT_POLLING_YET,
    READY,
    SHUTTING_DOWN,
    WORKER_STOPPED,
    HealthServer,
    WorkerHealth,
)
from temporal_app.management.commands.run_workers import health_server
from temporal_app.worker import run_workers
from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parents[2]


def get(server: HealthServer, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{server.host}:{server.port}{path}", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


class LoopThread:
    """An event loop on a thread of its own, as the workers' loop is in run_workers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-worker-loop", daemon=True)
        self.thread.start()

    def submit(self, coroutine) -> concurrent.futures.Future:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def loop_thread():
    thread = LoopThread()
    yield thread
    thread.close()


@pytest.fixture
def served():
    # A loop that answers answers at once; the bound is for a loop that does not, and is generous
    # so that a busy machine never passes for a blocked loop (the blocked-loop test sets its own).
    health = WorkerHealth(loop_timeout=10)
    server = HealthServer(health, "127.0.0.1", 0).start()
    yield health, server
    server.stop()


class NotYetPolling:
    """Stands in for temporalio's Worker: ``async with`` returns before it polls, and
    ``is_running`` turns true only later. Counts how often run_workers looked."""

    def __init__(self) -> None:
        self.running = False
        self.checks = 0
        self.entered = threading.Event()
        self.release = threading.Event()  # its shutdown ends when the test says so

    @property
    def is_running(self) -> bool:
        self.checks += 1
        return self.running

    async def __aenter__(self) -> NotYetPolling:
        self.entered.set()
        return self

    async def __aexit__(self, *exc) -> None:
        while not self.release.is_set():
            await asyncio.sleep(0.01)
        self.running = False


def test_readyz_is_200_only_once_every_worker_polls_and_503_once_shutdown_begins(monkeypatch, served, loop_thread):
    health, server = served
    fakes = [NotYetPolling(), NotYetPolling()]
    monkeypatch.setattr(worker_module, "build_workers", lambda client, **options: fakes)

    async def no_schedules(client, queues):  # the periodic jobs' schedules need a server; not here
        return {}

    monkeypatch.setattr(worker_module, "ensure_schedules", no_schedules)
    stop = asyncio.Event()
    assert get(server, "/readyz") == (503, NOT_POLLING_YET + "\n")
    running = loop_thread.submit(
        run_workers(None, queues=["order-tq", "shipping-tq"], threads=1, stop=stop, health=health)
    )
    assert all(fake.entered.wait(10) for fake in fakes)
    assert get(server, "/readyz") == (503, NOT_POLLING_YET + "\n")

    # One worker polls: run_workers has looked at the other one since, and still not ready.
    fakes[0].running = True
    checks = fakes[1].checks
    wait_until(lambda: fakes[1].checks > checks + 1, timeout=10, what="run_workers to look at the workers again")
    assert get(server, "/readyz") == (503, NOT_POLLING_YET + "\n")

    fakes[1].running = True
    wait_until(lambda: get(server, "/readyz")[0] == 200, timeout=10, what="/readyz to answer 200")
    assert get(server, "/readyz") == (200, READY.format(queues="order-tq, shipping-tq") + "\n")
    assert get(server, "/healthz") == (200, ALIVE + "\n")

    # Shutdown begins: not ready while the workers are still finishing, nor after.
    loop_thread.loop.call_soon_threadsafe(stop.set)
    expected = (503, SHUTTING_DOWN + " (order-tq, shipping-tq)\n")
    wait_until(lambda: get(server, "/readyz") == expected, timeout=10, what="/readyz to say shutting down")
    assert not running.done()
    assert get(server, "/healthz") == (200, ALIVE + "\n")  # a requested shutdown is not a death
    for fake in fakes:
        fake.release.set()
    running.result(10)
    assert get(server, "/readyz") == expected


def test_healthz_fails_while_the_workers_loop_is_blocked(served, loop_thread):
    health, server = served
    health.watch_loop(loop_thread.loop)
    assert get(server, "/healthz") == (200, ALIVE + "\n")
    # Blocked for 30 s, the loop cannot answer within 0.5 s however busy the machine is (a
    # working loop answers the probe right after the blocking call, which never ends by itself).
    health.loop_timeout = 0.5
    unblock = threading.Event()
    loop_thread.loop.call_soon_threadsafe(unblock.wait, 30)  # test only: a blocking call on the loop
    try:
        blocked = get(server, "/healthz")
    finally:
        unblock.set()
    assert blocked == (503, LOOP_BLOCKED.format(seconds=0.5) + "\n")
    wait_until(lambda: get(server, "/healthz")[0] == 200, timeout=10, what="/healthz to recover")


def test_a_worker_that_stopped_by_itself_fails_both_endpoints(served, loop_thread):
    health, server = served
    health.watch_loop(loop_thread.loop)
    order, shipping = NotYetPolling(), NotYetPolling()
    order.running = shipping.running = True
    health.workers_polling({"order-tq": order, "shipping-tq": shipping})
    assert get(server, "/readyz")[0] == 200 and get(server, "/healthz")[0] == 200
    shipping.running = False  # a fatal worker error: temporalio shut it down
    assert get(server, "/healthz") == (503, WORKER_STOPPED.format(queues="shipping-tq") + "\n")
    assert get(server, "/readyz") == (503, NOT_POLLING.format(queues="shipping-tq") + "\n")


def test_a_dependency_that_does_not_answer_makes_readyz_name_it(served, loop_thread):
    health, server = served
    health.watch_loop(loop_thread.loop)
    order = NotYetPolling()
    order.running = True
    health.workers_polling({"order-tq": order})
    down: dict[str, str] = {}
    health.add_check("temporal", lambda: down.get("temporal"))
    health.add_check("database", lambda: down.get("database"))
    assert get(server, "/readyz") == (200, "ready: polling order-tq\n")
    down["temporal"] = "unreachable (connection refused)"
    assert get(server, "/readyz") == (503, "not ready: temporal unreachable (connection refused) (polling order-tq)\n")
    down["database"] = "unreachable (OperationalError)"
    assert get(server, "/readyz")[1] == (
        "not ready: temporal unreachable (connection refused); "
        "database unreachable (OperationalError) (polling order-tq)\n"
    )
    assert get(server, "/healthz") == (200, "alive\n")  # alive: a restart would not bring them back
    down.clear()
    assert get(server, "/readyz")[0] == 200


def test_unknown_paths_are_404(served):
    _, server = served
    assert get(server, "/")[0] == 404


@pytest.mark.temporal
def test_real_workers_are_ready_once_they_poll_the_server(temporal_server, served, loop_thread):
    """With the real worker code and the dev server: ready means the server sees our pollers."""
    health, server = served
    identity = f"health-test-{uuid.uuid4().hex[:8]}"
    stop = asyncio.Event()
    clients: list[Client] = []

    async def main() -> None:
        clients.append(await Client.connect(temporal_server, identity=identity))
        await run_workers(clients[0], queues=["shipping-tq"], threads=2, stop=stop, sandbox=True, health=health)

    async def poller_identities() -> set[str]:
        response = await clients[0].workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace="default",
                task_queue=TaskQueue(name="shipping-tq"),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            )
        )
        return {poller.identity for poller in response.pollers}

    assert get(server, "/readyz")[0] == 503
    running = loop_thread.submit(main())
    try:
        wait_until(lambda: get(server, "/readyz")[0] == 200 or running.done(), timeout=60, what="/readyz to answer 200")
        assert get(server, "/readyz") == (200, READY.format(queues="shipping-tq") + "\n")
        wait_until(
            lambda: identity in loop_thread.submit(poller_identities()).result(10),
            timeout=10,
            what="the server to list our worker among the task queue's pollers",
        )
    finally:
        loop_thread.loop.call_soon_threadsafe(stop.set)
        running.result(60)
    assert get(server, "/readyz") == (503, SHUTTING_DOWN + " (shipping-tq)\n")


def test_health_endpoints_are_off_by_default(settings):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_HEALTH_")}
    read = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; "
            "print(settings.WORKER_HEALTH_PORT, settings.WORKER_HEALTH_HOST)",
        ],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "orderweb.settings", "DEBUG": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert read.stdout.strip() == "None 127.0.0.1", read.stderr
    settings.WORKER_HEALTH_PORT = None
    assert health_server(WorkerHealth()) is None


def test_run_workers_serves_the_endpoints_on_the_configured_port(settings):
    settings.WORKER_HEALTH_PORT = free_port()
    server = health_server(WorkerHealth())
    try:
        assert (server.host, server.port) == ("127.0.0.1", settings.WORKER_HEALTH_PORT)
        assert get(server, "/readyz") == (503, NOT_POLLING_YET + "\n")
        with pytest.raises(CommandError, match=f"WORKER_HEALTH_PORT: cannot listen on 127.0.0.1:{server.port}"):
            health_server(WorkerHealth())  # the port is taken (by the first server)
    finally:
        server.stop()
