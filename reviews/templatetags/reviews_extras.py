"""Template filters of the review back office."""

from django import template

from reviews.selectors import reason_label as _reason_label

register = template.Library()


@register.filter
def reason_label(code: str) -> str:
    """A reason code (reject or cancel) as people read it."""
    return _reason_label(code or "")


@register.filter
def seconds_text(seconds) -> str:
    """A duration in seconds as people read it ("1h 5m"); "—" for none."""
    from datetime import timedelta

    from reviews.selectors import duration_text

    return "—" if seconds is None else duration_text(timedelta(seconds=round(seconds)))


@register.filter
def percent(share) -> str:
    """A share (0 to 1) as a whole percentage; "—" for none."""
    return "—" if share is None else f"{share:.0%}"


@register.filter
def rate(value) -> str:
    return "—" if value is None else f"{value:.1f}"
