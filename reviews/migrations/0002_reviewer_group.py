"""The `reviewer` group: people who may decide manual reviews."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

REVIEWER_GROUP = "reviewer"


def create_reviewer_group(apps, schema_editor):
    # Permissions are normally created after all migrations; this one needs decide_review now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=REVIEWER_GROUP)
    group.permissions.add(
        Permission.objects.get(codename="decide_review", content_type__app_label="reviews"),
        Permission.objects.get(codename="view_order", content_type__app_label="orderweb"),
    )


def remove_reviewer_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=REVIEWER_GROUP).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("reviews", "0001_initial"),
        ("orderweb", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_reviewer_group, remove_reviewer_group)]
