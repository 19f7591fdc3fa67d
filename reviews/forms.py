"""Forms of the review back office. They check input only; the services decide (and repeat the
checks that matter, with the same messages)."""

from __future__ import annotations

import uuid
from datetime import UTC

from django import forms
from django.core.exceptions import ValidationError

from reviews.models import RejectReason
from reviews.selectors import MAX_SEARCH_LENGTH
from reviews.services import (
    BULK_NONE_SELECTED,
    BULK_TOO_MANY,
    DECISION_UNKNOWN,
    MAX_BULK_DECISIONS,
    reject_reason_clean,
)
from temporal_app.contracts import MAX_NOTE_LENGTH

ACTION_ID_INVALID = "The form is out of date; reload the page and try again."
DATE_INVALID = "Enter a date as YYYY-MM-DD."


def _clean_reject_reason(form: forms.Form, data: dict) -> dict:
    """A rejection's reason code, checked as ``review_decide`` does (an approval has none)."""
    if data.get("decision") == "reject" and "note" in data:
        try:
            data["reason_code"] = reject_reason_clean(data.get("reason_code", ""), data["note"])
        except ValidationError as err:
            form.add_error("note" if err.code == "note_required" else "reason_code", err)
    else:
        data["reason_code"] = ""
    return data


class DecisionForm(forms.Form):
    """Approve (optional note) or reject (a reason code; a note for “other”).

    ``action_id`` is a fresh UUID each time the form is rendered: a double click or a browser
    resubmit sends the same id, and the service and the workflow apply it once. ``then=next``
    (the "& next" buttons) moves on to the next order of the reviewer's queue once the decision
    has applied; ``queue`` carries that queue's filter and sort."""

    decision = forms.ChoiceField(
        choices=[("approve", "Approve"), ("reject", "Reject")],
        error_messages={"required": DECISION_UNKNOWN, "invalid_choice": DECISION_UNKNOWN},
    )
    note = forms.CharField(required=False, max_length=MAX_NOTE_LENGTH, strip=True, widget=forms.Textarea)
    reason_code = forms.CharField(required=False, max_length=40)
    action_id = forms.UUIDField(
        widget=forms.HiddenInput,
        error_messages={"required": ACTION_ID_INVALID, "invalid": ACTION_ID_INVALID},
    )
    then = forms.CharField(required=False, max_length=8)
    queue = forms.CharField(required=False, max_length=300)

    @classmethod
    def fresh(cls, decision: str) -> DecisionForm:
        return cls(initial={"decision": decision, "action_id": uuid.uuid4()}, auto_id=False)

    def clean(self):
        data = _clean_reject_reason(self, super().clean())
        data["then"] = "next" if data.get("then") == "next" else ""
        return data


class RecentFilterForm(forms.Form):
    """The filters of Recent decisions (GET). Bad values are dropped with a message, never a 500."""

    q = forms.CharField(required=False, max_length=MAX_SEARCH_LENGTH, strip=True)
    by = forms.CharField(required=False, max_length=150, strip=True)
    reason = forms.ChoiceField(required=False, choices=[("", "Any reason"), *RejectReason.choices])
    outcome = forms.ChoiceField(
        required=False,
        choices=[
            ("", "Any outcome"),
            ("approved", "Approved"),
            ("rejected", "Rejected"),
            ("expired", "Timed out"),
            ("cancelled", "Cancelled"),
            ("stopped", "Closed"),
        ],
    )
    since = forms.DateField(required=False, input_formats=["%Y-%m-%d"], error_messages={"invalid": DATE_INVALID})
    until = forms.DateField(required=False, input_formats=["%Y-%m-%d"], error_messages={"invalid": DATE_INVALID})


