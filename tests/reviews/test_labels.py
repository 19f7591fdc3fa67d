"""Outcome labels set by people (issue 21): on the review page (htmx, and without script) and in
the admin; who may; the order page and its timeline show them."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.urls import reverse

from orderweb.labels import LABEL_NOT_ALLOWED, order_label_set
from orderweb.models import OrderEvent, OrderLabel
from tests.reviews.conftest import client_for, decide_in_db, make_user, make_waiting_order
from tests.reviews.test_review_team import lead_group

pytestmark = pytest.mark.django_db


def labeller_group():
    """reviews/migrations/0011 gives the leads' group the label permission."""
    group = lead_group()
    group.permissions.add(Permission.objects.get(codename="add_orderlabel", content_type__app_label="orderweb"))
    return group


@pytest.fixture
def lead(db):
    user = make_user("lena", reviewer=True)
    user.groups.add(labeller_group())
    return user


def test_the_leads_group_may_label_from_its_migration(db):
    from django.contrib.auth.models import Group

    assert Group.objects.get(name="review_lead").permissions.filter(codename="add_orderlabel").exists()


def test_a_lead_sets_a_label_with_htmx_and_the_panel_says_so(lead):
    order = make_waiting_order()
    decide_in_db(order, "approved", by="alice")
    client = client_for(lead)
    response = client.post(
        reverse("reviews:label", args=[order.order_id]),
        {"label": "chargeback", "source_reference": "CB-9", "note": "issuer dispute"},
        HTTP_HX_REQUEST="true",
    )
    html = response.content.decode()
    assert response.status_code == 200 and html.lstrip().startswith('<section class="card" id="labels"')
    assert f"{order.order_id} is labelled chargeback." in html and 'data-label="chargeback"' in html
    row = OrderLabel.objects.get(order=order)
    assert (row.label, row.actor, row.source, row.source_reference, row.note) == (
        "chargeback",
        "lena",
        "review",
        "CB-9",
        "issuer dispute",
    )
    event = OrderEvent.objects.get(order=order, type="label_added")
    assert (event.actor, event.source, event.user_id) == ("lena", "web", lead.pk)
    page = client.get(reverse("reviews:order", args=[order.order_id])).content.decode()
    assert 'class="label-pill label-chargeback" data-label="chargeback"' in page  # in the title
    assert "Label set" in page and "labelled chargeback (CB-9): issuer dispute" in page  # the timeline


def test_removing_without_script_redirects_with_a_message_and_keeps_the_history(lead):
    order = make_waiting_order()
    client = client_for(lead)
    url = reverse("reviews:label", args=[order.order_id])
    client.post(url, {"label": "fraud_confirmed"})
    response = client.post(url, {"label": "fraud_confirmed", "remove": "1"})
    assert response.status_code == 302 and response["Location"].endswith("#labels")
    row = OrderLabel.objects.get(order=order)
    assert row.removed_by == "lena" and row.removed_at is not None
    page = client.get(reverse("reviews:order", args=[order.order_id])).content.decode()
    assert "The label fraud confirmed was removed" in page
    assert "Label history" in page and "removed by lena" in page


def test_a_plain_reviewer_sees_labels_but_may_not_set_them(reviewer, lead):
    order = make_waiting_order()
    client_for(lead).post(reverse("reviews:label", args=[order.order_id]), {"label": "genuine_confirmed"})
    client = client_for(reviewer)
    page = client.get(reverse("reviews:order", args=[order.order_id])).content.decode()
    assert 'data-label="genuine_confirmed"' in page and 'id="set-label"' not in page and "remove-label" not in page
    response = client.post(
        reverse("reviews:label", args=[order.order_id]), {"label": "chargeback"}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 403 and "You may not record outcome labels" in response.content.decode()
    assert not OrderLabel.objects.filter(label="chargeback").exists()
    with pytest.raises(ValidationError, match=LABEL_NOT_ALLOWED):  # the service refuses too, whoever calls it
        order_label_set(order=order, label="chargeback", source="review", user=reviewer)


def test_an_unknown_label_is_refused_in_words(lead):
    order = make_waiting_order()
    response = client_for(lead).post(
        reverse("reviews:label", args=[order.order_id]), {"label": "stolen"}, HTTP_HX_REQUEST="true"
    )
    assert "Unknown label &#x27;stolen&#x27;" in response.content.decode()
    assert not OrderLabel.objects.exists()


@pytest.mark.parametrize("who,status", [("anonymous", 302), ("plain", 403), ("staff", 403)])
def test_people_outside_the_review_team_cannot_post_labels(people, who, status):
    order = make_waiting_order()
    response = client_for(people[who]).post(reverse("reviews:label", args=[order.order_id]), {"label": "chargeback"})
    assert response.status_code == status
    assert not OrderLabel.objects.exists()


# -- the admin --------------------------------------------------------------------------------------


def test_staff_with_the_permission_set_and_remove_labels_in_the_admin(db):
    staff = make_user("sam", staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename__in=["view_order", "add_orderlabel"]))
    order = make_waiting_order()
    client = client_for(staff)
    change = reverse("admin:orderweb_order_change", args=[order.pk])
    assert 'id="label-link"' in client.get(change).content.decode()
    url = reverse("admin:orderweb_order_label", args=[order.pk])
    response = client.post(url, {"label": "chargeback", "action": "set", "source_reference": "CB-1", "note": ""})
    assert response.status_code == 302
    row = OrderLabel.objects.get(order=order)
    assert (row.actor, row.source) == ("sam", "admin")
    assert OrderEvent.objects.get(order=order, type="label_added").source == "admin"
    client.post(url, {"label": "chargeback", "action": "remove", "note": "reversed"})
    row.refresh_from_db()
    assert row.removed_by == "sam"
    html = client.get(change).content.decode()
    assert "removed by sam" in html and "Label removed" in html


def test_staff_without_the_permission_get_no_link_and_a_403(db):
    staff = make_user("sid", staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_order"))
    order = make_waiting_order()
    client = client_for(staff)
    assert 'id="label-link"' not in client.get(reverse("admin:orderweb_order_change", args=[order.pk])).content.decode()
    response = client.post(
        reverse("admin:orderweb_order_label", args=[order.pk]), {"label": "chargeback", "action": "set"}
    )
    assert response.status_code == 403
    assert not OrderLabel.objects.exists()


def test_staff_list_labels_by_kind_in_the_admin_and_cannot_edit_them(db):
    staff = make_user("sol", staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename__in=["view_order", "view_orderlabel"]))
    order = make_waiting_order()
    OrderLabel.objects.create(order=order, label="chargeback", actor="payments", source="api", source_reference="CB-5")
    client = client_for(staff)
    html = client.get(reverse("admin:orderweb_orderlabel_changelist"), {"label": "chargeback"}).content.decode()
    assert "CB-5" in html and order.order_id in html
    row = OrderLabel.objects.get()
    assert (
        client.post(
            reverse("admin:orderweb_orderlabel_change", args=[row.pk]), {"label": "genuine_confirmed"}
        ).status_code
        == 403
    )
