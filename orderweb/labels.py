"""Outcome labels: how an order turned out after the decision (issue 21).

A label is a fact learned later, from outside the order's workflow: the payment provider's
chargeback, a fraud the shop confirmed, a customer confirmed genuine. Staff set and remove them in
the admin and on the review page, other services over the API (``POST /api/v1/orders/{id}/labels``).
They change nothing about the order itself (no workflow is asked); they are what the leads'
insights and the risk policy's backtest measure decisions against.

- **One active label per kind and order.** Setting a kind that stands answers the standing one
  (``created`` False) and writes nothing: a repeated request, a second tab, a retried call are
  harmless. A partial unique constraint holds it; the order's row lock serialises the writers.
- **History kept.** Removing sets ``removed_at`` and ``removed_by``; the row stays, and the kind
  may be set again later (a new row).
- **Audited.** Each change is an ``OrderEvent`` (``label_added``, ``label_removed``) on the
  order's timeline with who (the user or the API client), when and from where (admin, review UI,
  API), in the same transaction as the label.
- **Webhooks.** With ``ORDER_WEBHOOK_URL`` set, each change queues a delivery in the same
  transaction (``order.labelled``, ``order.label_removed``), sent by the workers' sweep like the
  escalations (orderweb/webhooks.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from orderweb.events import event_build, pg_text
from orderweb.models import Order, OrderEvent, OrderLabel, WebhookDelivery
from temporal_app.contracts import has_control_chars

LABEL_PERMISSION = "orderweb.add_orderlabel"
MAX_LABEL_NOTE_LENGTH = 2000
MAX_SOURCE_REFERENCE_LENGTH = 200

LABEL_UNKNOWN = "Unknown label {label!r}: use chargeback, fraud_confirmed or genuine_confirmed."
LABEL_NOTE_TOO_LONG = f"A label's note is at most {MAX_LABEL_NOTE_LENGTH} characters."
LABEL_REFERENCE_TOO_LONG = f"A source reference is at most {MAX_SOURCE_REFERENCE_LENGTH} characters."
LABEL_REFERENCE_INVALID = "A source reference is one line of text, without control characters."
LABEL_NOT_ALLOWED = "You may not set or remove outcome labels."
LABEL_SET = "{order_id} is labelled {label}."
LABEL_ALREADY = "{order_id} was already labelled {label} (by {actor}); nothing changed."
LABEL_REMOVED = "The label {label} was removed from {order_id}."
LABEL_NOT_SET = "{order_id} has no {label} label; nothing changed."

# Where a change came from, as the timeline says it.
_EVENT_SOURCES = {
    OrderLabel.Source.ADMIN: OrderEvent.Source.ADMIN,
    OrderLabel.Source.REVIEW: OrderEvent.Source.WEB,
    OrderLabel.Source.API: OrderEvent.Source.API,
}


@dataclass(frozen=True)
class LabelChange:
    label: Optional[OrderLabel]  # the row set, found or removed (None: there was none to remove)
    changed: bool  # False: it stood already / there was nothing to remove
    message: str


def label_clean(*, label: object, note: object = "", source_reference: object = "") -> tuple[str, str, str]:
    """The label's kind, note and reference as stored, or ValidationError."""
    if label not in OrderLabel.Kind.values:
        raise ValidationError(LABEL_UNKNOWN.format(label=label), code="label_unknown")
    note = pg_text(note if isinstance(note, str) else "").strip()
    reference = pg_text(source_reference if isinstance(source_reference, str) else "").strip()
    if len(note) > MAX_LABEL_NOTE_LENGTH:
        raise ValidationError(LABEL_NOTE_TOO_LONG, code="note_too_long")
    if len(reference) > MAX_SOURCE_REFERENCE_LENGTH:
        raise ValidationError(LABEL_REFERENCE_TOO_LONG, code="reference_too_long")
    if has_control_chars(reference):
        raise ValidationError(LABEL_REFERENCE_INVALID, code="reference_invalid")
    return str(label), note, reference


def _actor(user, actor: str) -> str:
    if user is not None and user.is_authenticated:
        return user.get_username()
    return pg_text(actor)[:150] or "system"


