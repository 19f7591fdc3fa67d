"""Migrations: the models and the migrations agree, every migration runs forwards and backwards
on a real database, and a database migrated by older code comes out the same as a new one.

Each test migrates databases of its own with `manage.py migrate` in a subprocess (the indexes on
the orders table are built CONCURRENTLY, outside any transaction, as in a deploy), beside the test
database, and drops them afterwards.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from django.core.management import call_command
from django.db.migrations.loader import MigrationLoader

from tests.test_production import database_url

ROOT = Path(__file__).resolve().parent.parent
PROJECT_APPS = ("orderweb", "reviews")

# What orderweb/0011 and 0012 hold: the indexes on orderweb_order that no longer lock it to build.
CONCURRENT_INDEXES = {
    "order_id_unique_ignoring_case",
    "order_order_id_upper_trgm",
    "order_customer_upper_trgm",
    "order_email_upper_trgm",
    "order_address_upper_trgm",
    "order_customer_upper_time",
    "order_email_upper_time",
    "order_address_upper_time",
    "order_billing_upper_time",
    "order_client_ip_time",
}

# What the old reviews/0003, 0007 and 0008 did to orderweb_order, as they did it: in one
# transaction, with the SQL Django's schema editor wrote for their index objects (0003's was raw).
OLD_REVIEWS_INDEXES = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX IF NOT EXISTS order_order_id_upper_trgm ON orderweb_order "
    "USING gin (UPPER(order_id::text) gin_trgm_ops)",
    'CREATE INDEX "order_customer_upper_trgm" ON "orderweb_order" USING gin ((UPPER("customer")) gin_trgm_ops)',
    'CREATE INDEX "order_email_upper_trgm" ON "orderweb_order" USING gin ((UPPER("customer_email")) gin_trgm_ops)',
    'CREATE INDEX "order_address_upper_trgm" ON "orderweb_order" USING gin ((UPPER("address")) gin_trgm_ops)',
    'CREATE INDEX "order_customer_upper" ON "orderweb_order" ((UPPER("customer")))',
    'CREATE INDEX "order_email_upper" ON "orderweb_order" ((UPPER("customer_email")))',
    'CREATE INDEX "order_address_upper" ON "orderweb_order" ((UPPER("address")))',
]
# ... and the old reviews/0010 (issue 20's linked orders), the same way.
OLD_0010 = [
    'CREATE INDEX "order_billing_upper_time" ON "orderweb_order" ((UPPER("billing_address")), "created_at")',
    'CREATE INDEX "order_client_ip_time" ON "orderweb_order" ("client_ip", "created_at")',
]
OLD_0008 = [
    'CREATE INDEX "order_customer_upper_time" ON "orderweb_order" ((UPPER("customer")), "created_at")',
    'CREATE INDEX "order_email_upper_time" ON "orderweb_order" ((UPPER("customer_email")), "created_at")',
    'CREATE INDEX "order_address_upper_time" ON "orderweb_order" ((UPPER("address")), "created_at")',
    'DROP INDEX "order_customer_upper"',
    'DROP INDEX "order_email_upper"',
    'DROP INDEX "order_address_upper"',
]


SECRET_KEY = "migrations-test-secret-key-" + "k" * 30


class ScratchDatabase:
    def __init__(self, name: str) -> None:
        self.name = name
        self.url = database_url(name)

    def sql(self, *statements: str, autocommit: bool = True) -> list[tuple]:
        with psycopg.connect(self.url, autocommit=autocommit) as conn, conn.cursor() as cursor:
            rows: list[tuple] = []
            for statement in statements:
                cursor.execute(statement)
                rows = cursor.fetchall() if cursor.description else []
            return rows

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        env = {**os.environ, "DEBUG": "1", "DATABASE_URL": self.url, "SECRET_KEY": SECRET_KEY}
        proc = subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if check:
            assert proc.returncode == 0, f"manage.py {' '.join(args)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc

    def order_indexes(self) -> dict[str, str]:
        """Every index of orderweb_order, by name: its definition, and whether Postgres may use it."""
        rows = self.sql(
            "SELECT c.relname, pg_get_indexdef(i.indexrelid), i.indisvalid FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 'orderweb_order'::regclass"
        )
        return {name: definition + ("" if valid else " (INVALID)") for name, definition, valid in rows}

    def insert_orders(self, *order_ids: str) -> None:
        self.sql(
            *[
                "INSERT INTO orderweb_order (order_id, workflow_id, address, customer, customer_email, "
                "billing_address, user_agent, amount, currency, status, cancel_reason, cancel_reason_code, "
                "failure_reason, dispatch_failures, attention_reason, source, created_at, updated_at) VALUES "
                f"('{order_id}', 'wf-{uuid.uuid4().hex}', '1 Road', 'Ada', '', '', '', 1, 'EUR', 'completed', '', '', "
                "'', 0, '', 'temporal-client', now(), now())"
                for order_id in order_ids
            ]
        )


def _admin(statement: str) -> None:
    with psycopg.connect(database_url("postgres"), autocommit=True) as conn:
        conn.execute(statement)


@pytest.fixture
def scratch() -> Iterator[callable]:
    made: list[ScratchDatabase] = []

    def make() -> ScratchDatabase:
        database = ScratchDatabase(f"orderweb_migrations_{uuid.uuid4().hex[:8]}")
        _admin(f'CREATE DATABASE "{database.name}"')
        made.append(database)
        return database

    yield make
    for database in made:
        _admin(f'DROP DATABASE IF EXISTS "{database.name}" WITH (FORCE)')


def test_the_models_and_the_migrations_agree(db):
    """`makemigrations --check` finds nothing to write: every index and constraint that the
    migrations build is declared on a model, and the other way round."""
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def test_every_migration_runs_backwards_to_zero_and_forwards_again(scratch):
    """Every migration of ours reverses, data migrations (RunPython, RunSQL) included: back to
    before orderweb's first migration (and so reviews' too: it builds on orderweb), then forwards."""
    database = scratch()
    every = {key for key in MigrationLoader(None, ignore_no_migrations=True).disk_migrations if key[0] in PROJECT_APPS}
    applied = "SELECT app, name FROM django_migrations WHERE app IN ('orderweb', 'reviews')"
    database.manage("migrate", "--noinput")
    assert set(database.sql(applied)) == every
    database.manage("migrate", "orderweb", "zero", "--noinput")
    assert database.sql(applied) == []
    assert (
        database.sql(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND "
            "(tablename LIKE 'orderweb%%' OR tablename LIKE 'reviews%%')"
        )
        == []
    )
    assert database.sql("SELECT name FROM auth_group") == []  # the data migrations' groups went with them
    database.manage("migrate", "--noinput")
    assert set(database.sql(applied)) == every
    assert {name for (name,) in database.sql("SELECT name FROM auth_group")} >= {"reviewer", "review_lead"}


def test_from_an_empty_database_forwards_backwards_and_forwards_again(scratch):
    database = scratch()
    database.manage("migrate", "--noinput")
    migrated = database.order_indexes()
    assert set(migrated) >= CONCURRENT_INDEXES
    assert not [name for name, definition in migrated.items() if "INVALID" in definition]
    assert "lower((order_id)::text)" in migrated["order_id_unique_ignoring_case"]
    assert "gin_trgm_ops" in migrated["order_customer_upper_trgm"]

    # Backwards through every migration touched for issue 19 (RunPython, RunSQL and the
    # concurrent operations), then forwards again to the same schema.
    database.manage("migrate", "orderweb", "0010", "--noinput")
    assert not CONCURRENT_INDEXES & set(database.order_indexes())
    database.manage("migrate", "reviews", "0002", "--noinput")
    assert database.sql("SELECT to_regclass('review_open_claimed')") == [(None,)]
    database.manage("migrate", "--noinput")
    assert database.order_indexes() == migrated
    assert database.sql("SELECT to_regclass('review_open_claimed') IS NOT NULL") == [(True,)]


def test_a_database_the_old_migrations_built_migrates_cleanly(scratch):
    """The old reviews/0003, 0007, 0008 and 0010 built the orders table's indexes in a transaction;
    such a database ends with the same indexes as a new one, none built twice, a half-built one
    rebuilt, and the ids that differ only in case named before the unique index is tried."""
    new = scratch()
    new.manage("migrate", "--noinput")

    old = scratch()
    old.manage("migrate", "orderweb", "0010", "--noinput")
    old.manage("migrate", "reviews", "0010", "--noinput")  # reviews/0003, 0007, 0008, 0010 as they are now
    assert not CONCURRENT_INDEXES & set(old.order_indexes())
    old.sql(*OLD_REVIEWS_INDEXES, *OLD_0008, *OLD_0010, autocommit=False)  # what they did then
    # A concurrent build that failed half-way leaves an index Postgres marks invalid.
    old.sql("UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'order_email_upper_trgm'::regclass")
    old.insert_orders("OLD-1", "CASE-7", "case-7", "ORDER-8")
    # An API order's fingerprint as the code before kept it: SHA-256 digests, unkeyed.
    digest = hashlib.sha256(json.dumps("ada@example.com").encode()).hexdigest()[:32]
    old.sql(
        "INSERT INTO orderweb_apikey (name, prefix, key_hash, scope_create, scope_read, scope_act, created_at) "
        "VALUES ('shop', 'p', 'h', true, true, true, now())",
        "INSERT INTO orderweb_apiorderrequest (order_id, api_key_id, fingerprint, created_at) SELECT o.id, k.id, "
        f'\'{{"customer.email": "{digest}"}}\', now() FROM orderweb_order o, orderweb_apikey k '
        "WHERE o.order_id = 'OLD-1'",
    )

    refused = old.manage("migrate", "--noinput", check=False)
    assert refused.returncode != 0
    assert (
        "orderweb_order holds order ids that differ only in case, which the unique index on LOWER(order_id) "
        "refuses: CASE-7 (completed), case-7 (completed)."
    ) in refused.stderr
    assert "order_id_unique_ignoring_case" not in old.order_indexes()  # stopped before building it

    old.sql("UPDATE orderweb_order SET order_id = 'case-7-dup' WHERE order_id = 'case-7'")  # as docs/operations.md says
    old.manage("migrate", "--noinput")
    assert old.order_indexes() == new.order_indexes()
    old.manage("makemigrations", "--check", "--dry-run")
    # orderweb/0013 keyed the stored digest (HMAC-SHA256 under a key derived from SECRET_KEY).
    key = hashlib.sha256(("orderweb.api.fingerprint" + SECRET_KEY).encode()).digest()
    assert old.sql("SELECT fingerprint FROM orderweb_apiorderrequest") == [
        ({"customer.email": hmac.new(key, digest.encode(), hashlib.sha256).hexdigest()[:32]},)
    ]
