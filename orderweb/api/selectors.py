"""An order as the API shows it, and the paged list. Fixed query counts: the detail is three
queries (order with its shipment, lines, events), a page of the list one.

The review's outcome comes from the order's own audit trail (the workflow records the approval
and, with an ending, how the review ended), so the orders app needs nothing from ``reviews``.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from decimal import Decimal
from typing import Any, Optional

from django.db.models import Prefetch, Q

from orderweb.api.errors import CURSOR_INVALID, CURSOR_INVALID_MESSAGE, ApiError, not_found
from orderweb.models import Order, OrderEvent, OrderLine, Shipment
from temporal_app.contracts import OrderState

Type = OrderEvent.Type
_ENDINGS = (Type.ORDER_CANCELLED, Type.ORDER_FAILED, Type.ORDER_COMPLETED)


def _money(value: Decimal) -> str:
    return f"{value:.2f}"


def _tracking_number(order: Order) -> Optional[str]:
    try:
        shipment = order.shipment  # select_related: no query
    except Shipment.DoesNotExist:
        return None
    return shipment.tracking_number or None


def order_summary(order: Order) -> dict[str, Any]:
    return {
        "order_id": order.order_id,
        "status": order.status,
        "status_label": order.get_status_display(),
        "currency": order.currency,
        "total": _money(order.amount),
        "customer": {"name": order.customer, "email": order.customer_email},
        "tracking_number": _tracking_number(order),
        "attention": {
            "flagged": order.needs_attention,
            "reason": order.attention_reason,
            "since": order.attention_since,
        },
        "created_at": order.created_at,
        "updated_at": order.updated_at,
    }


def _review(order: Order, events: list[OrderEvent]) -> Optional[dict[str, Any]]:
    """How the manual review went, read from the audit trail; None before the order reached it."""
    for event in events:
        if event.type == Type.REVIEW_APPROVED:
            return {
                "outcome": "approved",
                "decided_by": event.actor,
                "decided_at": event.created_at,
                "reason_code": "",
                "note": str(event.details.get("note", "")),
            }
    for event in events:
        if event.type in _ENDINGS and event.details.get("review_outcome"):
            return {
                "outcome": str(event.details["review_outcome"]),
                "decided_by": event.actor,
                "decided_at": event.created_at,
                "reason_code": str(event.details.get("reason_code", "")),
                "note": str(event.details.get("note", "")),
            }
    if order.status == OrderState.AWAITING_MANUAL_REVIEW:
        due = next(
            (
                str(e.details["review_due"])
                for e in events
                if e.to_status == OrderState.AWAITING_MANUAL_REVIEW and e.details.get("review_due")
            ),
            None,
        )
        return {
            "outcome": "pending",
            "decided_by": "",
            "decided_at": None,
            "due_at": due,
            "reason_code": "",
            "note": "",
        }
    return None


def _timeline_entry(event: OrderEvent) -> dict[str, Any]:
    return {
        "at": event.created_at,
        "type": event.type,
        "label": event.label,
        "actor": event.actor,
        "source": event.source,
        "from_status": event.from_status,
        "to_status": event.to_status,
        "message": event.message,
    }


def order_detail(order: Order) -> dict[str, Any]:
    """``order`` as loaded by ``order_for_api`` (lines and events prefetched)."""
    events = list(order.events.all())
    return {
        **order_summary(order),
        "status_changed_at": order.status_changed_at,
        "source": order.source,
        "shipping_address": order.address,
        "billing_address": order.billing_address,
        "client": {"ip": order.client_ip, "user_agent": order.user_agent},
        "line_items": [
            {
                "sku": line.sku,
                "name": line.name,
                "quantity": line.quantity,
                "unit_price": _money(line.unit_price),
                "line_total": _money(line.total),
            }
            for line in order.lines.all()
        ],
        "reasons": {
            "cancel_reason": order.cancel_reason,
            "cancel_reason_code": order.cancel_reason_code,
            "failure_reason": order.failure_reason,
        },
        "review": _review(order, events),
        "timeline": [_timeline_entry(event) for event in events],
    }


def order_for_api(order_id: str) -> Order:
    """The order with what ``order_detail`` reads; ApiError 404 if there is none."""
    order = (
        Order.objects.select_related("shipment")
        .prefetch_related(
            Prefetch("lines", OrderLine.objects.order_by("pk")),
            Prefetch("events", OrderEvent.objects.order_by("created_at", "pk")),
        )
        .filter(order_id=order_id)
        .first()
    )
    if order is None:
        raise not_found(order_id)
    return order


# -- the list: keyset pages on (updated_at, id) -------------------------------------------------------


def cursor_encode(order: Order) -> str:
    raw = f"{order.updated_at.isoformat()}|{order.pk}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def cursor_decode(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, pk = raw.split("|")
        updated_at = datetime.fromisoformat(stamp)
        if updated_at.tzinfo is None:
            raise ValueError("naive")
        return updated_at, int(pk)
    except (ValueError, binascii.Error, UnicodeDecodeError, OverflowError):
        raise ApiError(400, CURSOR_INVALID, CURSOR_INVALID_MESSAGE, {"cursor": cursor[:200]}) from None


def orders_page(
    *,
    status: Optional[str] = None,
    updated_since: Optional[datetime] = None,
    cursor: Optional[str] = None,
    limit: int,
) -> dict[str, Any]:
    """Orders by (updated_at, id), oldest change first: a page never skips or repeats an order
    because others were created meanwhile, and an order that changes moves to the end, where a
    client following the list with ``next_cursor`` sees it again."""
    queryset = Order.objects.select_related("shipment").order_by("updated_at", "pk")
    if status:
        queryset = queryset.filter(status=status)
    if updated_since is not None:
        queryset = queryset.filter(updated_at__gte=updated_since)
    if cursor:
        after, pk = cursor_decode(cursor)
        queryset = queryset.filter(Q(updated_at__gt=after) | Q(updated_at=after, pk__gt=pk))
    rows = list(queryset[: limit + 1])
    page = rows[:limit]
    return {
        "items": [order_summary(order) for order in page],
        "next_cursor": cursor_encode(page[-1]) if page else cursor,
        "has_more": len(rows) > limit,
    }
