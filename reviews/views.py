"""The review back office: thin views over reviews.selectors (reads) and reviews.services (writes).

Every page needs a signed-in user with ``reviews.decide_review`` (the ``reviewer`` group, or a
superuser); anyone else signed in gets 403, anonymous people the login page. Every POST is
CSRF-protected, leaves a message and redirects.
"""

from __future__ import annotations

import functools
from typing import Callable

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect, HttpResponseStopPolling
from temporalio.client import WorkflowQueryFailedError, WorkflowQueryRejectedError

from orderweb.models import Order
from reviews import selectors, services
from reviews.forms import DecisionForm
from temporal_app.client import (
    TemporalUnavailable,
    WorkflowCannotAnswer,
    WorkflowGone,
    order_workflow_status,
    workflow_ui_url,
)
from temporal_app.contracts import OrderState

DECIDE_PERMISSION = "reviews.decide_review"
ORDER_NOT_FOUND = "There is no order {order_id!r}."
LIVE_STATUS_UNAVAILABLE = (
    "Live status unavailable: Temporal at {address} did not answer. This panel retries by itself."
)
LIVE_STATUS_QUERY_FAILED = "The workflow could not answer its status query: {detail}"
LIVE_STATUS_NO_WORKFLOW = "Temporal has no workflow for this order ({detail})."
LIVE_STATUS_GONE_FINISHED = (
    "The order has ended; Temporal has deleted its workflow after the retention period. "
    "Postgres keeps the full history below."
)
LIVE_STATUS_STUCK = (
    "The workflow cannot answer: its workflow task keeps failing. Decisions cannot be applied "
    "until that is fixed; the order is flagged for staff."
)

_LEVELS = {
    "success": messages.SUCCESS,
    "info": messages.INFO,
    "warning": messages.WARNING,
    "error": messages.ERROR,
}


def _refresh_seconds() -> int:
    return int(getattr(settings, "REVIEW_QUEUE_REFRESH_SECONDS", 5))


def reviewer_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Signed in (else the login page; for an htmx poll, a client-side redirect to it) and
    allowed to decide reviews (else a 403 page that says why)."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.is_authenticated:
            back_to = request.htmx.current_url_abs_path if request.htmx else None
            to_login = redirect_to_login(back_to or request.get_full_path())
            return HttpResponseClientRedirect(to_login.url) if request.htmx else to_login
        if not request.user.has_perm(DECIDE_PERMISSION):
            return render(request, "reviews/forbidden.html", status=403)
        return view(request, *args, **kwargs)

    return wrapper


def _order_or_404(order_id: str) -> Order:
    try:
        return Order.objects.get(order_id=order_id)
    except Order.DoesNotExist:
        raise Http404(ORDER_NOT_FOUND.format(order_id=order_id)) from None


def _next_url(request: HttpRequest, default: str) -> str:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                  require_https=request.is_secure()):
        return target
    return default


# -- pages -------------------------------------------------------------------------------------


@reviewer_required
@require_GET
def queue(request: HttpRequest) -> HttpResponse:
    filter = selectors.review_queue_filter_clean(request.GET.get("filter"))
    search = selectors.review_search_clean(request.GET.get("q"))
    page = selectors.review_queue_list(user=request.user, filter=filter, search=search,
                                       page=request.GET.get("page", 1))
    now = timezone.now()
    context = {
        "tab": "queue",
        "filter": filter,
        "search": search,
        "page": page,
        "rows": [(task, selectors.review_deadline(due_at=task.due_at, now=now),
                  selectors.duration_text(now - task.order.created_at)) for task in page.object_list],
        "counts": selectors.review_queue_counts(user=request.user),
        "refresh_seconds": _refresh_seconds(),
        "now": now,
    }
    template = "reviews/_queue.html" if request.htmx else "reviews/queue.html"
    return render(request, template, context)


@reviewer_required
@require_GET
def recent(request: HttpRequest) -> HttpResponse:
    mine = request.GET.get("mine") == "1"
    page = selectors.review_recent_list(user=request.user, mine=mine, page=request.GET.get("page", 1))
    context = {
        "tab": "recent",
        "mine": mine,
        "page": page,
        "counts": selectors.review_queue_counts(user=request.user),
        "refresh_seconds": _refresh_seconds(),
    }
    template = "reviews/_recent.html" if request.htmx else "reviews/recent.html"
    return render(request, template, context)


