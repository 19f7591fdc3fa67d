"""Creating orders over the API: ``order_create`` with idempotency.

- **By order id.** The first request creates the order (201) and keeps a fingerprint of what it
  sent (a hash per field, ``ApiOrderRequest``). The same id again with the same payload answers
  the order as it is now (200); with another payload, 409 ``order_conflict`` naming the fields
  that differ. Two identical requests at the same moment make one order: the second one's insert
  waits on the order id's unique index until the first commits, then finds it.
- **By ``Idempotency-Key``.** Stored per API client with the request's fingerprint and the first
  response, which a repeat gets back as it was (with ``Idempotent-Replayed: true``); the same key
  with another payload is 409 ``idempotency_key_reused``. Requests with the same key are
  serialised by a transaction-scoped advisory lock on (client, key). A key is remembered for
  ``API_IDEMPOTENCY_KEY_HOURS`` (24 h): then it may be used again, and the workers' hourly
  ``api_idempotency_keys_purge`` deletes it (with its copy of the response).

Fingerprints are keyed hashes (HMAC-SHA256 with a key derived from ``SECRET_KEY``), so the few
values behind a field (an email, an address, a total) cannot be found by hashing guesses.

The workflow starts after commit (``order_create``), as for every entry point; if Temporal is
unreachable then, the order is saved and the answer says so in ``warnings`` (the workers start
it later), so the client is told and nothing is half-done.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Optional

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac

from orderweb.api import errors
from orderweb.api.errors import ApiError, field_error
from orderweb.api.schemas import OrderCreateIn
from orderweb.api.selectors import order_detail, order_for_api
from orderweb.models import ApiIdempotencyKey, ApiKey, ApiOrderRequest, Order, OrderEvent
from orderweb.services import order_create, validate_address, validate_lines_and_total, validate_order_id
from temporal_app.client import TemporalUnavailable
from temporal_app.contracts import (
    CLIENT_IP_INVALID,
    CURRENCY_INVALID,
    EMAIL_INVALID,
    USER_AGENT_INVALID,
    LineItem,
    customer_details_problems,
    customer_error,
)
from temporal_app.registry import worker_stopping

logger = logging.getLogger(__name__)

WORKFLOW_NOT_STARTED = (
    "The order was saved, but Temporal is unreachable, so its workflow has not started yet; the "
    "workers start it as soon as Temporal is back. Nothing needs to be sent again."
)

# Which request field each of the contracts' customer-detail messages is about.
_DETAIL_FIELDS = {
    EMAIL_INVALID: "customer.email",
    CLIENT_IP_INVALID: "client.ip",
    USER_AGENT_INVALID: "client.user_agent",
    CURRENCY_INVALID: "currency",
}


@dataclass
class CreateAnswer:
    status: int  # 201 created, 200 the existing order (or a replay of either)
    body: dict[str, Any]
    replayed: bool = False
    warnings: list[dict[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class CheckedOrder:
    """An API create request after the contracts' rules, normalised."""

    order_id: str
    customer: str
    email: str
    address: str
    billing_address: str
    currency: str
    total: Decimal
    lines: list[LineItem]
    client_ip: str
    user_agent: str

    def fingerprint(self, secret: Optional[str] = None) -> dict[str, str]:
        """A keyed hash of each field's value, to name what differs without keeping a second
        copy of the customer's data (``fingerprint_keyed``)."""
        values: dict[str, Any] = {
            "order_id": self.order_id,
            "customer.name": self.customer,
            "customer.email": self.email,
            "shipping_address": self.address,
            "billing_address": self.billing_address,
            "currency": self.currency,
            "total": str(self.total),
            "line_items": [[line.sku, line.name, line.quantity, line.unit_price] for line in self.lines],
            "client.ip": self.client_ip,
            "client.user_agent": self.user_agent,
        }
        return {
            name: fingerprint_keyed(
                hashlib.sha256(json.dumps(value, ensure_ascii=True).encode()).hexdigest()[:32], secret=secret
            )
            for name, value in values.items()
        }


FINGERPRINT_SALT = "orderweb.api.fingerprint"


def fingerprint_keyed(digest: str, *, secret: Optional[str] = None) -> str:
    """One field's fingerprint: an HMAC-SHA256, keyed from SECRET_KEY (or ``secret``), of its
    value's SHA-256. Keying the digest rather than the value let migration 0013 key the
    fingerprints stored before, which held the bare digest."""
    return salted_hmac(FINGERPRINT_SALT, digest, secret=secret, algorithm="sha256").hexdigest()[:32]


