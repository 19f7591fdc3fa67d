"""Audit events of the review back office: one constructor per type (see ``orderweb.events``)."""

from __future__ import annotations

from datetime import timedelta

from orderweb.events import event_build, event_write
from orderweb.models import Order, OrderEvent
from reviews.selectors import duration_text


def review_claimed_event(*, order: Order, user) -> None:
    event_write(
        order=order,
        type=OrderEvent.Type.REVIEW_CLAIMED,
        source=OrderEvent.Source.WEB,
        user=user,
        message="claimed the review",
    )


def review_released_event(*, order: Order, user, holder: str, reason: str = "", event_key: str | None = None) -> None:
    event_write(
        order=order,
        type=OrderEvent.Type.REVIEW_RELEASED,
        source=OrderEvent.Source.WEB,
        user=user,
        message=reason or f"released the review held by {holder}",
        details={"holder": holder},
        event_key=event_key,
    )


def review_claim_extended_event(*, order: Order, user, lapses_at) -> None:
    event_write(
        order=order,
        type=OrderEvent.Type.REVIEW_CLAIM_EXTENDED,
        source=OrderEvent.Source.WEB,
        user=user,
        message=f"extended the claim until {lapses_at:%H:%M} UTC",
        details={"lapses_at": lapses_at.isoformat()},
    )


def review_claim_lapsed_event(*, order: Order, user, holder: str, idle_minutes: float) -> None:
    """A lapsed claim taken over (its audit row is written then: claims lapse at read time)."""
    event_write(
        order=order,
        type=OrderEvent.Type.REVIEW_CLAIM_LAPSED,
        source=OrderEvent.Source.WEB,
        user=user,
        message=f"{holder}'s claim lapsed after {idle_minutes:g} idle minutes; taken over",
        details={"holder": holder, "idle_minutes": idle_minutes},
    )


def review_reassigned_event(*, order: Order, user, holder: str, to: str) -> None:
    event_write(
        order=order,
        type=OrderEvent.Type.REVIEW_REASSIGNED,
        source=OrderEvent.Source.WEB,
        user=user,
        message=f"reassigned the review from {holder or 'nobody'} to {to}",
        details={"holder": holder, "to": to},
    )


def review_escalated_event(*, order: Order, told: list[str], waited_seconds: float, due_at) -> OrderEvent:
    """Written by the workflow's escalation (its timer fired); says who was told. Returned, so
    that a webhook delivery can name it in the same transaction."""
    emails = ", ".join(told)
    told_text = f"emailed {emails}; " if told else ""
    event = event_build(
        order=order,
        type=OrderEvent.Type.REVIEW_ESCALATED,
        source=OrderEvent.Source.WORKFLOW,
        actor="system",
        message=(
            f"undecided after {duration_text(timedelta(seconds=waited_seconds))}: escalated to the review leads "
            f"({told_text}the Escalated view; webhook subscribers)"
        ),
        details={"told": told, "waited_seconds": waited_seconds, "review_due": due_at.isoformat()},
        event_key="review:escalated",
    )
    event.save(force_insert=True)  # once: the caller's conditional update of the task guards it
    return event
