"""The leads' risk pages (issue 21): who may see them (reviewer 403, lead, staff without the lead
permission 403, anonymous to the login), the flows through them, and their query counts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from reviews.models import RiskAuditEvent, RiskBacktest, RiskListEntry, RiskPolicy
from tests.reviews.conftest import client_for, make_user, make_waiting_order
from tests.reviews.test_backtest import _fixture, first_policy
from tests.reviews.test_risk_lists import lead

PAGES = ["reviews:risk_lists", "reviews:risk_policies"]


@pytest.fixture
def boss(db):
    return lead("lea")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "who, status", [("anonymous", 302), ("plain", 403), ("staff", 403), ("reviewer", 403), ("superuser", 200)]
)
def test_only_leads_see_the_risk_pages(people, who, status):
    first_policy()
    client = client_for(people[who])
    for name in PAGES + ["reviews:risk_policy"]:
        url = reverse(name, args=[1]) if name == "reviews:risk_policy" else reverse(name)
        response = client.get(url)
        assert response.status_code == status, (name, who)
        if status == 403 and who == "reviewer":
            assert "For review leads only" in response.content.decode()
    # Nor can they change anything.
    response = client.post(
        reverse("reviews:risk_lists"), {"kind": "block", "field": "email", "value": "x@y.z", "reason": "r"}
    )
    assert response.status_code in (302, 403) and RiskListEntry.objects.filter(value="x@y.z").exists() == (
        who == "superuser"
    )


@pytest.mark.django_db
def test_a_lead_adds_and_removes_entries_on_the_lists_page(boss):
    client = client_for(boss)
    response = client.post(
        reverse("reviews:risk_lists"),
        {
            "kind": "block",
            "field": "address",
            "value": " 1 Fraud Lane \n\n Springfield ",
            "reason": "chargeback on X-1",
            "until": (timezone.now() + timedelta(days=3)).date().isoformat(),
        },
        follow=True,
    )
    html = response.content.decode()
    assert "1 Fraud Lane\nSpringfield is on the block list (shipping address) from now on." in html.replace(
        "&#x27;", "'"
    )
    entry = RiskListEntry.objects.get()
    assert (
        entry.value_key == "1 FRAUD LANE\nSPRINGFIELD"
        and entry.expires_at.date() == (timezone.now() + timedelta(days=4)).date()
    )
    # A bad IP is refused with its reason, nothing stored.
    html = client.post(
        reverse("reviews:risk_lists"),
        {"kind": "block", "field": "ip", "value": "999.1.1.1", "reason": "x"},
        follow=True,
    ).content.decode()
    assert "is not an IPv4 or IPv6 address." in html and RiskListEntry.objects.count() == 1
    client.post(reverse("reviews:risk_list_remove", args=[entry.pk]), {"reason": "wrong"})
    assert RiskListEntry.objects.get().removal_reason == "wrong"
    html = client.get(reverse("reviews:risk_lists")).content.decode()
    assert "removed by lea" in html and "Nothing on either list." in html
    assert RiskAuditEvent.objects.filter(source="web").count() == 2


@pytest.mark.django_db
def test_block_this_address_and_allow_this_customer_from_an_order_page(boss):
    order = make_waiting_order(address="7 Dodgy Road\nSpringfield", email="Eve@Example.com")
    client = client_for(boss)
    page = reverse("reviews:order", args=[order.order_id])
    html = client.get(page).content.decode()
    assert "Block this address" in html and "Allow this customer" in html and "Not on either list." in html
    client.post(
        reverse("reviews:order_list_add", args=[order.order_id]),
        {"kind": "block", "field": "address", "reason": "chargeback"},
    )
    client.post(
        reverse("reviews:order_list_add", args=[order.order_id]),
        {"kind": "allow", "field": "email", "reason": "verified"},
    )
    entries = {(e.kind, e.field, e.value_key, e.order_id) for e in RiskListEntry.objects.all()}
    assert entries == {
        ("block", "address", "7 DODGY ROAD\nSPRINGFIELD", order.pk),
        ("allow", "email", "eve@example.com", order.pk),
    }
    html = client.get(page).content.decode()
    assert html.count('data-entry="') == 2
    # A reviewer sees none of it.
    html = client_for(make_user("rita", reviewer=True)).get(page).content.decode()
    assert "Block this address" not in html
    assert (
        client_for(make_user("rex", reviewer=True))
        .post(reverse("reviews:order_list_add", args=[order.order_id]), {"kind": "block", "field": "ip", "reason": "x"})
        .status_code
        == 403
    )


@pytest.mark.django_db
def test_a_lead_drafts_edits_backtests_and_activates_a_policy(boss):
    first_policy()
    _fixture()
    client = client_for(boss)
    response = client.post(reverse("reviews:risk_policy_draft"))
    assert response.status_code == 302 and response["Location"] == reverse("reviews:risk_policy", args=[2])
    form = {f"points_{rule}": value for rule, value in RiskPolicy.objects.get(version=2).points.items()}
    form.update(RiskPolicy.objects.get(version=2).thresholds)
    bad = client.post(reverse("reviews:risk_policy", args=[2]), {**form, "points_block_list": "10", "note": "n"})
    assert bad.status_code == 400 and "The block list must reach high risk on its own" in bad.content.decode()
    client.post(
        reverse("reviews:risk_policy", args=[2]),
        {**form, "points_po_box": "30", "review_threshold": "20", "note": "PO boxes"},
    )
    assert RiskPolicy.objects.get(version=2).points["po_box"] == 30
    html = client.post(reverse("reviews:risk_policy_activate", args=[2]), follow=True).content.decode()
    assert "Run a backtest of v2 as it is now first" in html
    today = timezone.now().date()
    response = client.post(
        reverse("reviews:risk_policy_backtest", args=[2]),
        {"since": (today - timedelta(days=30)).isoformat(), "until": today.isoformat()},
        follow=True,
    )
    html = response.content.decode()
    backtest = RiskBacktest.objects.get()
    assert response.redirect_chain[-1][0] == reverse("reviews:risk_backtest", args=[backtest.pk])
    assert 'data-figure="would_review">4<' in html and 'data-figure="caught">2<' in html
    assert 'data-figure="would_review_active">3<' in html and ">BT-E</a>" in html
    csv = client.get(reverse("reviews:risk_backtest_csv", args=[backtest.pk]))
    assert csv["Content-Type"].startswith("text/csv") and b"would_review,4" in csv.content
    html = client.post(reverse("reviews:risk_policy_activate", args=[2]), follow=True).content.decode()
    assert "Policy v2 is active; v1 is retired." in html
    assert RiskPolicy.objects.get(version=2).status == "active"


def _count(client, url: str) -> int:
    client.get(url)
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


# session, user, the permission look-ups, then the page's own.
@pytest.mark.django_db
def test_the_risk_pages_cost_a_fixed_number_of_queries(boss):
    first_policy()
    client = client_for(boss)
    order = make_waiting_order()
    backtest_of = RiskPolicy.objects.get(version=1)

    def urls():
        bt = RiskBacktest.objects.order_by("pk").first()
        return [
            reverse("reviews:risk_lists"),
            reverse("reviews:risk_lists") + "?kind=block",
            reverse("reviews:risk_policies"),
            reverse("reviews:risk_policy", args=[1]),
            reverse("reviews:risk_backtest", args=[bt.pk]),
        ]

    from reviews.backtest import risk_backtest_run
    from reviews.risk_services import risk_list_entry_add, risk_policy_draft

    now = timezone.now()
    risk_backtest_run(policy=backtest_of, user=boss, since=now - timedelta(days=1), until=now)
    risk_list_entry_add(user=boss, kind="block", field="email", value="a@b.c", reason="x", order=order)
    few = [_count(client, url) for url in urls()]
    for i in range(10):
        risk_list_entry_add(
            user=boss, kind=("block", "allow")[i % 2], field="email", value=f"u{i}@b.c", reason="x", order=order
        )
        risk_backtest_run(policy=backtest_of, user=boss, since=now - timedelta(days=1), until=now)
        draft = risk_policy_draft(user=boss)
    many = [_count(client, url) for url in urls()]
    assert few == many == [6, 6, 6, 9, 5], (few, many)
    assert draft.version == 11


@pytest.mark.django_db
def test_staff_leads_manage_the_lists_in_the_admin_and_others_cannot():
    from django.contrib.auth.models import Permission

    boss = lead("staff-lead")
    boss.is_staff = True
    boss.save()
    boss.user_permissions.add(
        *Permission.objects.filter(codename__in=["add_risklistentry", "change_risklistentry", "view_risklistentry"])
    )
    client = client_for(type(boss).objects.get(pk=boss.pk))
    response = client.post(
        reverse("admin:reviews_risklistentry_add"),
        {
            "kind": "block",
            "field": "email",
            "value": "Fraud@Example.com",
            "reason": "chargeback",
            "expires_at_0": "",
            "expires_at_1": "",
        },
    )
    assert response.status_code == 302, response.content.decode()[-3000:]
    entry = RiskListEntry.objects.get()
    assert (entry.value_key, entry.created_by_name) == ("fraud@example.com", "staff-lead")
    assert RiskAuditEvent.objects.get().source == "admin"
    client.post(
        reverse("admin:reviews_risklistentry_changelist"),
        {"action": "remove_from_list", "_selected_action": [entry.pk]},
    )
    assert RiskListEntry.objects.get().removed_by_name == "staff-lead"
    # Staff who may add entries but do not lead the team: no add page.
    other = make_user("staff-only", staff=True)
    other.user_permissions.add(*Permission.objects.filter(codename__in=["add_risklistentry", "view_risklistentry"]))
    assert client_for(other).get(reverse("admin:reviews_risklistentry_add")).status_code == 403
