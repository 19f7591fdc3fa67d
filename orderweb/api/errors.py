"""The API's errors: one shape, ``{code, message, details}``, for every status.

``code`` is stable (clients match it); ``message`` is for people and may be reworded. Refusals
from the workflow keep their ``RefusalCode`` value as ``code``.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

from django.http import HttpRequest, HttpResponse, JsonResponse

logger = logging.getLogger(__name__)

# Codes (the API's own; a workflow refusal uses its RefusalCode value).
BAD_REQUEST = "bad_request"
MALFORMED_JSON = "malformed_json"
IDEMPOTENCY_KEY_INVALID = "idempotency_key_invalid"
CURSOR_INVALID = "cursor_invalid"
MOMENT_INVALID_CODE = "moment_invalid"
UNAUTHENTICATED = "unauthenticated"
FORBIDDEN = "forbidden"
NOT_FOUND = "not_found"
METHOD_NOT_ALLOWED = "method_not_allowed"
VALIDATION_FAILED = "validation_failed"
TOTAL_MISMATCH = "total_mismatch"
ORDER_CONFLICT = "order_conflict"
ORDER_EXISTS = "order_exists"
ORDER_ID_TAKEN = "order_id_taken"  # another order holds the id in another case (orderweb.services)
IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
RATE_LIMITED = "rate_limited"
INTERNAL_ERROR = "internal_error"

# Messages (module constants, so tests assert on them).
MISSING_KEY = "Send an API key: Authorization: Bearer <key>."
INVALID_KEY = "The API key is not valid, or it was revoked."
SCOPE_MISSING = "This API key may not {action}: it needs the {scope!r} scope."
ORDER_NOT_FOUND = "There is no order {order_id!r}."
PATH_NOT_FOUND = "There is no such API endpoint: {path}."
METHOD_NOT_ALLOWED_MESSAGE = "{method} is not allowed here; use {allowed}."
BODY_NOT_JSON = "The request body is not valid JSON (UTF-8, an object)."
REQUEST_INVALID = "The request does not match the API's schema; see details.errors."
TOTAL_MISMATCH_MESSAGE = (
    "The total {total} {currency} does not match the line items, which add up to {lines_total} {currency}."
)
ORDER_CONFLICT_MESSAGE = "Order {order_id} already exists with other values for: {fields}. An order id names one order."
ORDER_EXISTS_MESSAGE = "Order {order_id} already exists; it was not created through the API."
IDEMPOTENCY_KEY_REUSED_MESSAGE = (
    "The Idempotency-Key {key!r} was used for a different request (other values for: {fields})."
)
IDEMPOTENCY_KEY_INVALID_MESSAGE = "An Idempotency-Key is 1 to 255 printable ASCII characters."
MOMENT_INVALID = "Not a moment in the calendar: give RFC 3339 with a time zone, such as 2026-11-30T21:00:00Z."
UNKNOWN_PARAMETERS = "Unknown query parameter(s) {names}: this endpoint does not read them."
CURSOR_INVALID_MESSAGE = "The cursor is not one this API gave out."
RATE_LIMITED_MESSAGE = "This API key sent more than {limit} requests in a minute; try again in {retry_after} s."
INTERNAL_ERROR_MESSAGE = "The server failed to answer this request; it has been logged."
BAD_REQUEST_MESSAGE = "The request could not be read: {detail}"


class ApiError(Exception):
    """An answer other than success, raised anywhere below an endpoint."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Optional[dict[str, Any]] = None,
        headers: Optional[dict[str, str]] = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        self.headers = headers or {}


def problem_body(code: str, message: str, details: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    return {"code": code, "message": message, "details": details or {}}


def problem_response(
    status: int,
    code: str,
    message: str,
    details: Optional[dict[str, Any]] = None,
    headers: Optional[dict[str, str]] = None,
) -> HttpResponse:
    response = JsonResponse(problem_body(code, message, details), status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def not_found(order_id: str) -> ApiError:
    return ApiError(404, NOT_FOUND, ORDER_NOT_FOUND.format(order_id=order_id), {"order_id": order_id})


def validation_errors(errors: list[dict[str, Any]]) -> list[dict[str, str]]:
    """pydantic's errors as ``[{field, message}]``, the field as a dotted path in the body or
    query (``body.customer.email``, ``query.limit``)."""
    out = []
    for error in errors:
        loc = [str(part) for part in error.get("loc", ())]
        if loc[:2] == ["body", "body"]:  # django-ninja names the body parameter itself
            loc = loc[1:]
        out.append({"field": ".".join(loc) or "body", "message": str(error.get("msg", "invalid"))})
    return out


def field_error(field: str, message: str, code: str = VALIDATION_FAILED, **details: Any) -> ApiError:
    return ApiError(422, code, message, {"errors": [{"field": field, "message": message}], **details})


def install_handlers(api) -> None:
    """Every exception an endpoint, the auth or ninja itself raises becomes ``{code, message,
    details}``; anything unexpected is logged and answered 500 ``internal_error`` (the tests
    fail on it: no input may cause one)."""
    from django.core.exceptions import SuspiciousOperation
    from django.http import Http404
    from ninja.errors import AuthenticationError, HttpError, ValidationError

    def api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
        return problem_response(exc.status, exc.code, exc.message, exc.details, exc.headers)

    def schema_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
        errors = validation_errors(exc.errors)
        if all(e["field"].split(".")[0] in ("query", "header", "path") for e in errors):
            # The URL or a header is malformed: 400. The body's content breaks a rule: 422.
            return problem_response(400, BAD_REQUEST, REQUEST_INVALID, {"errors": errors})
        return problem_response(422, VALIDATION_FAILED, REQUEST_INVALID, {"errors": errors})

    def http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
        if isinstance(exc, AuthenticationError):
            return problem_response(401, UNAUTHENTICATED, MISSING_KEY, headers={"WWW-Authenticate": "Bearer"})
        if exc.status_code == 400:  # ninja: the body could not be parsed
            return problem_response(400, MALFORMED_JSON, BODY_NOT_JSON)
        return problem_response(exc.status_code, BAD_REQUEST if exc.status_code < 500 else INTERNAL_ERROR, str(exc))

    def not_found_error(request: HttpRequest, exc: Http404) -> HttpResponse:
        return problem_response(404, NOT_FOUND, PATH_NOT_FOUND.format(path=request.path))

    def suspicious(request: HttpRequest, exc: SuspiciousOperation) -> HttpResponse:
        return problem_response(400, BAD_REQUEST, BAD_REQUEST_MESSAGE.format(detail=type(exc).__name__))

    def unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
        logger.exception("API %s %s failed", request.method, request.path)
        return problem_response(500, INTERNAL_ERROR, INTERNAL_ERROR_MESSAGE)

    api.add_exception_handler(ApiError, api_error)
    api.add_exception_handler(ValidationError, schema_error)
    api.add_exception_handler(HttpError, http_error)
    api.add_exception_handler(Http404, not_found_error)
    api.add_exception_handler(SuspiciousOperation, suspicious)
    api.add_exception_handler(Exception, unexpected)
