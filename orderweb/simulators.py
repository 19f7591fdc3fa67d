"""The simulated payment gateway and carrier.

They stand in for external services, so they behave like them: each keeps its own ledger keyed
by the caller's idempotency key (a repeated request returns the first result, never a second
charge or dispatch), commits independently of the caller's transaction, and can be told to
misbehave through ``SimulatedFault`` rows (tests, demos and the chaos run use that).
"""

from __future__ import annotations

import secrets
from decimal import Decimal
from typing import Optional

from django.db import connection, transaction

from orderweb.models import CarrierLedgerEntry, GatewayLedgerEntry, SimulatedFault
from orderweb.sql import row_values


class ServiceUnavailable(Exception):
    """A transient failure: the caller should retry."""


class PaymentDeclined(Exception):
    """The gateway refused the charge: retrying will not help."""


def fault_take(*, target: str, order_ref: str) -> Optional[str]:
    """Consume one planned fault for this target and order; returns its mode or None."""
    if not SimulatedFault.objects.filter(target=target, order_ref=order_ref).exists():
        return None  # the usual case: one statement, no transaction
    with transaction.atomic():
        fault = SimulatedFault.objects.select_for_update().filter(target=target, order_ref=order_ref).first()
        if fault is None:
            return None
        if fault.mode == SimulatedFault.Mode.DECLINE:
            return fault.mode
        if fault.remaining == 0:
            return None
        fault.remaining -= 1
        fault.save(update_fields=["remaining"])
        return fault.mode


def fault_plan(
    *, target: str, order_ref: str, mode: str = SimulatedFault.Mode.TRANSIENT, times: int = 1
) -> SimulatedFault:
    fault, _ = SimulatedFault.objects.update_or_create(
        target=target, order_ref=order_ref, defaults={"mode": mode, "remaining": times}
    )
    return fault


def _ledger_get_or_create(model, *, idempotency_key: str, **fields):
    """Insert once per key; a concurrent or repeated request gets the existing entry. One
    statement when the key is new (INSERT ... ON CONFLICT DO NOTHING RETURNING), two when not."""
    entry = model(idempotency_key=idempotency_key, **fields)
    columns, values = row_values(entry)
    quote = connection.ops.quote_name
    sql = (
        f"INSERT INTO {quote(model._meta.db_table)} ({', '.join(map(quote, columns))}) "
        f"VALUES ({', '.join(['%s'] * len(values))}) "
        f"ON CONFLICT ({quote(model._meta.get_field('idempotency_key').column)}) DO NOTHING "
        f"RETURNING {quote(model._meta.pk.column)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        row = cursor.fetchone()
    if row is None:
        return model.objects.get(idempotency_key=idempotency_key)
    entry.pk = row[0]
    return entry


def gateway_charge(*, idempotency_key: str, order_ref: str, amount: Decimal) -> GatewayLedgerEntry:
    mode = fault_take(target="payment_charged", order_ref=order_ref)
    if mode == SimulatedFault.Mode.DECLINE:
        raise PaymentDeclined("the card was declined (simulated gateway)")
    if mode == SimulatedFault.Mode.TRANSIENT:
        raise ServiceUnavailable("the payment gateway is unavailable (simulated)")
    return _ledger_get_or_create(
        GatewayLedgerEntry,
        idempotency_key=idempotency_key,
        kind=GatewayLedgerEntry.Kind.CHARGE,
        order_ref=order_ref,
        amount=amount,
        reference=f"ch_{secrets.token_hex(8)}",
    )


def gateway_charge_lookup(*, idempotency_key: str) -> Optional[GatewayLedgerEntry]:
    """The charge made under this key, if any (gateways answer this by idempotency key)."""
    return GatewayLedgerEntry.objects.filter(
        idempotency_key=idempotency_key, kind=GatewayLedgerEntry.Kind.CHARGE
    ).first()


def gateway_refund(*, idempotency_key: str, charge_key: str) -> GatewayLedgerEntry:
    charge = GatewayLedgerEntry.objects.get(idempotency_key=charge_key, kind=GatewayLedgerEntry.Kind.CHARGE)
    return _ledger_get_or_create(
        GatewayLedgerEntry,
        idempotency_key=idempotency_key,
        kind=GatewayLedgerEntry.Kind.REFUND,
        order_ref=charge.order_ref,
        amount=charge.amount,
        refunds=charge,
        reference=f"re_{secrets.token_hex(8)}",
    )


def carrier_dispatch(*, idempotency_key: str, order_ref: str, address: str) -> CarrierLedgerEntry:
    if fault_take(target="carrier_dispatched", order_ref=order_ref):
        raise ServiceUnavailable("the carrier rejected the pickup request (simulated)")
    return _ledger_get_or_create(
        CarrierLedgerEntry,
        idempotency_key=idempotency_key,
        order_ref=order_ref,
        address=address,
        tracking_number=f"TRK{secrets.token_hex(6).upper()}",
    )


def carrier_dispatch_lookup(*, idempotency_key: str) -> Optional[CarrierLedgerEntry]:
    """The dispatch made under this key, if any (carriers answer this by idempotency key)."""
    return CarrierLedgerEntry.objects.filter(idempotency_key=idempotency_key).first()
