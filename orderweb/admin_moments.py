"""Date-times in the admin in the reader's own zone (orderweb.preferences, activated by
orderweb.middleware.TimeZoneMiddleware), with the moment in UTC on hover: ``<time datetime title>``.

Django already converts every date-time it shows to the active zone; what it cannot do is say
which moment that is in UTC. ``MomentsAdmin`` turns each date-time column of a list into a
``<time>``, keeping its name (the column's CSS class), label and sorting; ``moment_field``
does the same for a read-only field of a change page.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from django.contrib import admin
from django.db import models
from django.http import HttpRequest

from orderweb.preferences import moment_html

MOMENT_FORMAT = "Y-m-d H:i:s"


def moment_field(name: str, description: str, fmt: str = MOMENT_FORMAT) -> Callable[[Any, Any], str]:
    """A display method for ModelAdmin: ``created = moment_field("created_at", "created")``."""

    @admin.display(description=description, ordering=name)
    def show(model_admin: Any, obj: Any) -> str:
        return moment_html(getattr(obj, name), fmt) or "—"

    return show


@cache
def _moment_column(model: type[models.Model], name: str) -> Callable[[Any], str]:
    field = model._meta.get_field(name)

    def column(obj: Any) -> str:
        return moment_html(getattr(obj, name), MOMENT_FORMAT) or "—"

    column.__name__ = name  # the column keeps its CSS class: column-<name>
    column.short_description = field.verbose_name  # type: ignore[attr-defined]
    column.admin_order_field = name  # type: ignore[attr-defined]
    return column


def _is_datetime(model: type[models.Model], name: Any) -> bool:
    if not isinstance(name, str):
        return False
    try:
        return isinstance(model._meta.get_field(name), models.DateTimeField)
    except Exception:  # a method or an annotation, not a field
        return False


class MomentsAdmin:
    """Mixed into a ModelAdmin: its list's date-time columns as ``<time>``, UTC on hover."""

    def get_list_display(self, request: HttpRequest) -> Any:
        model = self.model  # type: ignore[attr-defined]
        return [
            _moment_column(model, name) if _is_datetime(model, name) else name
            for name in super().get_list_display(request)
        ]  # type: ignore[misc]
