"""The contracts' input rules: one of each, for the workflow's boundary and for Django forms and
services (their limits are in contracts_names.py).

Part of ``temporal_app.contracts``, which re-exports it: import from there. Pure like it: standard
library only, no Django, no I/O (the workflow sandbox passes it through, temporal_app/worker.py).
No ``from __future__ import annotations``, as in every part of the contracts (contracts.py says why).
"""

import ipaddress
import re
import unicodedata
from decimal import Decimal, InvalidOperation
from typing import Optional

from temporal_app.contracts_names import (
    DEFAULT_CURRENCY,
    MAX_ADDRESS_LENGTH,
    MAX_AMOUNT,
    MAX_CUSTOMER_LENGTH,
    MAX_EMAIL_LENGTH,
    MAX_LINE_NAME_LENGTH,
    MAX_LINE_QUANTITY,
    MAX_ORDER_ID_LENGTH,
    MAX_SKU_LENGTH,
    MAX_USER_AGENT_LENGTH,
)
from temporal_app.contracts_payloads import LineItem

# -- Input rules: one of each, for the workflow's boundary and for Django forms and services -------

ORDER_ID_INVALID = "An order id is 1 to 64 characters: letters, digits, '-', '_' or '.'."
ADDRESS_EMPTY = "The address is empty."
ADDRESS_TOO_LONG = "The address is longer than {max} characters."
ADDRESS_CONTROL_CHARS = "The address contains control characters."
AMOUNT_INVALID = "The amount must be a number of at most 2 decimals, not negative."
TOTAL_TOO_LARGE = "The order total is too large: at most 9999999999.99."
CUSTOMER_INVALID = "The customer name is longer than 200 characters or contains control characters."
LINE_INVALID = "Line item {sku!r}: quantity must be a positive whole number and price not negative."
LINE_SKU_INVALID = "Line item {sku!r}: a SKU is 1 to 64 characters and a name at most 200, without control characters."
LINE_DUPLICATE_SKU = "SKU {sku!r} appears on more than one line; put the quantity on one line."
EMAIL_INVALID = "The customer's email address is not valid."
BILLING_ADDRESS_INVALID = "The billing address: {problem}"
CLIENT_IP_INVALID = "The client IP address is not an IPv4 or IPv6 address."
USER_AGENT_INVALID = "The user agent is longer than 500 characters or contains control characters."
CURRENCY_INVALID = "The currency must be a three-letter ISO 4217 code, such as USD or EUR."

_EMAIL = re.compile(r"\A[^@\s]+@[^@\s]+\.[^@\s]+\Z")
_CURRENCY = re.compile(r"\A[A-Z]{3}\Z")


def order_id_error(order_id: object) -> Optional[str]:
    """Why ``order_id`` cannot be an order id, or None. Ids are compared as given: callers
    that accept typed input strip it first."""
    if (
        not isinstance(order_id, str)
        or not 1 <= len(order_id) <= MAX_ORDER_ID_LENGTH
        or not all(ch.isascii() and (ch.isalnum() or ch in "-_.") for ch in order_id)
    ):
        return ORDER_ID_INVALID
    return None


def address_error(address: object) -> Optional[str]:
    """Why an address is unacceptable, or None if it is fine."""
    if not isinstance(address, str) or not address.strip():
        return ADDRESS_EMPTY
    if len(address) > MAX_ADDRESS_LENGTH:
        return ADDRESS_TOO_LONG.format(max=MAX_ADDRESS_LENGTH)
    # Category "C*" covers control, format, surrogate and unassigned code points; a plain
    # newline in a multi-line address is the one control character a person may type.
    if any(unicodedata.category(ch).startswith("C") and ch != "\n" for ch in address):
        return ADDRESS_CONTROL_CHARS
    return None


def normalise_address(address: str) -> str:
    """Trim each line and drop blank ones, so that the same address compares equal."""
    lines = (line.strip() for line in address.replace("\r\n", "\n").split("\n"))
    return "\n".join(line for line in lines if line)


