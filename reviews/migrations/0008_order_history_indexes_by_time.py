"""Once: 0007's btree indexes on ``UPPER(col)`` replaced by ``(UPPER(col), created_at)``, for the
risk rules' reads of a customer's and an address's latest earlier orders (reviews/risk.py), in a
transaction inside ``RunPython``.

Declared on ``orderweb.Order`` now and built concurrently by orderweb's 0011, which also drops
0007's plain indexes where a database still holds them. Kept, empty, for the history's sake.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("reviews", "0007_order_search_and_history_indexes"),
    ]

    operations = []
