"""Template filters of the review back office."""

from django import template

from reviews.selectors import reason_label as _reason_label

register = template.Library()


@register.filter
def reason_label(code: str) -> str:
    """A reason code (reject or cancel) as people read it."""
    return _reason_label(code or "")
