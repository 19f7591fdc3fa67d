"""Risk assessment at validation: why an order is worth a person's look, with figures.

Deterministic rules over what the order carries, the order history in Postgres and the allow and
block lists. Each rule is a small pure function of ``RiskFacts`` and ``RiskThresholds`` (the
active risk policy's weights and thresholds, ``reviews.models.RiskPolicy``; the ``RISK_*``
settings only seed the first policy and stand in when none is active) that returns a
``RiskReason`` (its points, a sentence for people, its figures) or None; the score is the sum of
the points, at most 100, and the level follows the policy's ``level_medium``/``level_high``.

It runs once per order, in the ``order_validated`` activity, on the hot path: ``risk_facts_gather``
reads everything the rules need in at most two indexed statements (the order's own lines and
address changes with the active policy; the customer's and the address's other orders with the
shop's recent amounts, in the order's currency, and the list entries that match the order), and
``risk_assess`` stores the result, with the policy version and the facts, in one INSERT
(tests/reviews/test_risk.py pins both counts; docs/benchmarks-review-queue.md has the plans). The
recorded facts let reviews/backtest.py score the order again under another policy.

The review policy (``REVIEW_POLICY=risky``) lets an order under the policy's review threshold
through, and an order on the allow list (not also on the block list); ``risk_policy_pass`` says which
rule did, with the figures, for the audit.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple, Optional

from django.conf import settings
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from orderweb.models import Order, OrderEvent, OrderLine
from reviews.lists import list_key
from reviews.models import RiskAssessment, RiskLevel, RiskListEntry, RiskPolicy

# Points per rule: how much each finding weighs (the thresholds that trigger them are settings).
POINTS = {
    "unknown_customer": 30,
    "forwarding_service": 30,
    "amount_over_usual": 25,
    "address_velocity": 25,
    "customer_velocity": 25,
    "amount_over_shop": 20,
    "address_changed": 20,
    "country_mismatch": 20,
    "first_order": 15,
    "po_box": 15,
    "quantity_spike": 15,
    # On the block list: enough for high risk on its own (a policy keeps it at least level_high).
    "block_list": 100,
    # On the allow list: no points; it lets the order through under REVIEW_POLICY=risky.
    "allow_list": 0,
}
RULE_LABELS = {
    "unknown_customer": "Unknown customer",
    "first_order": "First order",
    "amount_over_usual": "Amount over the customer's usual",
    "amount_over_shop": "Amount over the shop's percentile",
    "address_velocity": "Orders to one address",
    "customer_velocity": "Orders from one customer",
    "address_changed": "Address changed",
    "country_mismatch": "Shipping and billing countries differ",
    "po_box": "PO box or locker",
    "forwarding_service": "Parcel-forwarding service",
    "quantity_spike": "Quantity spike",
    "block_list": "On the block list",
    "allow_list": "On the allow list",
}

# Patterns matched case-insensitively against the shipping address.
PO_BOX = re.compile(
    r"\b(p\.?\s*o\.?\s*box|post\s+office\s+box|postfach|apartado(\s+postal)?|bo[iî]te\s+postale|"
    r"locked\s+bag|packstation|parcel\s+locker)\b",
    re.IGNORECASE,
)
FORWARDING_SERVICE = re.compile(
    r"\b(shipito|myus|planet\s+express|stackry|borderlinx|forward2me|reship|viabox|"
    r"(parcel|package|mail|freight)\s+forward(ing|er)?)\b",
    re.IGNORECASE,
)

# Country names as an address's last line (or the end of it, after a comma) may give them.
# Two-letter codes are left out on purpose: "CA", "DE", "GA", "IN" are also US states.
_COUNTRY_NAMES = {
    "US": ["united states", "united states of america", "usa", "u.s.a.", "u.s."],
    "GB": ["united kingdom", "uk", "u.k.", "great britain", "england", "scotland", "wales", "northern ireland"],
    "IE": ["ireland", "eire"],
    "DE": ["germany", "deutschland"],
    "FR": ["france"],
    "ES": ["spain", "espana", "españa"],
    "PT": ["portugal"],
    "IT": ["italy", "italia"],
    "NL": ["netherlands", "the netherlands", "nederland", "holland"],
    "BE": ["belgium", "belgique", "belgie", "belgië"],
    "LU": ["luxembourg"],
    "CH": ["switzerland", "schweiz", "suisse", "svizzera"],
    "AT": ["austria", "österreich", "osterreich"],
    "DK": ["denmark", "danmark"],
    "SE": ["sweden", "sverige"],
    "NO": ["norway", "norge"],
    "FI": ["finland", "suomi"],
    "PL": ["poland", "polska"],
    "CZ": ["czech republic", "czechia"],
    "HU": ["hungary"],
    "RO": ["romania"],
    "GR": ["greece"],
    "TR": ["turkey", "türkiye", "turkiye"],
    "UA": ["ukraine"],
    "RU": ["russia", "russian federation"],
    "CA": ["canada"],
    "MX": ["mexico", "méxico"],
    "BR": ["brazil", "brasil"],
    "AR": ["argentina"],
    "CL": ["chile"],
    "CO": ["colombia"],
    "AU": ["australia"],
    "NZ": ["new zealand"],
    "JP": ["japan"],
    "CN": ["china", "people's republic of china"],
    "HK": ["hong kong"],
    "TW": ["taiwan"],
    "KR": ["south korea", "korea", "republic of korea"],
    "SG": ["singapore"],
    "MY": ["malaysia"],
    "TH": ["thailand"],
    "VN": ["vietnam", "viet nam"],
    "PH": ["philippines"],
    "ID": ["indonesia"],
    "IN": ["india"],
    "PK": ["pakistan"],
    "AE": ["united arab emirates", "uae"],
    "SA": ["saudi arabia"],
    "IL": ["israel"],
    "EG": ["egypt"],
    "NG": ["nigeria"],
    "ZA": ["south africa"],
    "KE": ["kenya"],
}
_COUNTRIES = {name: code for code, names in _COUNTRY_NAMES.items() for name in names}


def address_country(address: str) -> str:
    """The ISO code of the country an address names on its last line, or "" (unknown)."""
    lines = [line.strip() for line in (address or "").splitlines() if line.strip()]
    if not lines:
        return ""
    last = lines[-1].lower().strip(" .,")
    for candidate in (last, last.rsplit(",", 1)[-1].strip(" .")):
        if candidate in _COUNTRIES:
            return _COUNTRIES[candidate]
    return ""


@dataclass(frozen=True)
class RiskThresholds:
    amount_vs_usual_factor: float = 3.0
    usual_min_orders: int = 2
    shop_percentile: float = 0.95
    shop_sample: int = 1000
    shop_min_sample: int = 20
    history_sample: int = 1000
    window_hours: float = 24
    orders_per_address: int = 3
    orders_per_customer: int = 3
    quantity_spike: int = 10
    level_medium: int = 30
    level_high: int = 60
    # Under REVIEW_POLICY=risky, orders scoring below this go through without a person.
    review_threshold: int = 30
    points: Mapping[str, int] = field(default_factory=lambda: dict(POINTS), compare=True)

    # The thresholds that decide which facts are gathered (not how they are judged): a backtest
    # scores recorded facts, so a change to these shows on new orders only.
    GATHERING = ("shop_percentile", "shop_sample", "history_sample", "window_hours")

    @classmethod
    def from_policy(cls, *, points: Mapping[str, Any], thresholds: Mapping[str, Any]) -> RiskThresholds:
        """A policy's stored weights and thresholds (unknown keys are ignored, missing ones
        take the defaults)."""
        names = {f.name for f in fields(cls)} - {"points"}
        return cls(
            **{name: value for name, value in thresholds.items() if name in names},
            points={**POINTS, **{rule: int(value) for rule, value in points.items() if rule in POINTS}},
        )

    def stored(self) -> tuple[dict[str, int], dict[str, Any]]:
        """(points, thresholds) as a RiskPolicy stores them."""
        values = asdict(self)
        return dict(values.pop("points")), values

    @classmethod
    def from_settings(cls) -> RiskThresholds:
        return cls(
            amount_vs_usual_factor=settings.RISK_AMOUNT_VS_USUAL_FACTOR,
            usual_min_orders=settings.RISK_USUAL_MIN_ORDERS,
            shop_percentile=settings.RISK_SHOP_PERCENTILE,
            shop_sample=settings.RISK_SHOP_SAMPLE,
            shop_min_sample=settings.RISK_SHOP_MIN_SAMPLE,
            history_sample=settings.RISK_HISTORY_SAMPLE,
            window_hours=settings.RISK_WINDOW_HOURS,
            orders_per_address=settings.RISK_ORDERS_PER_ADDRESS,
            orders_per_customer=settings.RISK_ORDERS_PER_CUSTOMER,
            quantity_spike=settings.RISK_QUANTITY_SPIKE,
            level_medium=settings.RISK_LEVEL_MEDIUM,
            level_high=settings.RISK_LEVEL_HIGH,
            review_threshold=settings.REVIEW_POLICY_THRESHOLD,
        )


@dataclass(frozen=True)
class RiskFacts:
    """What the rules read: the order as it came, and what Postgres knows around it."""

    amount: Decimal = Decimal("0")
    currency: str = "USD"
    customer: str = ""  # how the customer is known: their email, else their name ("" if neither)
    address: str = ""
    billing_address: str = ""
    lines: int = 0
    items: int = 0
    max_quantity: int = 0
    max_quantity_sku: str = ""
    address_changes: int = 0
    customer_orders: int = 0  # the customer's earlier orders
    # Their earlier orders in this order's currency, and the median amount of those: amounts are
    # compared within one currency only (issue 19).
    customer_orders_in_currency: int = 0
    customer_median: Optional[Decimal] = None
    customer_recent: int = 0  # the customer's other orders within the window
    address_recent: int = 0  # other orders to the same address within the window
    shop_percentile: Optional[Decimal] = None  # of the shop's latest order amounts in this currency
    shop_sample: int = 0  # how many amounts that percentile was taken over
    client_ip: str = ""
    # What the address rules find in the addresses, found once when the facts are gathered (None:
    # not yet, the rule looks itself), so that recorded facts need no address to be scored again.
    shipping_country: Optional[str] = None
    billing_country: Optional[str] = None
    po_box: Optional[str] = None
    forwarding_service: Optional[str] = None
    # The live allow/block list entries that matched the order: dicts of ``_list_match``.
    lists: tuple = ()

    # Recorded without the addresses: the derived facts above stand for them.
    UNRECORDED = ("address", "billing_address")
    _DECIMALS = ("amount", "customer_median", "shop_percentile")

    def record(self) -> dict[str, Any]:
        """The facts as an assessment stores them (JSON)."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in self.UNRECORDED}
        for name in self._DECIMALS:
            if values[name] is not None:
                values[name] = str(values[name])
        values["lists"] = list(self.lists)
        return values

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> RiskFacts:
        """Facts an assessment recorded (keys this version does not know are ignored)."""
        values = dict(record)
        if not values.keys() <= _FACT_FIELDS:
            values = {name: value for name, value in values.items() if name in _FACT_FIELDS}
        for name in cls._DECIMALS:
            if values.get(name) is not None:
                values[name] = Decimal(values[name])
        values["lists"] = tuple(values.get("lists") or ())
        return cls(**values)


