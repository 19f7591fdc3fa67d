"""Risk rules as data (issue 21): versioned risk policies, the allow/block lists, backtests and
their audit; each assessment records its policy and facts. The first policy (version 1, active) is
seeded from the RISK_* settings in force when this runs, with the points the rules had in code,
so nothing scores differently after the upgrade. (The assessments' time index is built
concurrently by 0013: that table holds one row per order.)"""

import django.db.models.deletion
from django.conf import settings
from django.contrib.auth.management import create_permissions
from django.db import migrations, models
from django.utils import timezone

# The rules' weights as reviews/risk.py had them in code before policies were data.
POINTS = {
    "unknown_customer": 30,
    "forwarding_service": 30,
    "amount_over_usual": 25,
    "address_velocity": 25,
    "customer_velocity": 25,
    "amount_over_shop": 20,
    "address_changed": 20,
    "country_mismatch": 20,
    "first_order": 15,
    "po_box": 15,
    "quantity_spike": 15,
    "block_list": 100,
    "allow_list": 0,
}


def seed_first_policy(apps, schema_editor):
    RiskPolicy = apps.get_model("reviews", "RiskPolicy")
    if RiskPolicy.objects.exists():
        return
    s = settings
    thresholds = {
        "amount_vs_usual_factor": s.RISK_AMOUNT_VS_USUAL_FACTOR,
        "usual_min_orders": s.RISK_USUAL_MIN_ORDERS,
        "shop_percentile": s.RISK_SHOP_PERCENTILE,
        "shop_sample": s.RISK_SHOP_SAMPLE,
        "shop_min_sample": s.RISK_SHOP_MIN_SAMPLE,
        "history_sample": s.RISK_HISTORY_SAMPLE,
        "window_hours": s.RISK_WINDOW_HOURS,
        "orders_per_address": s.RISK_ORDERS_PER_ADDRESS,
        "orders_per_customer": s.RISK_ORDERS_PER_CUSTOMER,
        "quantity_spike": s.RISK_QUANTITY_SPIKE,
        "level_medium": s.RISK_LEVEL_MEDIUM,
        "level_high": s.RISK_LEVEL_HIGH,
        "review_threshold": s.REVIEW_POLICY_THRESHOLD,
    }
    now = timezone.now()
    RiskPolicy.objects.create(
        version=1,
        status="active",
        points=dict(POINTS),
        thresholds=thresholds,
        created_by_name="migration",
        note="Seeded from the RISK_* settings and the points the rules had in code.",
        activated_at=now,
        activated_by_name="migration",
        activation_reason="the rules in force before policies were data",
    )


def grant_leads(apps, schema_editor):
    # Permissions are normally created after all migrations; the new models' are needed now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    codenames = [
        "view_risklistentry",
        "add_risklistentry",
        "change_risklistentry",
        "view_riskpolicy",
        "view_riskbacktest",
        "view_riskauditevent",
    ]
    for group in Group.objects.filter(name="review_lead"):
        group.permissions.add(*Permission.objects.filter(codename__in=codenames, content_type__app_label="reviews"))


