"""python manage.py ensure_demo_users: the local-only users that `make run` prints.

reviewer/reviewer (in the `reviewer` group), lead/lead (in `reviewer` and `review_lead`) and
admin/admin (superuser). Their passwords are
public, so they exist only where DEBUG is on; with DEBUG off this command refuses and creates
nothing. An existing user keeps its password: only a user created here gets the printed one.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

REVIEWER_GROUP = "reviewer"
REVIEW_LEAD_GROUP = "review_lead"
DEMO_USERS_NEED_DEBUG = (
    "Demo users have public passwords and are created only when DEBUG is on; "
    "create real users with `manage.py createsuperuser` or in the admin."
)
GROUP_MISSING = "The '{group}' group is missing: run `manage.py migrate` first."


class Command(BaseCommand):
    help = "Create the local-only demo users reviewer/reviewer, lead/lead and admin/admin (DEBUG only)."

    def handle(self, *args, **options):
        if not settings.DEBUG:
            raise CommandError(DEMO_USERS_NEED_DEBUG)
        groups = {}
        for name in (REVIEWER_GROUP, REVIEW_LEAD_GROUP):
            try:
                groups[name] = Group.objects.get(name=name)
            except Group.DoesNotExist:
                raise CommandError(GROUP_MISSING.format(group=name)) from None
        with transaction.atomic():
            reviewer, created_reviewer = self._user("reviewer", superuser=False)
            reviewer.groups.add(groups[REVIEWER_GROUP])
            lead, created_lead = self._user("lead", superuser=False)
            lead.groups.add(groups[REVIEWER_GROUP], groups[REVIEW_LEAD_GROUP])
            admin, created_admin = self._user("admin", superuser=True)
        for user, created in ((reviewer, created_reviewer), (lead, created_lead), (admin, created_admin)):
            self.stdout.write(f"{user.username}: " + ("created" if created else "exists (password kept)"))

    def _user(self, username: str, *, superuser: bool):
        User = get_user_model()
        user, created = User.objects.get_or_create(
            username=username,
            defaults={"is_staff": superuser, "is_superuser": superuser, "email": f"{username}@localhost"},
        )
        if created:
            user.set_password(username)
            user.save(update_fields=["password"])
        return user, created
