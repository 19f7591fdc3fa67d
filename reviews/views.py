"""The review back office: thin views over reviews.selectors (reads) and reviews.services (writes).

Every page needs a signed-in user with ``reviews.decide_review`` (the ``reviewer`` group, or a
superuser); anyone else signed in gets 403, anonymous people the login page. Every POST is
CSRF-protected, leaves a message and redirects.
"""

from __future__ import annotations

import dataclasses
import functools
import uuid
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect, HttpResponseStopPolling
from temporalio.client import WorkflowQueryFailedError, WorkflowQueryRejectedError

from orderweb.labels import LABEL_PERMISSION, order_label_remove, order_label_set
from orderweb.models import Order, OrderEvent, OrderLabel
from orderweb.services import MAX_ORDER_NOTE_LENGTH, NOTE_ADDED, order_note_add
from reviews import insights as team_insights
from reviews import risk_selectors, selectors, services
from reviews.forms import BulkDecisionForm, DecisionForm, InsightsForm, RecentFilterForm
from reviews.models import RejectReason, ReviewTask, RiskLevel
from temporal_app.client import (
    TemporalUnavailable,
    WorkersNotAnswering,
    WorkflowCannotAnswer,
    WorkflowGone,
    order_workflow_status,
    workflow_ui_url,
)
from temporal_app.contracts import OrderState

