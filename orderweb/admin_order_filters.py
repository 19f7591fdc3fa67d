"""The order list's filters in the admin (orderweb/admin.py, ``OrderAdmin.list_filter``)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from orderweb.models import CancelReason, Shipment
from temporal_app.contracts import OrderState


class AttentionFilter(admin.SimpleListFilter):
    """Orders the reconciler flagged: their workflow stopped, vanished or is stuck."""

    title = "needs attention"
    parameter_name = "attention"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Flagged for staff"), ("no", "Not flagged")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(attention_since__isnull=False)
        if self.value() == "no":
            return queryset.filter(attention_since__isnull=True)
        return queryset


class CancelReasonFilter(admin.SimpleListFilter):
    """Cancelled orders by their reason code (staff cancels and review rejections alike)."""

    title = "cancel reason"
    parameter_name = "cancel_reason"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [*CancelReason.choices, ("none", "No code")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "none":
            return queryset.filter(status=OrderState.CANCELLED, cancel_reason_code="")
        if self.value():
            return queryset.filter(cancel_reason_code=self.value())
        return queryset


class DispatchFailedFilter(admin.SimpleListFilter):
    title = "dispatch"
    parameter_name = "dispatch"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("waiting", "Failed, waiting for staff"),
            ("failed", "Failed at least once"),
            ("never", "Never failed"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "waiting":
            return queryset.filter(status=OrderState.SHIPPING, shipment__status=Shipment.Status.DISPATCH_FAILED)
        if self.value() == "failed":
            return queryset.filter(dispatch_failures__gt=0)
        if self.value() == "never":
            return queryset.filter(dispatch_failures=0)
        return queryset
