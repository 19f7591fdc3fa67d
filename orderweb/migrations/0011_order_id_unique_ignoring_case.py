"""Order ids unique regardless of case: ``ORDER-1`` and ``order-1`` would run as one workflow
(``order-1``), so the database refuses the second (issue 19, item 4).

The unique index on ``LOWER(order_id)`` is built concurrently (``atomic = False``): writes to the
orders table go on while it builds. Rows that already break the rule (only outside Temporal
clients could make them, with workflow ids of their own) stop the migration before the build,
each named, with what to do: docs/operations.md, "Order ids that differ only in case".
"""

from django.db import migrations, models
from django.db.models.functions import Lower

from orderweb.migration_operations import AddUniqueConstraintConcurrently

DUPLICATES = (
    "SELECT LOWER(order_id), array_agg(order_id ORDER BY id), array_agg(status ORDER BY id) "
    "FROM orderweb_order GROUP BY LOWER(order_id) HAVING count(*) > 1 ORDER BY 1 LIMIT 20"
)
DUPLICATES_FOUND = (
    "orderweb_order holds order ids that differ only in case, which the unique index on LOWER(order_id) "
    "refuses: {pairs}. Give all but one of each a new order id once its order has ended (see "
    'docs/operations.md, "Order ids that differ only in case"), then migrate again.'
)


def refuse_ids_differing_only_in_case(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(DUPLICATES)
        rows = cursor.fetchall()
    if rows:
        pairs = "; ".join(
            ", ".join(f"{order_id} ({status})" for order_id, status in zip(ids, statuses, strict=True))
            for _, ids, statuses in rows
        )
        raise RuntimeError(DUPLICATES_FOUND.format(pairs=pairs))


class Migration(migrations.Migration):
    atomic = False  # CREATE UNIQUE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("orderweb", "0010_review_team_events_note_permission"),
    ]

    operations = [
        migrations.RunPython(refuse_ids_differing_only_in_case, migrations.RunPython.noop, elidable=True),
        AddUniqueConstraintConcurrently(
            model_name="order",
            constraint=models.UniqueConstraint(Lower("order_id"), name="order_id_unique_ignoring_case"),
        ),
    ]