@dataclass(frozen=True)
class RiskReason:
    rule: str
    points: int
    text: str  # for people, with its figures
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RiskResult:
    score: int
    level: str
    reasons: list[RiskReason]


_FACT_FIELDS = frozenset(f.name for f in fields(RiskFacts)) - set(RiskFacts.UNRECORDED)


# What a rule answers when asked only whether it matches (``explain=False``: the backtest scores
# 100,000 orders twice and needs no sentences). Its points are the policy's for that rule.
MATCHED = RiskReason("", 0, "")


def _money(value: Any) -> str:
    return f"{Decimal(value).quantize(Decimal('0.01'))}"


# -- the rules: each (facts, thresholds) -> RiskReason | None ---------------------------------------


def rule_unknown_customer(facts: RiskFacts, t: RiskThresholds, explain: bool = True) -> Optional[RiskReason]:
    if facts.customer:
        return None
    if not explain:
        return MATCHED
    return RiskReason(
        "unknown_customer",
        t.points["unknown_customer"],
        "No customer name or email came with the order: nothing to compare it with.",
    )


def rule_first_order(facts: RiskFacts, t: RiskThresholds, explain: bool = True) -> Optional[RiskReason]:
    if not facts.customer or facts.customer_orders:
        return None
    if not explain:
        return MATCHED
    return RiskReason(
        "first_order", t.points["first_order"], f"First order from {facts.customer}.", {"earlier_orders": 0}
    )


