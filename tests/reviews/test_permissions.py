"""The permission matrix: anonymous -> login page, signed-in non-reviewers (plain and staff) ->
403, reviewers and superusers -> the page or the action. Every page and every action."""

from __future__ import annotations

import pytest
from django.urls import reverse

from orderweb.models import OrderEvent
from reviews.models import ReviewTask
from tests.reviews.conftest import client_for, make_waiting_order

pytestmark = pytest.mark.django_db

PAGES = ["reviews:queue", "reviews:recent", "reviews:order", "reviews:order_status"]
ACTIONS = ["reviews:claim", "reviews:release", "reviews:decide"]


def _url(name: str, order_id: str) -> str:
    if name in ("reviews:queue", "reviews:recent"):
        return reverse(name)
    return reverse(name, args=[order_id])


@pytest.mark.parametrize("name", PAGES + ACTIONS)
def test_anonymous_is_sent_to_login(name, people):
    order = make_waiting_order()
    url = _url(name, order.order_id)
    client = client_for(None)
    response = client.post(url, {"decision": "approve"}) if name in ACTIONS else client.get(url)
    assert response.status_code == 302
    assert response.url == f"{reverse('login')}?next={url}"
    assert not OrderEvent.objects.filter(order=order).exclude(type="order_created").exists()


def test_anonymous_htmx_poll_gets_a_client_redirect_to_login(people):
    response = client_for(None).get(
        reverse("reviews:queue"), HTTP_HX_REQUEST="true", HTTP_HX_CURRENT_URL="http://testserver/reviews/?filter=mine"
    )
    assert response.status_code == 200
    assert response["HX-Redirect"] == f"{reverse('login')}?next=/reviews/%3Ffilter%3Dmine"


@pytest.mark.parametrize("who", ["plain", "staff"])
@pytest.mark.parametrize("name", PAGES + ACTIONS)
def test_non_reviewers_get_403(name, who, people):
    order = make_waiting_order()
    url = _url(name, order.order_id)
    client = client_for(people[who])
    response = client.post(url, {"decision": "approve"}) if name in ACTIONS else client.get(url)
    assert response.status_code == 403
    assert "You are not a reviewer" in response.content.decode()
    task = ReviewTask.objects.get(order=order)
    assert task.claimed_by is None and task.status == ReviewTask.Status.OPEN
    assert not OrderEvent.objects.filter(order=order).exclude(type="order_created").exists()


@pytest.mark.parametrize("who", ["reviewer", "superuser"])
@pytest.mark.parametrize("name", ["reviews:queue", "reviews:recent", "reviews:order"])
def test_reviewers_see_the_pages(name, who, people):
    order = make_waiting_order()
    response = client_for(people[who]).get(_url(name, order.order_id))
    assert response.status_code == 200
    if name != "reviews:recent":
        assert order.order_id in response.content.decode()


@pytest.mark.parametrize("who", ["reviewer", "superuser"])
def test_reviewers_can_claim_and_release(who, people):
    order = make_waiting_order()
    client = client_for(people[who])
    response = client.post(reverse("reviews:claim", args=[order.order_id]))
    assert response.status_code == 302
    assert ReviewTask.objects.get(order=order).claimed_by == people[who]
    response = client.post(reverse("reviews:release", args=[order.order_id]))
    assert response.status_code == 302
    assert ReviewTask.objects.get(order=order).claimed_by is None


@pytest.mark.parametrize("name", ACTIONS)
def test_actions_refuse_get(name, people):
    order = make_waiting_order()
    response = client_for(people["reviewer"]).get(_url(name, order.order_id))
    assert response.status_code == 405


def test_actions_need_csrf(people):
    from django.test import Client

    order = make_waiting_order()
    client = Client(enforce_csrf_checks=True)
    client.force_login(people["reviewer"])
    response = client.post(reverse("reviews:claim", args=[order.order_id]))
    assert response.status_code == 403
    assert ReviewTask.objects.get(order=order).claimed_by is None


def test_unknown_order_is_404(people):
    response = client_for(people["reviewer"]).get(reverse("reviews:order", args=["NOPE-1"]))
    assert response.status_code == 404


def test_login_page_signs_a_reviewer_in(people):
    from django.test import Client

    client = Client()
    response = client.post(reverse("login"), {"username": "rita", "password": "review-pass-123"})
    assert response.status_code == 302 and response.url == "/reviews/"
    assert client.get("/reviews/").status_code == 200
    bad = Client().post(reverse("login"), {"username": "rita", "password": "wrong"})
    assert bad.status_code == 200
    assert "Please enter a correct username and password" in bad.content.decode()
