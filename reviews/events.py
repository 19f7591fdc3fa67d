"""Audit events of the review back office: one constructor per type (see ``orderweb.events``)."""

from __future__ import annotations

from orderweb.events import event_write
from orderweb.models import Order, OrderEvent


def review_claimed_event(*, order: Order, user) -> None:
    event_write(order=order, type=OrderEvent.Type.REVIEW_CLAIMED, source=OrderEvent.Source.WEB, user=user,
                message="claimed the review")


def review_released_event(*, order: Order, user, holder: str, reason: str = "") -> None:
    event_write(order=order, type=OrderEvent.Type.REVIEW_RELEASED, source=OrderEvent.Source.WEB, user=user,
                message=reason or f"released the review held by {holder}", details={"holder": holder})
