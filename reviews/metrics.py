"""The review backlog as Prometheus gauges, read at scrape time (orderweb/metrics.py serves them).

The backlog counts walk the ``review_open_queue`` partial index (open tasks by due time) and
nothing else: the cost follows the backlog, not the history (docs/operations.md has the plans).
Escalations are a counter read from Postgres too: the workflow's activity that escalates runs in
a worker process, which serves no Prometheus registry of ours, and a count kept in Postgres is
the same for every web process and survives restarts. It walks the ``review_escalated`` partial
index, which holds escalated tasks only."""

from __future__ import annotations

from collections.abc import Iterable

from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from orderweb.metrics import business_gauges
from reviews.models import ReviewTask


@business_gauges
def review_gauges() -> Iterable[Metric]:
    open_tasks = ReviewTask.objects.filter(status=ReviewTask.Status.OPEN)
    yield GaugeMetricFamily(
        "orderweb_reviews_open", "Orders waiting for a reviewer's decision.", value=open_tasks.count()
    )
    yield GaugeMetricFamily(
        "orderweb_reviews_overdue",
        "Open reviews past their due time (the order is cancelled when its review times out).",
        value=open_tasks.filter(due_at__lt=timezone.now()).count(),
    )


@business_gauges
def review_escalation_metrics() -> Iterable[Metric]:
    escalated = ReviewTask.objects.filter(escalated_at__isnull=False)
    yield CounterMetricFamily(
        "orderweb_review_escalations",
        "Reviews the workflow escalated to the review leads (undecided after REVIEW_ESCALATE_AFTER of their timeout).",
        value=escalated.count(),
    )
    yield GaugeMetricFamily(
        "orderweb_reviews_escalated_open",
        "Open reviews that have been escalated to the leads.",
        value=escalated.filter(status=ReviewTask.Status.OPEN).count(),
    )


# The decisions' outcomes (issue 21): how reviews ended, ever. A timeout the review policy approved
# (REVIEW_TIMEOUT_ACTION_*=approve, decided by "policy") is its own outcome, not a person's approval.
DECISION_OUTCOMES = ("approved", "rejected", "approved_by_policy", "expired", "cancelled", "stopped")


@business_gauges
def review_decision_metrics() -> Iterable[Metric]:
    """Two counts: the closed tasks by status (an index-only scan of ``review_closed_status``,
    which holds the closed tasks' status alone: 23 ms at 100,000, docs/benchmarks.md), and the
    policy's approvals (``review_recent_by``, which starts with the decider's name)."""
    from django.db.models import Count

    from temporal_app.contracts import POLICY_ACTOR

    closed = ReviewTask.objects.exclude(status=ReviewTask.Status.OPEN).order_by()
    rows = closed.values_list("status").annotate(n=Count("*"))
    policy = closed.filter(decided_by_name=POLICY_ACTOR, status=ReviewTask.Status.APPROVED).count()
    counts = dict.fromkeys(DECISION_OUTCOMES, 0)
    for status, n in rows:
        if status == ReviewTask.Status.APPROVED:
            counts["approved"] += n - policy
            counts["approved_by_policy"] += policy
        else:
            counts[status] = counts.get(status, 0) + n
    decisions = CounterMetricFamily(
        "orderweb_review_decisions",
        "Reviews closed, by outcome: approved or rejected by a person, approved by the review policy at its "
        "timeout, expired (cancelled at the timeout), cancelled (the order was), stopped (the workflow was).",
        labels=["outcome"],
    )
    for outcome, n in counts.items():
        decisions.add_metric([outcome], n)
    yield decisions
