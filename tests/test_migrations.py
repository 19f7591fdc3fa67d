"""The migrations: they match the models (what `makemigrations --check` would say in CI), and every
one of them runs backwards, data migrations (RunPython, RunSQL) included, then forwards again.

The round trip runs in a scratch database of its own (`manage.py migrate` in a subprocess, as an
operator runs it), never in the session's test database that other tests and the workers use."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.loader import MigrationLoader

from tests.temporal_app.test_run_workers import database_url

ROOT = Path(__file__).resolve().parent.parent
PROJECT_APPS = ("orderweb", "reviews")


@pytest.mark.django_db
def test_the_models_and_the_migrations_agree():
    out = io.StringIO()
    try:
        call_command("makemigrations", "--check", "--dry-run", stdout=out, stderr=out)
    except SystemExit:  # --check exits 1 when a model change has no migration
        pytest.fail(f"a model change has no migration (run makemigrations):\n{out.getvalue()}")
    assert "No changes detected" in out.getvalue()


def _manage(url: str, *args: str) -> str:
    env = {**os.environ, "DATABASE_URL": url, "DEBUG": "1"}
    done = subprocess.run([sys.executable, "manage.py", *args, "--no-input"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"manage.py {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _applied(url: str) -> set[tuple[str, str]]:
    with psycopg.connect(url.replace("postgres://", "postgresql://", 1)) as conn:
        return set(conn.execute("SELECT app, name FROM django_migrations WHERE app = ANY(%s)",
                                (list(PROJECT_APPS),)).fetchall())


@pytest.fixture
def scratch_database(django_db_blocker):
    """An empty database beside the test database, dropped afterwards."""
    with django_db_blocker.unblock():
        base = database_url()
    name = f"{connection.settings_dict['NAME']}_migrations_{uuid.uuid4().hex[:6]}"[:63]
    admin = base.rsplit("/", 1)[0] + "/postgres" + ("?" + base.split("?", 1)[1] if "?" in base else "")
    url = base.replace(f"/{connection.settings_dict['NAME']}", f"/{name}", 1)
    with psycopg.connect(admin.replace("postgres://", "postgresql://", 1), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield url
    with psycopg.connect(admin.replace("postgres://", "postgresql://", 1), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_every_migration_runs_backwards_and_forwards_again(scratch_database):
    url = scratch_database
    every = {key for key in MigrationLoader(None, ignore_no_migrations=True).disk_migrations if key[0] in PROJECT_APPS}
    _manage(url, "migrate")
    assert _applied(url) == every
    # Backwards to before orderweb's first migration, and so reviews' too (it builds on orderweb):
    # every RunPython and RunSQL reverses.
    _manage(url, "migrate", "orderweb", "zero")
    assert _applied(url) == set()
    with psycopg.connect(url.replace("postgres://", "postgresql://", 1)) as conn:
        tables = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND "
                              "(tablename LIKE 'orderweb%%' OR tablename LIKE 'reviews%%')").fetchall()
        groups = conn.execute("SELECT name FROM auth_group").fetchall()
    assert tables == [] and groups == []  # the data migrations' groups went with them
    _manage(url, "migrate")
    assert _applied(url) == every
    with psycopg.connect(url.replace("postgres://", "postgresql://", 1)) as conn:
        assert {name for (name,) in conn.execute("SELECT name FROM auth_group")} >= {"reviewer", "review_lead"}
