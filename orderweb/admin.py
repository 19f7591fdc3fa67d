"""The staff admin for orders.

Thin on purpose: every change goes through a service (``orderweb.services.order_create`` or the
staff actions in ``orderweb.actions``), each action is gated by its own permission and answers
with a message and a redirect. An order's fields are the workflow's projection, so the order page
is read-only; staff change an order only through the actions, which ask the workflow.

By concern: this module has the order's list and page (OrderAdmin); its staff actions are in
admin_order_actions.py, its list's filters in admin_order_filters.py; the read-only pages of the
rows the workflow writes are in admin_readonly.py, the API keys in admin_api_keys.py.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.utils.html import format_html, format_html_join

from orderweb.actions import order_is_awaiting_shipping_retry

# The admin's other pages, by concern; importing them here registers them when Django imports this
# module. Names that callers import from orderweb.admin stay importable from here ("X as X": a
# re-export).
from orderweb.admin_api_keys import (
    API_KEY_CREATED as API_KEY_CREATED,
)
from orderweb.admin_api_keys import (
    API_KEYS_REVOKED as API_KEYS_REVOKED,
)
from orderweb.admin_api_keys import (
    ApiKeyAdmin as ApiKeyAdmin,
)
from orderweb.admin_api_keys import (
    ApiKeyForm as ApiKeyForm,
)
from orderweb.admin_api_keys import (
    ApiKeyRevokedFilter as ApiKeyRevokedFilter,
)
from orderweb.admin_moments import MOMENT_FORMAT, MomentsAdmin, moment_field
from orderweb.admin_order_actions import (
    ADDRESS_TOO_LATE_NOTICE as ADDRESS_TOO_LATE_NOTICE,
)
from orderweb.admin_order_actions import (
    ORDER_FINISHED_NOTICE as ORDER_FINISHED_NOTICE,
)
from orderweb.admin_order_actions import (
    OrderStaffActions,
)
from orderweb.admin_order_filters import AttentionFilter, CancelReasonFilter, DispatchFailedFilter
from orderweb.admin_readonly import (
    CarrierLedgerEntryAdmin as CarrierLedgerEntryAdmin,
)
from orderweb.admin_readonly import (
    GatewayLedgerEntryAdmin as GatewayLedgerEntryAdmin,
)
from orderweb.admin_readonly import (
    NoEditingMixin,
)
from orderweb.admin_readonly import (
    OrderEventAdmin as OrderEventAdmin,
)
from orderweb.admin_readonly import (
    OrderLabelAdmin as OrderLabelAdmin,
)
from orderweb.admin_readonly import (
    PaymentAdmin as PaymentAdmin,
)
from orderweb.admin_readonly import (
    ReadOnlyAdmin as ReadOnlyAdmin,
)
from orderweb.admin_readonly import (
    RefusedStartAdmin as RefusedStartAdmin,
)
from orderweb.admin_readonly import (
    ShipmentAdmin as ShipmentAdmin,
)
from orderweb.admin_readonly import (
    WebhookDeliveryAdmin as WebhookDeliveryAdmin,
)
from orderweb.forms import OrderCreateForm, OrderLineFormSet
from orderweb.labels import LABEL_PERMISSION
from orderweb.models import (
    CancelReason,
    Order,
    OrderEvent,
    OrderLabel,
    OrderLine,
    Payment,
    Shipment,
)
from orderweb.preferences import moment_html
from orderweb.services import order_create
from temporal_app.client import TemporalUnavailable, workflow_ui_url
from temporal_app.contracts import OrderState, shipping_workflow_id

logger = logging.getLogger(__name__)

ORDER_CREATED = "Order {order_id} was created; its workflow has started."
ORDER_SAVED_NOT_STARTED = (
    "Order {order_id} was saved, but Temporal is unreachable, so its workflow has not started yet; "
    "the workers start it as soon as Temporal is back."
)
# What staff read where the projection alone says "shipping": the carrier refused the dispatch
# and the workflow waits for a person (retry, or cancel and refund).
DISPATCH_WAITING = "Dispatch failed, waiting for staff"
DISPATCH_WAITING_NOTICE = (
    "Dispatch failed, waiting for staff: the carrier refused the package ({failures} failed "
    "attempt{plural}). Retry shipping, or cancel and refund."
)
_CANCEL_REASON_LABELS = dict(CancelReason.choices)

# The status's colour in the list (templates/admin/base_site.html, light and dark, each 4.5:1 or
# more on the list's rows); the label says it in words too.
_STATUS_TONES = {
    OrderState.COMPLETED: "ok",
    OrderState.CANCELLED: "ended",
    OrderState.FAILED: "bad",
    OrderState.AWAITING_MANUAL_REVIEW: "waiting",
}


class OrderReadOnlyInline(NoEditingMixin, admin.TabularInline):
    """Rows shown on the order page: visible to whoever may view the order, never editable."""

    extra = 0
    can_delete = False
    show_change_link = False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("orderweb.view_order")


class OrderLineInline(OrderReadOnlyInline):
    model = OrderLine
    fields = ["sku", "name", "quantity", "unit_price", "total"]
    readonly_fields = fields
    verbose_name_plural = "line items"

    @admin.display(description="total")
    def total(self, line: OrderLine) -> Any:
        return line.total


class PaymentInline(OrderReadOnlyInline):
    model = Payment
    fields = ["kind", "status", "amount", "idempotency_key", "provider_reference", "message", "created_at"]
    readonly_fields = fields


class ShipmentInline(OrderReadOnlyInline):
    model = Shipment
    fields = ["status", "address", "tracking_number", "dispatched_at", "last_error", "idempotency_key", "updated_at"]
    readonly_fields = fields


@admin.register(Order)
class OrderAdmin(OrderStaffActions, MomentsAdmin, admin.ModelAdmin):
    list_display = ["order_id", "status_badge", "amount", "dispatch_failures", "customer", "created_at"]
    list_filter = ["status", AttentionFilter, DispatchFailedFilter, CancelReasonFilter, "created_at", "source"]
    date_hierarchy = "created_at"
    search_fields = ["order_id", "workflow_id", "address", "customer"]
    search_help_text = "Order id, workflow id, address or customer."
    list_per_page = 50
    actions = ["cancel_selected", "cancel_and_refund_selected", "retry_shipping_selected"]
    inlines = [OrderLineInline, PaymentInline, ShipmentInline]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    ("order_id", "workflow_id"),
                    ("status_shown", "status_changed"),
                    ("customer", "amount"),
                    "address",
                    ("source", "created_by"),
                    ("created", "updated"),
                ]
            },
        ),
        (
            "Outcome",
            {
                "fields": [
                    ("cancel_reason", "cancel_reason_label"),
                    "failure_reason",
                    ("dispatch_failures", "carrier_last_error"),
                    ("attention_reason", "attention_noticed"),
                ]
            },
        ),
        (
            "Customer details",
            {
                "classes": ["collapse"],
                "fields": [
                    ("customer_email", "currency"),
                    "billing_address",
                    ("client_ip", "user_agent"),
                ],
            },
        ),
        ("Temporal", {"fields": ["temporal_links"]}),
        ("Outcome labels", {"fields": ["outcome_labels"]}),
        ("Notes", {"fields": ["notes"]}),
        ("Timeline", {"fields": ["timeline"]}),
    ]
    readonly_fields = [
        "order_id",
        "workflow_id",
        "status",
        "status_changed_at",
        "customer",
        "amount",
        "address",
        "source",
        "created_by",
        "created_at",
        "updated_at",
        "cancel_reason",
        "failure_reason",
        "dispatch_failures",
        "attention_reason",
        "attention_since",
        "customer_email",
        "currency",
        "billing_address",
        "client_ip",
        "user_agent",
        "temporal_links",
        "timeline",
        "cancel_reason_label",
        "carrier_last_error",
        "status_shown",
        "notes",
        "outcome_labels",
        "status_changed",
        "created",
        "updated",
        "attention_noticed",
    ]
    change_form_template = "admin/orderweb/order/change_form.html"

    # -- permissions: the order itself is never edited or deleted here --------------------------

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_cancel_order_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("orderweb.cancel_order")

    def has_change_order_address_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("orderweb.change_order_address")

    def has_retry_shipping_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("orderweb.retry_shipping")

    # -- the list ------------------------------------------------------------------------------

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # Whether a shipping order waits for staff after a failed dispatch: one EXISTS per row,
        # in the list's own query.
        failed = Shipment.objects.filter(order=OuterRef("pk"), status=Shipment.Status.DISPATCH_FAILED)
        return super().get_queryset(request).annotate(dispatch_waiting=Exists(failed))

    @admin.display(description="status", ordering="status")
    def status_badge(self, order: Order) -> str:
        tone = _STATUS_TONES.get(order.status, "moving")
        label = order.get_status_display()
        if _dispatch_waiting(order):
            tone, label = "bad", DISPATCH_WAITING
        flag = (
            format_html(' <span class="order-attention" title="{}">⚑ needs attention</span>', order.attention_reason)
            if order.needs_attention
            else ""
        )
        return format_html(
            '<span class="order-status order-status-{}" data-status="{}">{}</span>{}',
            tone,
            order.status,
            label,
            flag,
        )

    # -- the order page ------------------------------------------------------------------------

    # In the reader's zone, UTC on hover (orderweb/admin_moments.py).
    status_changed = moment_field("status_changed_at", "status changed at")
    created = moment_field("created_at", "created at")
    updated = moment_field("updated_at", "updated at")
    attention_noticed = moment_field("attention_since", "attention since")

    @admin.display(description="status")
    def status_shown(self, order: Order) -> str:
        """The status as staff need it: "Shipping" alone hides an order the carrier refused."""
        if _dispatch_waiting(order):
            return f"{order.get_status_display()}: {DISPATCH_WAITING.lower()}"
        return order.get_status_display()

    @admin.display(description="reason code")
    def cancel_reason_label(self, order: Order) -> str:
        code = order.cancel_reason_code
        return f"{_CANCEL_REASON_LABELS.get(code, code)} ({code})" if code else "—"

    @admin.display(description="carrier's last error")
    def carrier_last_error(self, order: Order) -> str:
        shipment = Shipment.objects.filter(order=order).only("last_error").first()
        return shipment.last_error if shipment is not None and shipment.last_error else "—"

    @admin.display(description="Temporal Web UI")
    def temporal_links(self, order: Order) -> str:
        links = [("Order workflow", order.workflow_id, workflow_ui_url(order.workflow_id))]
        if order.status in (OrderState.SHIPPING, OrderState.COMPLETED) or Shipment.objects.filter(order=order).exists():
            child_id = shipping_workflow_id(order.workflow_id)
            links.append(("Shipping workflow", child_id, workflow_ui_url(child_id)))
        return format_html_join(
            "",
            '<p>{}: <a class="temporal-link" href="{}" target="_blank" rel="noopener">{}</a></p>',
            ((label, url, workflow_id) for label, workflow_id, url in links),
        )

    @admin.display(description="Notes")
    def notes(self, order: Order) -> str:
        """People's remarks on the order (reviewers' and staff's), oldest first."""
        notes = OrderEvent.objects.filter(order=order, type=OrderEvent.Type.NOTE_ADDED).order_by("created_at", "pk")
        if not notes:
            return "—"
        return format_html(
            '<ol class="order-notes">{}</ol>',
            format_html_join(
                "",
                '<li><strong>{}</strong> <span class="quiet">{} UTC, {}</span><div class="note-text">{}</div></li>',
                (
                    (note.actor, note.created_at.strftime("%Y-%m-%d %H:%M"), note.get_source_display(), note.message)
                    for note in notes
                ),
            ),
        )

    @admin.display(description="Labels")
    def outcome_labels(self, order: Order) -> str:
        """How the order turned out (chargeback, fraud or genuine confirmed): the standing labels,
        then the removed ones, with who set them, when and from where."""
        rows = list(OrderLabel.objects.filter(order=order).order_by("removed_at", "created_at", "pk"))
        if not rows:
            return "—"
        return format_html(
            '<ol class="order-labels">{}</ol>',
            format_html_join(
                "",
                '<li class="{}"><strong>{}</strong> {}</li>',
                (
                    (
                        "removed" if row.removed_at else "standing",
                        row.get_label_display(),
                        f"set by {row.actor} ({row.get_source_display()}) {row.created_at:%Y-%m-%d %H:%M} UTC"
                        + (f", ref {row.source_reference}" if row.source_reference else "")
                        + (f": {row.note}" if row.note else "")
                        + (
                            f"; removed by {row.removed_by} {row.removed_at:%Y-%m-%d %H:%M} UTC"
                            if row.removed_at
                            else ""
                        ),
                    )
                    for row in rows
                ),
            ),
        )

    @admin.display(description="Events")
    def timeline(self, order: Order) -> str:
        events = OrderEvent.objects.filter(order=order).select_related("user").order_by("created_at", "pk")
        rows = format_html_join("", "<tr>{}</tr>", ((_timeline_cells(event),) for event in events))
        return format_html(
            '<table class="order-timeline"><thead><tr><th>Time</th><th>Event</th><th>Actor</th>'
            "<th>Source</th><th>Old → new</th><th>Message</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        order = self.get_object(request, unquote(object_id))
        note_link = (
            [{"label": "Add note", "url": self._url("note", order)}]
            if order is not None and self.has_add_order_note_permission(request)
            else []
        )
        if order is not None and self.has_label_permission(request):
            note_link.append({"label": "Set or remove a label", "url": self._url("label", order), "id": "label-link"})
        extra_context = {
            **(extra_context or {}),
            "order_actions": self._order_actions(request, order),
            "note_links": note_link,
            "order_notices": self.order_notices(request, order) if order is not None else [],
            "order_links": self.order_links(request, order) if order is not None else [],
        }
        return super().change_view(request, object_id, form_url, extra_context)

    # -- hooks other apps extend (reviews adds its own; orderweb knows nothing of reviews) ------

    def order_notices(self, request: HttpRequest, order: Order) -> list[str]:
        """Warnings shown at the top of the order page."""
        if order.status == OrderState.SHIPPING and order_is_awaiting_shipping_retry(order=order):
            failures = order.dispatch_failures
            notice = DISPATCH_WAITING_NOTICE.format(failures=failures, plural="" if failures == 1 else "s")
            error = Shipment.objects.filter(order=order).values_list("last_error", flat=True).first()
            return [f"{notice} The carrier's last error: {error}" if error else notice]
        return []

    def order_links(self, request: HttpRequest, order: Order) -> list[dict[str, str]]:
        """Links to the order elsewhere (label, url), shown beside the actions."""
        return []

    def cancel_warnings(self, request: HttpRequest, orders: list[Order]) -> dict[int, list[str]]:
        """Per order (by pk), what staff should know before cancelling it."""
        return {}

    def _order_actions(self, request: HttpRequest, order: Optional[Order]) -> list[dict[str, str]]:
        if order is None or order.is_terminal:
            return []
        actions = []
        waiting = order_is_awaiting_shipping_retry(order=order)
        if self.has_retry_shipping_permission(request) and waiting:
            actions.append({"label": "Retry shipping", "url": self._url("retry_shipping", order)})
        if self.has_cancel_order_permission(request):
            label = "Cancel and refund" if waiting else "Cancel order"
            actions.append({"label": label, "url": self._url("cancel", order)})
        if self.has_change_order_address_permission(request):
            actions.append({"label": "Change address", "url": self._url("address", order)})
        return actions

    def has_add_order_note_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("orderweb.add_order_note")

    def has_label_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(LABEL_PERMISSION)

    # -- add: through the order creation service -----------------------------------------------

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context=None) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        posted = request.method == "POST"
        form = OrderCreateForm(request.POST if posted else None)
        lines = OrderLineFormSet(request.POST if posted else None, prefix="lines")
        if posted and form.is_valid() and lines.is_valid():
            data = form.cleaned_data
            try:
                order = order_create(
                    order_id=data["order_id"],
                    address=data["address"],
                    customer=data["customer"],
                    amount=data["amount"],
                    line_items=lines.line_items(),
                    user=request.user,
                    source=OrderEvent.Source.ADMIN,
                )
            except ValidationError as err:
                form.add_error(None, err)
            except TemporalUnavailable:
                # order_create committed the order before it reached for Temporal; the workers'
                # outbox sweep starts orders left in `started` (temporal_app.worker).
                logger.warning("order %s saved, workflow not started", data["order_id"], exc_info=True)
                order = Order.objects.get(order_id=data["order_id"])
                self.message_user(request, ORDER_SAVED_NOT_STARTED.format(order_id=order.order_id), messages.ERROR)
                return HttpResponseRedirect(self._url("change", order))
            else:
                self.message_user(request, ORDER_CREATED.format(order_id=order.order_id), messages.SUCCESS)
                return HttpResponseRedirect(self._url("change", order))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Add order",
            "form": form,
            "lines": lines,
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/orderweb/order/add_form.html", context)


def _dispatch_waiting(order: Order) -> bool:
    """From the list's annotation (``dispatch_waiting``), or asked when there is none."""
    if order.status != OrderState.SHIPPING:
        return False
    waiting = getattr(order, "dispatch_waiting", None)
    return order_is_awaiting_shipping_retry(order=order) if waiting is None else bool(waiting)


def _timeline_cells(event: OrderEvent) -> str:
    if event.to_status:  # a request records the state it was made in, but changes none
        change = f"{event.from_status or '—'} → {event.to_status}"
    elif event.details.get("new_address"):
        change = f"{event.details.get('old_address', '')} → {event.details['new_address']}"
    else:
        change = ""
    actor = event.user.get_username() if event.user is not None else event.actor
    return format_html(
        '<td class="nowrap">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>',
        moment_html(event.created_at, MOMENT_FORMAT),
        event.label,
        actor,
        event.get_source_display(),
        change,
        event.message,
    )
