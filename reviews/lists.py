"""How an allow/block list entry and an order are matched: each field's value normalised to one
key (``list_key``), the same for the entry a lead types and for the order the rules score.

Pure (no database): reviews/risk.py computes the order's keys and matches them in its history
statement; reviews/services.py stores an entry's key."""

from __future__ import annotations

import ipaddress
from typing import Optional

from temporal_app.contracts import normalise_address

FIELDS = ("email", "address", "name", "ip")

KEY_EMPTY = "Enter the {field} to match."
KEY_IP_INVALID = "{value!r} is not an IPv4 or IPv6 address."
KEY_TOO_LONG = "At most 300 characters."


def list_key(field: str, value: Optional[str]) -> str:
    """The key a value is matched by: "" when there is nothing to match. Emails and names
    ignore case and surrounding or repeated spaces; an address is normalised as orders store it
    (each line trimmed, blank lines dropped) and compared ignoring case; an IP in its canonical
    form (so 2001:DB8::0:1 and 2001:db8::1 are one)."""
    value = (value or "").strip()
    if not value:
        return ""
    if field == "email":
        return value.lower()
    if field == "name":
        return " ".join(value.split()).lower()
    if field == "address":
        return normalise_address(value).upper()
    if field == "ip":
        try:
            return ipaddress.ip_address(value).compressed
        except ValueError:
            return ""
    raise ValueError(f"unknown list field {field!r}")


def list_key_error(field: str, value: str) -> Optional[str]:
    """Why a lead's value cannot be a list entry, or None."""
    value = (value or "").strip()
    if not value:
        return KEY_EMPTY.format(field=field)
    if len(value) > 300:
        return KEY_TOO_LONG
    if field == "ip" and not list_key("ip", value):
        return KEY_IP_INVALID.format(value=value[:60])
    return None
