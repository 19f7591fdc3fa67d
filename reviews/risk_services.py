"""The leads' changes to the risk rules: allow/block list entries, policy drafts and their
activation. Each is a service that checks who may, changes the rows and writes its audit row
(``RiskAuditEvent``) in one transaction. Error messages are constants the tests assert on.

A policy is immutable once active: only a draft is edited, and activating one retires the
active one in the same transaction (``risk_policy_one_active`` holds it). Activating needs a
backtest of the draft as it is now (same ``policy_fingerprint``) run within
``BACKTEST_FRESH``, or a reason the audit keeps.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Optional

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from orderweb.events import pg_text
from orderweb.models import Order
from reviews.lists import list_key, list_key_error
from reviews.models import RiskAuditEvent, RiskBacktest, RiskListEntry, RiskPolicy
from reviews.risk import POINTS, RULE_LABELS, RiskThresholds
from temporal_app.contracts import normalise_address

LEAD_PERMISSION = "reviews.lead_review"
BACKTEST_FRESH = timedelta(hours=24)

NOT_LEAD = "Only a review lead can change the allow and block lists or the risk policy."
LIST_REASON_REQUIRED = "Say why: the reason shows on every order the entry matches."
LIST_REASON_TOO_LONG = "The reason is longer than 500 characters."
LIST_EXPIRY_PAST = "The expiry must be in the future."
LIST_DUPLICATE = "{value} is already on the {kind} list ({field}), added by {by} on {date:%d %b %Y}."
LIST_ADDED = "{value} is on the {kind} list ({field}) from now on."
LIST_ALREADY_REMOVED = "That entry was already removed."
LIST_REMOVED = "{value} is off the {kind} list ({field})."
LIST_ORDER_HAS_NO = "{order_id} has no {field} to put on a list."
POLICY_NOT_DRAFT = "Policy v{version} is {status}: only a draft can be changed. Make a new draft from it."
POLICY_DRAFTED = "Draft v{version} made from v{based_on}."
POLICY_SAVED = "Draft v{version} saved."
POLICY_ACTIVATED = "Policy v{version} is active; v{previous} is retired."
POLICY_ACTIVATED_FIRST = "Policy v{version} is active."
POLICY_NEEDS_BACKTEST = (
    "Run a backtest of v{version} as it is now first (within the last 24 hours), or give a reason for "
    "activating it without one."
)
POINTS_INVALID = "{rule}: points are a whole number from 0 to 100."
POINTS_ALLOW = "The allow list weighs nothing (0 points): it lets an order through instead."
POINTS_BLOCK = "The block list must reach high risk on its own: at least {high} points (the high level)."
THRESHOLD_INVALID = "{name}: {problem}."
LEVELS_INVALID = "The levels need 0 < medium < high ≤ 100."

# How each threshold is checked: (type, minimum, maximum, what people read when it is out of range).
THRESHOLD_RULES: dict[str, tuple[type, float, float, str]] = {
    "amount_vs_usual_factor": (float, 1.0, 1000.0, "a factor from 1 to 1000"),
    "usual_min_orders": (int, 1, 1000, "a whole number from 1 to 1000"),
    "shop_percentile": (float, 0.5, 0.999, "a share between 0.5 and 0.999, e.g. 0.95"),
    "shop_sample": (int, 10, 100_000, "a whole number from 10 to 100,000"),
    "shop_min_sample": (int, 1, 100_000, "a whole number from 1 to 100,000"),
    "history_sample": (int, 10, 100_000, "a whole number from 10 to 100,000"),
    "window_hours": (float, 0.5, 24 * 30, "hours, from 0.5 to 720"),
    "orders_per_address": (int, 2, 1000, "a whole number from 2 to 1000"),
    "orders_per_customer": (int, 2, 1000, "a whole number from 2 to 1000"),
    "quantity_spike": (int, 2, 1_000_000, "a whole number from 2 to 1,000,000"),
    "level_medium": (int, 1, 99, "a score from 1 to 99"),
    "level_high": (int, 2, 100, "a score from 2 to 100"),
    "review_threshold": (int, 1, 100, "a score from 1 to 100"),
}


def may_lead(user) -> bool:
    return bool(user and user.is_active and user.has_perm(LEAD_PERMISSION))


def _require_lead(user) -> None:
    if not may_lead(user):
        raise ValidationError(NOT_LEAD, code="not_lead")


def _audit(
    *,
    type: str,
    user,
    source: str,
    message: str,
    entry=None,
    policy=None,
    order=None,
    details: Optional[dict] = None,
    actor: str = "",
) -> RiskAuditEvent:
    return RiskAuditEvent.objects.create(
        type=type,
        user=user if getattr(user, "pk", None) else None,
        actor=actor or (user.get_username() if user is not None else "system"),
        source=source,
        entry=entry,
        policy=policy,
        order=order,
        message=message,
        details=details or {},
    )


# -- the allow and block lists -------------------------------------------------------------------


def risk_list_entry_add(
    *,
    user,
    kind: str,
    field: str,
    value: str,
    reason: str,
    expires_at: Optional[datetime] = None,
    order: Optional[Order] = None,
    source: str = "web",
) -> RiskListEntry:
    """Put a value on the allow or block list (a lead). The rules read it from the next order
    validated on; an order already assessed keeps its reasons."""
    _require_lead(user)
    if kind not in RiskListEntry.Kind.values or field not in RiskListEntry.Field.values:
        raise ValidationError("Unknown list or field.", code="invalid")
    value = pg_text(value or "").strip()
    problem = list_key_error(field, value)
    if problem:
        raise ValidationError(problem, code="value_invalid")
    reason = pg_text(reason or "").strip()
    if not reason:
        raise ValidationError(LIST_REASON_REQUIRED, code="reason_required")
    if len(reason) > 500:
        raise ValidationError(LIST_REASON_TOO_LONG, code="reason_too_long")
    now = timezone.now()
    if expires_at is not None and expires_at <= now:
        raise ValidationError(LIST_EXPIRY_PAST, code="expiry_past")
    key = list_key(field, value)
    if field == "ip":
        value = key
    elif field == "address":
        value = normalise_address(value)  # as orders store it
    field_label = RiskListEntry.Field(field).label.lower()
    with transaction.atomic():
        # An entry that expired still holds its place in the unique index: it is removed first.
        for stale in RiskListEntry.objects.select_for_update().filter(
            kind=kind, field=field, value_key=key, removed_at__isnull=True, expires_at__lte=now
        ):
            _remove(stale, user=None, reason="expired", source=source, now=now, actor="system")
        live = RiskListEntry.objects.filter(kind=kind, field=field, value_key=key, removed_at__isnull=True).first()
        if live is not None:
            raise ValidationError(
                LIST_DUPLICATE.format(
                    value=live.value, kind=kind, field=field_label, by=live.created_by_name, date=live.created_at
                ),
                code="duplicate",
            )
        entry = RiskListEntry.objects.create(
            kind=kind,
            field=field,
            value=value,
            value_key=key,
            reason=reason,
            created_by=user,
            created_by_name=user.get_username(),
            expires_at=expires_at,
            order=order,
        )
        _audit(
            type=RiskAuditEvent.Type.LIST_ENTRY_ADDED,
            user=user,
            source=source,
            entry=entry,
            order=order,
            message=f"added {field_label} {value!r} to the {kind} list: {reason}"
            + (f" (until {expires_at:%Y-%m-%d %H:%M} UTC)" if expires_at else ""),
            details={
                "kind": kind,
                "field": field,
                "value": value,
                "reason": reason,
                "expires_at": expires_at.isoformat() if expires_at else None,
                "order": order.order_id if order else None,
            },
        )
    return entry


def _remove(entry: RiskListEntry, *, user, reason: str, source: str, now: datetime, actor: str = "") -> None:
    entry.removed_at, entry.removed_by = now, user
    entry.removed_by_name = actor or user.get_username()
    entry.removal_reason = reason
    entry.save(update_fields=["removed_at", "removed_by", "removed_by_name", "removal_reason"])
    _audit(
        type=RiskAuditEvent.Type.LIST_ENTRY_REMOVED,
        user=user,
        source=source,
        entry=entry,
        actor=actor,
        message=f"removed {entry.get_field_display().lower()} {entry.value!r} from the {entry.kind} list"
        + (f": {reason}" if reason else ""),
        details={"kind": entry.kind, "field": entry.field, "value": entry.value, "reason": reason},
    )


def risk_list_entry_remove(*, user, entry_id: int, reason: str = "", source: str = "web") -> str:
    """Take an entry off its list (kept, marked removed, with who and why)."""
    _require_lead(user)
    with transaction.atomic():
        entry = RiskListEntry.objects.select_for_update().filter(pk=entry_id).first()
        if entry is None or entry.removed_at is not None:
            raise ValidationError(LIST_ALREADY_REMOVED, code="already_removed")
        _remove(entry, user=user, reason=pg_text(reason or "").strip()[:500], source=source, now=timezone.now())
    return LIST_REMOVED.format(value=entry.value, kind=entry.kind, field=entry.get_field_display().lower())


def order_list_value(order: Order, field: str) -> str:
    """What of an order a shortcut on its page puts on a list."""
    return {
        "email": order.customer_email,
        "address": order.address,
        "name": order.customer,
        "ip": order.client_ip or "",
    }[field]


# -- the policy's versions ----------------------------------------------------------------------


def policy_fingerprint(*, points: Mapping[str, Any], thresholds: Mapping[str, Any]) -> str:
    """What a backtest scored: an edit of the draft afterwards changes it."""
    text = json.dumps({"points": points, "thresholds": thresholds}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def policy_rules(policy: RiskPolicy) -> RiskThresholds:
    return RiskThresholds.from_policy(points=policy.points, thresholds=policy.thresholds)


def active_policy() -> Optional[RiskPolicy]:
    return RiskPolicy.objects.filter(status=RiskPolicy.Status.ACTIVE).first()


def risk_policy_clean(*, points: Mapping[str, Any], thresholds: Mapping[str, Any]) -> tuple[dict, dict]:
    """Points and thresholds as a policy stores them, every rule and threshold present; a
    ValidationError with every problem (keyed by field) otherwise."""
    errors: dict[str, list[str]] = {}
    clean_points: dict[str, int] = {}
    for rule in POINTS:
        raw = points.get(rule, POINTS[rule])
        try:
            value = int(raw)
            if str(raw).strip() not in (str(value), f"{value}.0") or not 0 <= value <= 100:
                raise ValueError
        except (TypeError, ValueError):
            errors.setdefault(f"points_{rule}", []).append(POINTS_INVALID.format(rule=RULE_LABELS[rule]))
            continue
        clean_points[rule] = value
    defaults = RiskThresholds()
    clean_thresholds: dict[str, Any] = {}
    for name, (kind, low, high, words) in THRESHOLD_RULES.items():
        raw = thresholds.get(name, getattr(defaults, name))
        try:
            value = kind(float(raw)) if kind is float else int(str(raw).strip())
            if not low <= value <= high:
                raise ValueError
        except (TypeError, ValueError):
            errors.setdefault(name, []).append(THRESHOLD_INVALID.format(name=name, problem=words))
            continue
        clean_thresholds[name] = value
    medium, high = clean_thresholds.get("level_medium"), clean_thresholds.get("level_high")
    if medium is not None and high is not None and not 0 < medium < high <= 100:
        errors.setdefault("level_high", []).append(LEVELS_INVALID)
    if clean_points.get("allow_list", 0) != 0:
        errors.setdefault("points_allow_list", []).append(POINTS_ALLOW)
    if high is not None and clean_points.get("block_list", 100) < high:
        errors.setdefault("points_block_list", []).append(POINTS_BLOCK.format(high=high))
    if errors:
        raise ValidationError(errors)
    return clean_points, clean_thresholds


def risk_policy_draft(*, user, based_on: Optional[RiskPolicy] = None, source: str = "web") -> RiskPolicy:
    """A new draft, a copy of ``based_on`` (the active policy by default, else the settings')."""
    _require_lead(user)
    with transaction.atomic():
        # Versions are numbered in order: the newest row locked, so two leads get two numbers.
        list(RiskPolicy.objects.select_for_update().order_by("-version")[:1])
        base = based_on or active_policy()
        if base is not None:
            points, thresholds = dict(base.points), dict(base.thresholds)
        else:
            points, thresholds = RiskThresholds.from_settings().stored()
        version = (RiskPolicy.objects.aggregate(top=Max("version"))["top"] or 0) + 1
        draft = RiskPolicy.objects.create(
            version=version,
            points=points,
            thresholds=thresholds,
            based_on=base,
            created_by=user,
            created_by_name=user.get_username(),
            note="",
        )
        message = POLICY_DRAFTED.format(version=version, based_on=base.version if base else "the settings")
        _audit(
            type=RiskAuditEvent.Type.POLICY_DRAFTED,
            user=user,
            source=source,
            policy=draft,
            message=message,
            details={"based_on": base.version if base else None},
        )
    return draft


def risk_policy_update(
    *,
    user,
    policy_id: int,
    points: Mapping[str, Any],
    thresholds: Mapping[str, Any],
    note: str = "",
    source: str = "web",
) -> RiskPolicy:
    """Change a draft's weights, thresholds and note; the audit keeps what changed."""
    _require_lead(user)
    clean_points, clean_thresholds = risk_policy_clean(points=points, thresholds=thresholds)
    with transaction.atomic():
        policy = RiskPolicy.objects.select_for_update().get(pk=policy_id)
        if not policy.is_draft:
            raise ValidationError(
                POLICY_NOT_DRAFT.format(version=policy.version, status=policy.status), code="not_draft"
            )
        changes = {
            f"points.{rule}": [policy.points.get(rule), value]
            for rule, value in clean_points.items()
            if policy.points.get(rule) != value
        }
        changes.update(
            {
                name: [policy.thresholds.get(name), value]
                for name, value in clean_thresholds.items()
                if policy.thresholds.get(name) != value
            }
        )
        note = pg_text(note or "").strip()[:2000]
        if note != policy.note:
            changes["note"] = [policy.note, note]
        policy.points, policy.thresholds, policy.note = clean_points, clean_thresholds, note
        policy.save(update_fields=["points", "thresholds", "note", "updated_at"])
        said = ", ".join(f"{name} {old} → {new}" for name, (old, new) in changes.items() if name != "note")
        _audit(
            type=RiskAuditEvent.Type.POLICY_EDITED,
            user=user,
            source=source,
            policy=policy,
            message=f"edited draft v{policy.version}"
            + (f": {said}" if said else "")
            + ("; note changed" if "note" in changes else ""),
            details={"changes": changes},
        )
    return policy


def fresh_backtest(policy: RiskPolicy, *, now: Optional[datetime] = None) -> Optional[RiskBacktest]:
    """The latest backtest of the policy as it is now, run within BACKTEST_FRESH, if any."""
    now = now or timezone.now()
    return (
        RiskBacktest.objects.filter(
            policy=policy,
            fingerprint=policy_fingerprint(points=policy.points, thresholds=policy.thresholds),
            created_at__gte=now - BACKTEST_FRESH,
        )
        .order_by("-created_at")
        .first()
    )


def risk_policy_activate(*, user, policy_id: int, reason: str = "", source: str = "web") -> str:
    """Make a draft the active policy (the active one retires). It needs a fresh backtest of the
    draft as it is, or a reason; either is kept as the activation's reason and audited."""
    _require_lead(user)
    reason = pg_text(reason or "").strip()[:2000]
    now = timezone.now()
    with transaction.atomic():
        # Every policy row locked in version order: two activations queue up instead of racing.
        policies = {p.pk: p for p in RiskPolicy.objects.select_for_update().order_by("version")}
        policy = policies.get(policy_id)
        if policy is None:
            raise ValidationError("No such policy.", code="not_found")
        if not policy.is_draft:
            raise ValidationError(
                POLICY_NOT_DRAFT.format(version=policy.version, status=policy.status), code="not_draft"
            )
        backtest = fresh_backtest(policy, now=now)
        if backtest is None and not reason:
            raise ValidationError(POLICY_NEEDS_BACKTEST.format(version=policy.version), code="needs_backtest")
        why = (
            f"backtest #{backtest.pk} of {backtest.created_at:%Y-%m-%d %H:%M} UTC"
            if backtest is not None
            else f"without a backtest: {reason}"
        )
        if backtest is not None and reason:
            why += f"; {reason}"
        previous = next((p for p in policies.values() if p.status == RiskPolicy.Status.ACTIVE), None)
        if previous is not None:
            previous.status, previous.retired_at = RiskPolicy.Status.RETIRED, now
            previous.save(update_fields=["status", "retired_at", "updated_at"])
            _audit(
                type=RiskAuditEvent.Type.POLICY_RETIRED,
                user=user,
                source=source,
                policy=previous,
                message=f"retired v{previous.version}: v{policy.version} activated",
            )
        policy.status, policy.activated_at = RiskPolicy.Status.ACTIVE, now
        policy.activated_by_name, policy.activation_reason = user.get_username(), why
        policy.save(update_fields=["status", "activated_at", "activated_by_name", "activation_reason", "updated_at"])
        _audit(
            type=RiskAuditEvent.Type.POLICY_ACTIVATED,
            user=user,
            source=source,
            policy=policy,
            message=f"activated v{policy.version} ({why})",
            details={
                "backtest": backtest.pk if backtest else None,
                "reason": reason,
                "previous": previous.version if previous else None,
            },
        )
    if previous is None:
        return POLICY_ACTIVATED_FIRST.format(version=policy.version)
    return POLICY_ACTIVATED.format(version=policy.version, previous=previous.version)
