"""API keys: creation, lookup, scopes and the per-key rate limit.

A key reads ``ow_<prefix>_<secret>``: ``prefix`` is 8 hex characters, public, stored as is and
used to find the row; ``secret`` is 32 random bytes (``secrets.token_urlsafe``). The row keeps
the SHA-256 of the whole key, compared in constant time. A fast hash is right here: slow
password hashes (PBKDF2, argon2) exist because people choose guessable passwords, so an
attacker holding the hashes can try likely ones; a 256-bit random secret cannot be guessed, and
hashing it once costs microseconds on every request where PBKDF2 would cost the better part of
a second.

The rate limit is a fixed window per key and minute in Postgres (``ApiRateWindow``): one
``INSERT ... ON CONFLICT DO UPDATE ... RETURNING count`` per request, atomic, shared by every
web process, with no new infrastructure. It is counted after the key is verified, so nobody
can spend another client's budget by sending its public prefix.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Optional

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from orderweb.api.errors import (
    FORBIDDEN,
    INVALID_KEY,
    RATE_LIMITED,
    RATE_LIMITED_MESSAGE,
    SCOPE_MISSING,
    UNAUTHENTICATED,
    ApiError,
)
from orderweb.models import ApiKey, ApiRateWindow
from temporal_app.contracts import has_control_chars

KEY_PREFIX = "ow"
_KEY = re.compile(r"\Aow_(?P<prefix>[0-9a-f]{8})_(?P<secret>[A-Za-z0-9_-]{43})\Z")
MAX_NAME_LENGTH = 100
# last_used_at is written at most once a minute per key: a write per request would double the
# API's database writes for a date nobody needs to the second.
LAST_USED_RESOLUTION = timedelta(minutes=1)
# Counter rows older than this are deleted (by the first request of each new window).
RATE_WINDOW_KEEP = timedelta(hours=1)

NAME_INVALID = "A key's name is 1 to 100 characters, without control characters."
NAME_TAKEN = "An API key named {name!r} already exists."
SCOPE_UNKNOWN = "Unknown scope {scope!r}: use create, read, act or label."
NO_SCOPE = "Give the key at least one scope (create, read, act, label)."

SCOPE_ACTIONS = {
    ApiKey.Scope.CREATE: "create orders",
    ApiKey.Scope.READ: "read orders",
    ApiKey.Scope.ACT: "cancel orders or change their address",
    ApiKey.Scope.LABEL: "set or remove orders' outcome labels",
}


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _new_key() -> tuple[str, str]:
    prefix = secrets.token_hex(4)
    return prefix, f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"


def validate_key_name(name: object) -> str:
    name = name.strip() if isinstance(name, str) else ""
    if not name or len(name) > MAX_NAME_LENGTH or has_control_chars(name):
        raise ValidationError(NAME_INVALID, code="name_invalid")
    return name


def validate_scopes(scopes: Iterable[str]) -> set[str]:
    chosen = set()
    for scope in scopes:
        if scope not in ApiKey.Scope.values:
            raise ValidationError(SCOPE_UNKNOWN.format(scope=scope), code="scope_unknown")
        chosen.add(scope)
    if not chosen:
        raise ValidationError(NO_SCOPE, code="no_scope")
    return chosen


def api_key_create(
    *,
    name: str,
    scopes: Iterable[str],
    rate_limit_per_minute: Optional[int] = None,
    created_by=None,
) -> tuple[ApiKey, str]:
    """A new key; returns the row and the key itself, which is shown once and stored nowhere."""
    name = validate_key_name(name)
    chosen = validate_scopes(scopes)
    for _ in range(5):  # a prefix collision (1 in 4 billion per existing key) takes another
        prefix, key = _new_key()
        try:
            with transaction.atomic():
                row = ApiKey.objects.create(
                    name=name,
                    prefix=prefix,
                    key_hash=key_hash(key),
                    scope_create=ApiKey.Scope.CREATE in chosen,
                    scope_read=ApiKey.Scope.READ in chosen,
                    scope_act=ApiKey.Scope.ACT in chosen,
                    scope_label=ApiKey.Scope.LABEL in chosen,
                    rate_limit_per_minute=rate_limit_per_minute,
                    created_by=created_by if created_by is not None and created_by.is_authenticated else None,
                )
        except IntegrityError:
            if ApiKey.objects.filter(name=name).exists():
                raise ValidationError(NAME_TAKEN.format(name=name), code="name_taken") from None
            continue
        return row, key
    raise RuntimeError("could not find a free key prefix")  # pragma: no cover


def api_key_revoke(*, api_key: ApiKey) -> bool:
    """Revoke a key from now on; False if it already was."""
    revoked = ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    api_key.refresh_from_db(fields=["revoked_at"])
    return bool(revoked)


def api_key_authenticate(token: str) -> Optional[ApiKey]:
    """The active key this token is, or None. One indexed query."""
    match = _KEY.match(token)
    if not match:
        return None
    api_key = ApiKey.objects.filter(prefix=match["prefix"]).first()
    if api_key is None or not hmac.compare_digest(api_key.key_hash, key_hash(token)):
        return None
    if api_key.revoked_at is not None:
        return None
    now = timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at >= LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
    return api_key


def require_scope(api_key: ApiKey, scope: str) -> None:
    if scope not in api_key.scopes:
        raise ApiError(
            403,
            FORBIDDEN,
            SCOPE_MISSING.format(action=SCOPE_ACTIONS[scope], scope=scope),
            {"required_scope": scope, "scopes": api_key.scopes},
        )


def unauthenticated() -> ApiError:
    return ApiError(401, UNAUTHENTICATED, INVALID_KEY, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


# -- the rate limit --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RateState:
    limit: int
    remaining: int
    reset_seconds: int  # until the window ends

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_seconds),
        }


_COUNT_SQL = (
    "INSERT INTO {table} (api_key_id, window_start, count) VALUES (%s, %s, 1) "
    "ON CONFLICT (api_key_id, window_start) DO UPDATE SET count = {table}.count + 1 RETURNING count"
)


def rate_limit_take(api_key: ApiKey) -> RateState:
    """Count this request in the key's current minute; ApiError 429 once over the limit."""
    limit = api_key.rate_limit_per_minute or settings.API_RATE_LIMIT_PER_MINUTE
    now = timezone.now()
    window = now.replace(second=0, microsecond=0)
    with connection.cursor() as cursor:
        cursor.execute(_COUNT_SQL.format(table=ApiRateWindow._meta.db_table), [api_key.pk, window])
        (count,) = cursor.fetchone()
    if count == 1:  # the first request of a new window tidies the key's old ones
        ApiRateWindow.objects.filter(api_key=api_key, window_start__lt=window - RATE_WINDOW_KEEP).delete()
    reset = max(1, 60 - int((now - window).total_seconds()))
    state = RateState(limit, max(0, limit - count), reset)
    if count > limit:
        raise ApiError(
            429,
            RATE_LIMITED,
            RATE_LIMITED_MESSAGE.format(limit=limit, retry_after=reset),
            {"limit": limit, "retry_after": reset},
            headers={"Retry-After": str(reset), **state.headers()},
        )
    return state
