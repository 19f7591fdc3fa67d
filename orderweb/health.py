"""The web app's health endpoints, for a load balancer, Kubernetes or systemd:

- ``GET /healthz``: 200 ``alive`` whenever the process answers HTTP. It checks no dependency on
  purpose: a database outage must not make a supervisor restart every web process.
- ``GET /readyz``: 200 once the database and Temporal both answer, each within
  ``READINESS_TIMEOUT_SECONDS`` (checked at the same time, so the probe takes at most that
  long); otherwise 503, and the first line names what failed (``not ready: temporal``), one line
  per part below it. Details that would tell a stranger where things run (addresses, paths) go to
  the log, not to the body.

Both are served by ``OperationalEndpointsMiddleware``, first in ``MIDDLEWARE``, so they answer
before ``ALLOWED_HOSTS`` and ``SECURE_SSL_REDIRECT`` apply: load balancers and kubelets call a
pod by its IP address over plain http, with a Host header no ALLOWED_HOSTS lists. The same
goes for ``/metrics`` (orderweb/metrics.py), which has its own token. No session, CSRF or
database work happens for these requests beyond the checks themselves.

The workers have their own endpoints (temporal_app/health.py, ``WORKER_HEALTH_PORT``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from django.db import connection
from django.http import HttpRequest, HttpResponse

from temporal_app.client import TemporalMisconfigured, TemporalNoAnswer, TemporalUnavailable, temporal_health_check

logger = logging.getLogger(__name__)

READINESS_TIMEOUT_SECONDS = 2.0

ALIVE = "alive"
READY = "ready"
NOT_READY = "not ready: {parts}"
OK = "ok"
NO_ANSWER = "no answer within {seconds:g} s"
UNREACHABLE = "unreachable ({reason})"
MISCONFIGURED = "misconfigured (see `manage.py check`)"

# Two checks per probe; a check stuck past its timeout keeps its thread until it ends, so a few
# threads more let the next probes run meanwhile.
_checks = ThreadPoolExecutor(max_workers=6, thread_name_prefix="readyz")


def _database() -> str:
    """A fresh connection each probe (on a thread of the probe pool), closed again: what a new
    request would need, without holding a connection per pool thread between probes."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as err:
        logger.warning(
            "readyz: database: %s", str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        )
        return UNREACHABLE.format(reason=type(err).__name__)
    finally:
        connection.close()
    return OK


def _temporal() -> str:
    try:
        temporal_health_check(READINESS_TIMEOUT_SECONDS)
    except TemporalMisconfigured as err:
        logger.warning("readyz: %s", err)
        return MISCONFIGURED
    except TemporalNoAnswer:
        return NO_ANSWER.format(seconds=READINESS_TIMEOUT_SECONDS)
    except TemporalUnavailable as err:
        logger.warning("readyz: %s", err)
        text = str(err)
        reason = text[text.find("(") + 1 : text.find(")")] if "(" in text else "no answer"
        return UNREACHABLE.format(reason=reason)
    except Exception as err:  # an answer that is an error: the frontend is there but unwell
        logger.warning("readyz: temporal: %s", err)
        return UNREACHABLE.format(reason=type(err).__name__)
    return OK


CHECKS: dict[str, Callable[[], str]] = {"database": _database, "temporal": _temporal}


def readiness() -> tuple[bool, list[tuple[str, str]]]:
    """Run every check at once; (all ok, [(part, result)])."""
    futures = {name: _checks.submit(check) for name, check in CHECKS.items()}
    results = []
    for name, future in futures.items():
        try:
            results.append((name, future.result(READINESS_TIMEOUT_SECONDS + 0.5)))
        except FutureTimeout:
            results.append((name, NO_ANSWER.format(seconds=READINESS_TIMEOUT_SECONDS)))
    return all(result == OK for _, result in results), results


def _text(status: int, body: str) -> HttpResponse:
    response = HttpResponse(body + "\n", status=status, content_type="text/plain; charset=utf-8")
    response["Cache-Control"] = "no-store"
    # A failing probe is logged once, above, with its cause: not again by django.request as an
    # error every few seconds.
    response._has_been_logged = True
    return response


def healthz(request: HttpRequest) -> HttpResponse:
    return _text(200, ALIVE)


def readyz(request: HttpRequest) -> HttpResponse:
    ok, results = readiness()
    failed = [name for name, result in results if result != OK]
    head = READY if ok else NOT_READY.format(parts=", ".join(failed))
    return _text(200 if ok else 503, "\n".join([head, *(f"{name}: {result}" for name, result in results)]))


def _endpoints() -> dict[str, Callable[[HttpRequest], HttpResponse]]:
    from orderweb.metrics import metrics_view

    return {"/healthz": healthz, "/readyz": readyz, "/metrics": metrics_view}


class OperationalEndpointsMiddleware:
    """Answers /healthz, /readyz and /metrics before any other middleware (see the module doc)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.endpoints = _endpoints()

    def __call__(self, request: HttpRequest) -> HttpResponse:
        view = self.endpoints.get(request.path_info)
        if view is None:
            return self.get_response(request)
        if request.method not in ("GET", "HEAD"):
            response = _text(405, "method not allowed: GET only")
            response["Allow"] = "GET, HEAD"
            return response
        return view(request)