@reviewer_required
@require_GET
def order_detail(request: HttpRequest, order_id: str) -> HttpResponse:
    try:
        review = selectors.review_order_detail(order_id=order_id)
    except Order.DoesNotExist:
        raise Http404(ORDER_NOT_FOUND.format(order_id=order_id)) from None
    now = timezone.now()
    task = review.task
    context = {
        "review": review,
        "order": review.order,
        "task": task,
        "deadline": selectors.review_deadline(due_at=task.due_at, now=now) if review.is_open else None,
        "age": selectors.duration_text(now - review.order.created_at),
        "approve_form": DecisionForm.fresh("approve"),
        "reject_form": DecisionForm.fresh("reject"),
        "temporal_url": workflow_ui_url(review.order.workflow_id),
        "refresh_seconds": _refresh_seconds(),
    }
    return render(request, "reviews/order.html", context)


@reviewer_required
@require_GET
def order_status(request: HttpRequest, order_id: str) -> HttpResponse:
    """The live panel: the workflow's own answer to ``get_status`` next to the Postgres
    projection. Polled by htmx; it stops polling (HTTP 286) once the workflow has finished."""
    order = _order_or_404(order_id)
    context: dict = {"order": order, "live": None, "error": "", "detail": "",
                     "refresh_seconds": _refresh_seconds()}
    gone = False
    try:
        context["live"] = selectors.order_status_summary(status=order_workflow_status(order.workflow_id))
    except WorkflowCannotAnswer:
        context["error"] = LIVE_STATUS_STUCK
    except TemporalUnavailable as err:
        context["error"] = LIVE_STATUS_UNAVAILABLE.format(address=settings.TEMPORAL_ADDRESS)
        context["detail"] = str(err)
    except WorkflowGone as err:
        gone = True
        context["error"] = LIVE_STATUS_GONE_FINISHED if order.is_terminal else LIVE_STATUS_NO_WORKFLOW.format(detail=err)
    except (WorkflowQueryFailedError, WorkflowQueryRejectedError) as err:
        context["error"] = LIVE_STATUS_QUERY_FAILED.format(detail=err)
    # Nothing more will change: the workflow has finished, or Temporal no longer has it (a
    # finished order's workflow deleted after retention, or one the reconciler flagged).
    finished = (
        context["live"] is not None and OrderState(context["live"]["workflow_status"]).is_terminal and order.is_terminal
    ) or (gone and (order.is_terminal or order.needs_attention))
    context["finished"] = finished
    response = render(request, "reviews/_status.html", context)
    if finished and request.htmx:
        return HttpResponseStopPolling(response.content)
    return response


# -- actions -----------------------------------------------------------------------------------


def _order_url(order: Order) -> str:
    return reverse("reviews:order", args=[order.order_id])


@reviewer_required
@require_POST
def claim(request: HttpRequest, order_id: str) -> HttpResponse:
    order = _order_or_404(order_id)
    try:
        messages.success(request, services.review_task_claim(order=order, user=request.user))
    except ValidationError as err:
        messages.error(request, " ".join(err.messages))
    return redirect(_next_url(request, _order_url(order)))


@reviewer_required
@require_POST
def release(request: HttpRequest, order_id: str) -> HttpResponse:
    order = _order_or_404(order_id)
    try:
        messages.success(request, services.review_task_release(order=order, user=request.user))
    except ValidationError as err:
        messages.error(request, " ".join(err.messages))
    return redirect(_next_url(request, _order_url(order)))


@reviewer_required
@require_POST
def decide(request: HttpRequest, order_id: str) -> HttpResponse:
    order = _order_or_404(order_id)
    form = DecisionForm(request.POST)
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, error)
        return redirect(_order_url(order))
    try:
        outcome = services.review_decide(
            order=order, user=request.user, decision=form.cleaned_data["decision"],
            note=form.cleaned_data["note"], action_id=str(form.cleaned_data["action_id"]),
        )
    except ValidationError as err:
        messages.error(request, " ".join(err.messages))
        return redirect(_order_url(order))
    messages.add_message(request, _LEVELS[outcome.level], outcome.message)
    return redirect(_order_url(order))
