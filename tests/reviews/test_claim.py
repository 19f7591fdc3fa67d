"""Claim and release: plain database coordination between reviewers, under row locks."""

from __future__ import annotations

import threading

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from orderweb.models import OrderEvent
from reviews import services
from reviews.models import ReviewTask
from tests.reviews.conftest import client_for, make_user, make_waiting_order


def _messages(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)._queued_messages]


def _post(client, name, order, **data):
    return client.post(reverse(name, args=[order.order_id]), data)


@pytest.mark.django_db
def test_claim_then_release_is_audited(reviewer):
    order = make_waiting_order()
    client = client_for(reviewer)
    response = _post(client, "reviews:claim", order)
    assert response.url == reverse("reviews:order", args=[order.order_id])
    assert _messages(response) == [services.CLAIM_OK.format(order_id=order.order_id)]
    task = ReviewTask.objects.get(order=order)
    assert task.claimed_by == reviewer and task.claimed_at is not None
    assert _messages(_post(client, "reviews:claim", order)) == [
        services.CLAIM_ALREADY_YOURS.format(order_id=order.order_id)
    ]
    assert _messages(_post(client, "reviews:release", order)) == [services.RELEASE_OK.format(order_id=order.order_id)]
    assert ReviewTask.objects.get(order=order).claimed_by is None
    assert list(OrderEvent.objects.filter(order=order, source="web").values_list("type", "actor")) == [
        ("review_claimed", "alice"),
        ("review_released", "alice"),
    ]


@pytest.mark.django_db
def test_claim_redirects_to_a_safe_next_only(reviewer):
    order = make_waiting_order()
    client = client_for(reviewer)
    assert _post(client, "reviews:claim", order, next="/reviews/?filter=mine").url == "/reviews/?filter=mine"
    _post(client, "reviews:release", order)
    assert _post(client, "reviews:claim", order, next="https://evil.example/").url == reverse(
        "reviews:order", args=[order.order_id]
    )


@pytest.mark.django_db
def test_cannot_claim_or_release_someone_elses(reviewer, reviewer2):
    order = make_waiting_order(claimed_by=reviewer2)
    client = client_for(reviewer)
    assert _messages(_post(client, "reviews:claim", order)) == [
        services.CLAIM_TAKEN.format(order_id=order.order_id, user="bob")
    ]
    assert _messages(_post(client, "reviews:release", order)) == [
        services.RELEASE_NOT_YOURS.format(order_id=order.order_id, user="bob")
    ]
    assert ReviewTask.objects.get(order=order).claimed_by == reviewer2


@pytest.mark.django_db
def test_supervisor_may_release_a_colleagues_claim(reviewer2):
    boss = make_user("boss", reviewer=True, supervisor=True)
    order = make_waiting_order(claimed_by=reviewer2)
    assert _messages(_post(client_for(boss), "reviews:release", order)) == [
        services.RELEASE_OTHERS_OK.format(order_id=order.order_id, user="bob")
    ]
    event = OrderEvent.objects.get(order=order, type="review_released")
    assert event.actor == "boss" and event.details == {"holder": "bob"}


@pytest.mark.django_db
def test_release_unclaimed_and_claim_closed(reviewer):
    order = make_waiting_order()
    assert _messages(_post(client_for(reviewer), "reviews:release", order)) == [
        services.RELEASE_NOT_CLAIMED.format(order_id=order.order_id)
    ]
    ReviewTask.objects.filter(order=order).update(status="approved", decided_at=timezone.now(), decided_by_name="bob")
    assert _messages(_post(client_for(reviewer), "reviews:claim", order)) == [
        services.REFUSED_ALREADY_DECIDED.format(order_id=order.order_id, outcome="approved", who="bob")
    ]


@pytest.mark.django_db(transaction=True)
def test_two_reviewers_claim_at_once_one_wins(reviewer, reviewer2):
    order = make_waiting_order()
    barrier = threading.Barrier(2)
    results: dict[str, list[str]] = {}

    def claim(user):
        try:
            client = client_for(user)
            barrier.wait()
            results[user.username] = _messages(_post(client, "reviews:claim", order))
        finally:
            connection.close()

    threads = [threading.Thread(target=claim, args=(u,)) for u in (reviewer, reviewer2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    holder = ReviewTask.objects.get(order=order).claimed_by.username
    other = "bob" if holder == "alice" else "alice"
    assert results[holder] == [services.CLAIM_OK.format(order_id=order.order_id)]
    assert results[other] == [services.CLAIM_TAKEN.format(order_id=order.order_id, user=holder)]
    assert OrderEvent.objects.filter(order=order, type="review_claimed").count() == 1
