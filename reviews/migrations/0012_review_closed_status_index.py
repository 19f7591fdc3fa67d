"""The closed review tasks' status, indexed (issue 21): the Prometheus counter of decisions by
outcome counts them with an index-only scan instead of reading the table. Built concurrently, so
the review tasks stay writable meanwhile (``atomic = False``)."""

from django.db import migrations, models
from django.db.models import Q

from orderweb.migration_operations import AddIndexConcurrentlyIfMissing


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("reviews", "0011_review_lead_labels"),
    ]

    operations = [
        AddIndexConcurrentlyIfMissing(
            model_name="reviewtask",
            index=models.Index(fields=["status"], condition=~Q(status="open"), name="review_closed_status"),
        ),
    ]
