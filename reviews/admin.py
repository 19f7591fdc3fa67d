"""Review tasks in the admin: read-only. The workflow opens and closes them; reviewers decide in
the review UI, which asks the workflow; editing a task here would bypass both.

The orders admin lives in ``orderweb``, which knows nothing of reviews; this app extends it with
the order's review (a column, an inline, its risk, a link to the review page, a warning before a
staff cancel of an order a reviewer holds), as an app extends another's admin in Django.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from orderweb.admin import OrderAdmin, OrderReadOnlyInline, ReadOnlyAdmin
from orderweb.admin_moments import MomentsAdmin
from orderweb.models import Order
from reviews.lists import list_key_error
from reviews.models import (
    RejectReason,
    ReviewTask,
    RiskAssessment,
    RiskAuditEvent,
    RiskBacktest,
    RiskListEntry,
    RiskPolicy,
)
from reviews.risk_services import LIST_EXPIRY_PAST, may_lead, risk_list_entry_add, risk_list_entry_remove
from reviews.selectors import duration_text, reason_label

_REVIEW_LABELS = dict(ReviewTask.Status.choices)

# Before a staff cancel: someone is reviewing the order right now.
CLAIMED_WARNING = (
    "{user} claimed this order for review {ago} ago and may be deciding it now; cancelling ends their review."
)
REVIEW_PAGE_LINK = "Open the review page"


class ReviewTaskInline(OrderReadOnlyInline):
    model = ReviewTask
    fields = [
        "status",
        "risk_level",
        "risk_score",
        "due_at",
        "escalated_at",
        "approvals",
        "claimed_by",
        "decided_by_name",
        "decided_at",
        "reason",
        "note",
    ]
    readonly_fields = fields
    verbose_name_plural = "manual review"

    @admin.display(description="reason")
    def reason(self, task: ReviewTask) -> str:
        return reason_label(task.reason_code) if task.reason_code else "—"

    @admin.display(description="approvals")
    def approvals(self, task: ReviewTask) -> str:
        """Four eyes: how many of the two approvals, and who gave the first."""
        if not task.is_four_eyes:
            return "one reviewer"
        if task.first_approval_by:
            return f"first by {task.first_approval_by} ({task.four_eyes_rule})"
        return f"two reviewers ({task.four_eyes_rule})"


admin.site.unregister(Order)


@admin.register(Order)
class OrderWithReviewAdmin(OrderAdmin):
    list_display = [*OrderAdmin.list_display[:3], "review_state", *OrderAdmin.list_display[3:]]
    inlines = [OrderAdmin.inlines[0], ReviewTaskInline, *OrderAdmin.inlines[1:]]
    fieldsets = [
        *OrderAdmin.fieldsets[:1],
        ("Review", {"fields": ["review_page", "risk_assessment"]}),
        *OrderAdmin.fieldsets[1:],
    ]
    readonly_fields = [*OrderAdmin.readonly_fields, "review_page", "risk_assessment"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        latest_review = ReviewTask.objects.filter(order=OuterRef("pk")).order_by("-pk").values("status")[:1]
        return super().get_queryset(request).annotate(latest_review_status=Subquery(latest_review))

    @admin.display(description="review", ordering="latest_review_status")
    def review_state(self, order: Order) -> str:
        return _REVIEW_LABELS.get(getattr(order, "latest_review_status", None), "—")

    @admin.display(description="review page")
    def review_page(self, order: Order) -> str:
        return format_html(
            '<a class="review-page-link" href="{}">{} ↗</a>',
            reverse("reviews:order", args=[order.order_id]),
            REVIEW_PAGE_LINK,
        )

    @admin.display(description="risk")
    def risk_assessment(self, order: Order) -> str:
        assessment = RiskAssessment.objects.filter(order=order).first()
        if assessment is None:
            return "not assessed"
        reasons = format_html_join("", "<li>+{} {}</li>", ((r["points"], r["text"]) for r in assessment.reasons))
        policy = format_html("<p>{}</p>", assessment.approved_by_policy) if assessment.approved_by_policy else ""
        return format_html(
            '<strong class="risk-level">{} ({}/100)</strong><ul>{}</ul>{}',
            assessment.get_level_display(),
            assessment.score,
            reasons,
            policy,
        )

    def order_links(self, request: HttpRequest, order: Order) -> list[dict[str, str]]:
        return [
            *super().order_links(request, order),
            {"label": REVIEW_PAGE_LINK, "url": reverse("reviews:order", args=[order.order_id])},
        ]

    def cancel_warnings(self, request: HttpRequest, orders: list[Order]) -> dict[int, list[str]]:
        warnings = super().cancel_warnings(request, orders)
        now = timezone.now()
        claimed = ReviewTask.objects.filter(
            order__in=orders, status=ReviewTask.Status.OPEN, claimed_by__isnull=False
        ).select_related("claimed_by")
        for task in claimed:
            if task.claim_active(now):  # a lapsed claim is nobody's
                warnings.setdefault(task.order_id, []).append(
                    CLAIMED_WARNING.format(
                        user=task.claimed_by.get_username(), ago=duration_text(now - task.claimed_at)
                    )
                )
        return warnings


class ReasonCodeFilter(admin.SimpleListFilter):
    title = "reason"
    parameter_name = "reason"

    def lookups(self, request: HttpRequest, model_admin) -> list[tuple[str, str]]:
        return RejectReason.choices

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(reason_code=self.value()) if self.value() else queryset


class EscalatedFilter(admin.SimpleListFilter):
    title = "escalated"
    parameter_name = "escalated"

    def lookups(self, request: HttpRequest, model_admin) -> list[tuple[str, str]]:
        return [("yes", "Escalated to the leads"), ("no", "Not escalated")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() in ("yes", "no"):
            return queryset.filter(escalated_at__isnull=self.value() == "no")
        return queryset


@admin.register(ReviewTask)
class ReviewTaskAdmin(ReadOnlyAdmin):
    list_display = [
        "order",
        "status",
        "risk_level",
        "due_at",
        "escalated_at",
        "claimed_by",
        "decided_by_name",
        "decided_at",
        "reason",
    ]
    list_filter = ["status", "risk_level", ReasonCodeFilter, EscalatedFilter, "approvals_required", "due_at"]
    list_select_related = ["order", "claimed_by"]
    search_fields = ["order__order_id", "decided_by_name", "note"]
    date_hierarchy = "due_at"

    @admin.display(description="reason", ordering="reason_code")
    def reason(self, task: ReviewTask) -> str:
        return reason_label(task.reason_code) if task.reason_code else "—"


@admin.register(RiskAssessment)
class RiskAssessmentAdmin(ReadOnlyAdmin):
    list_display = ["order", "level", "score", "approved_by_policy", "created_at"]
    list_filter = ["level"]
    list_select_related = ["order"]
    search_fields = ["order__order_id"]


# -- the risk rules' lists, policies and backtests (issue 21) ------------------------------------


class RiskListEntryForm(forms.ModelForm):
    """Checked as the service checks (which checks again): the value, the reason, the expiry."""

    class Meta:
        model = RiskListEntry
        fields = ["kind", "field", "value", "reason", "expires_at"]

    def clean(self):
        data = super().clean()
        problem = list_key_error(data.get("field", ""), data.get("value", ""))
        if problem:
            self.add_error("value", problem)
        if data.get("expires_at") and data["expires_at"] <= timezone.now():
            self.add_error("expires_at", LIST_EXPIRY_PAST)
        return data


@admin.register(RiskListEntry)
class RiskListEntryAdmin(MomentsAdmin, admin.ModelAdmin):
    """Leads add entries here or on the Lists page (both through ``risk_list_entry_add``, audited);
    an entry is never edited or deleted: the "remove from its list" action keeps it, marked."""

    form = RiskListEntryForm
    list_display = ["value", "kind", "field", "reason", "created_by_name", "created_at", "expires_at", "removed_at"]
    list_filter = ["kind", "field", ("removed_at", admin.EmptyFieldListFilter)]
    search_fields = ["value", "reason", "created_by_name"]
    readonly_fields = [
        "kind",
        "field",
        "value",
        "value_key",
        "reason",
        "created_by_name",
        "created_at",
        "expires_at",
        "order",
        "removed_at",
        "removed_by_name",
        "removal_reason",
    ]
    actions = ["remove_from_list"]

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        return self.readonly_fields if obj is not None else []

    def get_fields(self, request: HttpRequest, obj=None):
        return self.readonly_fields if obj is not None else RiskListEntryForm.Meta.fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) and may_lead(request.user)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: RiskListEntry, form, change: bool) -> None:
        data = form.cleaned_data
        saved = risk_list_entry_add(
            user=request.user,
            kind=data["kind"],
            field=data["field"],
            value=data["value"],
            reason=data["reason"],
            expires_at=data.get("expires_at"),
            source="admin",
        )
        obj.pk = saved.pk

    @admin.action(description="Remove the selected entries from their list", permissions=["remove"])
    def remove_from_list(self, request: HttpRequest, queryset: QuerySet) -> None:
        done = 0
        for entry in queryset.filter(removed_at__isnull=True):
            try:
                risk_list_entry_remove(
                    user=request.user, entry_id=entry.pk, reason="removed in the admin", source="admin"
                )
                done += 1
            except ValidationError as err:
                self.message_user(request, " ".join(err.messages), messages.ERROR)
        self.message_user(request, f"Removed {done} entr{'y' if done == 1 else 'ies'} from their list.")

    def has_remove_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("reviews.change_risklistentry") and may_lead(request.user)


@admin.register(RiskPolicy)
class RiskPolicyAdmin(ReadOnlyAdmin):
    """Read-only: leads draft, backtest and activate policies on the back office's Risk policy pages."""

    list_display = ["version", "status", "note", "created_by_name", "created_at", "activated_at", "retired_at"]
    list_filter = ["status"]


@admin.register(RiskBacktest)
class RiskBacktestAdmin(ReadOnlyAdmin):
    list_display = ["pk", "policy", "compared_to", "since", "until", "actor", "created_at"]
    list_select_related = ["policy", "compared_to"]


@admin.register(RiskAuditEvent)
class RiskAuditEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "type", "actor", "source", "message"]
    list_filter = ["type", "source"]
    search_fields = ["message", "actor"]