def rule_amount_over_usual(facts: RiskFacts, t: RiskThresholds, explain: bool = True) -> Optional[RiskReason]:
    median = facts.customer_median
    if facts.customer_orders_in_currency < t.usual_min_orders or not median or median <= 0:
        return None
    ratio = facts.amount / median
    if ratio < Decimal(str(t.amount_vs_usual_factor)):
        return None
    if not explain:
        return MATCHED
    return RiskReason(
        "amount_over_usual",
        t.points["amount_over_usual"],
        f"{_money(facts.amount)} {facts.currency} is {ratio:.1f}× this customer's usual {_money(median)} "
        f"(median of {facts.customer_orders_in_currency} earlier orders in {facts.currency}; "
        f"flagged from {t.amount_vs_usual_factor:g}×).",
        {
            "amount": _money(facts.amount),
            "usual": _money(median),
            "ratio": round(float(ratio), 2),
            "earlier_orders": facts.customer_orders_in_currency,
            "factor": t.amount_vs_usual_factor,
        },
    )


def rule_amount_over_shop(facts: RiskFacts, t: RiskThresholds, explain: bool = True) -> Optional[RiskReason]:
    limit = facts.shop_percentile
    if limit is None or facts.shop_sample < t.shop_min_sample or facts.amount <= limit:
        return None
    percentile = f"{t.shop_percentile * 100:g}th percentile"
    if not explain:
        return MATCHED
    return RiskReason(
        "amount_over_shop",
        t.points["amount_over_shop"],
        f"{_money(facts.amount)} {facts.currency} is above the shop's {percentile} of {_money(limit)} "
        f"(latest {facts.shop_sample} orders in {facts.currency}).",
        {
            "amount": _money(facts.amount),
            "percentile": t.shop_percentile,
            "limit": _money(limit),
            "sample": facts.shop_sample,
        },
    )


