"""The API's operations. Thin: the key and its scope (``ApiKeyAuth``), the request's shape
(``schemas``), then one service or selector; every answer other than success is an ``ApiError``
turned into ``{code, message, details}`` by ``errors.install_handlers``.

(No ``from __future__ import annotations`` here: django-ninja reads the annotations at import.)
"""

from datetime import UTC, datetime
from enum import Enum
from typing import Any, Optional

from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from ninja import Header, NinjaAPI, Query, Status
from ninja.security import HttpBearer

from orderweb.actions import ActionOutcome, Outcome, Unanswered, order_address_change, order_cancel
from orderweb.api import errors
from orderweb.api.errors import ApiError, field_error, not_found
from orderweb.api.keys import api_key_authenticate, rate_limit_take, require_scope, unauthenticated
from orderweb.api.schemas import (
    ActionOut,
    AddressIn,
    CancelIn,
    LabelIn,
    LabelsOut,
    OrderCreatedOut,
    OrderCreateIn,
    OrderOut,
    OrderPageOut,
    ProblemOut,
)
from orderweb.api.selectors import order_detail, order_for_api, orders_page
from orderweb.api.services import api_order_create, api_order_label
from orderweb.models import ApiKey, Order, OrderEvent
from temporal_app.contracts import OrderState

MAX_PAGE_SIZE = 100
RFC3339 = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})$"
DEFAULT_PAGE_SIZE = 50

DESCRIPTION = """\
Create orders, follow them and ask their workflows to cancel or ship elsewhere.

Authenticate with an API key: `Authorization: Bearer <key>` (create one with
`python manage.py api_key_create NAME --scope create --scope read --scope act --scope label`, or in the
admin).
Every error is a JSON object `{code, message, details}`; match on `code`. Amounts are decimal
strings with a currency, never JSON numbers. See docs/api.md for idempotency and rate limits.
"""


class ApiKeyAuth(HttpBearer):
    """A valid, unrevoked key with ``scope``; counts the request against the key's rate limit
    (after verification, so a stranger cannot spend a client's budget)."""

    def __init__(self, scope: str) -> None:
        super().__init__()
        self.scope = scope

    def __call__(self, request: HttpRequest) -> Optional[ApiKey]:
        header = request.headers.get("Authorization", "")
        if not header:
            raise ApiError(401, errors.UNAUTHENTICATED, errors.MISSING_KEY, headers={"WWW-Authenticate": "Bearer"})
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            raise ApiError(401, errors.UNAUTHENTICATED, errors.MISSING_KEY, headers={"WWW-Authenticate": "Bearer"})
        return self.authenticate(request, token.strip())

    def authenticate(self, request: HttpRequest, token: str) -> Optional[ApiKey]:
        api_key = api_key_authenticate(token)
        if api_key is None:
            raise unauthenticated()
        request.api_rate = rate_limit_take(api_key)  # type: ignore[attr-defined]
        require_scope(api_key, self.scope)
        return api_key


api = NinjaAPI(
    title="Order back office API",
    version="1",
    description=DESCRIPTION,
    urls_namespace="api-v1",
    openapi_url="/openapi.json",
    docs_url="/docs",
)
errors.install_handlers(api)

# Every error an operation can answer, documented with its shape (schemathesis checks that the
# answers match).
_AUTH_ERRORS = {401: ProblemOut, 403: ProblemOut, 429: ProblemOut}
_READ_ERRORS = {400: ProblemOut, **_AUTH_ERRORS, 404: ProblemOut, 422: ProblemOut}
_WRITE_ERRORS = {**_READ_ERRORS, 409: ProblemOut}
_ACTION_ERRORS = {**_WRITE_ERRORS, 503: ProblemOut, 504: ProblemOut}

OrderStatus = Enum("OrderStatus", {state.name: state.value for state in OrderState}, type=str)


@api.post(
    "/orders",
    auth=ApiKeyAuth("create"),
    url_name="orders",
    tags=["orders"],
    response={201: OrderCreatedOut, 200: OrderCreatedOut, **_WRITE_ERRORS},
    summary="Create an order (idempotent by order id and Idempotency-Key)",
)
def orders_create(
    request: HttpRequest,
    response: HttpResponse,
    body: OrderCreateIn,
    idempotency_key: Optional[str] = Header(
        None,
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x20-\x7e]+$",
        description=(
            "1 to 255 printable ASCII characters; a repeat with the same key and payload gets the first response again."
        ),
    ),
) -> Any:
    """201 with the new order; 200 with the existing one when the same order id comes again with
    the same payload; 409 when the id (or the Idempotency-Key) was used for a different payload."""
    _known_query(request)
    answer = api_order_create(api_key=request.auth, data=body, idempotency_key=idempotency_key)
    if answer.replayed:
        response["Idempotent-Replayed"] = "true"
    return Status(answer.status, {**answer.body, "warnings": answer.warnings})


@api.get(
    "/orders",
    auth=ApiKeyAuth("read"),
    url_name="orders",
    tags=["orders"],
    response={200: OrderPageOut, **_READ_ERRORS},
    summary="List orders, oldest change first",
)
def orders_list(
    request: HttpRequest,
    status: Optional[OrderStatus] = Query(None, description="Only orders in this state."),
    updated_since: Optional[str] = Query(
        None,
        pattern=RFC3339,
        description=("Only orders changed at or after this moment: RFC 3339, with a time zone (2026-11-30T21:00:00Z)."),
        examples=["2026-11-30T21:00:00Z"],
    ),
    cursor: Optional[str] = Query(None, description="next_cursor of the previous page.", max_length=200),
    limit: int = Query(DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE),
) -> Any:
    """Keyset pages on (updated_at, id): stable while orders are created, and an order that
    changes moves to the end, so following ``next_cursor`` also follows changes."""
    _known_query(request, "status", "updated_since", "cursor", "limit")
    return orders_page(
        status=status.value if status else None,
        updated_since=_moment("query.updated_since", updated_since) if updated_since else None,
        cursor=cursor,
        limit=limit,
    )