def _differing(checked: CheckedOrder, theirs: dict[str, str]) -> list[str]:
    """The fields whose fingerprint differs from the stored one; with SECRET_KEY rotated, a
    fingerprint stored under a key in SECRET_KEY_FALLBACKS still matches."""
    first: Optional[list[str]] = None
    for secret in [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]:
        mine = checked.fingerprint(secret)
        differing = sorted(name for name in set(mine) | set(theirs) if mine.get(name) != theirs.get(name))
        if not differing:
            return []
        first = differing if first is None else first
    return first or []


def order_request_check(data: OrderCreateIn) -> CheckedOrder:
    """The contracts' rules, each failure a 422 naming its field; the total must be the lines'."""

    def check(field_name: str, fn, *args):
        try:
            return fn(*args)
        except ValidationError as err:
            raise field_error(field_name, err.messages[0]) from None

    order_id = check("order_id", validate_order_id, data.order_id)
    address = check("shipping_address", validate_address, data.shipping_address)
    billing = data.billing_address or ""
    if billing:
        billing = check("billing_address", validate_address, billing)
    if customer_error(data.customer.name):
        raise field_error("customer.name", customer_error(data.customer.name) or "")
    client_ip = (data.client.ip if data.client else None) or ""
    user_agent = (data.client.user_agent if data.client else None) or ""
    problems = customer_details_problems(
        email=data.customer.email,
        billing_address=billing,
        client_ip=client_ip,
        user_agent=user_agent,
        currency=data.currency,
    )
    for problem in problems:
        raise field_error(_DETAIL_FIELDS.get(problem, "billing_address"), problem)
    items = [LineItem(line.sku, line.name, line.quantity, line.unit_price) for line in data.line_items]
    lines, lines_total = check("line_items", validate_lines_and_total, items, None)
    total = check("total", validate_lines_and_total, [], data.total)[1]
    if total != lines_total:
        message = errors.TOTAL_MISMATCH_MESSAGE.format(total=total, lines_total=lines_total, currency=data.currency)
        raise field_error(
            "total",
            message,
            code=errors.TOTAL_MISMATCH,
            total=str(total),
            lines_total=str(lines_total),
            currency=data.currency,
        )
    return CheckedOrder(
        order_id=order_id,
        customer=data.customer.name,
        email=data.customer.email,
        address=address,
        billing_address=billing,
        currency=data.currency,
        total=total,
        lines=lines,
        client_ip=str(ipaddress.ip_address(client_ip)) if client_ip else "",
        user_agent=user_agent,
    )


def api_order_create(*, api_key: ApiKey, data: OrderCreateIn, idempotency_key: Optional[str] = None) -> CreateAnswer:
    checked = order_request_check(data)
    answer: Optional[CreateAnswer] = None
    try:
        with transaction.atomic():
            answer = _create_or_find(api_key, checked, idempotency_key)
    except TemporalUnavailable as err:  # raised by the start after commit: the order is saved
        if answer is None:
            raise
        logger.warning("order %s saved over the API, workflow not started: %s", checked.order_id, err)
        answer.warnings.append({"code": "temporal_unreachable", "message": WORKFLOW_NOT_STARTED})
    return answer


