"""The admin is split by concern (orderweb/admin.py, admin_order_actions.py, admin_order_filters.py,
admin_readonly.py, admin_api_keys.py); Django imports only orderweb/admin.py, which must register
every page and keep what callers import from it."""

from django.contrib import admin


def test_the_admin_registers_every_orderweb_page_from_its_parts():
    from orderweb import admin_api_keys, admin_readonly
    from orderweb.admin import OrderAdmin
    from orderweb.models import (
        ApiKey,
        CarrierLedgerEntry,
        GatewayLedgerEntry,
        Order,
        OrderEvent,
        OrderLabel,
        Payment,
        RefusedStart,
        Shipment,
        WebhookDelivery,
    )

    registered = {
        model: type(model_admin)
        for model, model_admin in admin.site._registry.items()
        if model._meta.app_label == "orderweb"
    }
    assert issubclass(registered.pop(Order), OrderAdmin)  # reviews/admin.py extends it
    assert registered == {
        Payment: admin_readonly.PaymentAdmin,
        Shipment: admin_readonly.ShipmentAdmin,
        OrderEvent: admin_readonly.OrderEventAdmin,
        OrderLabel: admin_readonly.OrderLabelAdmin,
        RefusedStart: admin_readonly.RefusedStartAdmin,
        GatewayLedgerEntry: admin_readonly.GatewayLedgerEntryAdmin,
        CarrierLedgerEntry: admin_readonly.CarrierLedgerEntryAdmin,
        WebhookDelivery: admin_readonly.WebhookDeliveryAdmin,
        ApiKey: admin_api_keys.ApiKeyAdmin,
    }


def test_what_callers_import_from_orderweb_admin_is_still_there():
    """reviews/admin.py and the tests import these from orderweb.admin, as before the split."""
    from orderweb import admin_api_keys, admin_readonly
    from orderweb.admin import (
        API_KEY_CREATED,
        API_KEYS_REVOKED,
        ORDER_CREATED,
        AttentionFilter,
        OrderAdmin,
        OrderReadOnlyInline,
        PaymentAdmin,
        ReadOnlyAdmin,
    )

    assert API_KEY_CREATED is admin_api_keys.API_KEY_CREATED and API_KEYS_REVOKED is admin_api_keys.API_KEYS_REVOKED
    assert ReadOnlyAdmin is admin_readonly.ReadOnlyAdmin and PaymentAdmin is admin_readonly.PaymentAdmin
    assert AttentionFilter in OrderAdmin.list_filter and OrderReadOnlyInline.__module__ == "orderweb.admin"
    assert ORDER_CREATED.startswith("Order {order_id}")


def test_every_orderweb_model_names_its_rows():
    """Admin pages, breadcrumbs and logs name a row by its __str__; Django's default says
    "GatewayLedgerEntry object (1)" (ruff's DJ008)."""
    from django.apps import apps
    from django.db import models

    unnamed = [
        model.__name__
        for model in apps.get_app_config("orderweb").get_models()
        if model.__str__ is models.Model.__str__
    ]
    assert unnamed == []
