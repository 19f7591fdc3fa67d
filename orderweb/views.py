"""The pages every signed-in person has, whatever their role: their own settings."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from orderweb.forms import PreferencesForm
from orderweb.preferences import (
    TIME_ZONE_UNKNOWN,
    preferences_shortcuts_set,
    preferences_time_zone_choose,
    preferences_time_zone_detected,
    shortcuts_on,
    time_zone_chosen,
    time_zone_of,
)

SAVED = "Your settings are saved."
SHORTCUTS_NOW = "Single-key shortcuts are {state}."


def _back(request: HttpRequest, default: str) -> str:
    """Where the person came from (``next``), if it is this site."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return target
    return default


@login_required
def preferences(request: HttpRequest) -> HttpResponse:
    chosen = time_zone_of(request.session) if time_zone_chosen(request.session) else ""
    detected = "" if chosen else (time_zone_of(request.session) or "")
    if request.method == "POST":
        form = PreferencesForm(request.POST, detected=detected)
        if form.is_valid():
            preferences_time_zone_choose(session=request.session, name=form.cleaned_data["time_zone"])
            preferences_shortcuts_set(session=request.session, on=form.cleaned_data["shortcuts"])
            messages.success(request, SAVED)
            return redirect(_back(request, reverse("preferences")))
    else:
        form = PreferencesForm(
            initial={"time_zone": chosen, "shortcuts": shortcuts_on(request.session)}, detected=detected
        )
    return render(request, "preferences.html", {"form": form, "next": _back(request, ""), "tab": "preferences"})


@require_POST
def preferences_time_zone(request: HttpRequest) -> HttpResponse:
    """The browser's zone (orderweb/static/orderweb/time-zone.js); a person's choice wins."""
    name = request.POST.get("time_zone", "")
    if not preferences_time_zone_detected(session=request.session, name=name):
        return HttpResponseBadRequest(TIME_ZONE_UNKNOWN.format(name=name[:64]), content_type="text/plain")
    return HttpResponse(status=204)


@login_required
@require_POST
def preferences_shortcuts(request: HttpRequest) -> HttpResponse:
    """The switch beside the shortcuts on every review page."""
    on = request.POST.get("shortcuts") == "on"
    preferences_shortcuts_set(session=request.session, on=on)
    messages.success(request, SHORTCUTS_NOW.format(state="on" if on else "off"))
    return redirect(_back(request, reverse("reviews:queue")))
