"""The rate-limit counter needs no durability: an UNLOGGED table skips the write-ahead log, so
the one statement per API request does not wait for a WAL flush (measured: about half the
statement's time, docs/api.md). After a Postgres crash the table starts empty: every key gets a
fresh minute, which is harmless. Unlogged tables are not copied to standbys either; nothing
reads this table there."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("orderweb", "0006_api_keys_idempotency_rate_windows")]

    operations = [
        migrations.RunSQL(
            "ALTER TABLE orderweb_apiratewindow SET UNLOGGED",
            reverse_sql="ALTER TABLE orderweb_apiratewindow SET LOGGED",
        ),
    ]
