"""What reviews adds to the orders admin: the review and its risk on the order page, links both
ways, a warning before staff cancel an order a reviewer holds, reason codes on review tasks."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from reviews.admin import CLAIMED_WARNING, REVIEW_PAGE_LINK
from reviews.models import ReviewTask
from tests.reviews.conftest import client_for, decide_in_db, make_user, make_waiting_order, reason

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(db):
    user = make_user("stella", staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="orderweb", codename__in=["view_order", "cancel_order"])
    )
    return user


def test_admin_order_page_shows_the_risk_and_links_to_the_review_page(staff):
    order = make_waiting_order(risk=(55, "medium", [reason("po_box", 15, "Ships to a PO box (“PO Box”).")]))
    html = client_for(staff).get(reverse("admin:orderweb_order_change", args=[order.pk])).content.decode()
    review_url = reverse("reviews:order", args=[order.order_id])
    assert f'<a href="{review_url}" class="order-link">{REVIEW_PAGE_LINK}</a>' in html
    assert f'class="review-page-link" href="{review_url}"' in html
    assert (
        '<strong class="risk-level">Medium (55/100)</strong><ul><li>+15 Ships to a PO box (“PO Box”).</li></ul>' in html
    )


def test_cancel_confirmation_warns_when_a_reviewer_holds_the_order(staff):
    bob = make_user("bob", reviewer=True)
    held = make_waiting_order(claimed_by=bob)
    ReviewTask.objects.filter(order=held).update(claimed_at=timezone.now() - timedelta(minutes=12))
    free = make_waiting_order()
    client = client_for(staff)
    page = client.get(reverse("admin:orderweb_order_cancel", args=[held.pk])).content.decode()
    assert 'id="cancel-warnings"' in page
    assert CLAIMED_WARNING.format(user="bob", ago="12m") in page
    assert (
        'id="cancel-warnings"'
        not in client.get(reverse("admin:orderweb_order_cancel", args=[free.pk])).content.decode()
    )
    # And for a selection from the list: the warning on the held order's row only.
    page = client.post(
        reverse("admin:orderweb_order_changelist"),
        {"action": "cancel_selected", "_selected_action": [held.pk, free.pk], "index": 0},
    ).content.decode()
    assert page.count(CLAIMED_WARNING.format(user="bob", ago="12m")) == 1


def test_review_tasks_show_and_filter_their_reason(admin_user):
    fraud = make_waiting_order()
    decide_in_db(fraud, "rejected", reason_code="suspected_fraud")
    other = make_waiting_order()
    decide_in_db(other, "rejected", reason_code="out_of_stock")
    client = client_for(admin_user)
    html = client.get(reverse("admin:reviews_reviewtask_changelist"), {"reason": "suspected_fraud"}).content.decode()
    assert "Suspected fraud" in html and fraud.order_id in html and other.order_id not in html
    assert client.get(reverse("admin:reviews_riskassessment_changelist")).status_code == 200
