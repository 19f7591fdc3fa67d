"""The admin's API keys (docs/api.md). Part of the admin: orderweb/admin.py imports it, so Django
registers this page with it.
"""

from __future__ import annotations

from typing import Any, Optional

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse

from orderweb.admin_moments import MomentsAdmin
from orderweb.api.keys import NO_SCOPE, api_key_create, api_key_revoke, validate_key_name
from orderweb.models import ApiKey

# -- API keys (docs/api.md) ---------------------------------------------------------------------

API_KEY_CREATED = "API key {name!r} was created. Copy the key below now: it is shown this once."
API_KEYS_REVOKED = "{count} API key(s) revoked; requests with them now get 401."
_SHOWN_ONCE = "orderweb.api_key_shown_once"


class ApiKeyForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ["name", "scope_create", "scope_read", "scope_act", "scope_label", "rate_limit_per_minute"]

    def clean_name(self) -> str:
        return validate_key_name(self.cleaned_data.get("name"))

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if not any(data.get(f"scope_{scope}") for scope in ApiKey.Scope.values):
            raise ValidationError(NO_SCOPE, code="no_scope")
        return data


class ApiKeyRevokedFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "Active"), ("revoked", "Revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(MomentsAdmin, admin.ModelAdmin):
    """Keys are created here through the service (the key is shown once, on the next page) and
    revoked, never deleted: orders and audit rows keep naming their client."""

    form = ApiKeyForm
    list_display = ["name", "prefix", "scope_list", "active", "rate_limit_per_minute", "last_used_at", "created_at"]
    list_filter = [ApiKeyRevokedFilter, "scope_create", "scope_read", "scope_act", "scope_label"]
    search_fields = ["name", "prefix"]
    readonly_fields = ["prefix", "created_at", "created_by", "last_used_at", "revoked_at"]
    actions = ["revoke_selected"]
    change_form_template = "admin/orderweb/apikey/change_form.html"

    @admin.display(description="scopes")
    def scope_list(self, api_key: ApiKey) -> str:
        return ", ".join(api_key.scopes)

    @admin.display(description="active", boolean=True)
    def active(self, api_key: ApiKey) -> bool:
        return api_key.is_active

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("orderweb.revoke_apikey")

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        data = form.cleaned_data
        row, key = api_key_create(
            name=data["name"],
            scopes=[s for s in ApiKey.Scope.values if data.get(f"scope_{s}")],
            rate_limit_per_minute=data.get("rate_limit_per_minute"),
            created_by=request.user,
        )
        for model_field in ApiKey._meta.concrete_fields:
            setattr(obj, model_field.attname, getattr(row, model_field.attname))
        obj._state.adding = False
        # Server-side (the session is in the database), read once by the next page.
        request.session[_SHOWN_ONCE] = {"pk": row.pk, "key": key}

    def response_add(self, request: HttpRequest, obj: ApiKey, post_url_continue: Optional[str] = None):
        self.message_user(request, API_KEY_CREATED.format(name=obj.name), messages.SUCCESS)
        return HttpResponseRedirect(
            reverse("admin:orderweb_apikey_change", args=[obj.pk], current_app=self.admin_site.name)
        )

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        shown = request.session.get(_SHOWN_ONCE)
        new_key = ""
        if request.method == "GET" and shown and str(shown.get("pk")) == str(unquote(object_id)):
            new_key = shown["key"]
            del request.session[_SHOWN_ONCE]
        response = super().change_view(request, object_id, form_url, {**(extra_context or {}), "new_api_key": new_key})
        if new_key:
            response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke selected API keys", permissions=["revoke"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = sum(api_key_revoke(api_key=api_key) for api_key in queryset)
        self.message_user(request, API_KEYS_REVOKED.format(count=count), messages.SUCCESS)
