"""The leads' risk pages: the allow/block lists, the risk policy's versions, backtests.

Thin views over reviews.risk_services (changes) and reviews.risk_selectors (reads). Every page
needs ``reviews.lead_review`` (the ``review_lead`` group); a plain reviewer gets 403. Every POST
leaves a message and redirects.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from orderweb.models import Order
from reviews import risk_selectors, risk_services
from reviews.backtest import DEFAULT_DAYS, backtest_csv, backtest_range, risk_backtest_run
from reviews.forms import BacktestForm, ListEntryForm, OrderListForm, policy_form_fields
from reviews.models import RiskBacktest, RiskListEntry, RiskPolicy
from reviews.views import reviewer_required

LEAD_ONLY = "Only review leads can see the allow and block lists and the risk policy."
ORDER_FIELD_LABELS = {"email": "customer's email", "address": "address", "name": "customer's name", "ip": "client IP"}


def lead_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @reviewer_required
    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not risk_services.may_lead(request.user):
            return render(request, "reviews/lead_forbidden.html", {"why": LEAD_ONLY}, status=403)
        return view(request, *args, **kwargs)

    return wrapper


def _say(request: HttpRequest, action: Callable[[], str]) -> bool:
    try:
        messages.success(request, action())
        return True
    except ValidationError as err:
        for message in err.messages:
            messages.error(request, message)
        return False


def _form_errors(request: HttpRequest, form) -> None:
    for name, errors in form.errors.items():
        label = form.fields[name].label or name.replace("_", " ").capitalize() if name in form.fields else ""
        for error in errors:
            messages.error(request, f"{label}: {error}" if label else error)


# -- the lists ---------------------------------------------------------------------------------


@lead_required
@require_http_methods(["GET", "POST"])
def lists(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = ListEntryForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data

            def add() -> str:
                entry = risk_services.risk_list_entry_add(
                    user=request.user,
                    kind=data["kind"],
                    field=data["field"],
                    value=data["value"],
                    reason=data["reason"],
                    expires_at=form.expires_at(),
                )
                return risk_services.LIST_ADDED.format(
                    value=entry.value, kind=entry.kind, field=entry.get_field_display().lower()
                )

            if _say(request, add):
                return redirect(reverse("reviews:risk_lists") + f"?kind={data['kind']}")
        else:
            _form_errors(request, form)
        return redirect("reviews:risk_lists")
    kind = request.GET.get("kind", "")
    page = risk_selectors.risk_lists_page(kind=kind if kind in RiskListEntry.Kind.values else "")
    return render(
        request,
        "reviews/risk_lists.html",
        {
            "tab": "lists",
            "page": page,
            "kind": page.kind,
            "form": ListEntryForm(),
            "kinds": RiskListEntry.Kind.choices,
            "fields": RiskListEntry.Field.choices,
        },
    )


@lead_required
@require_POST
def list_remove(request: HttpRequest, entry_id: int) -> HttpResponse:
    _say(
        request,
        lambda: risk_services.risk_list_entry_remove(
            user=request.user, entry_id=entry_id, reason=request.POST.get("reason", "")
        ),
    )
    return redirect(
        request.POST.get("back") == "order"
        and request.POST.get("order")
        and reverse("reviews:order", args=[request.POST["order"]]) + "#lists"
        or reverse("reviews:risk_lists")
    )


@lead_required
@require_POST
def order_list_add(request: HttpRequest, order_id: str) -> HttpResponse:
    """ "Block this address", "Allow this customer" (and the like) on an order's page."""
    order = Order.objects.filter(order_id=order_id).first()
    if order is None:
        raise Http404(order_id)
    form = OrderListForm(request.POST)
    if not form.is_valid():
        _form_errors(request, form)
        return redirect(reverse("reviews:order", args=[order_id]) + "#lists")
    data = form.cleaned_data
    value = risk_services.order_list_value(order, data["field"])

    def add() -> str:
        if not value.strip():
            raise ValidationError(
                risk_services.LIST_ORDER_HAS_NO.format(order_id=order.order_id, field=ORDER_FIELD_LABELS[data["field"]])
            )
        entry = risk_services.risk_list_entry_add(
            user=request.user,
            kind=data["kind"],
            field=data["field"],
            value=value,
            reason=data["reason"],
            expires_at=form.expires_at(),
            order=order,
        )
        return risk_services.LIST_ADDED.format(
            value=entry.value, kind=entry.kind, field=entry.get_field_display().lower()
        )

    _say(request, add)
    return redirect(reverse("reviews:order", args=[order_id]) + "#lists")


# -- the policies ------------------------------------------------------------------------------


@lead_required
@require_GET
def policies(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "reviews/risk_policies.html",
        {
            "tab": "policy",
            "rows": risk_selectors.risk_policies_page(),
        },
    )


@lead_required
@require_POST
def policy_draft(request: HttpRequest) -> HttpResponse:
    based_on = RiskPolicy.objects.filter(pk=request.POST.get("based_on") or 0).first()
    try:
        draft = risk_services.risk_policy_draft(user=request.user, based_on=based_on)
    except ValidationError as err:
        messages.error(request, " ".join(err.messages))
        return redirect("reviews:risk_policies")
    messages.success(
        request,
        risk_services.POLICY_DRAFTED.format(
            version=draft.version,
            based_on=based_on.version if based_on else (draft.based_on.version if draft.based_on else "the settings"),
        ),
    )
    return redirect("reviews:risk_policy", version=draft.version)


