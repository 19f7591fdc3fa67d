"""The webhook sweep's own high-water mark, one row per receiver URL (issue 19, item 2): the
sweep no longer looks only at the last hour of events, so workers down for longer, or a backlog
larger than one batch, drop no status change. A new table: nothing locked, nothing to copy."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("orderweb", "0014_order_labels"),
    ]

    operations = [
        migrations.CreateModel(
            name="WebhookCursor",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("url", models.URLField(max_length=1000, unique=True)),
                ("event_id", models.BigIntegerField(default=0)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
            ],
        ),
    ]
