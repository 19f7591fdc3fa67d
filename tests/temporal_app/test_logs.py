"""Log lines that name their order (temporal_app/logs.py), plain or JSON (LOG_FORMAT=json)."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.testing import ActivityEnvironment

from temporal_app import registry
from temporal_app.contracts import ORDER_TASK_QUEUE
from temporal_app.logs import JsonFormatter, OrderContextFilter

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def json_lines():
    """The root logger writing JSON through the project's filter, into a buffer."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(OrderContextFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    previous = root.level
    root.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(handler)
    root.setLevel(previous)


@dataclass
class SomeInput:
    order_id: str


def test_activity_lines_carry_the_order_and_the_workflow(json_lines):
    saved = list(registry._activities[ORDER_TASK_QUEUE])
    try:

        @registry.db_activity("test_logging_activity", queue=ORDER_TASK_QUEUE)
        def logs_something(request: SomeInput) -> None:
            logging.getLogger("orderweb.activities").info("charging")

        env = ActivityEnvironment()
        env.info = env.info.__class__(**{**env.info.__dict__, "workflow_id": "order-log-1"})
        env.run(logs_something, SomeInput("ORDER-LOG-1"))
    finally:
        registry._activities[ORDER_TASK_QUEUE] = saved
    logging.getLogger("elsewhere").info("outside any activity")
    inside, outside = json_lines()
    assert (inside["message"], inside["order_id"], inside["workflow_id"]) == ("charging", "ORDER-LOG-1", "order-log-1")
    assert inside["level"] == "INFO" and inside["logger"] == "orderweb.activities"
    assert "order_id" not in outside and "workflow_id" not in outside


def test_workflow_lines_map_the_sdks_workflow_info(json_lines):
    # temporalio's workflow.logger puts the workflow's info on the record as `temporal_workflow`.
    logging.getLogger("temporalio.workflow").warning(
        "parent is gone",
        extra={
            "temporal_workflow": {
                "workflow_id": "order-7-shipping",
                "run_id": "r1",
                "workflow_type": "ShippingWorkflow",
            }
        },
    )
    (line,) = json_lines()
    assert line["workflow_id"] == "order-7-shipping" and "temporal_workflow" not in line


@pytest.mark.django_db(transaction=True)
def test_action_lines_carry_the_order_and_the_outcome(json_lines, temporal_server):
    from orderweb.actions import order_cancel
    from orderweb.models import Order

    order = Order.objects.create(order_id="LOG-ACT-1", workflow_id="log-act-1-never-started", address="1 Log St")
    outcome = order_cancel(order=order, reason="testing the logs", actor="ops-bot", source="api")
    assert outcome.code == "workflow_not_found"
    lines = [line for line in json_lines() if line["logger"] == "orderweb.actions"]
    assert [line["message"] for line in lines] == [
        "cancel of order LOG-ACT-1 requested by ops-bot",
        "cancel of order LOG-ACT-1: refused (workflow_not_found)",
    ]
    for line in lines:
        assert (line["order_id"], line["workflow_id"], line["action"]) == (
            "LOG-ACT-1",
            "log-act-1-never-started",
            "cancel",
        )
    assert lines[1]["outcome"] == "refused" and lines[1]["code"] == "workflow_not_found"
    assert "testing the logs" not in json.dumps(lines)  # people's words stay in the audit trail


@pytest.mark.parametrize("log_format", ["json", "plain"])
def test_log_format_is_chosen_by_the_environment(log_format):
    code = (
        "import logging; logging.getLogger('orderweb.actions').warning('hello', "
        "extra={'order_id': 'O-1', 'workflow_id': 'o-1'})"
    )
    proc = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DEBUG": "1", "LOG_FORMAT": log_format},
    )
    last = proc.stderr.strip().splitlines()[-1]
    if log_format == "json":
        line = json.loads(last)
        assert (line["message"], line["level"], line["order_id"], line["workflow_id"]) == (
            "hello",
            "WARNING",
            "O-1",
            "o-1",
        )
        assert "time" in line
    else:
        assert last.endswith("WARNING orderweb.actions: hello") and not last.startswith("{")
