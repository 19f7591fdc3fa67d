"""The risk rules read a customer's and an address's latest earlier orders, at most
``RISK_HISTORY_SAMPLE`` of each (reviews/risk.py). Btree indexes on ``(UPPER(col), created_at)``
give them in time order, so the read stops after that many rows however many orders share a name
or an address; they replace 0007's ``UPPER(col)`` indexes, which answer the same equality
look-ups (the order page's earlier orders) as their leading column.

Built through the schema editor, like 0007: the orders app knows nothing of reviews.
"""

from django.db import migrations
from django.db.models import F, Index
from django.db.models.functions import Upper

COLUMNS = {"customer": "order_customer_upper", "customer_email": "order_email_upper", "address": "order_address_upper"}


def _by_time():
    return [Index(Upper(column), F("created_at"), name=f"{name}_time") for column, name in COLUMNS.items()]


def _plain():
    return [Index(Upper(column), name=name) for column, name in COLUMNS.items()]


def _swap(old, new):
    def run(apps, schema_editor):
        order = apps.get_model("orderweb", "Order")
        for index in new():
            schema_editor.add_index(order, index)
        for index in old():
            schema_editor.remove_index(order, index)
    return run


class Migration(migrations.Migration):
    dependencies = [
        ("reviews", "0007_order_search_and_history_indexes"),
    ]

    operations = [
        migrations.RunPython(_swap(_plain, _by_time), _swap(_by_time, _plain)),
    ]
