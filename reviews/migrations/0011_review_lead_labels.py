"""The `review_lead` group may set and remove outcome labels (issue 21: ``orderweb.add_orderlabel``,
on the review page and, for staff leads, in the admin)."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

REVIEW_LEAD_GROUP = "review_lead"


def grant(apps, schema_editor):
    # Permissions are normally created after all migrations; this one needs add_orderlabel now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=REVIEW_LEAD_GROUP)
    group.permissions.add(Permission.objects.get(codename="add_orderlabel", content_type__app_label="orderweb"))


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group = Group.objects.filter(name=REVIEW_LEAD_GROUP).first()
    permission = Permission.objects.filter(codename="add_orderlabel", content_type__app_label="orderweb").first()
    if group is not None and permission is not None:
        group.permissions.remove(permission)


class Migration(migrations.Migration):
    dependencies = [
        ("reviews", "0010_review_team"),
        ("orderweb", "0014_order_labels"),
    ]

    operations = [
        migrations.RunPython(grant, revoke),
    ]
