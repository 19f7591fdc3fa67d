"""Requests that no browser sends and Postgres cannot store are refused before any view runs; every
page is shown in its reader's time zone."""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.utils import timezone

NUL_REJECTED = "The request contains a NUL character, which no page or form accepts."


def _has_nul(params) -> bool:
    return any("\x00" in key or any("\x00" in value for value in values) for key, values in params.lists())


class RejectNulMiddleware:
    """Postgres text cannot hold NUL (U+0000): a NUL in the path or in a query or form parameter
    would reach a lookup (``?q=``, a list filter, ``/reviews/orders/<id>/``) and fail there as a
    500. Form fields already refuse NUL with their own message; anything else that carries one is
    malformed, so it gets 400 with a plain reason, and no view or query sees it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "\x00" in request.path or _has_nul(request.GET):
            return HttpResponseBadRequest(NUL_REJECTED, content_type="text/plain")
        return self.get_response(request)


class TimeZoneMiddleware:
    """Every time on a page in the person's own zone (orderweb.preferences: the browser's, or the
    one they chose), for the review pages and the admin alike; UTC until it is known."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        from orderweb.preferences import time_zone_of

        name = time_zone_of(request.session) if hasattr(request, "session") else None
        if name:
            timezone.activate(zoneinfo.ZoneInfo(name))
        else:
            timezone.deactivate()
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
