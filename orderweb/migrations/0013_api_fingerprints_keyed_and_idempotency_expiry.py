"""The API's request fingerprints become keyed hashes, and Idempotency-Keys expire (issue 19).

- Each stored fingerprint field held ``SHA-256(value)[:32]``: an email, an address or a total
  could be found by hashing guesses. It becomes ``HMAC-SHA256(key, that digest)[:32]`` with a
  key derived from SECRET_KEY (``orderweb.api.services.fingerprint_keyed``), computed here from
  the stored digest, so no plain value is needed. In batches of 1,000 rows, each its own
  transaction. Not undone backwards: the digests are gone (the code before this one would answer
  a repeat of an earlier order 409 ``order_conflict``).
- ``created_at`` of ``ApiIdempotencyKey`` gets an index, built concurrently, for the hourly purge.
"""

from django.conf import settings
from django.db import migrations, models
from django.utils.crypto import salted_hmac

from orderweb.migration_operations import AddIndexConcurrentlyIfMissing

FINGERPRINT_SALT = "orderweb.api.fingerprint"  # orderweb.api.services.FINGERPRINT_SALT, as of this migration
BATCH = 1000


def _keyed(fingerprint: dict) -> dict:
    return {
        name: salted_hmac(FINGERPRINT_SALT, digest, secret=settings.SECRET_KEY, algorithm="sha256").hexdigest()[:32]
        for name, digest in fingerprint.items()
    }


def key_fingerprints(apps, schema_editor):
    for model_name in ("ApiOrderRequest", "ApiIdempotencyKey"):
        model = apps.get_model("orderweb", model_name)
        last = None
        while True:
            rows = model.objects.order_by("pk")
            rows = list((rows.filter(pk__gt=last) if last is not None else rows).only("pk", "fingerprint")[:BATCH])
            if not rows:
                break
            for row in rows:
                row.fingerprint = _keyed(row.fingerprint)
            model.objects.bulk_update(rows, ["fingerprint"])
            last = rows[-1].pk


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY; the re-keying commits batch by batch

    dependencies = [
        ("orderweb", "0012_order_search_indexes_concurrently"),
    ]

    operations = [
        migrations.RunPython(key_fingerprints, migrations.RunPython.noop),
        AddIndexConcurrentlyIfMissing(
            model_name="apiidempotencykey",
            index=models.Index(fields=["created_at"], name="api_idempotency_key_created"),
        ),
    ]
