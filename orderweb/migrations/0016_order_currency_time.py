"""The shop's latest amounts in one currency (reviews/risk.py's percentile, issue 19 item 7):
built concurrently, the orders table stays writable."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("orderweb", "0015_webhook_cursor"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="order",
            index=models.Index(fields=["currency", "created_at"], name="order_currency_time"),
        ),
    ]
