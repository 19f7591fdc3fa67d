"""A person's own settings, kept in their session: the time zone every page shows times in, and
whether the review pages' single-key shortcuts are on.

The time zone comes from the browser (the Intl API, posted by orderweb/static/orderweb/time-zone.js
on the first page of a session) unless the person chose one on the settings page; a choice wins
over the browser until they sign out. Stored in the session, these cost no query per request
(the session is read anyway); orderweb.middleware.TimeZoneMiddleware activates the zone.
"""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Optional

from django.utils import timezone
from django.utils.dateformat import format as date_format
from django.utils.html import format_html

TIME_ZONE_KEY = "time_zone"
TIME_ZONE_CHOSEN_KEY = "time_zone_chosen"  # the person picked it: the browser's guess no longer applies
SHORTCUTS_KEY = "shortcuts_off"

TIME_ZONE_UNKNOWN = "Unknown time zone: {name!r}. Choose one from the list."
UTC_TITLE_FORMAT = "Y-m-d H:i:s"


@lru_cache(maxsize=1)
def time_zone_names() -> tuple[str, ...]:
    """Every IANA zone this machine knows, sorted; "UTC" first."""
    return ("UTC", *sorted(name for name in zoneinfo.available_timezones() if name != "UTC"))


def time_zone_valid(name: object) -> bool:
    return isinstance(name, str) and name in time_zone_names()


def time_zone_of(session: Any) -> Optional[str]:
    """The zone the person's pages use, or None (not known yet: UTC)."""
    name = session.get(TIME_ZONE_KEY)
    return name if time_zone_valid(name) else None


def time_zone_chosen(session: Any) -> bool:
    return bool(session.get(TIME_ZONE_CHOSEN_KEY)) and time_zone_of(session) is not None


def preferences_time_zone_detected(*, session: Any, name: str) -> bool:
    """The browser's zone; ignored where the person chose one. False if ``name`` is no zone."""
    if not time_zone_valid(name):
        return False
    if not time_zone_chosen(session):
        session[TIME_ZONE_KEY] = name
    return True


def preferences_time_zone_choose(*, session: Any, name: str) -> None:
    """The person's choice; "" goes back to the browser's zone (detected again on the next page)."""
    if name == "":
        session.pop(TIME_ZONE_KEY, None)
        session.pop(TIME_ZONE_CHOSEN_KEY, None)
        return
    if not time_zone_valid(name):
        raise ValueError(TIME_ZONE_UNKNOWN.format(name=name))
    session[TIME_ZONE_KEY] = name
    session[TIME_ZONE_CHOSEN_KEY] = True


def shortcuts_on(session: Any) -> bool:
    return not session.get(SHORTCUTS_KEY, False)


def preferences_shortcuts_set(*, session: Any, on: bool) -> None:
    session[SHORTCUTS_KEY] = not on


# -- showing a moment -----------------------------------------------------------------------------


def as_datetime(value: Any) -> Optional[datetime]:
    """An aware datetime from a datetime or the ISO text the workflows report (UTC)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return value if timezone.is_aware(value) else value.replace(tzinfo=UTC)


def utc_text(value: Any) -> str:
    moment = as_datetime(value)
    return f"{date_format(moment.astimezone(UTC), UTC_TITLE_FORMAT)} UTC" if moment else ""


def moment_html(value: Any, fmt: str = "Y-m-d H:i") -> str:
    """``<time>`` in the active time zone (the person's), with the moment in UTC on hover and in
    its ``datetime`` attribute; "" for no moment."""
    moment = as_datetime(value)
    if moment is None:
        return ""
    utc = moment.astimezone(UTC)
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        utc.isoformat().replace("+00:00", "Z"),
        utc_text(utc),
        date_format(timezone.localtime(moment), fmt),
    )


def preferences_context(request: Any) -> dict[str, Any]:
    """Template context (settings.TEMPLATES): the reader's zone and shortcuts, for every page."""
    session = getattr(request, "session", None)
    if session is None:
        return {}
    zone = time_zone_of(session)
    return {"time_zone_name": zone or "UTC", "time_zone_known": zone is not None, "shortcuts_on": shortcuts_on(session)}