class Migration(migrations.Migration):
    dependencies = [
        ("orderweb", "0014_order_labels"),
        ("reviews", "0012_review_closed_status_index"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="riskassessment",
            name="facts",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.CreateModel(
            name="RiskListEntry",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("kind", models.CharField(choices=[("allow", "Allow"), ("block", "Block")], max_length=5)),
                (
                    "field",
                    models.CharField(
                        choices=[
                            ("email", "Customer email"),
                            ("address", "Shipping address"),
                            ("name", "Customer name"),
                            ("ip", "Client IP"),
                        ],
                        max_length=8,
                    ),
                ),
                ("value", models.TextField(max_length=300)),
                ("value_key", models.CharField(max_length=300)),
                ("reason", models.TextField(max_length=500)),
                ("created_by_name", models.CharField(max_length=150)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("expires_at", models.DateTimeField(blank=True, null=True)),
                ("removed_at", models.DateTimeField(blank=True, null=True)),
                ("removed_by_name", models.CharField(blank=True, max_length=150)),
                ("removal_reason", models.TextField(blank=True)),
                (
                    "created_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "order",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="orderweb.order",
                    ),
                ),
                (
                    "removed_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "verbose_name": "allow/block list entry",
                "verbose_name_plural": "allow/block list entries",
                "ordering": ["-created_at", "-pk"],
            },
        ),
        migrations.CreateModel(
            name="RiskPolicy",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("version", models.PositiveIntegerField(unique=True)),
                (
                    "status",
                    models.CharField(
                        choices=[("draft", "Draft"), ("active", "Active"), ("retired", "Retired")],
                        default="draft",
                        max_length=8,
                    ),
                ),
                ("points", models.JSONField(default=dict)),
                ("thresholds", models.JSONField(default=dict)),
                ("note", models.TextField(blank=True)),
                ("created_by_name", models.CharField(blank=True, max_length=150)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                ("activated_at", models.DateTimeField(blank=True, null=True)),
                ("activated_by_name", models.CharField(blank=True, max_length=150)),
                ("activation_reason", models.TextField(blank=True)),
                ("retired_at", models.DateTimeField(blank=True, null=True)),
                (
                    "based_on",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="reviews.riskpolicy",
                    ),
                ),
                (
                    "created_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "verbose_name_plural": "risk policies",
                "ordering": ["-version"],
            },
        ),
        migrations.CreateModel(
            name="RiskBacktest",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("fingerprint", models.CharField(max_length=64)),
                ("since", models.DateTimeField()),
                ("until", models.DateTimeField()),
                ("result", models.JSONField(default=dict)),
                ("actor", models.CharField(max_length=150)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "created_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "compared_to",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="reviews.riskpolicy",
                    ),
                ),
                (
                    "policy",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="backtests", to="reviews.riskpolicy"
                    ),
                ),
            ],
            options={
                "ordering": ["-created_at", "-pk"],
            },
        ),
        migrations.CreateModel(
            name="RiskAuditEvent",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "type",
                    models.CharField(
                        choices=[
                            ("list_entry_added", "List entry added"),
                            ("list_entry_removed", "List entry removed"),
                            ("policy_drafted", "Policy drafted"),
                            ("policy_edited", "Policy draft edited"),
                            ("policy_activated", "Policy activated"),
                            ("policy_retired", "Policy retired"),
                            ("backtest_run", "Backtest run"),
                        ],
                        max_length=32,
                    ),
                ),
                ("actor", models.CharField(max_length=150)),
                ("source", models.CharField(max_length=16)),
                ("message", models.TextField()),
                ("details", models.JSONField(blank=True, default=dict)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "order",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="orderweb.order",
                    ),
                ),
                (
                    "user",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "entry",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="audit",
                        to="reviews.risklistentry",
                    ),
                ),
                (
                    "policy",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="audit",
                        to="reviews.riskpolicy",
                    ),
                ),
            ],
            options={
                "ordering": ["-created_at", "-pk"],
            },
        ),
        migrations.AddField(
            model_name="riskassessment",
            name="policy",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="reviews.riskpolicy",
            ),
        ),
        migrations.AddIndex(
            model_name="risklistentry",
            index=models.Index(
                condition=models.Q(("removed_at__isnull", True)), fields=["field", "value_key"], name="risk_list_match"
            ),
        ),
        migrations.AddConstraint(
            model_name="risklistentry",
            constraint=models.UniqueConstraint(
                condition=models.Q(("removed_at__isnull", True)),
                fields=("kind", "field", "value_key"),
                name="risk_list_one_live_entry",
            ),
        ),
        migrations.AddConstraint(
            model_name="risklistentry",
            constraint=models.CheckConstraint(
                condition=models.Q(("kind__in", ["allow", "block"])), name="risk_list_kind_valid"
            ),
        ),
        migrations.AddConstraint(
            model_name="risklistentry",
            constraint=models.CheckConstraint(
                condition=models.Q(("field__in", ["email", "address", "name", "ip"])), name="risk_list_field_valid"
            ),
        ),
        migrations.AddConstraint(
            model_name="risklistentry",
            constraint=models.CheckConstraint(
                condition=models.Q(models.Q(("value_key", ""), _negated=True), models.Q(("reason", ""), _negated=True)),
                name="risk_list_has_value_and_reason",
            ),
        ),
        migrations.AddConstraint(
            model_name="riskpolicy",
            constraint=models.UniqueConstraint(
                condition=models.Q(("status", "active")), fields=("status",), name="risk_policy_one_active"
            ),
        ),
        migrations.AddConstraint(
            model_name="riskpolicy",
            constraint=models.CheckConstraint(
                condition=models.Q(("status__in", ["draft", "active", "retired"])), name="risk_policy_status_valid"
            ),
        ),
        migrations.AddConstraint(
            model_name="riskpolicy",
            constraint=models.CheckConstraint(
                condition=models.Q(("status", "draft"), ("activated_at__isnull", False), _connector="OR"),
                name="risk_policy_activated_has_time",
            ),
        ),
        migrations.RunPython(seed_first_policy, migrations.RunPython.noop),
        migrations.RunPython(grant_leads, migrations.RunPython.noop),
    ]
