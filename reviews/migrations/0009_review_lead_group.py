"""The `review_lead` group: reviewers who lead the team (release or reassign any claim, see the
Escalated view and the insights, manage the allow/block lists and the risk policy), and the
review task's escalation time."""

from django.contrib.auth.management import create_permissions
from django.db import migrations, models

REVIEW_LEAD_GROUP = "review_lead"


def create_review_lead_group(apps, schema_editor):
    # Permissions are normally created after all migrations; this one needs lead_review now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=REVIEW_LEAD_GROUP)
    group.permissions.add(
        Permission.objects.get(codename="decide_review", content_type__app_label="reviews"),
        Permission.objects.get(codename="lead_review", content_type__app_label="reviews"),
        Permission.objects.get(codename="view_order", content_type__app_label="orderweb"),
    )


def remove_review_lead_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=REVIEW_LEAD_GROUP).delete()
    apps.get_model("auth", "Permission").objects.filter(
        codename="lead_review", content_type__app_label="reviews"
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("reviews", "0008_order_history_indexes_by_time"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="reviewtask",
            options={
                "ordering": ["due_at", "pk"],
                "permissions": [
                    ("decide_review", "Can approve or reject orders in manual review"),
                    ("lead_review", "Can lead the review team"),
                ],
            },
        ),
        migrations.AddField(
            model_name="reviewtask",
            name="escalated_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(create_review_lead_group, remove_review_lead_group),
    ]
