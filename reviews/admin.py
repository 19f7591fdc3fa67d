"""Review tasks in the admin: read-only. The workflow opens and closes them; reviewers decide in
the review UI, which asks the workflow; editing a task here would bypass both.

The orders admin lives in ``orderweb``, which knows nothing of reviews; this app extends it with
the order's review (a column, an inline), as an app extends another's admin in Django.
"""

from django.contrib import admin
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest

from orderweb.admin import OrderAdmin, OrderReadOnlyInline, ReadOnlyAdmin
from orderweb.models import Order
from reviews.models import ReviewTask

_REVIEW_LABELS = dict(ReviewTask.Status.choices)


class ReviewTaskInline(OrderReadOnlyInline):
    model = ReviewTask
    fields = ["status", "due_at", "claimed_by", "decided_by_name", "decided_at", "note"]
    readonly_fields = fields
    verbose_name_plural = "manual review"


admin.site.unregister(Order)


@admin.register(Order)
class OrderWithReviewAdmin(OrderAdmin):
    list_display = [*OrderAdmin.list_display[:3], "review_state", *OrderAdmin.list_display[3:]]
    inlines = [OrderAdmin.inlines[0], ReviewTaskInline, *OrderAdmin.inlines[1:]]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        latest_review = ReviewTask.objects.filter(order=OuterRef("pk")).order_by("-pk").values("status")[:1]
        return super().get_queryset(request).annotate(latest_review_status=Subquery(latest_review))

    @admin.display(description="review", ordering="latest_review_status")
    def review_state(self, order: Order) -> str:
        return _REVIEW_LABELS.get(getattr(order, "latest_review_status", None), "—")


@admin.register(ReviewTask)
class ReviewTaskAdmin(ReadOnlyAdmin):
    list_display = ["order", "status", "due_at", "claimed_by", "decided_by_name", "decided_at"]
    list_filter = ["status", "due_at"]
    list_select_related = ["order", "claimed_by"]
    search_fields = ["order__order_id", "decided_by_name", "note"]
    date_hierarchy = "due_at"
