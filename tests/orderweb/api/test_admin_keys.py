"""API keys in the admin: created through the service, the key shown once on the next page,
revoked (never deleted) by an action that needs its permission."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from orderweb.admin import API_KEY_CREATED, API_KEYS_REVOKED
from orderweb.api.keys import NO_SCOPE
from orderweb.models import ApiKey
from tests.orderweb.api.conftest import ApiClient
from tests.orderweb.conftest import messages_of

pytestmark = pytest.mark.django_db

ADD = reverse("admin:orderweb_apikey_add")
KEY = re.compile(r'<code id="new-api-key"[^>]*>(ow_[0-9a-f]{8}_[A-Za-z0-9_-]{43})</code>')


def test_a_key_created_in_the_admin_is_shown_once_and_works(admin_client):
    response = admin_client.post(ADD, {"name": "billing-service", "scope_read": "on", "scope_act": "on"})
    row = ApiKey.objects.get(name="billing-service")
    assert response.status_code == 302 and response["Location"] == reverse(
        "admin:orderweb_apikey_change", args=[row.pk]
    )
    page = admin_client.get(response["Location"])
    assert "no-store" in page["Cache-Control"]
    key = KEY.search(page.content.decode()).group(1)
    assert row.key_hash != key and key.startswith(f"ow_{row.prefix}_")
    assert (row.scopes, row.created_by.username) == (["read", "act"], "admin")
    assert ("success", API_KEY_CREATED.format(name="billing-service")) in messages_of(page)
    # Once: the page again does not show it, nor does the list.
    assert not KEY.search(admin_client.get(response["Location"]).content.decode())
    assert key not in admin_client.get(reverse("admin:orderweb_apikey_changelist")).content.decode()
    assert ApiClient(key).get("/orders").status_code == 200


def test_a_key_needs_a_scope_and_a_free_name(admin_client):
    response = admin_client.post(ADD, {"name": "nothing"})
    assert response.status_code == 200 and NO_SCOPE in response.content.decode()
    admin_client.post(ADD, {"name": "taken", "scope_read": "on"})
    response = admin_client.post(ADD, {"name": "taken", "scope_read": "on"})
    assert response.status_code == 200 and ApiKey.objects.filter(name="taken").count() == 1


def test_revoking_needs_its_permission_and_ends_the_key(admin_client, make_staff, client):
    admin_client.post(ADD, {"name": "old-client", "scope_read": "on"})
    row = ApiKey.objects.get(name="old-client")
    key = KEY.search(admin_client.get(reverse("admin:orderweb_apikey_change", args=[row.pk])).content.decode()).group(1)
    changelist = reverse("admin:orderweb_apikey_changelist")
    viewer = make_staff("key-viewer")
    viewer.user_permissions.add(*Permission.objects.filter(codename__in=["view_apikey", "change_apikey"]))
    client.force_login(viewer)
    client.post(changelist, {"action": "revoke_selected", "_selected_action": [row.pk]})
    assert ApiKey.objects.get(pk=row.pk).revoked_at is None  # no revoke_apikey permission
    response = admin_client.post(changelist, {"action": "revoke_selected", "_selected_action": [row.pk]})
    assert ("success", API_KEYS_REVOKED.format(count=1)) in messages_of(response)
    assert ApiKey.objects.get(pk=row.pk).revoked_at is not None
    assert ApiClient(key).get("/orders").status_code == 401
    assert "delete_selected" not in admin_client.get(changelist).content.decode()
    assert "old-client" in admin_client.get(changelist, {"state": "revoked"}).content.decode()
    assert "old-client" not in admin_client.get(changelist, {"state": "active"}).content.decode()
