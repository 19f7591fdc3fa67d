"""Worker liveness and readiness over HTTP, for whoever supervises ``manage.py run_workers``.

Off unless ``WORKER_HEALTH_PORT`` is set (``WORKER_HEALTH_HOST``, default 127.0.0.1, is the
address it binds to). Two endpoints:

- ``GET /readyz``: 200 once every worker of the process polls its task queue and its
  dependencies answer (``add_check``: ``run_workers`` adds Temporal's frontend and Postgres,
  each within ``DEPENDENCY_TIMEOUT_SECONDS``); 503 before that, from the moment shutdown begins,
  while a worker is not running, or while a dependency does not answer (the body names it: a
  worker keeps polling through a Temporal outage and would otherwise look ready). ``make run``,
  the chaos run and ``bench_orders`` wait on it; so can Kubernetes.
- ``GET /healthz``: 200 while the event loop the workers run on answers and no worker stopped by
  itself; 503 with a one-line reason otherwise.

Why ``http.server`` on a thread of its own rather than an asyncio server on the workers' loop:
the liveness check must fail when that loop is blocked (a blocking call on it starves every
poller and workflow activation). A server on the blocked loop would not answer at all, and a
probe would only see a timeout with no reason. On its own thread the server still answers: it
asks the loop to run a no-op (``call_soon_threadsafe``) and, if that does not happen within
``loop_timeout``, says so in a 503. The loop pays for one no-op per probe and nothing else, and
the standard library is enough: no new dependency.

Standard library only, no Django: ``run_workers`` (the command) reads the settings and starts it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional
from urllib.parse import urlsplit

# How long /healthz waits for the workers' event loop to run a no-op before calling it blocked.
LOOP_ANSWER_TIMEOUT_SECONDS = 2.0
# How long each dependency check of /readyz may take (a check enforces it itself).
DEPENDENCY_TIMEOUT_SECONDS = 2.0

NOT_POLLING_YET = "not ready: the workers are not polling yet"
SHUTTING_DOWN = "not ready: shutting down"
NOT_POLLING = "not ready: not polling {queues}"
READY = "ready: polling {queues}"
DEPENDENCY_DOWN = "not ready: {failures} (polling {queues})"
ALIVE = "alive"
NO_LOOP = "not alive: no event loop is being watched"
LOOP_CLOSED = "not alive: the event loop is closed"
LOOP_BLOCKED = "not alive: the event loop did not answer within {seconds:g} s"
WORKER_STOPPED = "not alive: the worker for {queues} stopped"


class WorkerHealth:
    """What the endpoints report; fed by ``temporal_app.worker.run_workers`` on the workers' loop
    and read by the HTTP server's threads.

    ``workers`` are temporalio ``Worker`` objects (anything with ``is_running``), by task queue.
    """

    def __init__(self, *, loop_timeout: float = LOOP_ANSWER_TIMEOUT_SECONDS) -> None:
        self.loop_timeout = loop_timeout
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._workers: dict[str, Any] = {}
        self._ready = False
        self._stopping = False
        self._checks: dict[str, Callable[[], Optional[str]]] = {}

    # -- reported by run_workers, on the workers' loop ---------------------------------------

    def watch_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop the workers run on: /healthz checks that this one answers."""
        self._loop = loop

    def workers_polling(self, workers: Mapping[str, Any]) -> None:
        """Every worker runs: it passed the server's checks and its pollers are started."""
        self._workers = dict(workers)
        self._ready = True

    def add_check(self, name: str, check: Callable[[], Optional[str]]) -> None:
        """A dependency /readyz asks about once the workers poll: ``check()`` returns None when
        it answers, else why not (``"unreachable (connection refused)"``). It runs on the HTTP
        server's thread and must bound its own time (``DEPENDENCY_TIMEOUT_SECONDS``)."""
        self._checks[name] = check

    def shutdown_began(self) -> None:
        """Asked to stop: no new tasks are polled from now on."""
        self._stopping = True

    # -- read by the endpoints --------------------------------------------------------------

    def readiness(self) -> tuple[bool, str]:
        queues = ", ".join(self._workers)
        if self._stopping:
            return False, SHUTTING_DOWN + (f" ({queues})" if queues else "")
        if not self._ready:
            return False, NOT_POLLING_YET
        idle = [queue for queue, worker in self._workers.items() if not worker.is_running]
        if idle:
            return False, NOT_POLLING.format(queues=", ".join(idle))
        failures = []
        for name, check in list(self._checks.items()):
            try:
                problem = check()
            except Exception as err:  # a check that fails to check: its dependency is not fine
                problem = f"check failed ({type(err).__name__})"
            if problem:
                failures.append(f"{name} {problem}")
        if failures:
            return False, DEPENDENCY_DOWN.format(failures="; ".join(failures), queues=queues)
        return True, READY.format(queues=queues)

    def liveness(self) -> tuple[bool, str]:
        loop = self._loop
        if loop is None:
            return False, NO_LOOP
        answered = threading.Event()
        try:
            loop.call_soon_threadsafe(answered.set)
        except RuntimeError:  # the loop is closed
            return False, LOOP_CLOSED
        if not answered.wait(self.loop_timeout):
            return False, LOOP_BLOCKED.format(seconds=self.loop_timeout)
        if self._ready and not self._stopping:
            stopped = [queue for queue, worker in self._workers.items() if not worker.is_running]
            if stopped:
                return False, WORKER_STOPPED.format(queues=", ".join(stopped))
        return True, ALIVE


class _Handler(BaseHTTPRequestHandler):
    health: WorkerHealth  # set on the subclass HealthServer makes
    timeout = 5  # seconds a client may take to send its request (a thread waits for it)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = urlsplit(self.path).path
        if path == "/readyz":
            ok, text = self.health.readiness()
        elif path == "/healthz":
            ok, text = self.health.liveness()
        else:
            ok, text = None, "not found: GET /healthz or /readyz"
        body = (text + "\n").encode()
        self.send_response(404 if ok is None else 200 if ok else 503)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # probes every few seconds would drown the worker's log


class HealthServer:
    """The two endpoints on ``host:port`` (port 0: any free port, see ``.port``), served by a
    daemon thread until ``stop()``. Binding happens in the constructor, so a port in use raises
    ``OSError`` there."""

    def __init__(self, health: WorkerHealth, host: str = "127.0.0.1", port: int = 0) -> None:
        handler = type("WorkerHealthHandler", (_Handler,), {"health": health})
        self._server = ThreadingHTTPServer((host, port), handler)
        self.host, self.port = self._server.server_address[:2]
        self._thread = threading.Thread(target=self._server.serve_forever, name="worker-health", daemon=True)

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(5)
        self._server.server_close()
