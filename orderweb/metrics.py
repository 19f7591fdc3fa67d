"""Prometheus metrics of the web app: ``GET /metrics`` (docs/operations.md lists the series).

Why prometheus-client rather than django-prometheus: we need three things, a request counter
and latency histogram per route, a few gauges read from Postgres at scrape time, and gunicorn's
several processes added up. prometheus-client does all three in a page of code, its
multiprocess mode included; django-prometheus brings model, cache and database-backend wrappers
we would not use (its database metrics need its own ENGINE), and under gunicorn it relies on the
same multiprocess mode anyway.

Several processes: under gunicorn each worker process counts its own requests. With
``PROMETHEUS_MULTIPROC_DIR`` set (gunicorn.conf.py sets it, empties it at start and marks a
dead worker's files) every process writes its counters to files there and ``/metrics`` adds up
all of them, whichever process answers the scrape. Without it (runserver, tests) the process's
own registry is served.

The business gauges are not kept in memory: each scrape reads them from Postgres with one
small query each, on the partial indexes the pages already use (EXPLAIN in
docs/operations.md). Apps add theirs with ``business_gauges`` (the reviews app does, from its
``ready()``): this module knows nothing of reviews.

Access: ``METRICS_TOKEN`` must be set (Prometheus sends ``Authorization: Bearer <token>``);
unset, ``/metrics`` answers 404. It is served before ALLOWED_HOSTS and the https redirect
(orderweb/health.py), because Prometheus scrapes a pod by its address over plain http.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections.abc import Callable, Iterable
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from temporal_app.contracts import OrderState

logger = logging.getLogger(__name__)

METRICS_OFF = "metrics are off: set METRICS_TOKEN to serve them"
METRICS_TOKEN_NEEDED = "a bearer token is required (Authorization: Bearer <METRICS_TOKEN>)"

HTTP_REQUESTS = Counter(
    "orderweb_http_requests_total",
    "HTTP requests answered, by method, route (URL name) and status.",
    ["method", "route", "status"],
)
HTTP_SECONDS = Histogram(
    "orderweb_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route.",
    ["method", "route"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


class RequestMetricsMiddleware:
    """Counts and times every request except the operational endpoints (served before it).
    The route is the URL's name (``reviews:queue``, ``admin:orderweb_order_changelist``), never
    the path, so an order id does not make a series of its own."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.static_prefix = "/" + settings.STATIC_URL.lstrip("/")

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        route = self._route(request)
        HTTP_SECONDS.labels(request.method, route).observe(time.perf_counter() - started)
        HTTP_REQUESTS.labels(request.method, route, str(response.status_code)).inc()
        return response

    def _route(self, request: HttpRequest) -> str:
        match = getattr(request, "resolver_match", None)
        if match is not None:
            return match.view_name or match.route or "unnamed"
        if request.path_info.startswith(self.static_prefix):
            return "static"
        return "unmatched"


# -- business gauges ------------------------------------------------------------------------

GaugeReader = Callable[[], Iterable[Metric]]
_business: list[GaugeReader] = []


def business_gauges(reader: GaugeReader) -> GaugeReader:
    """Register a function that reads gauges at scrape time (idempotent by function name)."""
    name = f"{reader.__module__}.{reader.__qualname__}"
    _business[:] = [r for r in _business if f"{r.__module__}.{r.__qualname__}" != name]
    _business.append(reader)
    return reader


@business_gauges
def order_gauges() -> Iterable[Metric]:
    from orderweb.models import Order

    # Orders on their way, by state: a range of the (status, created_at) index per state. Ended
    # orders are not counted over all time (that grows without end: a full scan each scrape);
    # instead, the orders of the last 24 hours by their current state, on the created_at index.
    in_flight_states = [state.value for state in OrderState if not state.is_terminal]
    in_flight = GaugeMetricFamily(
        "orderweb_orders_in_flight", "Orders not ended yet, by state (Postgres projection).", labels=["status"]
    )
    counts = dict(
        Order.objects.filter(status__in=in_flight_states).order_by().values_list("status").annotate(n=Count("*"))
    )
    for state in in_flight_states:
        in_flight.add_metric([state], counts.get(state, 0))
    yield in_flight
    recent = GaugeMetricFamily(
        "orderweb_orders_last_24h", "Orders created in the last 24 hours, by current state.", labels=["status"]
    )
    since = timezone.now() - timedelta(hours=24)
    counts = dict(Order.objects.filter(created_at__gte=since).order_by().values_list("status").annotate(n=Count("*")))
    for state in OrderState:
        recent.add_metric([state.value], counts.get(state.value, 0))
    yield recent
    yield GaugeMetricFamily(
        "orderweb_orders_needing_attention",
        "Orders the reconciler flagged for staff (terminated, deleted or stuck workflows).",
        value=Order.objects.filter(attention_since__isnull=False).count(),
    )
    yield GaugeMetricFamily(
        "orderweb_orders_dispatch_failed_waiting",
        "Orders whose carrier dispatch failed and that wait for staff to retry or cancel.",
        value=Order.objects.filter(Q(dispatch_failures__gt=0), status=OrderState.SHIPPING).count(),
    )


class _BusinessCollector(Collector):
    def collect(self) -> Iterable[Metric]:
        metrics: list[Metric] = []
        up = 1
        for reader in list(_business):
            try:
                metrics.extend(reader())
            except DatabaseError as err:  # Postgres is down: say so, serve the rest
                logger.warning(
                    "metrics: %s: %s", reader.__name__, str(err).strip().splitlines()[0] if str(err).strip() else err
                )
                up = 0
        yield from metrics
        yield GaugeMetricFamily(
            "orderweb_business_metrics_up",
            "1 if every business gauge could be read from Postgres at this scrape.",
            value=up,
        )


def _process_registry():
    """The request counters of every process (multiprocess mode), or of this one."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


def metrics_text() -> bytes:
    business = CollectorRegistry(auto_describe=False)
    business.register(_BusinessCollector())
    return generate_latest(_process_registry()) + generate_latest(business)


def _authorised(request: HttpRequest) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), settings.METRICS_TOKEN.encode())


def metrics_view(request: HttpRequest) -> HttpResponse:
    if not settings.METRICS_TOKEN:
        return HttpResponse(METRICS_OFF + "\n", status=404, content_type="text/plain; charset=utf-8")
    if not _authorised(request):
        response = HttpResponse(METRICS_TOKEN_NEEDED + "\n", status=401, content_type="text/plain; charset=utf-8")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    response = HttpResponse(metrics_text(), content_type=CONTENT_TYPE_LATEST)
    response["Cache-Control"] = "no-store"
    return response


@business_gauges
def label_metrics() -> Iterable[Metric]:
    """Outcome labels (issue 21), by kind: every one ever set (a counter: removing one does not
    take it back) and those standing now. One aggregate on the (label, created_at) index."""
    from orderweb.models import OrderLabel

    rows = {
        kind: (n, standing)
        for kind, n, standing in OrderLabel.objects.order_by()
        .values_list("label")
        .annotate(n=Count("*"), standing=Count("pk", filter=Q(removed_at__isnull=True)))
    }
    set_total = CounterMetricFamily(
        "orderweb_order_labels", "Outcome labels set on orders, by kind (removed ones too).", labels=["label"]
    )
    standing = GaugeMetricFamily(
        "orderweb_order_labels_standing", "Outcome labels standing now (not removed), by kind.", labels=["label"]
    )
    for kind in OrderLabel.Kind.values:
        n, now = rows.get(kind, (0, 0))
        set_total.add_metric([kind], n)
        standing.add_metric([kind], now)
    yield set_total
    yield standing
