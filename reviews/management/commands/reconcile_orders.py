"""python manage.py reconcile_orders: find what the workflows cannot report, now.

The same reconciler the workers run every RECONCILE_INTERVAL_SECONDS (orderweb/reconcile.py):
orders whose workflow was terminated, timed out, deleted, or has been failing its task for
longer than RECONCILE_STUCK_AFTER_SECONDS are flagged for staff, the review tasks of stopped
ones are closed, and charges with neither a shipment nor a refund are listed. Idempotent.
Exit status 0, or 1 when something needs a person (a flag or an unsettled charge).
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from reviews.services import orders_reconcile_with_reviews
from temporal_app.client import TemporalUnavailable


class Command(BaseCommand):
    help = "Flag orders whose workflow stopped, vanished or is stuck; list unsettled charges."

    def add_arguments(self, parser):
        parser.add_argument(
            "--grace-seconds",
            type=float,
            default=None,
            help="Check orders quiet for at least this long (default: RECONCILE_GRACE_SECONDS).",
        )

    def handle(self, *args, grace_seconds=None, **options):
        try:
            report = orders_reconcile_with_reviews(grace_seconds=grace_seconds)
        except TemporalUnavailable as err:
            raise CommandError(str(err)) from None
        for line in report.summary_lines():
            self.stdout.write(line)
        if report.findings or report.unsettled_charges:
            raise SystemExit(1)
