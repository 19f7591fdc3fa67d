"""``{% load moments %}`` ``{{ order.created_at|moment:"Y-m-d H:i" }}``: a time in the reader's own
zone, with UTC on hover (orderweb.preferences.moment_html); ``|utc_text`` for titles."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.safestring import mark_safe

from orderweb.preferences import moment_html, utc_text

register = template.Library()


@register.filter
def moment(value: Any, fmt: str = "Y-m-d H:i") -> str:
    return mark_safe(moment_html(value, fmt))


@register.filter(name="utc_text")
def utc_text_filter(value: Any) -> str:
    """The moment in UTC as text ("2026-12-07 01:04:00 UTC"), for a title that already holds the
    local time."""
    return utc_text(value)
