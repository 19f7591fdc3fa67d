"""Indexes for the review back office (measured in docs/benchmarks-review-queue.md).

Raw SQL on purpose: the "mine" index is not declared on the model (reviews/models.py belongs to
the core), and the search index lives on orderweb_order and needs the pg_trgm extension, which a
managed Postgres may not let us create. Without pg_trgm the search still works, it just scans.
"""

from django.db import DatabaseError, migrations, transaction

OPEN_CLAIMED = (
    "CREATE INDEX IF NOT EXISTS review_open_claimed ON reviews_reviewtask "
    "(claimed_by_id, due_at, id) WHERE status = 'open'"
)
# Django's icontains is UPPER(col::text) LIKE UPPER('%...%'): a trigram index on that expression
# answers it without reading every order.
ORDER_ID_TRGM = (
    "CREATE INDEX IF NOT EXISTS order_order_id_upper_trgm ON orderweb_order "
    "USING gin (UPPER(order_id::text) gin_trgm_ops)"
)


def create_search_index(apps, schema_editor):
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'")
        if cursor.fetchone() is None:
            return
    try:
        # A savepoint, so a refused CREATE EXTENSION does not abort the migration's transaction.
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except DatabaseError:  # no privilege: keep the sequential search rather than fail the deploy
        return
    schema_editor.execute(ORDER_ID_TRGM)


def drop_search_index(apps, schema_editor):
    schema_editor.execute("DROP INDEX IF EXISTS order_order_id_upper_trgm")


class Migration(migrations.Migration):
    dependencies = [
        ("reviews", "0002_reviewer_group"),
        ("orderweb", "0001_initial"),
    ]

    operations = [
        migrations.RunSQL(OPEN_CLAIMED, "DROP INDEX IF EXISTS review_open_claimed"),
        migrations.RunPython(create_search_index, drop_search_index),
    ]