def rule_address_velocity(facts: RiskFacts, t: RiskThresholds, explain: bool = True) -> Optional[RiskReason]:
    total = facts.address_recent + 1
    if total < t.orders_per_address:
        return None
    if not explain:
        return MATCHED
    return RiskReason(
        "address_velocity",
        t.points["address_velocity"],
        f"{total} orders to this address within {t.window_hours:g} h (flagged from {t.orders_per_address}).",
        {"orders": total, "window_hours": t.window_hours, "threshold": t.orders_per_address},
    )


def rule_customer_velocity(facts: RiskFacts, t: RiskThresholds, explain: bool = True) -> Optional[RiskReason]:
    total = facts.customer_recent + 1
    if not facts.customer or total < t.orders_per_customer:
        return None
    if not explain:
        return MATCHED
    return RiskReason(
        "customer_velocity",
        t.points["customer_velocity"],
        f"{total} orders from {facts.customer} within {t.window_hours:g} h (flagged from {t.orders_per_customer}).",
        {"orders": total, "window_hours": t.window_hours, "threshold": t.orders_per_customer},
    )


def rule_address_changed(facts: RiskFacts, t: RiskThresholds, explain: bool = True) -> Optional[RiskReason]:
    if not facts.address_changes:
        return None
    times = "once" if facts.address_changes == 1 else f"{facts.address_changes} times"
    if not explain:
        return MATCHED
    return RiskReason(
        "address_changed",
        t.points["address_changed"],
        f"The shipping address changed {times} after the order was placed.",
        {"changes": facts.address_changes},
    )


def rule_country_mismatch(facts: RiskFacts, t: RiskThresholds, explain: bool = True) -> Optional[RiskReason]:
    shipping = facts.shipping_country if facts.shipping_country is not None else address_country(facts.address)
    billing = facts.billing_country if facts.billing_country is not None else address_country(facts.billing_address)
    if not shipping or not billing or shipping == billing:
        return None
    if not explain:
        return MATCHED
    return RiskReason(
        "country_mismatch",
        t.points["country_mismatch"],
        f"Ships to {shipping}, billed in {billing}.",
        {"shipping": shipping, "billing": billing},
    )


