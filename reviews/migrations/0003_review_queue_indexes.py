"""Indexes for the review back office (measured in docs/benchmarks-review-queue.md).

Raw SQL on purpose: the "mine" index is not declared on the model (reviews/models.py belongs to
the core).

This migration also used to build a trigram index on ``orderweb_order`` (``order_id``), creating
``pg_trgm`` where it could and going without where it could not. That index is declared on
``orderweb.Order`` now and built concurrently by orderweb's 0011, which also holds the one policy
for the extension: required (docs/operations.md, "Postgres extensions"). Databases that ran this
migration before keep the index; 0011 adopts it.
"""

from django.db import migrations

OPEN_CLAIMED = (
    "CREATE INDEX IF NOT EXISTS review_open_claimed ON reviews_reviewtask "
    "(claimed_by_id, due_at, id) WHERE status = 'open'"
)


class Migration(migrations.Migration):
    dependencies = [
        ("reviews", "0002_reviewer_group"),
        ("orderweb", "0001_initial"),
    ]

    operations = [
        migrations.RunSQL(OPEN_CLAIMED, "DROP INDEX IF EXISTS review_open_claimed"),
    ]
