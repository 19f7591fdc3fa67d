"""What the benchmarks share (devtools/bench.py) against the real Postgres, and the dev server they
start (devtools/devserver.py)."""

from __future__ import annotations

import time

import pytest
from django.db import connection

from devtools.bench import AutovacuumStandIn
from devtools.devserver import DevServerError, start_dev_server
from devtools.supervise import free_port
from orderweb.models import Order


def _autovacuum() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW autovacuum")
        return cursor.fetchone()[0]


def _analyzed(model) -> bool:
    """Whether the table has planner statistics (pg_class.reltuples is -1 until it is analyzed)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples >= 0 FROM pg_class WHERE oid = %s::regclass", [model._meta.db_table])
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_the_autovacuum_stand_in_analyzes_on_entry_and_then_on_its_interval_only_where_autovacuum_is_off():
    autovacuum = _autovacuum()
    said: list[str] = []
    with AutovacuumStandIn(seconds=0.05, say=said.append) as stand_in:
        deadline = time.monotonic() + 10
        while autovacuum == "off" and stand_in.analyzed < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    if autovacuum == "on":  # a production-like Postgres: autovacuum keeps the statistics itself
        assert stand_in.analyzed == 0 and said == []
        return
    # On entry (the main thread), then from its own thread on the interval; it says so once.
    assert stand_in.analyzed >= 3
    assert len(said) == 1 and "autovacuum off" in said[0]
    assert _analyzed(Order)
    assert not stand_in._thread.is_alive()  # stopped with the block: nothing analyzes after it


def test_a_dev_server_that_exits_says_why_from_its_log(tmp_path):
    """The benchmarks start their own dev server; when it exits at once, the error carries its
    log's last line (the log itself goes with the benchmark's temporary directory)."""
    with pytest.raises(DevServerError) as raised:
        start_dev_server(
            db_file=tmp_path / "temporal.db",
            port=free_port(),
            ui_port=free_port(),
            headless=True,
            log=tmp_path / "temporal.log",
            dynamic_config={"frontend.enableUpdateWorkflowExecution": "[unclosed"},
        )
    assert "exited with code" in str(raised.value)
    assert "invalid dynamic config values" in str(raised.value)
