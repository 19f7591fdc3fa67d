"""The zero-setup Postgres used when DATABASE_URL is unset is a real PostgreSQL server."""

import environ
import psycopg

from devtools.localdb import embedded_database_url
from devtools.supervise import embedded_postgres_running, stop_embedded_postgres


def test_embedded_postgres_starts_and_serves_the_database(var_tmp_path):
    url = embedded_database_url(var_tmp_path / "pg", database="zero_setup")
    config = environ.Env.db_url_config(url)
    assert config["ENGINE"] == "django.db.backends.postgresql"
    assert config["NAME"] == "zero_setup"
    with psycopg.connect(dbname="zero_setup", user="postgres", host=config["OPTIONS"]["host"]) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
    assert int(version.split(".")[0]) >= 15
    # A second call reuses the running server and the existing database.
    assert embedded_database_url(var_tmp_path / "pg", database="zero_setup") == url
    assert embedded_postgres_running(var_tmp_path / "pg")
    assert stop_embedded_postgres(var_tmp_path / "pg")
    assert not (var_tmp_path / "pg" / "postmaster.pid").exists()