def _policy_or_404(version: int) -> RiskPolicy:
    policy = RiskPolicy.objects.select_related("based_on").filter(version=version).first()
    if policy is None:
        raise Http404(f"no policy v{version}")
    return policy


def _differs(a, b) -> bool:
    """24 and 24.0 are the same threshold."""
    try:
        return float(a) != float(b)
    except (TypeError, ValueError):
        return str(a) != str(b)


def _policy_rows(policy: RiskPolicy, data=None, errors=None) -> tuple[list, list]:
    points_fields, threshold_fields = policy_form_fields()
    errors = errors or {}
    active = risk_services.active_policy()

    def row(name: str, label: str, stored, active_value):
        value = data.get(name, stored) if data is not None else stored
        return {
            "name": name,
            "label": label,
            "value": value,
            "errors": errors.get(name, []),
            "active": active_value,
            "changed": active is not None and _differs(active_value, stored),
        }

    points = [
        row(name, label, policy.points.get(name[7:], ""), active.points.get(name[7:], "") if active else "")
        for name, label in points_fields
    ]
    thresholds = [
        row(name, label, policy.thresholds.get(name, ""), active.thresholds.get(name, "") if active else "")
        for name, label in threshold_fields
    ]
    return points, thresholds


@lead_required
@require_http_methods(["GET", "POST"])
def policy(request: HttpRequest, version: int) -> HttpResponse:
    found = _policy_or_404(version)
    data, errors = None, {}
    if request.method == "POST":
        data = request.POST
        points = {name[7:]: data.get(name, "") for name, _ in policy_form_fields()[0]}
        thresholds = {name: data.get(name, "") for name, _ in policy_form_fields()[1]}
        try:
            risk_services.risk_policy_update(
                user=request.user, policy_id=found.pk, points=points, thresholds=thresholds, note=data.get("note", "")
            )
        except ValidationError as err:
            if hasattr(err, "error_dict"):
                errors = {name: [" ".join(e.messages) for e in errs] for name, errs in err.error_dict.items()}
                messages.error(
                    request,
                    f"Draft v{found.version} was not saved: fix the {len(errors)} "
                    f"field{'s' if len(errors) != 1 else ''} marked below.",
                )
            else:
                messages.error(request, " ".join(err.messages))
                return redirect("reviews:risk_policy", version=version)
        else:
            messages.success(request, risk_services.POLICY_SAVED.format(version=found.version))
            return redirect("reviews:risk_policy", version=version)
    points, thresholds = _policy_rows(found, data, errors)
    today = timezone.now().date()
    fresh = risk_services.fresh_backtest(found) if found.is_draft else None
    return render(
        request,
        "reviews/risk_policy.html",
        {
            "tab": "policy",
            "policy": found,
            "points": points,
            "thresholds": thresholds,
            "note": data.get("note", found.note) if data is not None else found.note,
            "editable": found.is_draft,
            "errors": errors,
            "fresh_backtest": fresh,
            "backtests": list(found.backtests.select_related("compared_to")[:10]),
            "audit": list(found.audit.all()[:20]),
            "backtest_since": today - timedelta(days=DEFAULT_DAYS),
            "backtest_until": today,
            "active": risk_services.active_policy(),
        },
        status=400 if errors else 200,
    )


@lead_required
@require_POST
def policy_activate(request: HttpRequest, version: int) -> HttpResponse:
    found = _policy_or_404(version)
    _say(
        request,
        lambda: risk_services.risk_policy_activate(
            user=request.user, policy_id=found.pk, reason=request.POST.get("reason", "")
        ),
    )
    return redirect("reviews:risk_policy", version=version)


def _day_start(day) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


@lead_required
@require_POST
def policy_backtest(request: HttpRequest, version: int) -> HttpResponse:
    found = _policy_or_404(version)
    form = BacktestForm(request.POST)
    if not form.is_valid():
        _form_errors(request, form)
        return redirect("reviews:risk_policy", version=version)
    try:
        since, until = backtest_range(
            since=_day_start(form.cleaned_data["since"]),
            until=_day_start(form.cleaned_data["until"] + timedelta(days=1)),
        )
        backtest = risk_backtest_run(policy=found, user=request.user, since=since, until=until)
    except ValidationError as err:
        messages.error(request, " ".join(err.messages))
        return redirect("reviews:risk_policy", version=version)
    return redirect("reviews:risk_backtest", pk=backtest.pk)


@lead_required
@require_GET
def backtest(request: HttpRequest, pk: int) -> HttpResponse:
    found = RiskBacktest.objects.select_related("policy", "compared_to").filter(pk=pk).first()
    if found is None:
        raise Http404(f"no backtest {pk}")
    return render(
        request,
        "reviews/risk_backtest.html",
        {
            "tab": "policy",
            "backtest": found,
            "r": found.result,
            "view": risk_selectors.backtest_view(found),
        },
    )


@lead_required
@require_GET
def backtest_export(request: HttpRequest, pk: int) -> HttpResponse:
    found = RiskBacktest.objects.select_related("policy", "compared_to").filter(pk=pk).first()
    if found is None:
        raise Http404(f"no backtest {pk}")
    response = HttpResponse(backtest_csv(found), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="backtest-{found.pk}-v{found.policy.version}.csv"'
    return response
