"""A person's own settings (orderweb/preferences.py): the time zone from the browser or chosen, every
time on the review pages and in the admin shown in it with UTC on hover, and the switch for the
single-key shortcuts. In Chromium: tests/browser/test_preferences.py."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from django.urls import reverse

from orderweb.models import Order, OrderEvent
from orderweb.preferences import TIME_ZONE_UNKNOWN, moment_html
from orderweb.views import SAVED
from tests.reviews.conftest import client_for, decide_in_db, make_user, make_waiting_order

pytestmark = pytest.mark.django_db

DECIDED = datetime(2026, 1, 15, 1, 4, 5, tzinfo=UTC)  # 02:04 in Berlin, 20:04 the day before in New York


@pytest.fixture
def rita(db):
    return make_user("rita", reviewer=True, superuser=True)


def _decided_order():
    order = make_waiting_order(order_id="TZ-1")
    decide_in_db(order, "approved", by="rita", at=DECIDED)
    return order


def _recent_cell(client) -> str:
    html = client.get(reverse("reviews:recent")).content.decode()
    return re.search(r'<tr data-order="TZ-1">\s*<td>(.*?)</td>', html, re.S).group(1)


def test_times_are_in_utc_until_the_browser_says_its_zone_then_in_that_zone_with_utc_on_hover(rita):
    _decided_order()
    client = client_for(rita)
    assert (
        _recent_cell(client)
        == '<time datetime="2026-01-15T01:04:05Z" title="2026-01-15 01:04:05 UTC">Jan 15, 01:04</time>'
    )
    assert client.post(reverse("preferences_time_zone"), {"time_zone": "Europe/Berlin"}).status_code == 204
    assert (
        _recent_cell(client)
        == '<time datetime="2026-01-15T01:04:05Z" title="2026-01-15 01:04:05 UTC">Jan 15, 02:04</time>'
    )
    page = client.get(reverse("reviews:recent")).content.decode()
    assert 'id="time-zone-script" data-known="1"' in page


def test_a_zone_the_person_chose_wins_over_the_browsers_and_can_be_given_back(rita):
    _decided_order()
    client = client_for(rita)
    client.post(reverse("preferences_time_zone"), {"time_zone": "Europe/Berlin"})
    response = client.post(
        reverse("preferences"), {"time_zone": "America/New_York", "shortcuts": "on", "next": "/reviews/decided/"}
    )
    assert response.status_code == 302 and response.url == "/reviews/decided/"
    assert SAVED in client.get(response.url).content.decode()
    client.post(reverse("preferences_time_zone"), {"time_zone": "Asia/Tokyo"})  # the browser's guess: ignored
    assert _recent_cell(client).endswith(">Jan 14, 20:04</time>")
    client.post(reverse("preferences"), {"time_zone": "", "shortcuts": "on"})  # back to the browser's
    assert _recent_cell(client).endswith(">Jan 15, 01:04</time>")  # UTC until the browser says again
    assert 'data-known="0"' in client.get(reverse("reviews:recent")).content.decode()


def test_an_unknown_zone_is_refused_and_changes_nothing(rita):
    client = client_for(rita)
    response = client.post(reverse("preferences_time_zone"), {"time_zone": "Mars/Olympus_Mons"})
    assert response.status_code == 400
    assert response.content.decode() == TIME_ZONE_UNKNOWN.format(name="Mars/Olympus_Mons")
    form = client.post(reverse("preferences"), {"time_zone": "Mars/Olympus_Mons"})
    assert form.status_code == 200 and "Select a valid choice." in form.content.decode()
    assert "time_zone" not in client.session


def test_the_admin_shows_times_in_the_persons_zone_with_utc_on_hover(rita):
    order = _decided_order()
    Order.objects.filter(pk=order.pk).update(created_at=DECIDED)
    OrderEvent.objects.filter(order=order).update(created_at=DECIDED)
    client = client_for(rita)
    client.post(reverse("preferences_time_zone"), {"time_zone": "Europe/Berlin"})
    expected = '<time datetime="2026-01-15T01:04:05Z" title="2026-01-15 01:04:05 UTC">2026-01-15 02:04:05</time>'
    listing = client.get(reverse("admin:orderweb_order_changelist")).content.decode()
    assert f'<td class="field-created_at">{expected}</td>' in listing
    assert "(times in Europe/Berlin)" in listing
    page = client.get(reverse("admin:orderweb_order_change", args=[order.pk])).content.decode()
    assert page.count(expected) >= 2  # "created at" and the timeline's first event


def test_the_shortcuts_switch_turns_them_off_on_every_review_page_and_back_on(rita):
    order = make_waiting_order(order_id="KEYS-1")
    client = client_for(rita)
    queue = client.get(reverse("reviews:queue")).content.decode()
    assert '<html lang="en" data-shortcuts="on">' in queue and 'class="key-hints' in queue
    response = client.post(reverse("preferences_shortcuts"), {"shortcuts": "off", "next": "/reviews/?filter=mine"})
    assert response.status_code == 302 and response.url == "/reviews/?filter=mine"
    for url in (reverse("reviews:queue"), reverse("reviews:order", args=[order.order_id]), reverse("reviews:recent")):
        html = client.get(url).content.decode()
        assert '<html lang="en" data-shortcuts="off">' in html, url
        assert 'class="key-hints' not in html, url  # no hints for keys that do nothing
        assert "Single-key shortcuts are <strong>off</strong>." in html, url
    settings_page = client.get(reverse("preferences")).content.decode()
    assert re.search(r'<input type="checkbox" name="shortcuts" [^>]*id="id_shortcuts"(?![^>]*checked)', settings_page)
    client.post(reverse("preferences_shortcuts"), {"shortcuts": "on"})
    assert '<html lang="en" data-shortcuts="on">' in client.get(reverse("reviews:queue")).content.decode()


def test_a_redirect_after_a_setting_stays_on_this_site(rita):
    client = client_for(rita)
    response = client.post(reverse("preferences_shortcuts"), {"shortcuts": "off", "next": "https://evil.example/"})
    assert response.url == reverse("reviews:queue")


def test_moments_from_the_workflow_are_iso_text_in_utc():
    assert moment_html("2026-01-15T01:04:05.123+00:00", "H:i:s") == (
        '<time datetime="2026-01-15T01:04:05.123000Z" title="2026-01-15 01:04:05 UTC">01:04:05</time>'
    )
    assert moment_html("not a time") == "" and moment_html(None) == ""


def test_the_settings_need_a_signed_in_person(client):
    assert client.get(reverse("preferences")).status_code == 302
    assert client.post(reverse("preferences_shortcuts"), {"shortcuts": "off"}).status_code == 302
