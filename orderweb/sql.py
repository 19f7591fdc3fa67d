"""Writes that Django's ORM would send as several statements, sent as one.

An order's steps run under load, and each round trip to Postgres costs the worker and Postgres
CPU and the order latency (docs/benchmarks.md): a step whose writes fit one statement sends one,
in autocommit (a single statement is its own transaction, so it needs no BEGIN and COMMIT).
The columns and values come from the models, so a field added to a model is written here too.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import connection
from django.db.models import Model


def row_values(instance: Model, *, leave_out: Iterable[str] = ()) -> tuple[list[str], list[Any]]:
    """The columns and database values of an unsaved instance, as ``bulk_create`` would
    insert them (defaults and ``auto_now_add`` applied), without its primary key and the fields
    named in ``leave_out`` (which the statement supplies itself)."""
    skipped = set(leave_out)
    fields = [f for f in instance._meta.concrete_fields if not f.primary_key and f.name not in skipped]
    return (
        [f.column for f in fields],
        [f.get_db_prep_save(f.pre_save(instance, add=True), connection) for f in fields],
    )


def insert_ignoring_conflicts(*instances: Model) -> None:
    """Insert unsaved instances of any models in one statement, each skipped if it would break a
    unique constraint (``bulk_create(ignore_conflicts=True)`` for several models at once). Their
    primary keys are not read back."""
    quote = connection.ops.quote_name
    inserts, params = [], []
    for instance in instances:
        columns, values = row_values(instance)
        inserts.append(
            f"INSERT INTO {quote(instance._meta.db_table)} ({', '.join(map(quote, columns))}) "
            f"VALUES ({', '.join(['%s'] * len(values))}) ON CONFLICT DO NOTHING"
        )
        params += values
    *first, last = inserts
    # Each data-modifying WITH clause runs exactly once, whether or not anything reads it.
    sql = "".join(f"{'WITH' if n == 0 else ','} i{n} AS ({insert}) " for n, insert in enumerate(first)) + last
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
