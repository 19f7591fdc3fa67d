"""The review backlog as Prometheus gauges, read at scrape time (orderweb/metrics.py serves them).

Both counts walk the ``review_open_queue`` partial index (open tasks by due time) and nothing
else: the cost follows the backlog, not the history (docs/operations.md has the plans)."""

from __future__ import annotations

from typing import Iterable

from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric

from orderweb.metrics import business_gauges
from reviews.models import ReviewTask


@business_gauges
def review_gauges() -> Iterable[Metric]:
    open_tasks = ReviewTask.objects.filter(status=ReviewTask.Status.OPEN)
    yield GaugeMetricFamily("orderweb_reviews_open", "Orders waiting for a reviewer's decision.",
                            value=open_tasks.count())
    yield GaugeMetricFamily(
        "orderweb_reviews_overdue",
        "Open reviews past their due time (the order is cancelled when its review times out).",
        value=open_tasks.filter(due_at__lt=timezone.now()).count(),
    )
