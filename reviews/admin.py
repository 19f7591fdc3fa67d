"""Review tasks in the admin: read-only. The workflow opens and closes them; reviewers decide in
the review UI, which asks the workflow; editing a task here would bypass both."""

from django.contrib import admin

from orderweb.admin import ReadOnlyAdmin
from reviews.models import ReviewTask


@admin.register(ReviewTask)
class ReviewTaskAdmin(ReadOnlyAdmin):
    list_display = ["order", "status", "due_at", "claimed_by", "decided_by_name", "decided_at"]
    list_filter = ["status", "due_at"]
    list_select_related = ["order", "claimed_by"]
    search_fields = ["order__order_id", "decided_by_name", "note"]
    date_hierarchy = "due_at"