class OrderIdsField(forms.Field):
    """The selected orders' ids (the queue's checkboxes): any text, the service checks each."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value) -> list[str]:
        if not value:
            return []
        values = value if isinstance(value, (list, tuple)) else [value]
        return [str(v).strip()[:64] for v in values if str(v).strip()]


class BulkDecisionForm(forms.Form):
    """Approve or reject the orders selected in the queue, with one reason and note.
    ``batch_id`` is fresh each time the queue renders: sent twice, the form applies nothing
    twice (each order's action id derives from it)."""

    orders = OrderIdsField(required=False)
    decision = forms.ChoiceField(
        choices=[("approve", "Approve"), ("reject", "Reject")],
        error_messages={"required": DECISION_UNKNOWN, "invalid_choice": DECISION_UNKNOWN},
    )
    note = forms.CharField(required=False, max_length=MAX_NOTE_LENGTH, strip=True)
    reason_code = forms.CharField(required=False, max_length=40)
    batch_id = forms.UUIDField(
        widget=forms.HiddenInput, error_messages={"required": ACTION_ID_INVALID, "invalid": ACTION_ID_INVALID}
    )
    queue = forms.CharField(required=False, max_length=300)

    @classmethod
    def fresh(cls, queue: str) -> BulkDecisionForm:
        return cls(initial={"batch_id": uuid.uuid4(), "queue": queue}, auto_id=False)

    def clean_orders(self) -> list[str]:
        orders = self.cleaned_data.get("orders") or []
        if not orders:
            raise ValidationError(BULK_NONE_SELECTED, code="none_selected")
        if len(set(orders)) > MAX_BULK_DECISIONS:
            raise ValidationError(BULK_TOO_MANY.format(max=MAX_BULK_DECISIONS, count=len(set(orders))), code="too_many")
        return orders

    def clean(self):
        return _clean_reject_reason(self, super().clean())


INSIGHTS_RANGE_BACKWARDS = "The range ends before it starts: pick an end on or after the start."
INSIGHTS_RANGE_TOO_LONG = "The range is at most {days} days."


class InsightsForm(forms.Form):
    """The leads' insights' date range (GET; UTC days, the end included). Invalid: the default
    range (the last 30 days), with the error said."""

    since = forms.DateField(required=False, input_formats=["%Y-%m-%d"], error_messages={"invalid": DATE_INVALID})
    until = forms.DateField(required=False, input_formats=["%Y-%m-%d"], error_messages={"invalid": DATE_INVALID})

    def clean(self):
        from reviews.insights import MAX_DAYS, default_range

        data = super().clean()
        default_since, default_until = default_range()
        until = data.get("until") or default_until
        since = data.get("since") or (until - (default_until - default_since))
        if since > until:
            raise forms.ValidationError(INSIGHTS_RANGE_BACKWARDS, code="backwards")
        if (until - since).days + 1 > MAX_DAYS:
            raise forms.ValidationError(INSIGHTS_RANGE_TOO_LONG.format(days=MAX_DAYS), code="too_long")
        data["since"], data["until"] = since, until
        return data


# -- the leads' risk pages (reviews/risk_views.py) ---------------------------------------------------


class _ExpiryMixin:
    """An optional last day: the entry stops matching at the end of it (UTC)."""

    def expires_at(self):
        from datetime import datetime, time, timedelta

        day = self.cleaned_data.get("until")
        return datetime.combine(day + timedelta(days=1), time.min, tzinfo=UTC) if day else None


class ListEntryForm(_ExpiryMixin, forms.Form):
    kind = forms.ChoiceField(choices=[("block", "Block"), ("allow", "Allow")])
    field = forms.ChoiceField(
        choices=[
            ("email", "Customer email"),
            ("address", "Shipping address"),
            ("name", "Customer name"),
            ("ip", "Client IP"),
        ]
    )
    value = forms.CharField(max_length=300, widget=forms.Textarea(attrs={"rows": 2}))
    reason = forms.CharField(max_length=500)
    until = forms.DateField(required=False, error_messages={"invalid": DATE_INVALID})


class OrderListForm(_ExpiryMixin, forms.Form):
    """ "Block this address" / "Allow this customer" on an order page: the value is the order's."""

    kind = forms.ChoiceField(choices=[("block", "Block"), ("allow", "Allow")])
    field = forms.ChoiceField(choices=[("email", "email"), ("address", "address"), ("name", "name"), ("ip", "ip")])
    reason = forms.CharField(max_length=500)
    until = forms.DateField(required=False, error_messages={"invalid": DATE_INVALID})


class BacktestForm(forms.Form):
    since = forms.DateField(error_messages={"invalid": DATE_INVALID, "required": DATE_INVALID})
    until = forms.DateField(error_messages={"invalid": DATE_INVALID, "required": DATE_INVALID})


def policy_form_fields() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(name, label) of the policy form's points and thresholds, in the order the page shows them."""
    from reviews.risk import POINTS, RULE_LABELS
    from reviews.risk_services import THRESHOLD_RULES

    labels = {
        "review_threshold": "Review from score (REVIEW_POLICY=risky lets lower scores through)",
        "level_medium": "Medium risk from score",
        "level_high": "High risk from score",
        "amount_vs_usual_factor": "Amount over usual: flagged from × the customer's median",
        "usual_min_orders": "Amount over usual: earlier orders needed",
        "shop_percentile": "Amount over the shop: percentile (0.5 to 0.999)",
        "shop_min_sample": "Amount over the shop: orders needed for a percentile",
        "shop_sample": "Amount over the shop: latest orders read",
        "history_sample": "History: latest orders read per customer and address",
        "window_hours": "Velocity window (hours)",
        "orders_per_address": "Orders to one address: flagged from",
        "orders_per_customer": "Orders from one customer: flagged from",
        "quantity_spike": "Quantity spike: units of one item, flagged from",
    }
    return (
        [(f"points_{rule}", RULE_LABELS[rule]) for rule in POINTS],
        [(name, labels[name]) for name in THRESHOLD_RULES],
    )
