"""Once: trigram GIN indexes on ``UPPER(customer)``, ``UPPER(customer_email)`` and
``UPPER(address)`` of ``orderweb_order``, and btree indexes on the same expressions, built in a
transaction inside ``RunPython`` (every write to the orders table waited while they built) and
unknown to Django's model state.

They are declared on ``orderweb.Order`` now and built concurrently by orderweb's 0011
(docs/benchmarks-review-queue.md has their plans at 100,000 orders). This migration stays, empty,
so that databases which ran it and those which did not have the same history; 0011 adopts the
indexes where they already exist.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("reviews", "0006_risk_assessment_and_queue_columns"),
        ("orderweb", "0004_reason_codes_carrier_error"),
    ]

    operations = []
