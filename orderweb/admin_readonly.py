"""The admin's read-only pages: the rows the workflow writes (payments, shipments, the audit trail,
refused starts, the simulators' ledgers, webhook deliveries), which nobody adds, changes or deletes
here. Part of the admin: orderweb/admin.py imports it, so Django registers these pages with it.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from orderweb.admin_moments import MomentsAdmin
from orderweb.models import (
    CarrierLedgerEntry,
    GatewayLedgerEntry,
    OrderEvent,
    OrderLabel,
    Payment,
    RefusedStart,
    Shipment,
    WebhookDelivery,
)
from temporal_app.client import workflow_ui_url


class NoEditingMixin:
    """Rows the workflow writes: adding, changing or deleting them here would bypass it."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyAdmin(NoEditingMixin, MomentsAdmin, admin.ModelAdmin):
    pass


# -- read-only rows the workflow writes ---------------------------------------------------------


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    list_display = ["order", "kind", "status", "amount", "idempotency_key", "provider_reference", "created_at"]
    list_filter = ["kind", "status"]
    list_select_related = ["order"]
    search_fields = ["order__order_id", "idempotency_key", "provider_reference"]


@admin.register(Shipment)
class ShipmentAdmin(ReadOnlyAdmin):
    list_display = ["order", "status", "tracking_number", "dispatched_at", "last_error", "updated_at"]
    list_filter = ["status"]
    list_select_related = ["order"]
    search_fields = ["order__order_id", "tracking_number", "address"]


@admin.register(OrderEvent)
class OrderEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "order", "event", "actor", "source", "from_status", "to_status", "message"]
    list_filter = ["source", "type"]
    list_select_related = ["order"]
    search_fields = ["order__order_id", "actor", "type"]
    date_hierarchy = "created_at"

    @admin.display(description="event", ordering="type")
    def event(self, event: OrderEvent) -> str:
        return event.label


class LabelStandingFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "standing"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Standing"), ("no", "Removed")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() in ("yes", "no"):
            return queryset.filter(removed_at__isnull=self.value() == "yes")
        return queryset


@admin.register(OrderLabel)
class OrderLabelAdmin(ReadOnlyAdmin):
    """Every outcome label, by kind and date (set and removed on the order's own page, through
    ``orderweb.labels``, so that each change is audited: never edited here)."""

    list_display = ["created_at", "order", "label", "actor", "source", "source_reference", "removed_at", "removed_by"]
    list_filter = ["label", LabelStandingFilter, "source"]
    list_select_related = ["order"]
    search_fields = ["order__order_id", "source_reference", "actor"]
    date_hierarchy = "created_at"


@admin.register(RefusedStart)
class RefusedStartAdmin(ReadOnlyAdmin):
    """Starts of OrderWorkflow that could not make an order (no usable order id)."""

    list_display = ["created_at", "workflow_id", "reason", "arguments"]
    search_fields = ["workflow_id", "reason"]
    date_hierarchy = "created_at"

    @admin.display(description="Temporal Web UI")
    def temporal_link(self, start: RefusedStart) -> str:
        return format_html(
            '<a href="{}" target="_blank" rel="noopener">{}</a>', workflow_ui_url(start.workflow_id), start.workflow_id
        )

    readonly_fields = ["workflow_id", "temporal_link", "run_id", "reason", "arguments", "created_at"]
    fields = readonly_fields


@admin.register(GatewayLedgerEntry)
class GatewayLedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ["idempotency_key", "kind", "order_ref", "amount", "reference", "created_at"]
    list_filter = ["kind"]
    search_fields = ["order_ref", "idempotency_key", "reference"]


@admin.register(CarrierLedgerEntry)
class CarrierLedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ["idempotency_key", "order_ref", "tracking_number", "created_at"]
    search_fields = ["order_ref", "idempotency_key", "tracking_number"]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    """What was sent to the webhook URL and what the receiver said (docs/api.md, "Webhooks")."""

    list_display = ["created_at", "event", "status", "attempts", "last_status_code", "sent_at", "last_error"]
    list_filter = ["status"]
    list_select_related = ["event__order"]
    search_fields = ["event__order__order_id", "url"]