def _found(pattern: re.Pattern, text: str) -> str:
    match = pattern.search(text)
    return match.group(0) if match else ""


def rule_po_box(facts: RiskFacts, t: RiskThresholds, explain: bool = True) -> Optional[RiskReason]:
    found = facts.po_box if facts.po_box is not None else _found(PO_BOX, facts.address)
    if not found:
        return None
    if not explain:
        return MATCHED
    return RiskReason("po_box", t.points["po_box"], f"Ships to a PO box or locker (“{found}”).", {"match": found})


def rule_forwarding_service(facts: RiskFacts, t: RiskThresholds, explain: bool = True) -> Optional[RiskReason]:
    found = (
        facts.forwarding_service if facts.forwarding_service is not None else _found(FORWARDING_SERVICE, facts.address)
    )
    if not found:
        return None
    if not explain:
        return MATCHED
    return RiskReason(
        "forwarding_service",
        t.points["forwarding_service"],
        f"Ships to a parcel-forwarding service (“{found}”).",
        {"match": found},
    )


def rule_quantity_spike(facts: RiskFacts, t: RiskThresholds, explain: bool = True) -> Optional[RiskReason]:
    if facts.max_quantity < t.quantity_spike:
        return None
    if not explain:
        return MATCHED
    return RiskReason(
        "quantity_spike",
        t.points["quantity_spike"],
        f"{facts.max_quantity} units of {facts.max_quantity_sku} in one order (flagged from {t.quantity_spike}).",
        {"sku": facts.max_quantity_sku, "quantity": facts.max_quantity, "threshold": t.quantity_spike},
    )


_FIELD_WORDS = {"email": "customer email", "address": "address", "name": "customer name", "ip": "client IP"}


def list_entry_text(entry: Mapping[str, Any]) -> str:
    """One matched entry as people read it: "address, added by lead on 2 Dec: chargeback on …"."""
    added = datetime.fromisoformat(entry["added"]) if entry.get("added") else None
    when = f" on {added.day} {added:%b}" if added else ""
    text = f"{_FIELD_WORDS.get(entry['field'], entry['field'])}, added by {entry['by']}{when}: {entry['reason']}"
    if entry.get("order") and entry["order"] not in entry["reason"]:
        text += f" (from {entry['order']})"
    return text


def _rule_list(kind: str, facts: RiskFacts, t: RiskThresholds, explain: bool = True) -> Optional[RiskReason]:
    entries = [entry for entry in facts.lists if entry["kind"] == kind]
    if not entries:
        return None
    rule = f"{kind}_list"
    if not explain:
        return MATCHED
    return RiskReason(
        rule,
        t.points[rule],
        f"On the {kind} list: " + "; ".join(map(list_entry_text, entries)) + ".",
        {"entries": [{"entry": e["entry"], "field": e["field"], "value": e["value"]} for e in entries]},
    )


def rule_block_list(facts: RiskFacts, t: RiskThresholds, explain: bool = True) -> Optional[RiskReason]:
    return _rule_list("block", facts, t, explain)


def rule_allow_list(facts: RiskFacts, t: RiskThresholds, explain: bool = True) -> Optional[RiskReason]:
    return _rule_list("allow", facts, t, explain)


RULES: tuple[Callable[[RiskFacts, RiskThresholds], Optional[RiskReason]], ...] = (
    rule_block_list,
    rule_allow_list,
    rule_unknown_customer,
    rule_first_order,
    rule_amount_over_usual,
    rule_amount_over_shop,
    rule_address_velocity,
    rule_customer_velocity,
    rule_address_changed,
    rule_country_mismatch,
    rule_po_box,
    rule_forwarding_service,
    rule_quantity_spike,
)


def risk_level(score: int, t: RiskThresholds) -> str:
    if score >= t.level_high:
        return RiskLevel.HIGH
    if score >= t.level_medium:
        return RiskLevel.MEDIUM
    return RiskLevel.LOW


