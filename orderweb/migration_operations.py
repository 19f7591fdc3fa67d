"""Migration operations that build indexes without locking the table they index.

``CREATE INDEX`` in a transaction (what ``AddIndex`` and ``AddConstraint`` do) blocks every write
to the table until the build ends: minutes on a large ``orderweb_order``. These build with
``CONCURRENTLY`` (writes go on; the migration must be ``atomic = False``), and they tell Django's
model state about the index like their plain counterparts.

Both also take a database as they may find it:
- an index of the same name that a database migrated by older code already holds (built by a
  ``RunPython``, unknown to Django's state) is kept, if Postgres marks it valid;
- an invalid one (a concurrent build that failed half-way, e.g. on a duplicate, leaves one
  behind, and Postgres then maintains it on every write without ever using it) is dropped
  and built again.
"""

from __future__ import annotations

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db.migrations.operations import AddConstraint


def index_state(schema_editor, name: str) -> str:
    """``missing``, ``valid`` or ``invalid``: what Postgres holds under the index name ``name``."""
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = %s AND pg_catalog.pg_table_is_visible(c.oid)",
            [name],
        )
        row = cursor.fetchone()
    return "missing" if row is None else "valid" if row[0] else "invalid"


def _drop_invalid(schema_editor, name: str) -> bool:
    """Drop a half-built index; True when a valid one is already there."""
    state = index_state(schema_editor, name)
    if state == "invalid":
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {schema_editor.quote_name(name)}")
    return state == "valid"


class AddIndexConcurrentlyIfMissing(AddIndexConcurrently):
    """``AddIndexConcurrently`` that keeps a valid index of the same name (see the module doc).
    Backwards it drops the index concurrently, as ``AddIndexConcurrently`` does."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if not _drop_invalid(schema_editor, self.index.name):
            super().database_forwards(app_label, schema_editor, from_state, to_state)


class AddUniqueConstraintConcurrently(AddConstraint):
    """``AddConstraint`` for a ``UniqueConstraint`` on expressions (which Postgres holds as a
    unique index), its index built concurrently. Backwards it drops the index concurrently."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        model = to_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        self._check_atomic(schema_editor)
        if _drop_invalid(schema_editor, self.constraint.name):
            return
        statement = self.constraint.create_sql(model, schema_editor)
        statement.template = statement.template.replace("CREATE UNIQUE INDEX", "CREATE UNIQUE INDEX CONCURRENTLY", 1)
        if "CONCURRENTLY" not in str(statement):
            raise ValueError(f"{self.constraint.name} is not built as a unique index; add it with AddConstraint")
        schema_editor.execute(statement)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        model = to_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            self._check_atomic(schema_editor)
            schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {schema_editor.quote_name(self.constraint.name)}")

    def _check_atomic(self, schema_editor) -> None:
        if schema_editor.connection.in_atomic_block:
            raise ValueError(f"{type(self).__name__} needs a migration with atomic = False")
