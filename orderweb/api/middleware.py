"""Every answer under ``/api/`` is JSON, also the ones the API's own code never sees: a path no
endpoint has (Django's 404), a method an endpoint does not take (405), a request refused before
any view (a NUL, ``orderweb.middleware``), a server error. Successful answers get the key's
rate-limit headers here too."""

from __future__ import annotations

import json
from collections.abc import Callable
from http import HTTPStatus

from django.http import HttpRequest, HttpResponse

from orderweb.api import errors

API_PREFIX = "/api/"

_CODES = {
    400: errors.BAD_REQUEST,
    401: errors.UNAUTHENTICATED,
    403: errors.FORBIDDEN,
    404: errors.NOT_FOUND,
    405: errors.METHOD_NOT_ALLOWED,
}


def _message(request: HttpRequest, response: HttpResponse) -> str:
    status = response.status_code
    if status == 404:
        return errors.PATH_NOT_FOUND.format(path=request.path)
    if status == 405:
        return errors.METHOD_NOT_ALLOWED_MESSAGE.format(method=request.method, allowed=response.get("Allow", ""))
    if status >= 500:
        return errors.INTERNAL_ERROR_MESSAGE
    text = (
        response.content.decode("utf-8", "replace").strip()
        if response.get("Content-Type", "").startswith("text/plain")
        else ""
    )
    return text[:500] or HTTPStatus(status).phrase


class ApiErrorEnvelopeMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not request.path.startswith(API_PREFIX):
            return response
        rate = getattr(request, "api_rate", None)
        if response.status_code >= 400 and not response.get("Content-Type", "").startswith("application/json"):
            code = _CODES.get(
                response.status_code, errors.INTERNAL_ERROR if response.status_code >= 500 else errors.BAD_REQUEST
            )
            replacement = HttpResponse(
                json.dumps(errors.problem_body(code, _message(request, response))),
                status=response.status_code,
                content_type="application/json",
            )
            for header in ("Allow", "Retry-After", "WWW-Authenticate"):
                if header in response:
                    replacement[header] = response[header]
            response = replacement
        if rate is not None:
            for name, value in rate.headers().items():
                response.setdefault(name, value)
        return response