DECIDE_PERMISSION = "reviews.decide_review"
LEAD_PERMISSION = services.LEAD_PERMISSION
NOTE_PERMISSION = "orderweb.add_order_note"
BULK_SESSION_KEY = "reviews:bulk:{batch}"
BULK_KEPT = 5  # bulk results kept in the session (the latest)
BULK_DONE = "Bulk {decision}: {summary}."
BULK_RESULT_GONE = "That bulk decision's answers are no longer kept; the orders' timelines have them."
ORDER_NOT_FOUND = "There is no order {order_id!r}."
LIVE_STATUS_UNAVAILABLE = "Live status unavailable: Temporal at {address} did not answer. This panel retries by itself."
LIVE_STATUS_NO_WORKERS = (
    "Live status unavailable: the order workers are not answering (since {since} UTC). Below is what "
    "Postgres holds; decisions cannot be applied until the workers are back. This panel checks again by itself."
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
# The decision panel locks itself with one of these when the live status shows the order has
# left review while the page was open (a colleague, staff, an outside client, the timeout).
LEFT_REVIEW_DECIDED = (
    "This order has left review: {outcome} by {who}{when}. It is now {state}; nothing you do here applies."
)
LEFT_REVIEW_CLOSED = "This order has left review: {outcome}{when}. It is now {state}; nothing you do here applies."
LEFT_REVIEW_LIVE = "This order has left review: its workflow is {state}{why}. Nothing you do here applies."
QUEUE_DONE = "That was the last order in your queue{view}. Nothing else waits for you."
RECENT_FILTER_DROPPED = "Ignored a filter that was not understood: {field}: {error}"

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


def lead_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A reviewer (``reviewer_required``) who leads the team (``reviews.lead_review``, the
    ``review_lead`` group); other reviewers get a 403 page that says so."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.has_perm(LEAD_PERMISSION):
            return render(request, "reviews/forbidden.html", {"needs_lead": True}, status=403)
        return view(request, *args, **kwargs)

    return reviewer_required(wrapper)


def _order_or_404(order_id: str) -> Order:
    try:
        return Order.objects.get(order_id=order_id)
    except Order.DoesNotExist:
        raise Http404(ORDER_NOT_FOUND.format(order_id=order_id)) from None


def _next_url(request: HttpRequest, default: str) -> str:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return default


# -- pages -------------------------------------------------------------------------------------


@reviewer_required
@require_GET
def queue(request: HttpRequest) -> HttpResponse:
    view = selectors.QueueView.from_params(request.GET)
    is_lead = request.user.has_perm(LEAD_PERMISSION)
    if view.filter == selectors.QueueFilter.ESCALATED and not is_lead:
        view = dataclasses.replace(view, filter=selectors.QueueFilter.ALL)
    matches = selectors.orders_search(search=view.search)
    now = timezone.now()
    page = selectors.review_queue_list(
        user=request.user, view=view, page=request.GET.get("page", 1), matches=matches, now=now
    )
    context = {
        "tab": "queue",
        "view": view,
        "filter": view.filter,
        "search": view.search,
        "page": page,
        "rows": [
            (
                task,
                selectors.review_deadline(due_at=task.due_at, now=now),
                selectors.duration_text(now - task.order.created_at),
                task.holder(now),
            )
            for task in page.object_list
        ],
        "counts": selectors.review_queue_counts(user=request.user, now=now),
        "is_lead": is_lead,
        "tab_links": {name: view.with_(filter=name) for name in selectors.QueueFilter.CHOICES},
        "bulk_form": BulkDecisionForm.fresh(view.querystring),
        "bulk_max": services.MAX_BULK_DECISIONS,
        "reject_reasons": RejectReason.choices,
        # Orders outside the queue that match a search, decided ones included, with links.
        "matches": selectors.orders_matching(matches=matches) if matches else [],
        "search_truncated": matches.truncated,
        "search_limit": selectors.SEARCH_LIMIT,
        "risk_levels": RiskLevel.choices,
        "sorts": list(selectors.QueueSort.LABELS.items()),
        "refresh_seconds": _refresh_seconds(),
        "now": now,
    }
    template = "reviews/_queue.html" if request.htmx else "reviews/queue.html"
    return render(request, template, context)


@reviewer_required
@require_GET
def recent(request: HttpRequest) -> HttpResponse:
    form = RecentFilterForm(request.GET)
    form.is_valid()  # what is invalid is dropped (and said), the rest still filters
    data = form.cleaned_data
    for name, errors in form.errors.items():
        messages.warning(request, RECENT_FILTER_DROPPED.format(field=name, error=" ".join(errors)))
    filter = selectors.RecentFilter(
        mine=request.GET.get("mine") == "1",
        search=data.get("q", ""),
        by=data.get("by", ""),
        reason=data.get("reason", ""),
        outcome=data.get("outcome", ""),
        since=data.get("since"),
        until=data.get("until"),
    )
    matches = selectors.orders_search(search=filter.search)
    page = selectors.review_recent_list(
        user=request.user, filter=filter, page=request.GET.get("page", 1), matches=matches
    )
    context = {
        "tab": "recent",
        "mine": filter.mine,
        "filter": filter,
        "page": page,
        "reviewers": selectors.reviewer_names(),
        "search_truncated": matches.truncated,
        "search_limit": selectors.SEARCH_LIMIT,
        "everyone_link": filter.with_(mine=""),
        "mine_link": filter.with_(mine="1"),
        "page_link_base": (filter.with_() + "&") if filter.params() else "",
        "reasons": RejectReason.choices,
        "outcomes": form.fields["outcome"].choices[1:],
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
    view = selectors.QueueView.from_params(request.GET)
    if task is not None:
        next_id = selectors.review_neighbour(user=request.user, view=view, task=task, forward=True)
        previous_id = selectors.review_neighbour(user=request.user, view=view, task=task, forward=False)
    else:
        next_id, previous_id = selectors.review_first(user=request.user, view=view), None
    user = request.user
    holder = task.holder(now) if review.is_open else None
    is_lead = user.has_perm(LEAD_PERMISSION)
    can_decide = review.is_open and (holder is None or holder.pk == user.pk)
    approved_first = review.is_open and task.first_approval_by == user.get_username()
    mine = review.is_open and task.claimed_by_id == user.pk
    context = {
        "review": review,
        "order": review.order,
        "task": task,
        "view": view,
        "deadline": selectors.review_deadline(due_at=task.due_at, now=now) if review.is_open else None,
        "age": selectors.duration_text(now - review.order.created_at),
        "can_decide": can_decide,
        # Four eyes: who gave the first approval cannot give the second (the workflow refuses it too).
        "can_approve": can_decide and not approved_first,
        "approved_first": approved_first,
        "holder": holder,
        "claim_mine": mine,
        "claim_lapsed": mine and holder is None,
        "claim_lapses_at": task.claim_lapses_at if mine else None,
        "claim_warn_seconds": int(settings.REVIEW_CLAIM_WARN_MINUTES * 60),
        "claim_minutes": f"{settings.REVIEW_CLAIM_TIMEOUT_MINUTES:g}",
        "is_lead": is_lead,
        "can_release_others": is_lead or user.has_perm("reviews.change_reviewtask"),
        # Whom a lead can hand the review to (one query, for leads on an open review only).
        "reviewers": (
            [
                name
                for name in selectors.reviewer_names()
                if name not in (selectors.POLICY_ACTOR, task.first_approval_by)
            ]
            if is_lead and review.is_open
            else []
        ),
        # Leads: the list entries matching the order now, and "Block this address" / "Allow this customer".
        "can_list": is_lead,
        "list_entries": risk_selectors.order_list_entries(order=review.order) if is_lead else [],
        "can_note": user.has_perm(NOTE_PERMISSION),
        "can_label": user.has_perm(LABEL_PERMISSION),
        "label_kinds": OrderLabel.Kind.choices,
        "note_max": MAX_ORDER_NOTE_LENGTH,
        "approve_form": DecisionForm.fresh("approve"),
        "reject_form": DecisionForm.fresh("reject"),
        "reject_reasons": RejectReason.choices,
        "next_url": _order_url(next_id, view) if next_id else "",
        "previous_url": _order_url(previous_id, view) if previous_id else "",
        "queue_url": reverse("reviews:queue") + (f"?{view.querystring}" if view.querystring else ""),
        "admin_url": (
            reverse("admin:orderweb_order_change", args=[review.order.pk])
            if user.is_staff and user.has_perm("orderweb.view_order")
            else ""
        ),
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
    context: dict = {
        "order": order,
        "live": None,
        "error": "",
        "detail": "",
        "unavailable": False,
        "refresh_seconds": _refresh_seconds(),
    }
    gone = False
    try:
        context["live"] = selectors.order_status_summary(status=order_workflow_status(order.workflow_id))
    except WorkflowCannotAnswer:
        context["error"] = LIVE_STATUS_STUCK
    except WorkersNotAnswering as err:
        context["error"] = LIVE_STATUS_NO_WORKERS.format(since=f"{err.since:%H:%M:%S}" if err.since else "now")
        context["detail"] = str(err)
        context["unavailable"] = True
    except TemporalUnavailable as err:
        context["error"] = LIVE_STATUS_UNAVAILABLE.format(address=settings.TEMPORAL_ADDRESS)
        context["detail"] = str(err)
        context["unavailable"] = True
    except WorkflowGone as err:
        gone = True
        context["error"] = (
            LIVE_STATUS_GONE_FINISHED if order.is_terminal else LIVE_STATUS_NO_WORKFLOW.format(detail=err)
        )
    except (WorkflowQueryFailedError, WorkflowQueryRejectedError) as err:
        context["error"] = LIVE_STATUS_QUERY_FAILED.format(detail=err)
    # Nothing more will change: the workflow has finished, or Temporal no longer has it (a
    # finished order's workflow deleted after retention, or one the reconciler flagged).
    finished = (
        context["live"] is not None and OrderState(context["live"]["workflow_status"]).is_terminal and order.is_terminal
    ) or (gone and (order.is_terminal or order.needs_attention))
    context["finished"] = finished
    context["left_review"] = _left_review_message(order, context["live"])
    state = (context["live"] or {}).get("workflow_status") or order.status
    context["left_state_label"] = Order.Status(state).label if state in Order.Status.values else state
    response = render(request, "reviews/_status.html", context)
    if finished and request.htmx:
        return HttpResponseStopPolling(response.content)
    return response


def _left_review_message(order: Order, live: dict | None) -> str:
    """Why the decision panel must lock, or "" while the order still waits for review. Postgres
    first (the task closed: who or what closed it); else the workflow's own answer (it moved on
    and the projection has not landed yet)."""
    # The task and its order in one statement: the workflow closes the task and moves the order
    # in one transaction, and ``order`` (read earlier in the request) may predate it, without the
    # cancel's reason.
    task = (
        ReviewTask.objects.filter(order=order)
        .select_related("order")
        .order_by("-pk")
        .only("status", "decided_by_name", "decided_at", "note", "order__status", "order__cancel_reason")
        .first()
    )
    if task is not None:
        order = task.order
    state = (live or {}).get("workflow_status") or order.status
    if task is not None and task.status != ReviewTask.Status.OPEN:
        when = f" at {timezone.localtime(task.decided_at):%H:%M:%S}" if task.decided_at else ""
        outcome = task.get_status_display().lower()
        if task.decided_by_name:
            return LEFT_REVIEW_DECIDED.format(outcome=outcome, who=task.decided_by_name, when=when, state=state)
        reason = f" ({order.cancel_reason})" if order.cancel_reason else ""
        return LEFT_REVIEW_CLOSED.format(outcome=outcome + reason, when=when, state=state)
    if live is None:
        return ""
    if (
        live.get("workflow_status")
        not in (OrderState.AWAITING_MANUAL_REVIEW, OrderState.PROCESSING, OrderState.STARTED)
        or live.get("review_decision")
        or live.get("cancel_requested")
    ):
        why = ""
        if live.get("review_decision"):
            why = f" (decision: {live['review_decision']})"
        elif live.get("cancel_requested"):
            why = " (cancellation requested)"
        elif live.get("reason"):
            why = f" ({live['reason']})"
        return LEFT_REVIEW_LIVE.format(state=live.get("workflow_status"), why=why)
    return ""


# -- actions -----------------------------------------------------------------------------------


def _order_url(order: Order | str, view: selectors.QueueView | None = None) -> str:
    order_id = order if isinstance(order, str) else order.order_id
    url = reverse("reviews:order", args=[order_id])
    return f"{url}?{view.querystring}" if view is not None and view.querystring else url


def _say(request: HttpRequest, action: Callable[[], str]) -> None:
    """Run a service that answers with a message: it, or its ValidationError's words."""
    try:
        messages.success(request, action())
    except ValidationError as err:
        messages.error(request, " ".join(err.messages))


@reviewer_required
@require_POST
def claim(request: HttpRequest, order_id: str) -> HttpResponse:
    order = _order_or_404(order_id)
    _say(request, lambda: services.review_task_claim(order=order, user=request.user))
    return redirect(_next_url(request, _order_url(order)))


@reviewer_required
@require_POST
def release(request: HttpRequest, order_id: str) -> HttpResponse:
    order = _order_or_404(order_id)
    _say(request, lambda: services.review_task_release(order=order, user=request.user))
    return redirect(_next_url(request, _order_url(order)))


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


@reviewer_required
@require_POST
def extend(request: HttpRequest, order_id: str) -> HttpResponse:
    """Keep one's claim (the page's warning offers it before the claim lapses). The page's script
    asks for JSON and stays where it is; without script, a message and a redirect."""
    order = _order_or_404(order_id)
    try:
        message, lapses_at = services.review_task_extend(order=order, user=request.user)
    except ValidationError as err:
        if _wants_json(request):
            return JsonResponse({"ok": False, "message": " ".join(err.messages)}, status=409)
        messages.error(request, " ".join(err.messages))
    else:
        if _wants_json(request):
            return JsonResponse({"ok": True, "message": message, "lapses_at": lapses_at.timestamp()})
        messages.success(request, message)
    return redirect(_next_url(request, _order_url(order)))


@reviewer_required
@require_POST
def reassign(request: HttpRequest, order_id: str) -> HttpResponse:
    order = _order_or_404(order_id)
    _say(
        request,
        lambda: services.review_task_reassign(
            order=order, user=request.user, to_username=request.POST.get("to", "")[:150]
        ),
    )
    return redirect(_next_url(request, _order_url(order)))


@reviewer_required
@require_POST
def note(request: HttpRequest, order_id: str) -> HttpResponse:
    order = _order_or_404(order_id)

    def add() -> str:
        order_note_add(order=order, user=request.user, text=request.POST.get("note", ""), source=OrderEvent.Source.WEB)
        return NOTE_ADDED.format(order_id=order.order_id)

    _say(request, add)
    return redirect(_next_url(request, _order_url(order)) + "#notes")


@reviewer_required
@require_POST
def label(request: HttpRequest, order_id: str) -> HttpResponse:
    """Set an outcome label (or remove it: ``remove=1``). htmx swaps the Outcome panel in place
    and announces the answer there; without script, a message and a redirect back to it."""
    if not request.user.has_perm(LABEL_PERMISSION):  # the panel offers no form to those without it
        return render(request, "reviews/forbidden.html", {"needs_labels": True}, status=403)
    order = _order_or_404(order_id)
    data = request.POST
    ok = True
    try:
        if data.get("remove") == "1":
            change = order_label_remove(
                order=order,
                label=data.get("label", ""),
                source=OrderLabel.Source.REVIEW,
                user=request.user,
                note=data.get("note", ""),
            )
        else:
            change = order_label_set(
                order=order,
                label=data.get("label", ""),
                source=OrderLabel.Source.REVIEW,
                user=request.user,
                note=data.get("note", ""),
                source_reference=data.get("source_reference", ""),
            )
        message = change.message
    except ValidationError as err:
        ok, message = False, " ".join(err.messages)
    if request.htmx:
        return render(
            request,
            "reviews/_labels.html",
            {
                "order": order,
                "labels": list(order.labels.order_by("created_at", "pk")),
                "can_label": request.user.has_perm(LABEL_PERMISSION),
                "label_kinds": OrderLabel.Kind.choices,
                "label_message": message,
                "label_ok": ok,
            },
        )  # 200 either way: htmx swaps only 2xx answers, and the panel says what went wrong
    (messages.success if ok else messages.error)(request, message)
    return redirect(_order_url(order) + "#labels")


@reviewer_required
@require_POST
def bulk(request: HttpRequest) -> HttpResponse:
    """Approve or reject the selected orders of the queue, each as a single decision would be;
    the answers (one line per order) are kept in the session for the result page."""
    form = BulkDecisionForm(request.POST)
    queue_url = reverse("reviews:queue")
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, error)
        return redirect(queue_url + (f"?{form.data.get('queue', '')}" if form.data.get("queue") else ""))
    data = form.cleaned_data
    try:
        lines = services.review_decide_bulk(
            order_ids=data["orders"],
            user=request.user,
            decision=data["decision"],
            note=data["note"],
            reason_code=data["reason_code"],
            batch_id=str(data["batch_id"]),
        )
    except ValidationError as err:
        messages.error(request, " ".join(err.messages))
        return redirect(queue_url + (f"?{data['queue']}" if data["queue"] else ""))
    batch = str(data["batch_id"])
    kept = [key for key in request.session.get("reviews:bulk", []) if key != batch][-(BULK_KEPT - 1) :]
    for old in set(request.session.get("reviews:bulk", [])) - set(kept):
        request.session.pop(BULK_SESSION_KEY.format(batch=old), None)
    request.session["reviews:bulk"] = [*kept, batch]
    request.session[BULK_SESSION_KEY.format(batch=batch)] = {
        "decision": data["decision"],
        "queue": data["queue"],
        "lines": [dataclasses.asdict(line) for line in lines],
    }
    summary = selectors.bulk_summary(lines=[dataclasses.asdict(line) for line in lines])
    level = messages.SUCCESS if all(line.status == "applied" for line in lines) else messages.WARNING
    messages.add_message(request, level, BULK_DONE.format(decision=data["decision"], summary=summary))
    return redirect("reviews:bulk_result", batch=batch)


@reviewer_required
@require_GET
def bulk_result(request: HttpRequest, batch: uuid.UUID) -> HttpResponse:
    kept = request.session.get(BULK_SESSION_KEY.format(batch=batch))
    if kept is None:  # an older batch, or another person's: the orders' timelines have the answers
        return render(
            request,
            "reviews/bulk.html",
            {"tab": "queue", "gone": BULK_RESULT_GONE, "lines": [], "queue_url": reverse("reviews:queue")},
        )
    lines = kept["lines"]
    queue_url = reverse("reviews:queue") + (f"?{kept['queue']}" if kept["queue"] else "")
    return render(
        request,
        "reviews/bulk.html",
        {
            "tab": "queue",
            "decision": kept["decision"],
            "lines": lines,
            "summary": selectors.bulk_summary(lines=lines),
            "counts": selectors.bulk_counts(lines=lines),
            "queue_url": queue_url,
        },
    )


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
    data = form.cleaned_data
    view = selectors.QueueView.from_querystring(data["queue"])
    try:
        outcome = services.review_decide(
            order=order,
            user=request.user,
            decision=data["decision"],
            note=data["note"],
            action_id=str(data["action_id"]),
            reason_code=data["reason_code"],
        )
    except ValidationError as err:
        messages.error(request, " ".join(err.messages))
        return redirect(_order_url(order, view))
    messages.add_message(request, _LEVELS[outcome.level], outcome.message)
    if outcome.accepted and data["then"] == "next":
        return redirect(_next_after(request, order, view))
    return redirect(_order_url(order, view))


def _next_after(request: HttpRequest, order: Order, view: selectors.QueueView) -> str:
    """Where "& next" goes: the next order the reviewer can decide in their queue, after the
    one just decided; the queue itself (with a message) when nothing is left."""
    task = ReviewTask.objects.filter(order=order).order_by("-pk").first()
    next_id = selectors.review_neighbour(user=request.user, view=view, task=task) if task is not None else None
    next_id = next_id or selectors.review_first(user=request.user, view=view)
    if next_id:
        return _order_url(next_id, view)
    messages.info(request, QUEUE_DONE.format(view=" (as filtered)" if view.querystring else ""))
    return reverse("reviews:queue") + (f"?{view.querystring}" if view.querystring else "")


# -- the leads' insights ------------------------------------------------------------------------------


@lead_required
@require_GET
def insights(request: HttpRequest) -> HttpResponse:
    """How the team decides and how its decisions turned out, for a date range (one query;
    ``?format=csv`` downloads the same figures)."""
    form = InsightsForm(request.GET)
    if form.is_valid():
        since, until = form.cleaned_data["since"], form.cleaned_data["until"]
    else:
        since, until = team_insights.default_range()
        for error in form.errors.get("__all__", []) + [
            e for name, errs in form.errors.items() if name != "__all__" for e in errs
        ]:
            messages.warning(request, error)
    figures = team_insights.review_insights(since=since, until=until)
    if request.GET.get("format") == "csv":
        response = HttpResponse(team_insights.insights_csv(figures), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="review-insights-{since}-{until}.csv"'
        return response
    query = f"since={since}&until={until}"
    return render(
        request,
        "reviews/insights.html",
        {
            "tab": "insights",
            "insights": figures,
            "since": since,
            "until": until,
            "csv_url": reverse("reviews:insights") + f"?{query}&format=csv",
            "ranges": [
                (label, f"since={until - timedelta(days=days - 1)}&until={until}")
                for label, days in (("7 days", 7), ("30 days", 30), ("90 days", 90))
            ],
        },
    )
