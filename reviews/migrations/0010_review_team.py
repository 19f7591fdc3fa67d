"""The review team (issue 20): the review task's rules (four eyes, the timeout's action) and first
approval, the Escalated view's indexes, and the note permission for the review groups.

The order's indexes for its linked orders (same billing address, same client IP) were first built
here, through the schema editor inside RunPython like 0007 and 0008, in a transaction that holds
every write to the orders table while they build. Like those, they are declared on
``orderweb.Order`` now and built concurrently by orderweb's 0012 (issue 19), which adopts them
where this migration already built them."""

from django.conf import settings
from django.contrib.auth.management import create_permissions
from django.db import migrations, models


def grant_notes(apps, schema_editor):
    # Permissions are normally created after all migrations; this one needs add_order_note now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    note = Permission.objects.get(codename="add_order_note", content_type__app_label="orderweb")
    for group in Group.objects.filter(name__in=["reviewer", "review_lead"]):
        group.permissions.add(note)


def revoke_notes(apps, schema_editor):
    Permission = apps.get_model("auth", "Permission")
    for permission in Permission.objects.filter(codename="add_order_note", content_type__app_label="orderweb"):
        permission.group_set.clear()


class Migration(migrations.Migration):
    dependencies = [
        ("orderweb", "0010_review_team_events_note_permission"),
        ("reviews", "0009_review_lead_group"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="reviewtask",
            name="approvals_required",
            field=models.PositiveSmallIntegerField(default=1),
        ),
        migrations.AddField(
            model_name="reviewtask",
            name="first_approval_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="reviewtask",
            name="first_approval_by",
            field=models.CharField(blank=True, max_length=150),
        ),
        migrations.AddField(
            model_name="reviewtask",
            name="first_approval_note",
            field=models.TextField(blank=True),
        ),
        migrations.AddField(
            model_name="reviewtask",
            name="four_eyes_rule",
            field=models.CharField(blank=True, max_length=200),
        ),
        migrations.AddField(
            model_name="reviewtask",
            name="timeout_action",
            field=models.CharField(
                choices=[("expire", "Expires (cancelled)"), ("approve", "Approved by policy")],
                default="expire",
                max_length=8,
            ),
        ),
        migrations.AddIndex(
            model_name="reviewtask",
            index=models.Index(
                condition=models.Q(("escalated_at__isnull", False), ("status", "open")),
                fields=["due_at", "id"],
                name="review_open_escalated",
            ),
        ),
        migrations.AddIndex(
            model_name="reviewtask",
            index=models.Index(
                condition=models.Q(("escalated_at__isnull", False)), fields=["escalated_at"], name="review_escalated"
            ),
        ),
        migrations.AddConstraint(
            model_name="reviewtask",
            constraint=models.CheckConstraint(
                condition=models.Q(("approvals_required__in", [1, 2])), name="review_one_or_two_approvals"
            ),
        ),
        migrations.AddConstraint(
            model_name="reviewtask",
            constraint=models.CheckConstraint(
                condition=models.Q(("timeout_action__in", ["expire", "approve"])), name="review_timeout_action_valid"
            ),
        ),
        migrations.RunPython(grant_notes, revoke_notes),
    ]
