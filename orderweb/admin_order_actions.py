"""The order admin's staff actions: one order's (cancel, change the address, retry shipping, a
note, an outcome label, each from the order page) and a selection's (from the list, confirmed like
delete_selected). Each goes through a service in ``orderweb.actions``, which asks the workflow,
and answers with a message and a redirect.

Part of the order admin: ``OrderAdmin`` (orderweb/admin.py) mixes ``OrderStaffActions`` in and
gives it its permissions (``has_*_permission``) and hooks (``cancel_warnings``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Optional

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from orderweb.actions import (
    ActionOutcome,
    order_address_change,
    order_cancel,
    order_cancel_dispatch_failed,
    order_is_awaiting_shipping_retry,
    order_shipping_retry,
    workflow_actions_send_many,
)
from orderweb.forms import AddressForm, CancelForm, LabelForm, NoteForm
from orderweb.labels import order_label_remove, order_label_set
from orderweb.models import Order, OrderEvent, OrderLabel, Payment, Shipment
from orderweb.services import NOTE_ADDED, order_note_add
from temporal_app.contracts import OrderState, RefusalCode, refusal

ADDRESS_TOO_LATE_NOTICE = refusal(RefusalCode.ADDRESS_TOO_LATE).message
ORDER_FINISHED_NOTICE = "This order is {status}; its workflow accepts no more changes."


class OrderStaffActions:
    """The staff actions' views, list actions and helpers, mixed into OrderAdmin."""

    # -- staff actions: one order (from its page) ----------------------------------------------

    def get_urls(self):
        info = f"{self.opts.app_label}_{self.opts.model_name}"
        view = self.admin_site.admin_view
        return [
            path("<path:object_id>/cancel/", view(self.cancel_view), name=f"{info}_cancel"),
            path("<path:object_id>/address/", view(self.address_view), name=f"{info}_address"),
            path("<path:object_id>/retry-shipping/", view(self.retry_shipping_view), name=f"{info}_retry_shipping"),
            path("<path:object_id>/note/", view(self.note_view), name=f"{info}_note"),
            path("<path:object_id>/label/", view(self.label_view), name=f"{info}_label"),
        ] + super().get_urls()

    def note_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """A note on the order for colleagues: not a state change, so no workflow is asked."""
        order = self._order_or_none(request, object_id)
        if order is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_add_order_note_permission(request):
            raise PermissionDenied
        form = NoteForm(request.POST if request.method == "POST" else None)
        if form.is_valid():
            try:
                order_note_add(
                    order=order, user=request.user, text=form.cleaned_data["note"], source=OrderEvent.Source.ADMIN
                )
            except ValidationError as err:
                form.add_error("note", err)
            else:
                self.message_user(request, NOTE_ADDED.format(order_id=order.order_id), messages.SUCCESS)
                return HttpResponseRedirect(self._url("change", order))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Add a note to {order.order_id}",
            "order": order,
            "orders": [order],
            "form": form,
            "back_url": self._url("change", order),
        }
        return TemplateResponse(request, "admin/orderweb/order/note_form.html", context)

    def label_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Set or remove an outcome label: a fact learned after the decision, no workflow asked."""
        order = self._order_or_none(request, object_id)
        if order is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_label_permission(request):
            raise PermissionDenied
        form = LabelForm(request.POST if request.method == "POST" else None)
        if form.is_valid():
            data = form.cleaned_data
            try:
                if data["action"] == "remove":
                    change = order_label_remove(
                        order=order,
                        label=data["label"],
                        source=OrderLabel.Source.ADMIN,
                        user=request.user,
                        note=data["note"],
                    )
                else:
                    change = order_label_set(
                        order=order,
                        label=data["label"],
                        source=OrderLabel.Source.ADMIN,
                        user=request.user,
                        note=data["note"],
                        source_reference=data["source_reference"],
                    )
            except ValidationError as err:
                form.add_error(None, err)
            else:
                self.message_user(request, change.message, messages.SUCCESS if change.changed else messages.INFO)
                return HttpResponseRedirect(self._url("change", order))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Outcome label of {order.order_id}",
            "order": order,
            "orders": [order],
            "form": form,
            "current": list(OrderLabel.objects.filter(order=order, removed_at__isnull=True).order_by("created_at")),
            "back_url": self._url("change", order),
        }
        return TemplateResponse(request, "admin/orderweb/order/label_form.html", context)

    def cancel_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        order = self._order_or_none(request, object_id)
        if order is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_cancel_order_permission(request):
            raise PermissionDenied
        form = CancelForm(request.POST if request.method == "POST" else None)
        if form.is_valid():
            self._report(
                request,
                [
                    order_cancel(
                        order=order,
                        reason=form.cleaned_data["reason"],
                        reason_code=form.cleaned_data["reason_code"],
                        acting_user=request.user,
                    )
                ],
            )
            return HttpResponseRedirect(self._url("change", order))
        return self._cancel_confirmation(request, [order], form, action="")

    def address_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        order = self._order_or_none(request, object_id)
        if order is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_change_order_address_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            form = AddressForm(request.POST)
            if form.is_valid():
                outcome = order_address_change(
                    order=order, address=form.cleaned_data["address"], acting_user=request.user
                )
                self._report(request, [outcome])
                if outcome.accepted:
                    return HttpResponseRedirect(self._url("change", order))
                return HttpResponseRedirect(self._url("address", order))
        else:
            form = AddressForm(initial={"address": order.address})
        too_late = _address_too_late(order)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Change the shipping address of {order.order_id}",
            "order": order,
            "orders": [order],
            "form": form,
            "too_late": too_late,
            "back_url": self._url("change", order),
        }
        return TemplateResponse(request, "admin/orderweb/order/address_form.html", context)

    def retry_shipping_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        order = self._order_or_none(request, object_id)
        if order is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_retry_shipping_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            self._report(request, [order_shipping_retry(order=order, acting_user=request.user)])
            return HttpResponseRedirect(self._url("change", order))
        return self._retry_confirmation(request, [order], action="")

    # -- staff actions: a selection (from the list), confirmed like delete_selected ------------

    @admin.action(description="Cancel selected orders", permissions=["cancel_order"])
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet) -> Optional[HttpResponse]:
        return self._cancel_many(request, queryset, "cancel_selected", order_cancel)

    @admin.action(description="Cancel and refund selected dispatch-failed orders", permissions=["cancel_order"])
    def cancel_and_refund_selected(self, request: HttpRequest, queryset: QuerySet) -> Optional[HttpResponse]:
        return self._cancel_many(request, queryset, "cancel_and_refund_selected", order_cancel_dispatch_failed)

    @admin.action(description="Retry shipping of selected dispatch-failed orders", permissions=["retry_shipping"])
    def retry_shipping_selected(self, request: HttpRequest, queryset: QuerySet) -> Optional[HttpResponse]:
        orders = list(queryset)
        if request.POST.get("post") == "yes":
            self._report(
                request,
                workflow_actions_send_many(
                    orders=orders, send=lambda order: order_shipping_retry(order=order, acting_user=request.user)
                ),
            )
            return None
        return self._retry_confirmation(request, orders, action="retry_shipping_selected")

    def _cancel_many(
        self, request: HttpRequest, queryset: QuerySet, action: str, service: Callable[..., ActionOutcome]
    ) -> Optional[HttpResponse]:
        orders = list(queryset)
        form = CancelForm(request.POST if request.POST.get("post") == "yes" else None)
        if form.is_valid():
            reason, code = form.cleaned_data["reason"], form.cleaned_data["reason_code"]
            # Several at once: each answers only when its order has ended (workflow_actions_send_many).
            self._report(
                request,
                workflow_actions_send_many(
                    orders=orders,
                    send=lambda order: service(order=order, reason=reason, reason_code=code, acting_user=request.user),
                ),
            )
            return None
        return self._cancel_confirmation(request, orders, form, action=action)

    # -- helpers -------------------------------------------------------------------------------

    def _order_or_none(self, request: HttpRequest, object_id: str) -> Optional[Order]:
        if not self.has_view_permission(request):
            raise PermissionDenied
        return self.get_object(request, unquote(object_id))

    def _url(self, name: str, order: Order) -> str:
        return reverse(f"admin:orderweb_order_{name}", args=[order.pk], current_app=self.admin_site.name)

    def _report(self, request: HttpRequest, outcomes: Iterable[ActionOutcome]) -> None:
        for outcome in outcomes:
            self.message_user(request, outcome.message, messages.SUCCESS if outcome.accepted else messages.ERROR)

    def _cancel_confirmation(
        self, request: HttpRequest, orders: list[Order], form: CancelForm, *, action: str
    ) -> TemplateResponse:
        refunded = set(
            Payment.objects.filter(
                order__in=orders, kind=Payment.Kind.CHARGE, status=Payment.Status.SUCCEEDED
            ).values_list("order_id", flat=True)
        )
        warnings = self.cancel_warnings(request, orders)
        rows = [
            {
                "order": order,
                "refund": order.pk in refunded,
                "finished": order.is_terminal,
                "warnings": warnings.get(order.pk, []),
            }
            for order in orders
        ]
        return self._confirmation(
            request,
            "admin/orderweb/order/cancel_confirmation.html",
            orders,
            action,
            title="Cancel orders" if len(orders) > 1 else f"Cancel order {orders[0].order_id}",
            form=form,
            rows=rows,
            any_warnings=any(row["warnings"] for row in rows),
        )

    def _retry_confirmation(self, request: HttpRequest, orders: list[Order], *, action: str) -> TemplateResponse:
        errors = dict(Shipment.objects.filter(order__in=orders).values_list("order_id", "last_error"))
        rows = [
            {
                "order": order,
                "waiting": order_is_awaiting_shipping_retry(order=order),
                "last_error": errors.get(order.pk, ""),
            }
            for order in orders
        ]
        return self._confirmation(
            request,
            "admin/orderweb/order/retry_confirmation.html",
            orders,
            action,
            title="Retry shipping" if len(orders) > 1 else f"Retry shipping of {orders[0].order_id}",
            rows=rows,
        )

    def _confirmation(
        self, request: HttpRequest, template: str, orders: list[Order], action: str, **extra: Any
    ) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "orders": orders,
            "action": action,  # empty for a single order's own page
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "back_url": self._url("change", orders[0])
            if not action
            else reverse("admin:orderweb_order_changelist", current_app=self.admin_site.name),
            **extra,
        }
        return TemplateResponse(request, template, context)


def _address_too_late(order: Order) -> str:
    """What the projection already knows; the workflow has the last word when the form is sent."""
    if (
        order.status == OrderState.COMPLETED
        or Shipment.objects.filter(order=order, status=Shipment.Status.DISPATCHED).exists()
    ):
        return ADDRESS_TOO_LATE_NOTICE
    if order.is_terminal:
        return ORDER_FINISHED_NOTICE.format(status=order.get_status_display().lower())
    return ""
