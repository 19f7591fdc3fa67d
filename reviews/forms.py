"""Forms of the review back office. They check input only; the services decide."""

from __future__ import annotations

import uuid

from django import forms
from django.core.exceptions import ValidationError

from reviews.services import DECISION_UNKNOWN
from temporal_app.contracts import MAX_NOTE_LENGTH, RefusalCode, refusal

ACTION_ID_INVALID = "The form is out of date; reload the page and try again."


class DecisionForm(forms.Form):
    """Approve (optional note) or reject (reason required).

    ``action_id`` is a fresh UUID each time the form is rendered: a double click or a browser
    resubmit sends the same id, and the service and the workflow apply it once."""

    decision = forms.ChoiceField(
        choices=[("approve", "Approve"), ("reject", "Reject")],
        error_messages={"required": DECISION_UNKNOWN, "invalid_choice": DECISION_UNKNOWN},
    )
    note = forms.CharField(required=False, max_length=MAX_NOTE_LENGTH, strip=True, widget=forms.Textarea)
    action_id = forms.UUIDField(
        widget=forms.HiddenInput,
        error_messages={"required": ACTION_ID_INVALID, "invalid": ACTION_ID_INVALID},
    )

    @classmethod
    def fresh(cls, decision: str) -> "DecisionForm":
        return cls(initial={"decision": decision, "action_id": uuid.uuid4()}, auto_id=False)

    def clean(self):
        data = super().clean()
        if data.get("decision") == "reject" and not data.get("note"):
            self.add_error("note", ValidationError(refusal(RefusalCode.REJECT_NEEDS_NOTE).message, code="note_required"))
        return data
