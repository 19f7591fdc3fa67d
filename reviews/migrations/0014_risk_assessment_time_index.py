"""The assessments of a date range, for the backtest: built concurrently (one row per order; the
table stays writable while it builds)."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("reviews", "0013_risk_policy_lists_backtests"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="riskassessment",
            index=models.Index(fields=["created_at"], name="risk_assessment_time"),
        ),
    ]
