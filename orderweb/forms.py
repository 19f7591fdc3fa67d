"""Forms for the staff admin. They validate input only; the services in ``orderweb.actions`` and
``orderweb.services`` do the work, and repeat the checks that matter."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from orderweb.actions import (
    CANCEL_REASON_OTHER_NEEDS_TEXT,
    MAX_REASON_LENGTH,
    validate_cancel_reason,
)
from orderweb.models import CancelReason, OrderLabel, OrderLine
from orderweb.services import (
    MAX_ORDER_NOTE_LENGTH,
    NOTE_EMPTY,
    NOTE_TOO_LONG,
    order_id_conflict,
    order_id_holder,
    validate_address,
    validate_order_id,
)
from temporal_app.contracts import LINE_DUPLICATE_SKU, MAX_ADDRESS_LENGTH, LineItem


class CancelForm(forms.Form):
    """A code for reports (required) and words for people (required for “Other”; otherwise the
    code's label is recorded when none are given)."""

    reason_code = forms.ChoiceField(
        label="Reason",
        choices=CancelReason.choices,
        widget=forms.RadioSelect,
        error_messages={"required": "Choose a reason."},
    )
    reason = forms.CharField(
        label="Details",
        required=False,
        max_length=MAX_REASON_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Required for “Other”. Recorded with your name on the order's timeline and in the workflow.",
    )

    def clean_reason(self) -> str:
        text = self.cleaned_data["reason"]
        return validate_cancel_reason(text) if text else ""

    def clean(self):
        data = super().clean()
        code = data.get("reason_code")
        if code and "reason" in data:
            if code == CancelReason.OTHER and not data["reason"]:
                self.add_error(
                    "reason", ValidationError(CANCEL_REASON_OTHER_NEEDS_TEXT, code="reason_other_needs_text")
                )
            else:
                data["reason"] = data["reason"] or CancelReason(code).label
        return data


class AddressForm(forms.Form):
    address = forms.CharField(
        # Not max_length: the contract's own message says how long is too long.
        strip=False,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
        help_text=f"At most {MAX_ADDRESS_LENGTH} characters; one line per address line.",
    )

    def clean_address(self) -> str:
        return validate_address(self.cleaned_data["address"])


class OrderCreateForm(forms.Form):
    order_id = forms.CharField(max_length=64, help_text="Letters, digits, '-', '_' or '.', e.g. ORDER-123.")
    customer = forms.CharField(max_length=200, required=False)
    address = forms.CharField(strip=False, widget=forms.Textarea(attrs={"rows": 4, "cols": 60}))
    amount = forms.DecimalField(
        max_digits=12,
        decimal_places=2,
        min_value=0,
        required=False,
        help_text="Leave blank to charge the sum of the line items.",
    )

    def clean_order_id(self) -> str:
        order_id = validate_order_id(self.cleaned_data["order_id"])
        holder = order_id_holder(order_id=order_id)
        if holder is not None:
            raise order_id_conflict(order_id=order_id, holder=holder)
        return order_id

    def clean_address(self) -> str:
        return validate_address(self.cleaned_data["address"])


class OrderLineForm(forms.ModelForm):
    quantity = forms.IntegerField(min_value=1, initial=1)

    class Meta:
        model = OrderLine
        fields = ["sku", "name", "quantity", "unit_price"]


class BaseOrderLineFormSet(forms.BaseFormSet):
    def clean(self) -> None:
        if any(self.errors):
            return
        seen: set[str] = set()
        for form in self.forms:
            sku = (form.cleaned_data.get("sku") or "").strip()
            if not sku or form.cleaned_data.get("DELETE"):
                continue
            if sku in seen:
                raise ValidationError(LINE_DUPLICATE_SKU.format(sku=sku), code="duplicate_sku")
            seen.add(sku)

    def line_items(self) -> list[LineItem]:
        return [
            LineItem(
                sku=form.cleaned_data["sku"].strip(),
                name=form.cleaned_data.get("name") or "",
                quantity=form.cleaned_data["quantity"],
                unit_price=str(form.cleaned_data["unit_price"]),
            )
            for form in self.forms
            if form.cleaned_data.get("sku")
        ]


OrderLineFormSet = forms.formset_factory(OrderLineForm, formset=BaseOrderLineFormSet, extra=3, can_delete=False)


class PreferencesForm(forms.Form):
    """A person's settings (orderweb.preferences): kept in their session."""

    time_zone = forms.ChoiceField(
        label="Time zone",
        required=False,
        help_text="Every time on the review pages and in the admin is shown in it; UTC on hover.",
    )
    shortcuts = forms.BooleanField(
        label="Single-key shortcuts on the review pages (a, r, c, j, k, /, ?)",
        required=False,
        help_text="Off: letter keys only ever type. Shortcuts never act while you type in a field.",
    )

    def __init__(self, *args, detected: str = "", **kwargs) -> None:
        from orderweb.preferences import time_zone_names

        super().__init__(*args, **kwargs)
        browser = f"This browser's ({detected})" if detected else "This browser's"
        self.fields["time_zone"].choices = [("", browser), *((name, name) for name in time_zone_names())]
        self.fields["time_zone"].widget.attrs["aria-describedby"] = "time-zone-help"


class NoteForm(forms.Form):
    """A note on an order (the admin's; the review page posts the same field). The service
    ``order_note_add`` checks it again, with the same messages."""

    note = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60, "maxlength": MAX_ORDER_NOTE_LENGTH}),
        max_length=MAX_ORDER_NOTE_LENGTH,
        strip=True,
        help_text=(
            f"Plain text, at most {MAX_ORDER_NOTE_LENGTH} characters. Every reviewer sees it; it decides nothing."
        ),
        error_messages={"required": NOTE_EMPTY, "max_length": NOTE_TOO_LONG},
    )


class LabelForm(forms.Form):
    """Set or remove an outcome label (the admin's; the review page posts the same fields). The
    service (``orderweb.labels``) checks them again, with the same messages."""

    label = forms.ChoiceField(
        choices=OrderLabel.Kind.choices,
        widget=forms.RadioSelect,
        help_text="How the order turned out, learned after the decision.",
    )
    action = forms.ChoiceField(
        choices=[("set", "Set it"), ("remove", "Remove it (its history is kept)")],
        initial="set",
        widget=forms.RadioSelect,
    )
    source_reference = forms.CharField(
        required=False, max_length=200, label="Reference", help_text="Optional: the chargeback case, a ticket."
    )
    note = forms.CharField(
        required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 3, "cols": 60, "maxlength": 2000})
    )
