"""Requests that no browser sends and Postgres cannot store are refused before any view runs."""

from __future__ import annotations

from typing import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest

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