def _create_or_find(api_key: ApiKey, checked: CheckedOrder, idempotency_key: Optional[str]) -> CreateAnswer:
    fingerprint = checked.fingerprint()
    if idempotency_key is not None:
        with connection.cursor() as cursor:  # one request per (client, key) at a time
            cursor.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                [f"orderweb.api.idempotency:{api_key.pk}:{idempotency_key}"],
            )
        earlier = ApiIdempotencyKey.objects.filter(api_key=api_key, key=idempotency_key).first()
        if earlier is not None and earlier.created_at <= idempotency_key_cutoff():
            earlier.delete()  # expired: the key is free again (the purge had not come by yet)
            earlier = None
        if earlier is not None:
            return _replay(earlier, checked)
    existing = Order.objects.filter(order_id=checked.order_id).select_related("api_request").first()
    if existing is not None:
        answer = _existing(existing, checked)
    else:
        try:
            with transaction.atomic():  # a lost race rolls back to here, the rest stays usable
                order = order_create(
                    order_id=checked.order_id,
                    address=checked.address,
                    line_items=checked.lines,
                    amount=checked.total,
                    customer=checked.customer,
                    customer_email=checked.email,
                    billing_address=checked.billing_address,
                    client_ip=checked.client_ip,
                    user_agent=checked.user_agent,
                    currency=checked.currency,
                    actor=api_key.name,
                    source=OrderEvent.Source.API,
                )
                ApiOrderRequest.objects.create(order=order, api_key=api_key, fingerprint=fingerprint)
            answer = CreateAnswer(201, _jsonable(order_detail(order_for_api(order.order_id))))
        except ValidationError as err:
            if err.code == "order_id_taken":  # the id in another case: another order, refused
                raise ApiError(
                    409, errors.ORDER_ID_TAKEN, err.messages[0], {"order_id": checked.order_id, **err.params}
                ) from None
            if err.code != "order_exists":  # checked above: only a lost race gets here
                raise field_error("body", err.messages[0]) from None
            answer = _existing(Order.objects.select_related("api_request").get(order_id=checked.order_id), checked)
    if idempotency_key is not None:
        ApiIdempotencyKey.objects.create(
            api_key=api_key,
            key=idempotency_key,
            fingerprint=fingerprint,
            status_code=answer.status,
            response=answer.body,
            order=Order.objects.get(order_id=checked.order_id),
        )
    return answer


def _existing(order: Order, checked: CheckedOrder) -> CreateAnswer:
    try:
        request = order.api_request
    except ApiOrderRequest.DoesNotExist:
        raise ApiError(
            409,
            errors.ORDER_EXISTS,
            errors.ORDER_EXISTS_MESSAGE.format(order_id=order.order_id),
            {"order_id": order.order_id, "source": order.source},
        ) from None
    differing = _differing(checked, request.fingerprint)
    if differing:
        raise ApiError(
            409,
            errors.ORDER_CONFLICT,
            errors.ORDER_CONFLICT_MESSAGE.format(order_id=order.order_id, fields=", ".join(differing)),
            {"order_id": order.order_id, "differing_fields": differing},
        )
    return CreateAnswer(200, _jsonable(order_detail(order_for_api(order.order_id))))


def _replay(earlier: ApiIdempotencyKey, checked: CheckedOrder) -> CreateAnswer:
    differing = _differing(checked, earlier.fingerprint)
    if differing:
        raise ApiError(
            409,
            errors.IDEMPOTENCY_KEY_REUSED,
            errors.IDEMPOTENCY_KEY_REUSED_MESSAGE.format(key=earlier.key, fields=", ".join(differing)),
            {"idempotency_key": earlier.key, "differing_fields": differing},
        )
    return CreateAnswer(earlier.status_code, earlier.response, replayed=True)


def _jsonable(body: dict[str, Any]) -> dict[str, Any]:
    """The response as JSON holds it (dates as ISO strings), so a replay is byte-for-byte the
    same document."""
    from orderweb.api.schemas import OrderOut

    return OrderOut.model_validate(body).model_dump(mode="json")


# -- expiry ----------------------------------------------------------------------------------------


def idempotency_key_cutoff() -> datetime:
    """Keys stored at or before this moment are expired."""
    return timezone.now() - timedelta(hours=settings.API_IDEMPOTENCY_KEY_HOURS)


def api_idempotency_keys_purge(*, older_than: Optional[datetime] = None, batch: int = 1000) -> int:
    """Delete expired Idempotency-Keys (and their copy of the response), ``batch`` rows per
    statement, each its own transaction, until none is left; returns how many.

    Safe to run from several processes at once (its schedule runs it once an hour, an operator
    may run it too): each statement
    takes the rows it deletes with ``FOR UPDATE SKIP LOCKED``, so two purges share the work
    instead of waiting on each other, and a request that is replaying a key is not held up."""
    cutoff = older_than or idempotency_key_cutoff()
    table = connection.ops.quote_name(ApiIdempotencyKey._meta.db_table)
    sql = (
        f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE created_at <= %s "
        f"ORDER BY created_at LIMIT %s FOR UPDATE SKIP LOCKED)"
    )
    deleted = 0
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [cutoff, batch])
            count = cursor.rowcount
        deleted += count
        if count < batch or worker_stopping():  # shutting down: the next run deletes the rest
            return deleted


# -- outcome labels (issue 21) ----------------------------------------------------------------------