def _check_allowed(user) -> None:
    """People need the permission; an API client's scope was checked by the API."""
    if user is not None and not user.has_perm(LABEL_PERMISSION):
        raise ValidationError(LABEL_NOT_ALLOWED, code="not_allowed")


def _webhook_queue(event: OrderEvent) -> None:
    if settings.ORDER_WEBHOOK_URL:
        WebhookDelivery.objects.bulk_create(
            [WebhookDelivery(event=event, url=settings.ORDER_WEBHOOK_URL)], ignore_conflicts=True
        )


def _event(
    *, order: Order, type: str, source: str, user, actor: str, message: str, row: OrderLabel, removed_note: str = ""
) -> None:
    """The change on the order's timeline (once per label row and change: its event key), and
    its webhook delivery, in the caller's transaction."""
    removed = type == OrderEvent.Type.LABEL_REMOVED
    details = {"label": row.label, "label_id": row.pk, "note": row.note, "source_reference": row.source_reference}
    if removed:
        details["removed_note"] = removed_note
    event = event_build(
        order=order,
        type=type,
        source=_EVENT_SOURCES[source],
        user=user,
        actor=actor,
        message=message,
        details=details,
        event_key=f"label:{row.pk}:{'removed' if removed else 'added'}",
    )
    event.save(force_insert=True)  # once: the label row's own change is guarded by the order's lock
    _webhook_queue(event)


def order_label_set(
    *, order: Order, label: str, source: str, user=None, actor: str = "", note: str = "", source_reference: str = ""
) -> LabelChange:
    """Set ``label`` on the order (``source``: an ``OrderLabel.Source``); the standing one if it
    is set already. ``user`` for people (needs the permission), ``actor`` for an API client."""
    _check_allowed(user)
    label, note, reference = label_clean(label=label, note=note, source_reference=source_reference)
    who = _actor(user, actor)
    kind = OrderLabel.Kind(label).label.lower()
    with transaction.atomic():
        Order.objects.select_for_update().filter(pk=order.pk).values_list("pk").get()  # one writer per order
        standing = OrderLabel.objects.filter(order=order, label=label, removed_at__isnull=True).first()
        if standing is not None:
            return LabelChange(
                standing, False, LABEL_ALREADY.format(order_id=order.order_id, label=kind, actor=standing.actor)
            )
        row = OrderLabel.objects.create(
            order=order, label=label, note=note, source_reference=reference, actor=who, source=source
        )
        message = f"labelled {kind}" + (f" ({reference})" if reference else "") + (f": {note}" if note else "")
        _event(
            order=order, type=OrderEvent.Type.LABEL_ADDED, source=source, user=user, actor=who, message=message, row=row
        )
    return LabelChange(row, True, LABEL_SET.format(order_id=order.order_id, label=kind))


def order_label_remove(
    *, order: Order, label: str, source: str, user=None, actor: str = "", note: str = ""
) -> LabelChange:
    """Remove the standing ``label`` (its row stays, with who removed it and when); nothing if
    there is none."""
    _check_allowed(user)
    label, note, _ = label_clean(label=label, note=note)
    who = _actor(user, actor)
    kind = OrderLabel.Kind(label).label.lower()
    with transaction.atomic():
        Order.objects.select_for_update().filter(pk=order.pk).values_list("pk").get()
        row = OrderLabel.objects.filter(order=order, label=label, removed_at__isnull=True).first()
        if row is None:
            return LabelChange(None, False, LABEL_NOT_SET.format(order_id=order.order_id, label=kind))
        row.removed_at, row.removed_by = timezone.now(), who
        row.save(update_fields=["removed_at", "removed_by"])
        _event(
            order=order,
            type=OrderEvent.Type.LABEL_REMOVED,
            source=source,
            user=user,
            actor=who,
            message=f"removed the label {kind}" + (f": {note}" if note else ""),
            row=row,
            removed_note=note,
        )
    return LabelChange(row, True, LABEL_REMOVED.format(order_id=order.order_id, label=kind))


def order_labels_current(order: Order) -> list[OrderLabel]:
    """The order's standing labels, oldest first."""
    return list(OrderLabel.objects.filter(order=order, removed_at__isnull=True).order_by("created_at", "pk"))