def has_control_chars(text: str) -> bool:
    """Control characters (Postgres cannot store NUL) and lone surrogates (cannot be encoded)."""
    return any(unicodedata.category(ch) in ("Cc", "Cs") for ch in text)


def amount_parse(value: object) -> Decimal:
    """A money amount from text or a number; ValueError(AMOUNT_INVALID) if it is not one."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise ValueError(AMOUNT_INVALID)
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise ValueError(AMOUNT_INVALID) from None
    if not amount.is_finite() or amount < 0 or amount != amount.quantize(Decimal("0.01")):
        raise ValueError(AMOUNT_INVALID)
    if amount > MAX_AMOUNT:
        raise ValueError(TOTAL_TOO_LARGE)
    return amount.quantize(Decimal("0.01"))


def line_items_clean(items: "list[LineItem]") -> "list[LineItem]":
    """Checked, normalised line items; ValueError with the first problem's message."""
    lines: list[LineItem] = []
    for item in items:
        sku = item.sku.strip() if isinstance(item.sku, str) else ""
        name = item.name if isinstance(item.name, str) else ""
        quantity = item.quantity
        if isinstance(quantity, bool) or not isinstance(quantity, int) or not 0 < quantity <= MAX_LINE_QUANTITY:
            raise ValueError(LINE_INVALID.format(sku=sku))
        try:
            price = amount_parse(item.unit_price)
        except ValueError:
            raise ValueError(LINE_INVALID.format(sku=sku)) from None
        if not sku or len(sku) > MAX_SKU_LENGTH or len(name) > MAX_LINE_NAME_LENGTH or has_control_chars(sku + name):
            raise ValueError(LINE_SKU_INVALID.format(sku=sku))
        if any(line.sku == sku for line in lines):
            raise ValueError(LINE_DUPLICATE_SKU.format(sku=sku))
        lines.append(LineItem(sku, name, quantity, str(price)))
    return lines


def order_total(lines: "list[LineItem]", amount: object = None) -> Decimal:
    """The amount to charge: the given one, else the sum of the lines; ValueError if invalid."""
    if amount is not None and amount != "":
        return amount_parse(amount)
    total = sum((Decimal(line.unit_price) * line.quantity for line in lines), Decimal("0.00"))
    if total > MAX_AMOUNT:
        raise ValueError(TOTAL_TOO_LARGE)
    return total


def customer_error(customer: object) -> Optional[str]:
    if not isinstance(customer, str) or len(customer) > MAX_CUSTOMER_LENGTH or has_control_chars(customer):
        return CUSTOMER_INVALID
    return None


def customer_details_problems(
    *,
    email: object = "",
    billing_address: object = "",
    client_ip: object = "",
    user_agent: object = "",
    currency: object = DEFAULT_CURRENCY,
) -> list[str]:
    """Why the optional customer details cannot be taken (empty means "not given")."""
    problems = []
    if email and (
        not isinstance(email, str)
        or len(email) > MAX_EMAIL_LENGTH
        or has_control_chars(email)
        or not _EMAIL.match(email)
    ):
        problems.append(EMAIL_INVALID)
    if billing_address and address_error(billing_address):
        problems.append(BILLING_ADDRESS_INVALID.format(problem=address_error(billing_address)))
    if client_ip:
        try:
            ipaddress.ip_address(client_ip if isinstance(client_ip, str) else "")
        except ValueError:
            problems.append(CLIENT_IP_INVALID)
    if user_agent and (
        not isinstance(user_agent, str) or len(user_agent) > MAX_USER_AGENT_LENGTH or has_control_chars(user_agent)
    ):
        problems.append(USER_AGENT_INVALID)
    if not isinstance(currency, str) or not _CURRENCY.match(currency):
        problems.append(CURRENCY_INVALID)
    return problems
