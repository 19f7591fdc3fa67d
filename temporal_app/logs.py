"""Log lines that say which order they are about, and JSON logs on request (LOG_FORMAT=json).

``OrderContextFilter`` (on the console handler, so it sees every line, whichever logger wrote
it) gives each record ``order_id`` and ``workflow_id``:

- in an activity: ``workflow_id`` from ``temporalio.activity.info()``, ``order_id`` from the
  activity's input (``bind_order``, called by the registry's wrappers: every activity input of
  this project carries ``order_id``);
- on a workflow line: temporalio's ``workflow.logger`` puts the workflow's info on the record
  (``temporal_workflow``); its ``workflow_id`` becomes ours (a workflow knows no order id the
  SDK could give us: ``Order.workflow_id`` maps one to the other);
- on an action line (``orderweb.actions``): passed as ``extra`` by the caller, kept as given.

A line about no order gets neither key in JSON (and plain text, the default, shows neither).
With tracing on (``temporal_app.tracing``), a line written inside a span also gets ``trace_id``
and ``span_id`` (hex, as trace viewers show them), so a slow approval's log lines and its trace
find each other.
"""

from __future__ import annotations

import contextvars
import logging
from typing import Any, Optional

from pythonjsonlogger.json import JsonFormatter as _JsonFormatter
from temporalio import activity

from temporal_app.tracing import log_ids

_order_id: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar("log_order_id", default=None)


def bind_order(args: tuple[Any, ...]) -> contextvars.Token:
    """Remember the order an activity attempt works on (its first argument's ``order_id``);
    reset with ``unbind_order(token)``."""
    order_id = getattr(args[0], "order_id", None) if args else None
    return _order_id.set(order_id if isinstance(order_id, str) else None)


def unbind_order(token: contextvars.Token) -> None:
    _order_id.reset(token)


class OrderContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        order_id = getattr(record, "order_id", None)
        workflow_id = getattr(record, "workflow_id", None)
        workflow_info = getattr(record, "temporal_workflow", None)
        if workflow_id is None and isinstance(workflow_info, dict):
            workflow_id = workflow_info.get("workflow_id")
        if workflow_id is None and activity.in_activity():
            workflow_id = activity.info().workflow_id
            order_id = order_id or _order_id.get()
        record.order_id = order_id
        record.workflow_id = workflow_id
        record.trace_id, record.span_id = log_ids()  # with tracing on (temporal_app/tracing.py)
        return True


# Attributes every LogRecord has, which the JSON line shows under its own names or not at all.
_RECORD_FIELDS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(_JsonFormatter):
    """One JSON object a line: time, level, logger, message, order_id/workflow_id and
    trace_id/span_id when known, any other ``extra`` the caller passed, and the exception's text."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("timestamp", "time")
        kwargs.setdefault("reserved_attrs", sorted(_RECORD_FIELDS | {"temporal_workflow", "temporal_activity"}))
        super().__init__(*args, **kwargs)

    def add_fields(self, log_record: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        super().add_fields(log_record, record, message_dict)
        log_record["level"] = record.levelname
        log_record["logger"] = record.name
        for key in ("order_id", "workflow_id", "trace_id", "span_id"):
            if log_record.get(key) is None:
                log_record.pop(key, None)