def risk_evaluate(facts: RiskFacts, thresholds: RiskThresholds) -> RiskResult:
    """The reasons (a rule a policy weighs at 0 points is left out, but the allow list, which
    always weighs nothing, is a reason), heaviest first; the score; the level."""
    reasons = [
        reason
        for rule in RULES
        if (reason := rule(facts, thresholds)) is not None and (reason.points > 0 or reason.rule == "allow_list")
    ]
    reasons.sort(key=lambda reason: -reason.points)
    score = min(100, sum(reason.points for reason in reasons))
    return RiskResult(score, risk_level(score, thresholds), reasons)


# -- the facts, from Postgres --------------------------------------------------------------------
#
# Raw SQL on purpose: this runs once per order on the hot path, and building the equivalent ORM
# queries (subqueries, filtered aggregates, a percentile) cost a fifth of the worker's CPU per
# order under load (docs/benchmarks.md). The look-ups match the ORM's ``iexact``,
# ``UPPER(col) = UPPER(value)``, so they walk the expression indexes of reviews/migrations/0008.

_ADDRESS_CHANGES = [OrderEvent.Type.SIGNAL_APPLIED.value, OrderEvent.Type.UPDATE_APPLIED.value]


def customer_key(*, email: str, name: str) -> Q:
    """How an order's customer is found among other orders: by email if it has one, else by
    name (both case-insensitive, on the indexes of reviews/migrations/0007). Empty: unknown."""
    if email:
        return Q(customer_email__iexact=email)
    if name.strip():
        return Q(customer__iexact=name)
    return Q()


# 1. The order as it came, its lines and applied address changes, a stored assessment if any, and
# the active policy (its id, version, points and thresholds).
_OWN_SQL = f"""
SELECT o.amount, o.currency, o.customer, o.customer_email, o.address, o.billing_address, o.created_at,
       host(o.client_ip), l.n_lines, l.n_items, l.top_quantity, l.top_sku,
       (SELECT count(*) FROM {OrderEvent._meta.db_table} e
         WHERE e.order_id = o.id AND e.type = ANY(%(changes)s) AND e.details ? 'new_address'),
       (SELECT r.id FROM {RiskAssessment._meta.db_table} r WHERE r.order_id = o.id),
       (SELECT json_build_array(p.id, p.version, p.points, p.thresholds) FROM {RiskPolicy._meta.db_table} p
         WHERE p.status = 'active')
  FROM {Order._meta.db_table} o,
       LATERAL (SELECT count(*) AS n_lines, coalesce(sum(quantity), 0) AS n_items,
                       coalesce(max(quantity), 0) AS top_quantity,
                       (array_agg(sku ORDER BY quantity DESC, sku))[1] AS top_sku
                  FROM {OrderLine._meta.db_table} WHERE order_id = o.id) l
 WHERE o.id = %(pk)s
"""

