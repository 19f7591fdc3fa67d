"""Requests and responses of the API, as pydantic models (the OpenAPI document is made from
them). Amounts are decimal strings with a currency: a JSON number is refused, so no amount ever
passes through a float. Unknown fields are refused too, so a misspelt field is an error rather
than silently dropped.

The shapes here are checked first; the input rules themselves are the contracts'
(``temporal_app.contracts``), applied by the services, the same for every entry point.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Optional

from ninja import Schema
from pydantic import ConfigDict, Field, StrictInt, StringConstraints

from orderweb.models import CancelReason, OrderLabel
from temporal_app.contracts import (
    MAX_ADDRESS_LENGTH,
    MAX_CUSTOMER_LENGTH,
    MAX_EMAIL_LENGTH,
    MAX_LINE_NAME_LENGTH,
    MAX_LINE_QUANTITY,
    MAX_ORDER_ID_LENGTH,
    MAX_SKU_LENGTH,
    MAX_USER_AGENT_LENGTH,
)

MAX_LINES = 100
# The staff cancel codes (orderweb.models.CancelReason), so the schema lists them.
CancelReasonCode = Literal[tuple(CancelReason.values)]  # type: ignore[valid-type]
MAX_CANCEL_REASON_LENGTH = 500  # orderweb.actions.MAX_REASON_LENGTH

Money = Annotated[
    str,
    StringConstraints(pattern=r"^(0|[1-9][0-9]{0,9})(\.[0-9]{1,2})?$"),
    Field(
        description="A decimal amount as a string (at most 2 decimals, at most 9999999999.99), never a JSON number.",
        examples=["24.50"],
    ),
]
OrderId = Annotated[
    str,
    StringConstraints(pattern=rf"^[A-Za-z0-9._-]{{1,{MAX_ORDER_ID_LENGTH}}}$"),
    Field(
        description="The order's id, chosen by the client: 1 to 64 letters, digits, '-', '_' or '.'.",
        examples=["ORDER-1001"],
    ),
]
Currency = Annotated[
    str, StringConstraints(pattern=r"^[A-Z]{3}$"), Field(description="ISO 4217 code.", examples=["USD"])
]
Address = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_ADDRESS_LENGTH),
    Field(description="Lines separated by newlines; no other control characters.", examples=["1 Main St\nSpringfield"]),
]


class Strict(Schema):
    model_config = ConfigDict(extra="forbid")


# -- requests ---------------------------------------------------------------------------------------


class CustomerIn(Strict):
    name: Annotated[str, StringConstraints(min_length=1, max_length=MAX_CUSTOMER_LENGTH)] = Field(
        examples=["Ada Lovelace"]
    )
    email: Annotated[str, StringConstraints(max_length=MAX_EMAIL_LENGTH, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")] = (
        Field(examples=["ada@example.com"])
    )


class LineItemIn(Strict):
    sku: Annotated[str, StringConstraints(min_length=1, max_length=MAX_SKU_LENGTH)] = Field(examples=["SKU-1"])
    name: Annotated[str, StringConstraints(max_length=MAX_LINE_NAME_LENGTH)] = Field("", examples=["Widget"])
    quantity: StrictInt = Field(ge=1, le=MAX_LINE_QUANTITY, examples=[2])
    unit_price: Money


class ClientContextIn(Strict):
    """What the shop saw of the buyer, for review and risk rules."""

    ip: Optional[str] = Field(None, max_length=45, description="IPv4 or IPv6 address.", examples=["203.0.113.7"])
    user_agent: Optional[str] = Field(None, max_length=MAX_USER_AGENT_LENGTH, examples=["Mozilla/5.0"])


class OrderCreateIn(Strict):
    order_id: OrderId
    customer: CustomerIn
    shipping_address: Address
    billing_address: Optional[Annotated[str, StringConstraints(max_length=MAX_ADDRESS_LENGTH)]] = Field(
        None, description="Empty or absent: none given."
    )
    line_items: list[LineItemIn] = Field(min_length=1, max_length=MAX_LINES)
    currency: Currency
    total: Money = Field(description="Must equal the sum of quantity x unit_price over the lines.")
    client: Optional[ClientContextIn] = None


class CancelIn(Strict):
    reason: Annotated[str, StringConstraints(min_length=1, max_length=MAX_CANCEL_REASON_LENGTH)] = Field(
        examples=["customer asked"]
    )
    reason_code: Optional[CancelReasonCode] = Field(
        None, description="Why, as a code reports can count.", examples=["customer_request"]
    )


class AddressIn(Strict):
    address: Address


LabelKind = Literal[tuple(OrderLabel.Kind.values)]  # type: ignore[valid-type]


class LabelIn(Strict):
    """Set an outcome label, or remove it with ``remove: true`` (its history is kept)."""

    label: LabelKind = Field(description="How the order turned out.", examples=["chargeback"])
    note: Annotated[str, StringConstraints(max_length=2000)] = Field(
        "", description="Anything worth recording (plain text).", examples=["dispute opened by the card issuer"]
    )
    source_reference: Annotated[str, StringConstraints(max_length=200)] = Field(
        "", description="The other system's reference: a chargeback case, a ticket.", examples=["CB-2026-0042"]
    )
    remove: bool = Field(False, description="true: remove the label if it stands (the note says why).")


# -- responses --------------------------------------------------------------------------------------


class ProblemOut(Schema):
    """Every error: ``code`` is stable, ``message`` is for people, ``details`` depends on the code."""

    code: str = Field(examples=["not_found"])
    message: str
    details: dict[str, Any]


class CustomerOut(Schema):
    name: str
    email: str


class ClientContextOut(Schema):
    ip: Optional[str]
    user_agent: str


class LineItemOut(Schema):
    sku: str
    name: str
    quantity: int
    unit_price: str
    line_total: str


class ReasonsOut(Schema):
    """Why the order ended as it did (empty strings while it has not)."""

    cancel_reason: str
    cancel_reason_code: str
    failure_reason: str


class ReviewOut(Schema):
    outcome: str = Field(description="pending, approved, rejected, expired or cancelled.")
    decided_by: str
    decided_at: Optional[datetime]
    due_at: Optional[str] = Field(None, description="While pending: when the review times out.")
    reason_code: str
    note: str


class AttentionOut(Schema):
    flagged: bool = Field(description="The reconciler flagged the order for staff: its workflow cannot report.")
    reason: str
    since: Optional[datetime]


class TimelineEntryOut(Schema):
    at: datetime
    type: str
    label: str
    actor: str
    source: str
    from_status: str
    to_status: str
    message: str


class OrderSummaryOut(Schema):
    order_id: str
    status: str
    status_label: str
    currency: str
    total: str
    customer: CustomerOut
    tracking_number: Optional[str]
    attention: AttentionOut
    created_at: datetime
    updated_at: datetime


class OrderOut(OrderSummaryOut):
    status_changed_at: Optional[datetime]
    source: str
    shipping_address: str
    billing_address: str
    client: ClientContextOut
    line_items: list[LineItemOut]
    reasons: ReasonsOut
    review: Optional[ReviewOut]
    timeline: list[TimelineEntryOut]


class WarningOut(Schema):
    code: str
    message: str


class OrderCreatedOut(OrderOut):
    warnings: list[WarningOut] = Field(
        default_factory=list,
        description=(
            "Set when the order was saved but its workflow could not be started at once "
            "(temporal_unreachable): the workers start it when Temporal is back."
        ),
    )


class OrderPageOut(Schema):
    items: list[OrderSummaryOut]
    next_cursor: Optional[str] = Field(
        description=(
            "Pass as ?cursor= for the orders after this page; also when there are none yet, to follow "
            "changes later. Null only for an empty page."
        )
    )
    has_more: bool


class LabelOut(Schema):
    label: str
    note: str
    source_reference: str
    actor: str = Field(description="Who set it: a user or an API client's name.")
    source: str = Field(description="Where from: admin, review or api.")
    created_at: datetime
    removed_at: Optional[datetime]
    removed_by: str


class LabelsOut(Schema):
    order_id: str
    outcome: Literal["added", "already_set", "removed", "not_set"] = Field(
        description=(
            "added (201) / removed: this request changed it; already_set / not_set: it was so already, nothing changed."
        )
    )
    message: str
    labels: list[LabelOut] = Field(description="The order's standing labels.")
    history: list[LabelOut] = Field(description="Every label the order has had, removed ones included, oldest first.")


class ActionOut(Schema):
    outcome: str = Field(examples=["applied"])
    message: str
    order: OrderOut
