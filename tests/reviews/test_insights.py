"""The leads' insights (issue 21): figures against a fixture whose times are known, the chart, the
CSV, who may see them, and a query count that does not grow with the reviews."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta

import pytest

from orderweb.models import OrderLabel
from reviews.insights import review_insights
from reviews.models import ReviewTask
from tests.reviews.conftest import client_for, make_user, make_waiting_order
from tests.reviews.test_review_team import lead_group

pytestmark = pytest.mark.django_db

DAY1, DAY2 = date(2026, 11, 2), date(2026, 11, 3)
URL = "/reviews/insights/"


def at(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=UTC)


def task(
    *,
    status: str,
    opened: datetime,
    decided: datetime | None,
    by: str = "",
    claimed=None,
    escalated: datetime | None = None,
    label: str = "",
    label_removed: bool = False,
):
    order = make_waiting_order()
    ReviewTask.objects.filter(order=order).update(
        status=status,
        created_at=opened,
        decided_at=decided,
        decided_by_name=by,
        claimed_by=claimed,
        claimed_at=opened if claimed else None,
        escalated_at=escalated,
    )
    if label:
        OrderLabel.objects.create(
            order=order,
            label=label,
            actor="payments",
            source="api",
            removed_at=decided + timedelta(days=1) if label_removed else None,
            removed_by="payments" if label_removed else "",
        )
    return order


@pytest.fixture
def known(db, settings):
    """Two reviewers and the team over two days, times chosen so every figure is worked out by
    hand below (SLA 60 minutes)."""
    settings.REVIEW_SLA_MINUTES = 60
    alice, bob = make_user("alice", reviewer=True), make_user("bob", reviewer=True)
    # Day 1
    task(status="approved", opened=at(DAY1, 9), decided=at(DAY1, 9, 10), by="alice", label="chargeback")  # 10 min
    task(status="approved", opened=at(DAY1, 9), decided=at(DAY1, 9, 30), by="alice")  # 30 min
    task(status="rejected", opened=at(DAY1, 8), decided=at(DAY1, 10, 20), by="alice", label="genuine_confirmed")  # 140
    task(status="rejected", opened=at(DAY1, 10), decided=at(DAY1, 10, 5), by="bob", escalated=at(DAY1, 10, 4))  # 5
    task(status="expired", opened=at(DAY1, 0) - timedelta(days=1), decided=at(DAY1, 12), claimed=bob)
    task(status="expired", opened=at(DAY1, 1) - timedelta(days=1), decided=at(DAY1, 13))
    # Day 2: a fraud label that was removed does not count; the policy's approval at a timeout is an expiry.
    task(
        status="approved",
        opened=at(DAY2, 11),
        decided=at(DAY2, 11, 20),
        by="alice",
        label="fraud_confirmed",
        label_removed=True,
    )  # 20 min
    task(status="approved", opened=at(DAY2, 3) - timedelta(days=1), decided=at(DAY2, 15), by="policy")
    task(status="open", opened=at(DAY2, 1), decided=None, claimed=bob, escalated=at(DAY2, 16))
    # Outside the range: neither counted nor shown.
    task(
        status="approved",
        opened=at(DAY2, 23),
        decided=at(DAY2 + timedelta(days=1), 0, 0) + timedelta(seconds=1),
        by="alice",
    )
    return alice, bob


def test_the_figures_match_the_fixture_worked_out_by_hand(known):
    insights = review_insights(since=DAY1, until=DAY2)
    alice, bob = insights.reviewers
    assert (alice.name, alice.decisions, alice.approved, alice.rejected) == ("alice", 4, 3, 1)
    # 600, 1200, 1800, 8400 s: the median between the middle two; p90 at 2.7 of 0..3
    assert (alice.median_seconds, alice.p90_seconds) == (1500, pytest.approx(6420))
    assert (alice.active_hours, alice.per_active_hour) == (3, pytest.approx(4 / 3))  # 09, 10 on day 1; 11 on day 2
    assert (alice.expiries, alice.escalations, alice.within_sla, alice.sla_share) == (0, 0, 3, 0.75)
    assert (alice.approvals_labelled_bad, alice.rejections_labelled_genuine) == (1, 1)
    assert (bob.name, bob.decisions, bob.rejected, bob.median_seconds, bob.p90_seconds) == ("bob", 1, 1, 300, 300)
    # bob held the claim of the first expiry; two escalations: the one he decided and the open one he holds
    assert (bob.expiries, bob.escalations, bob.within_sla, bob.sla_share) == (1, 2, 1, 0.5)
    team = insights.team
    assert (team.decisions, team.approved, team.rejected) == (5, 3, 2)
    assert (team.median_seconds, team.p90_seconds) == (1200, pytest.approx(5760))  # 300 600 1200 1800 8400
    # reviewer-hours: alice's 3 and bob's 1 (his 10:05 shares alice's 10:20 hour, and still counts)
    assert (team.active_hours, team.expiries, team.escalations, team.within_sla) == (4, 3, 2, 4)
    assert team.sla_share == 0.5  # 4 of 5 decisions + 3 timed out
    assert (team.approvals_labelled_bad, team.rejections_labelled_genuine) == (1, 1)
    assert insights.unattributed_expiries == 2  # the unclaimed expiry and the policy's approval
    day1, day2 = insights.days
    assert (day1.day, day1.approved, day1.rejected, day1.expiries, day1.within_sla, day1.sla_share) == (
        DAY1,
        2,
        2,
        2,
        3,
        0.5,
    )
    assert (day2.day, day2.approved, day2.rejected, day2.expiries, day2.within_sla, day2.sla_share) == (
        DAY2,
        1,
        0,
        1,
        1,
        0.5,
    )


def test_empty_days_are_drawn_as_zeros_and_the_chart_has_a_bar_per_day(known):
    insights = review_insights(since=DAY1 - timedelta(days=2), until=DAY2)
    assert [d.decisions for d in insights.days] == [0, 0, 4, 1]
    chart = insights.chart
    assert len(chart["bars"]) == 4 and not chart["bars"][0]["parts"]
    assert [p["kind"] for p in chart["bars"][2]["parts"]] == ["approved", "rejected", "expired"]
    assert len(chart["sla_points"]) == 2  # days with nothing decided have no SLA point


def lead_user():
    user = make_user("lena", reviewer=True)
    user.groups.add(lead_group())
    return user


def test_the_page_shows_the_figures_and_the_chart(known):
    html = client_for(lead_user()).get(URL, {"since": "2026-11-02", "until": "2026-11-03"}).content.decode()
    assert '<dd id="team-decisions">5</dd>' in html and '<dd id="team-sla">50%</dd>' in html
    assert '<tr data-reviewer="alice">' in html and "25m" in html  # alice's median: 1500 s
    assert '<svg viewBox="0 0 720 240" role="img"' in html and 'class="sla-line"' in html
    assert "2026-11-02: 4 decided (2 approved, 2 rejected), 2 timed out, 50% within the SLA" in html


def test_the_csv_has_the_same_figures(known):
    response = client_for(lead_user()).get(URL, {"since": "2026-11-02", "until": "2026-11-03", "format": "csv"})
    assert response["Content-Type"].startswith("text/csv")
    assert 'filename="review-insights-2026-11-02-2026-11-03.csv"' in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [(r["scope"], r["name"]) for r in rows] == [
        ("team", "Team"),
        ("reviewer", "alice"),
        ("reviewer", "bob"),
        ("day", "2026-11-02"),
        ("day", "2026-11-03"),
    ]
    alice = rows[1]
    assert (
        alice["decisions"],
        alice["median_minutes"],
        alice["p90_minutes"],
        alice["sla_share"],
        alice["decisions_per_active_hour"],
    ) == ("4", "25.0", "107.0", "0.7500", "1.33")
    assert rows[0]["approvals_labelled_chargeback_or_fraud"] == "1" and rows[0]["rejections_labelled_genuine"] == "1"


def test_a_name_a_spreadsheet_would_run_is_quoted_in_the_csv(db):
    from reviews.insights import Figures, Insights, insights_csv

    text = insights_csv(Insights(DAY1, DAY1, 60, Figures(name="Team"), [Figures(name="=HYPERLINK(1)")], []))
    assert "'=HYPERLINK(1)" in text


def test_a_bad_range_falls_back_to_the_last_30_days_and_says_why(db):
    client = client_for(lead_user())
    response = client.get(URL, {"since": "2026-11-05", "until": "2026-11-01"})
    html = response.content.decode()
    assert response.status_code == 200 and "The range ends before it starts" in html
    response = client.get(URL, {"since": "2024-01-01", "until": "2026-11-01"})
    assert "The range is at most 366 days." in response.content.decode()
    assert "Enter a date as YYYY-MM-DD." in client.get(URL, {"since": "yesterday"}).content.decode()


@pytest.mark.parametrize(
    "who,status",
    [
        ("anonymous", 302),
        ("plain", 403),
        ("staff", 403),
        ("reviewer", 403),
        ("lead", 200),
        ("superuser", 200),
    ],
)
def test_only_leads_see_the_insights(people, who, status):
    user = lead_user() if who == "lead" else people[who]
    response = client_for(user).get(URL)
    assert response.status_code == status
    if who == "reviewer":
        assert "This page is for review leads" in response.content.decode()
    csv_response = client_for(user).get(URL, {"format": "csv"})
    assert csv_response.status_code == status


def test_the_insights_link_is_in_the_leads_navigation_only(reviewer):
    assert 'href="/reviews/insights/"' not in client_for(reviewer).get("/reviews/").content.decode()
    assert 'href="/reviews/insights/"' in client_for(lead_user()).get("/reviews/").content.decode()


def test_the_page_costs_a_fixed_number_of_queries(known, django_assert_num_queries):
    client = client_for(lead_user())
    params = {"since": "2026-11-02", "until": "2026-11-03"}
    client.get(URL, params)  # warm: the session's first write
    # session, user, the two permission look-ups; then, in a transaction (a savepoint here, inside
    # the test's), the statement's settings, the insights' one statement, the release
    with django_assert_num_queries(8):
        assert client.get(URL, params).status_code == 200
    for i in range(30):
        task(status="approved", opened=at(DAY1, 9), decided=at(DAY1, 9, i), by=f"extra{i % 7}", label="chargeback")
    with django_assert_num_queries(8):
        html = client.get(URL, params).content.decode()
    assert '<tr data-reviewer="extra6">' in html
    with django_assert_num_queries(8):
        assert client.get(URL, {**params, "format": "csv"}).status_code == 200
