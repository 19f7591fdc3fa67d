"""Indexes on orderweb_order for the review back office (docs/benchmarks-review-queue.md has
their plans at 100,000 orders):

- trigram GIN indexes on ``UPPER(customer)``, ``UPPER(customer_email)`` and ``UPPER(address)``:
  Django's ``icontains`` is ``UPPER(col::text) LIKE UPPER('%…%')``, so an index on that
  expression answers the search of the queue, of Recent decisions and of the admin's order list
  (``order_id`` has had the same index since 0003);
- btree indexes on the same expressions, for the risk rules' and the order page's look-ups of
  a customer's or an address's other orders (``iexact``: ``UPPER(col::text) = UPPER('…')``).

They are built from Django index objects through the schema editor rather than declared on
``orderweb.Order``: the orders app knows nothing of reviews (tests/test_layout.py), and these
serve the review back office first.
"""

from django.contrib.postgres.indexes import GinIndex, OpClass
from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations
from django.db.models import Index
from django.db.models.functions import Upper


def _indexes():
    return [
        GinIndex(OpClass(Upper("customer"), name="gin_trgm_ops"), name="order_customer_upper_trgm"),
        GinIndex(OpClass(Upper("customer_email"), name="gin_trgm_ops"), name="order_email_upper_trgm"),
        GinIndex(OpClass(Upper("address"), name="gin_trgm_ops"), name="order_address_upper_trgm"),
        Index(Upper("customer"), name="order_customer_upper"),
        Index(Upper("customer_email"), name="order_email_upper"),
        Index(Upper("address"), name="order_address_upper"),
    ]


class TrigramExtensionKept(TrigramExtension):
    """pg_trgm, created if missing and kept when this migration is unapplied: 0003's index uses it
    too (dropping it failed "other objects depend on it", found by tests/test_migrations.py)."""

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        pass


def add_indexes(apps, schema_editor):
    order = apps.get_model("orderweb", "Order")
    for index in _indexes():
        schema_editor.add_index(order, index)


def remove_indexes(apps, schema_editor):
    order = apps.get_model("orderweb", "Order")
    for index in _indexes():
        schema_editor.remove_index(order, index)


class Migration(migrations.Migration):
    dependencies = [
        ("reviews", "0006_risk_assessment_and_queue_columns"),
        ("orderweb", "0004_reason_codes_carrier_error"),
    ]

    operations = [
        TrigramExtensionKept(),
        migrations.RunPython(add_indexes, remove_indexes),
    ]