@api.get(
    "/orders/{order_id}",
    auth=ApiKeyAuth("read"),
    url_name="order_detail",
    tags=["orders"],
    response={200: OrderOut, **_READ_ERRORS},
    summary="One order: state, reasons, review, timeline",
)
def order_get(request: HttpRequest, order_id: str) -> Any:
    _known_query(request)
    return order_detail(order_for_api(order_id))


def _known_query(request: HttpRequest, *allowed: str) -> None:
    """A parameter no endpoint reads is refused, not ignored: ``?stauts=cancelled`` must not
    answer every order."""
    unknown = sorted(set(request.GET) - set(allowed))
    if unknown:
        message = errors.UNKNOWN_PARAMETERS.format(names=", ".join(repr(name) for name in unknown))
        raise ApiError(
            400,
            errors.BAD_REQUEST,
            message,
            {"errors": [{"field": f"query.{name}", "message": message} for name in unknown]},
        )


def _moment(field: str, text: str) -> datetime:
    """An RFC 3339 moment (the pattern has checked its shape; the calendar is checked here)."""
    try:
        moment = datetime.fromisoformat(text)
        moment.astimezone(UTC)  # an offset that takes it out of the calendar
    except (ValueError, OverflowError):
        raise ApiError(
            400,
            errors.MOMENT_INVALID_CODE,
            errors.MOMENT_INVALID,
            {"errors": [{"field": field, "message": errors.MOMENT_INVALID}]},
        ) from None
    return moment


def _order(order_id: str) -> Order:
    order = Order.objects.filter(order_id=order_id).first()
    if order is None:
        raise not_found(order_id)
    return order


def _action_answer(outcome: ActionOutcome) -> Any:
    """200 applied; 409 refused (``code``: the RefusalCode); 503/504 when no answer could be had."""
    details = {"order_id": outcome.order.order_id, "workflow_status": outcome.workflow_status}
    if outcome.status == Outcome.APPLIED:
        return Status(
            200,
            {
                "outcome": outcome.status.value,
                "message": outcome.message,
                "order": order_detail(order_for_api(outcome.order.order_id)),
            },
        )
    if outcome.status == Outcome.REFUSED:
        raise ApiError(409, outcome.code or "refused", outcome.message, details)
    status = 504 if outcome.code == Unanswered.NO_ANSWER else 503
    raise ApiError(status, outcome.code, outcome.message, details)


@api.post(
    "/orders/{order_id}/cancel",
    auth=ApiKeyAuth("act"),
    url_name="order_cancel",
    tags=["actions"],
    response={200: ActionOut, **_ACTION_ERRORS},
    summary="Ask the order's workflow to cancel it",
)
def order_cancel_endpoint(request: HttpRequest, order_id: str, body: CancelIn) -> Any:
    """Answers once the workflow has decided: 200 cancelled (refunded if it was paid), 409 with
    the refusal's code (``cancel_too_late``, ``already_finished``...)."""
    _known_query(request)
    order = _order(order_id)
    try:
        outcome = order_cancel(
            order=order,
            reason=body.reason,
            actor=request.auth.name,
            source=OrderEvent.Source.API,
            reason_code=body.reason_code or "",
        )
    except ValidationError as err:
        raise field_error("body.reason", err.messages[0]) from None
    return _action_answer(outcome)


@api.post(
    "/orders/{order_id}/address",
    auth=ApiKeyAuth("act"),
    url_name="order_address",
    tags=["actions"],
    response={200: ActionOut, **_ACTION_ERRORS},
    summary="Ask the order's workflow to ship elsewhere",
)
def order_address_endpoint(request: HttpRequest, order_id: str, body: AddressIn) -> Any:
    """200 changed; 409 with the refusal's code (``address_too_late``, ``address_unchanged``...)."""
    _known_query(request)
    order = _order(order_id)
    try:
        outcome = order_address_change(
            order=order, address=body.address, actor=request.auth.name, source=OrderEvent.Source.API
        )
    except ValidationError as err:
        raise field_error("body.address", err.messages[0]) from None
    return _action_answer(outcome)


@api.post(
    "/orders/{order_id}/labels",
    auth=ApiKeyAuth("label"),
    url_name="order_labels",
    tags=["labels"],
    response={201: LabelsOut, 200: LabelsOut, **_WRITE_ERRORS},
    summary="Set or remove an outcome label (chargeback, fraud_confirmed, genuine_confirmed)",
)
def order_labels_endpoint(
    request: HttpRequest,
    response: HttpResponse,
    order_id: str,
    body: LabelIn,
    idempotency_key: Optional[str] = Header(
        None,
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x20-\x7e]+$",
        description=(
            "1 to 255 printable ASCII characters; a repeat with the same key and request gets the first response again."
        ),
    ),
) -> Any:
    """201 ``added``; 200 ``already_set`` when the label stands already (nothing changes: a label
    stands once). With ``"remove": true``, 200 ``removed``, or ``not_set`` when it did not stand.
    Each change is on the order's timeline (actor: this key's name, source: api) and sends the
    ``order.labelled`` / ``order.label_removed`` webhook event."""
    _known_query(request)
    answer = api_order_label(api_key=request.auth, order_id=order_id, data=body, idempotency_key=idempotency_key)
    if answer.replayed:
        response["Idempotent-Replayed"] = "true"
    return Status(answer.status, answer.body)
