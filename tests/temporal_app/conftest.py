"""A Temporal dev server of a test's own, for tests whose workers must not share the session's
task queues (versioned workers, traced workers)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.conf import settings

from devtools.devserver import start_dev_server
from devtools.supervise import free_port, stop_process
from tests.conftest import _wait_until_temporal_answers
from tests.helpers import terminate_running_workflows

# Drainage of a worker version is checked every few minutes by default; here every 2 s.
FAST_DRAINAGE = {
    "matching.wv.VersionDrainageStatusVisibilityGracePeriod": '"2s"',
    "matching.wv.VersionDrainageStatusRefreshInterval": '"2s"',
}


@pytest.fixture
def own_temporal(tmp_path, transactional_db) -> Iterator[str]:
    """Its address; this process's client (order_create, review_decide, tests.helpers.temporal)
    talks to it for the test's duration. Workflows left running are terminated afterwards."""
    port = free_port()
    process = start_dev_server(
        db_file=tmp_path / "temporal.db",
        port=port,
        ui_port=free_port(),
        headless=True,
        log=tmp_path / "temporal.log",
        dynamic_config=FAST_DRAINAGE,
    )
    address, before = f"127.0.0.1:{port}", settings.TEMPORAL_ADDRESS
    try:
        # Its port opens before its frontend is healthy ("Frontend is not healthy yet" failed a
        # worker's first connect in CI), as for the session's server.
        _wait_until_temporal_answers(address)
        settings.TEMPORAL_ADDRESS = address
        yield address
        terminate_running_workflows()
    finally:
        settings.TEMPORAL_ADDRESS = before
        stop_process(process)
