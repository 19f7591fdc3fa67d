"""The orders table's search and history indexes, built without locking it, and known to Django.

Until now ``reviews`` migrations built them in a transaction inside ``RunPython`` (0003's
``order_id`` trigram index, 0007's six, 0008's swap of three for ``(UPPER(col), created_at)``,
0010's two for an order's linked orders by billing address and client IP):
every write to ``orderweb_order`` waited while they built, and Django's model state did not know
them. They are declared on ``Order`` now and built here with ``CREATE INDEX CONCURRENTLY``
(``atomic = False``); those reviews migrations no longer touch the table.

- A database that ran the old 0003/0007/0008/0010 already holds these indexes, valid, under these
  names: they are kept (``AddIndexConcurrentlyIfMissing``), and the state learns of them.
- One that ran the old 0007 but not 0008 also holds 0007's plain ``UPPER(col)`` indexes, which
  0008 used to drop: dropped here, concurrently.
- ``pg_trgm`` is required (docs/operations.md, "Postgres extensions"): created here if the role
  may (a trusted extension since PostgreSQL 13: the database's owner may), else a clear error
  saying what to run, before anything else is built.
"""

from django.contrib.postgres.indexes import GinIndex, OpClass
from django.db import DatabaseError, migrations, models
from django.db.models.functions import Upper

from orderweb.migration_operations import AddIndexConcurrentlyIfMissing

PG_TRGM_REQUIRED = (
    "The pg_trgm extension is required (trigram indexes for search), and this role may not create it: {error}. "
    "Run once, as a role that may (the database's owner, or your provider's admin role): "
    "CREATE EXTENSION IF NOT EXISTS pg_trgm; (on Azure, first allow it in the server parameter azure.extensions). "
    'Then migrate again. See docs/operations.md, "Postgres extensions".'
)


def require_pg_trgm(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
        if cursor.fetchone() is not None:
            return
        try:
            cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        except DatabaseError as err:
            raise RuntimeError(PG_TRGM_REQUIRED.format(error=str(err).strip().splitlines()[0])) from err


# 0007's plain indexes, which 0008 replaced by the (UPPER(col), created_at) ones.
SUPERSEDED = ("order_customer_upper", "order_email_upper", "order_address_upper")


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("orderweb", "0011_order_id_unique_ignoring_case"),
    ]

    operations = [
        # Not dropped backwards: other objects (and other apps) may use the extension.
        migrations.RunPython(require_pg_trgm, migrations.RunPython.noop),
        *[
            migrations.RunSQL(f"DROP INDEX CONCURRENTLY IF EXISTS {name}", migrations.RunSQL.noop)
            for name in SUPERSEDED
        ],
        *[
            AddIndexConcurrentlyIfMissing(
                model_name="order",
                index=GinIndex(OpClass(Upper(column), name="gin_trgm_ops"), name=name),
            )
            for column, name in (
                ("order_id", "order_order_id_upper_trgm"),
                ("customer", "order_customer_upper_trgm"),
                ("customer_email", "order_email_upper_trgm"),
                ("address", "order_address_upper_trgm"),
            )
        ],
        *[
            AddIndexConcurrentlyIfMissing(
                model_name="order",
                index=models.Index(Upper(column), models.F("created_at"), name=name),
            )
            for column, name in (
                ("customer", "order_customer_upper_time"),
                ("customer_email", "order_email_upper_time"),
                ("address", "order_address_upper_time"),
                ("billing_address", "order_billing_upper_time"),
            )
        ],
        AddIndexConcurrentlyIfMissing(
            model_name="order",
            index=models.Index(models.F("client_ip"), models.F("created_at"), name="order_client_ip_time"),
        ),
    ]