# 2. The customer's and the address's latest other orders placed up to this one (at most
# ``history_sample`` of each, by the (UPPER(...), created_at) indexes walked backwards, so a name
# shared by thousands of orders costs no more than a new one), the percentile of the shop's
# latest amounts in the order's currency (by the (currency, created_at) index), and the live list
# entries that match the order's email, address, name or client IP (by the entries' partial
# index). {customer} is one of _CUSTOMER_MATCH, chosen in Python so that the planner sees which
# index to use. Amounts are compared within the order's currency only: a JPY order must not move
# the percentile a USD order is held against (issue 19).
_HISTORY_SQL = f"""
WITH matched AS (
  (SELECT id, amount, currency, created_at, UPPER(address) = UPPER(%(address)s) AS same_address,
          {{customer}} AS same_customer
     FROM {Order._meta.db_table}
    WHERE UPPER(address) = UPPER(%(address)s) AND created_at <= %(created_at)s AND id <> %(pk)s
    ORDER BY created_at DESC LIMIT %(history)s)
  UNION
  (SELECT id, amount, currency, created_at, UPPER(address) = UPPER(%(address)s), {{customer}}
     FROM {Order._meta.db_table}
    WHERE {{customer}} AND created_at <= %(created_at)s AND id <> %(pk)s
    ORDER BY created_at DESC LIMIT %(history)s)
), history AS (
  SELECT count(*) FILTER (WHERE same_address AND created_at >= %(since)s) AS address_recent,
         count(*) FILTER (WHERE same_customer) AS customer_orders,
         count(*) FILTER (WHERE same_customer AND created_at >= %(since)s) AS customer_recent,
         count(*) FILTER (WHERE same_customer AND currency = %(currency)s) AS customer_orders_in_currency,
         percentile_cont(0.5) WITHIN GROUP (ORDER BY amount)
           FILTER (WHERE same_customer AND currency = %(currency)s) AS customer_median
    FROM matched
), shop AS (
  SELECT percentile_cont(%(percentile)s) WITHIN GROUP (ORDER BY amount) AS shop_limit, count(*) AS shop_sample
    FROM (SELECT amount FROM {Order._meta.db_table}
           WHERE currency = %(currency)s AND id <> %(pk)s AND amount > 0
           ORDER BY currency, created_at DESC LIMIT %(sample)s) latest
), listed AS (
  SELECT coalesce(json_agg(json_build_object(
           'entry', e.id, 'kind', e.kind, 'field', e.field, 'value', e.value, 'reason', e.reason,
           'by', e.created_by_name, 'added', e.created_at, 'order', eo.order_id) ORDER BY e.kind DESC, e.id),
         '[]'::json) AS entries
    FROM {RiskListEntry._meta.db_table} e LEFT JOIN {Order._meta.db_table} eo ON eo.id = e.order_id
   WHERE e.removed_at IS NULL AND (e.expires_at IS NULL OR e.expires_at > %(now)s)
     AND ((e.field = 'email' AND e.value_key = %(email_key)s) OR (e.field = 'address' AND e.value_key = %(address_key)s)
          OR (e.field = 'name' AND e.value_key = %(name_key)s) OR (e.field = 'ip' AND e.value_key = %(ip_key)s))
)
SELECT address_recent, customer_orders, customer_recent, customer_orders_in_currency, customer_median,
       shop_limit, shop_sample, entries
  FROM history, shop, listed
"""
_CUSTOMER_MATCH = {
    "email": "UPPER(customer_email) = UPPER(%(customer)s)",
    "name": "UPPER(customer) = UPPER(%(customer)s)",
    "unknown": "FALSE",
}


def _cents(value: Optional[float]) -> Optional[Decimal]:
    return Decimal(str(value)).quantize(Decimal("0.01")) if value is not None else None


class ActivePolicy(NamedTuple):
    id: Optional[int]  # None: no policy is active, the RISK_* settings stand in
    version: Optional[int]
    thresholds: RiskThresholds


def active_policy_from_row(row: Optional[list]) -> ActivePolicy:
    if row is None:
        return ActivePolicy(None, None, RiskThresholds.from_settings())
    policy_id, version, points, thresholds = row
    return ActivePolicy(policy_id, version, RiskThresholds.from_policy(points=points, thresholds=thresholds))


class Gathered(NamedTuple):
    facts: RiskFacts
    stored: Optional[int]  # the id of an assessment already stored for the order (nothing else read)
    policy: ActivePolicy


def risk_facts_gather(*, order_pk: int, thresholds: Optional[RiskThresholds] = None) -> Gathered:
    """The facts, in two statements, with the active policy (read in the first); ``thresholds``
    (tests) stands in for the policy's. An assessment already stored skips the second."""
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(_OWN_SQL, {"pk": order_pk, "changes": _ADDRESS_CHANGES})
        (
            amount,
            currency,
            name,
            email,
            address,
            billing_address,
            created_at,
            client_ip,
            n_lines,
            n_items,
            top_quantity,
            top_sku,
            address_changes,
            stored,
            policy_row,
        ) = cursor.fetchone()
        policy = active_policy_from_row(policy_row)
        if thresholds is not None:
            policy = policy._replace(thresholds=thresholds)
        t = policy.thresholds
        if stored is not None:
            return Gathered(RiskFacts(amount=amount), stored, policy)
        match = "email" if email else "name" if name.strip() else "unknown"  # as customer_key chooses
        cursor.execute(
            _HISTORY_SQL.format(customer=_CUSTOMER_MATCH[match]),
            {
                "pk": order_pk,
                "address": address,
                "customer": email or name,
                "created_at": created_at,
                "currency": currency,
                "since": created_at - timedelta(hours=t.window_hours),
                "percentile": t.shop_percentile,
                "sample": t.shop_sample,
                "history": t.history_sample,
                "now": now,
                "email_key": list_key("email", email),
                "address_key": list_key("address", address),
                "name_key": list_key("name", name),
                "ip_key": list_key("ip", client_ip),
            },
        )
        (address_recent, customer_orders, customer_recent, in_currency, median, shop_limit, shop_sample, entries) = (
            cursor.fetchone()
        )
    known = match != "unknown"
    facts = RiskFacts(
        amount=amount,
        currency=currency,
        customer=email or name.strip(),
        address=address,
        billing_address=billing_address,
        lines=n_lines,
        items=n_items,
        max_quantity=top_quantity,
        max_quantity_sku=top_sku or "",
        address_changes=address_changes,
        customer_orders=customer_orders if known else 0,
        customer_orders_in_currency=in_currency if known else 0,
        customer_median=_cents(median) if known else None,
        customer_recent=customer_recent if known else 0,
        address_recent=address_recent,
        shop_percentile=_cents(shop_limit),
        shop_sample=shop_sample,
        client_ip=client_ip or "",
        shipping_country=address_country(address),
        billing_country=address_country(billing_address),
        po_box=_found(PO_BOX, address),
        forwarding_service=_found(FORWARDING_SERVICE, address),
        lists=tuple(entries),
    )
    return Gathered(facts, None, policy)