def _values_fingerprint(values: dict[str, Any], secret: Optional[str] = None) -> dict[str, str]:
    return {
        name: fingerprint_keyed(
            hashlib.sha256(json.dumps(value, ensure_ascii=True).encode()).hexdigest()[:32], secret=secret
        )
        for name, value in values.items()
    }


def _values_differing(values: dict[str, Any], theirs: dict[str, str]) -> list[str]:
    """As ``_differing``, for a request given as its plain values."""
    first: Optional[list[str]] = None
    for secret in [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]:
        mine = _values_fingerprint(values, secret)
        differing = sorted(name for name in set(mine) | set(theirs) if mine.get(name) != theirs.get(name))
        if not differing:
            return []
        first = differing if first is None else first
    return first or []


def api_order_label(
    *, api_key: ApiKey, order_id: str, data: Any, idempotency_key: Optional[str] = None
) -> CreateAnswer:
    """Set (201 ``added``, 200 ``already_set``) or remove (200 ``removed``/``not_set``) an outcome
    label for an API client (``orderweb.labels``). Idempotent by nature (a label stands once), and
    by ``Idempotency-Key`` as for orders: the same key and request replays the first answer; the
    same key for another request (another label, another order, an order creation) is 409
    ``idempotency_key_reused``."""
    from orderweb.labels import label_clean, order_label_remove, order_label_set
    from orderweb.models import OrderLabel

    order = Order.objects.filter(order_id=order_id).first()
    if order is None:
        raise errors.not_found(order_id)
    try:
        label, note, reference = label_clean(label=data.label, note=data.note, source_reference=data.source_reference)
    except ValidationError as err:
        field_name = {
            "note_too_long": "note",
            "reference_too_long": "source_reference",
            "reference_invalid": "source_reference",
        }.get(err.code, "label")
        raise field_error(f"body.{field_name}", err.messages[0]) from None
    values = {
        "operation": "label",
        "order_id": order.order_id,
        "label": label,
        "note": note,
        "source_reference": reference,
        "remove": bool(data.remove),
    }
    with transaction.atomic():
        if idempotency_key is not None:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                    [f"orderweb.api.idempotency:{api_key.pk}:{idempotency_key}"],
                )
            earlier = ApiIdempotencyKey.objects.filter(api_key=api_key, key=idempotency_key).first()
            if earlier is not None and earlier.created_at <= idempotency_key_cutoff():
                earlier.delete()
                earlier = None
            if earlier is not None:
                differing = _values_differing(values, earlier.fingerprint)
                if differing:
                    raise ApiError(
                        409,
                        errors.IDEMPOTENCY_KEY_REUSED,
                        errors.IDEMPOTENCY_KEY_REUSED_MESSAGE.format(key=earlier.key, fields=", ".join(differing)),
                        {"idempotency_key": earlier.key, "differing_fields": differing},
                    )
                return CreateAnswer(earlier.status_code, earlier.response, replayed=True)
        source = OrderLabel.Source.API
        if data.remove:
            change = order_label_remove(order=order, label=label, source=source, actor=api_key.name, note=note)
            outcome = "removed" if change.changed else "not_set"
        else:
            change = order_label_set(
                order=order, label=label, source=source, actor=api_key.name, note=note, source_reference=reference
            )
            outcome = "added" if change.changed else "already_set"
        status = 201 if outcome == "added" else 200
        body = labels_body(order, outcome=outcome, message=change.message)
        if idempotency_key is not None:
            ApiIdempotencyKey.objects.create(
                api_key=api_key,
                key=idempotency_key,
                fingerprint=_values_fingerprint(values),
                status_code=status,
                response=body,
                order=order,
            )
    return CreateAnswer(status, body)


def labels_body(order: Order, *, outcome: str, message: str) -> dict[str, Any]:
    """The labels answer as JSON holds it (one query: the order's label rows)."""
    from orderweb.api.schemas import LabelsOut

    rows = list(order.labels.order_by("created_at", "pk"))
    shown = [
        {
            "label": r.label,
            "note": r.note,
            "source_reference": r.source_reference,
            "actor": r.actor,
            "source": r.source,
            "created_at": r.created_at,
            "removed_at": r.removed_at,
            "removed_by": r.removed_by,
        }
        for r in rows
    ]
    return LabelsOut.model_validate(
        {
            "order_id": order.order_id,
            "outcome": outcome,
            "message": message,
            "labels": [shown[i] for i, r in enumerate(rows) if r.removed_at is None],
            "history": shown,
        }
    ).model_dump(mode="json")