def risk_policy_pass(result: RiskResult, thresholds: RiskThresholds) -> str:
    """What REVIEW_POLICY=risky says of a result: "" (a person decides) or the rule that let it
    through, with its figures. An order on the allow list goes through whatever its score, unless
    it is on the block list too; a blocked one never does."""
    if getattr(settings, "REVIEW_POLICY", "all") != "risky":
        return ""
    return review_pass_text(result, thresholds)


def review_pass_text(result: RiskResult, thresholds: RiskThresholds) -> str:
    """The policy's answer as if REVIEW_POLICY=risky (the backtest asks it of every order)."""
    rules = {reason.rule: reason for reason in result.reasons}
    if "block_list" in rules:
        return ""
    if "allow_list" in rules:
        return f"REVIEW_POLICY=risky: {rules['allow_list'].text[:-1]} (risk score {result.score})"
    threshold = thresholds.review_threshold
    if result.score >= threshold:
        return ""
    found = "; ".join(f"{reason.rule} +{reason.points}" for reason in result.reasons) or "no risk rule matched"
    return f"REVIEW_POLICY=risky: risk score {result.score} < {threshold} ({found})"


class Scored(NamedTuple):
    assessment: RiskAssessment
    amount: Decimal  # the order's, for its review task


def risk_assess(*, order_pk: int) -> Scored:
    """Score the order under the active policy and store it, with the policy and the facts, once
    (an assessment already stored is returned as it is). Called in ``order_validated``'s
    transaction, with the order's move to review."""
    facts, stored, policy = risk_facts_gather(order_pk=order_pk)
    if stored is not None:
        return Scored(RiskAssessment.objects.get(pk=stored), facts.amount)
    result = risk_evaluate(facts, policy.thresholds)
    assessment = RiskAssessment.objects.create(
        order_id=order_pk,
        score=result.score,
        level=result.level,
        reasons=[asdict(reason) for reason in result.reasons],
        approved_by_policy=risk_policy_pass(result, policy.thresholds),
        policy_id=policy.id,
        facts=facts.record(),
    )
    return Scored(assessment, facts.amount)


def risk_policy_answer(*, order_id: str) -> str:
    """What the review policy answered for the order when it was assessed (a retried activity
    answers the same): "" or the rule that let it through."""
    stored = RiskAssessment.objects.filter(order__order_id=order_id).values_list("approved_by_policy", flat=True)
    return stored.first() or ""


def risk_reasons_now(*, assessment: Optional[RiskAssessment], address_changes: int) -> list[dict[str, Any]]:
    """The stored reasons, plus what happened since that a rule would flag: an address changed
    after the assessment (it is made at validation, before most changes can happen)."""
    reasons = list(assessment.reasons) if assessment is not None else []
    counted = next((r["figures"].get("changes", 0) for r in reasons if r["rule"] == "address_changed"), 0)
    if address_changes > counted:
        later = rule_address_changed(RiskFacts(address_changes=address_changes), RiskThresholds())
        if later is not None:
            reasons.append({**asdict(later), "since_assessment": True})
    return reasons
