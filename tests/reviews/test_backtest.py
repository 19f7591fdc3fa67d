"""Risk policy versions and the backtest (issue 21, items 3 and 4): a draft edited and activated
only with a fresh backtest or a reason, all audited; the backtest's figures against a fixture
whose result is worked out by hand below; the command's last line; the CSV."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.utils import timezone

from orderweb.models import Order, OrderLabel
from reviews.backtest import backtest_csv, risk_backtest_run
from reviews.models import RiskAssessment, RiskAuditEvent, RiskPolicy
from reviews.risk import RiskFacts, RiskThresholds
from reviews.risk_services import (
    NOT_LEAD,
    POINTS_BLOCK,
    POLICY_NEEDS_BACKTEST,
    POLICY_NOT_DRAFT,
    risk_policy_activate,
    risk_policy_draft,
    risk_policy_update,
)
from tests.reviews.conftest import make_user
from tests.reviews.test_risk_lists import lead

pytestmark = pytest.mark.django_db(transaction=True)


def first_policy() -> RiskPolicy:
    """Version 1 as reviews/0013 seeds it (transactional tests flush the migration's row)."""
    points, thresholds = RiskThresholds().stored()
    RiskPolicy.objects.all().delete()  # the migration's, when no transactional test ran before
    return RiskPolicy.objects.create(
        version=1,
        status="active",
        points=points,
        thresholds=thresholds,
        activated_at=timezone.now(),
        created_by_name="migration",
    )


def _thresholds(policy: RiskPolicy, **changes) -> dict:
    return {**policy.thresholds, **changes}


def test_a_draft_is_edited_then_activated_with_a_reason_or_a_fresh_backtest():
    v1 = first_policy()
    boss = lead()
    draft = risk_policy_draft(user=boss)
    assert (draft.version, draft.status, draft.points, draft.based_on_id) == (2, "draft", v1.points, v1.pk)
    with pytest.raises(ValidationError) as bad:
        risk_policy_update(
            user=boss, policy_id=draft.pk, points={**draft.points, "block_list": 40}, thresholds=draft.thresholds
        )
    assert bad.value.message_dict == {"points_block_list": [POINTS_BLOCK.format(high=60)]}
    with pytest.raises(ValidationError) as levels:
        risk_policy_update(
            user=boss, policy_id=draft.pk, points=draft.points, thresholds=_thresholds(draft, level_medium=70)
        )
    assert "level_high" in levels.value.message_dict
    risk_policy_update(
        user=boss,
        policy_id=draft.pk,
        points={**draft.points, "po_box": "30"},
        thresholds=_thresholds(draft, review_threshold=20),
        note="PO boxes weigh more",
    )
    draft.refresh_from_db()
    assert draft.points["po_box"] == 30 and draft.thresholds["review_threshold"] == 20
    with pytest.raises(ValidationError) as refused:
        risk_policy_activate(user=boss, policy_id=draft.pk)
    assert refused.value.messages == [POLICY_NEEDS_BACKTEST.format(version=2)]
    # A backtest of the draft, then an edit: the backtest was of another draft.
    now = timezone.now()
    risk_backtest_run(policy=draft, user=boss, since=now - timedelta(days=30), until=now)
    risk_policy_update(
        user=boss, policy_id=draft.pk, points=draft.points, thresholds=_thresholds(draft, review_threshold=25)
    )
    with pytest.raises(ValidationError):
        risk_policy_activate(user=boss, policy_id=draft.pk)
    backtest = risk_backtest_run(policy=draft, user=boss, since=now - timedelta(days=30), until=now)
    assert risk_policy_activate(user=boss, policy_id=draft.pk) == "Policy v2 is active; v1 is retired."
    v1.refresh_from_db()
    draft.refresh_from_db()
    assert (v1.status, draft.status) == ("retired", "active") and v1.retired_at is not None
    assert draft.activation_reason.startswith(f"backtest #{backtest.pk} of ")
    with pytest.raises(ValidationError) as frozen:
        risk_policy_update(user=boss, policy_id=draft.pk, points=draft.points, thresholds=draft.thresholds)
    assert frozen.value.messages == [POLICY_NOT_DRAFT.format(version=2, status="active")]
    # Without a backtest, a reason will do; it is kept and audited.
    v3 = risk_policy_draft(user=boss)
    risk_policy_activate(user=boss, policy_id=v3.pk, reason="rollback of the threshold after an incident")
    v3.refresh_from_db()
    assert v3.activation_reason == "without a backtest: rollback of the threshold after an incident"
    assert list(RiskPolicy.objects.order_by("version").values_list("status", flat=True)) == [
        "retired",
        "retired",
        "active",
    ]
    trail = list(RiskAuditEvent.objects.order_by("pk").values_list("type", "policy__version"))
    assert trail == [
        ("policy_drafted", 2),
        ("policy_edited", 2),
        ("backtest_run", 2),
        ("policy_edited", 2),
        ("backtest_run", 2),
        ("policy_retired", 1),
        ("policy_activated", 2),
        ("policy_drafted", 3),
        ("policy_retired", 2),
        ("policy_activated", 3),
    ]
    edit = RiskAuditEvent.objects.filter(type="policy_edited").order_by("pk").first()
    assert edit.message == "edited draft v2: points.po_box 15 → 30, review_threshold 30 → 20; note changed"


def test_only_leads_change_policies():
    first_policy()
    for user in (make_user("rita", reviewer=True), make_user("sam", staff=True)):
        with pytest.raises(ValidationError) as refused:
            risk_policy_draft(user=user)
        assert refused.value.messages == [NOT_LEAD]


# -- the backtest against a fixture worked out by hand ---------------------------------------------

ALLOW = {
    "entry": 1,
    "kind": "allow",
    "field": "email",
    "value": "f@example.com",
    "reason": "known",
    "by": "lea",
    "added": "2026-12-01T00:00:00+00:00",
    "order": None,
}
BLOCK = {**ALLOW, "entry": 2, "kind": "block", "value": "g@example.com", "reason": "chargeback"}
KNOWN = dict(
    customer="k@example.com",
    customer_orders=3,
    customer_orders_in_currency=3,
    customer_median=Decimal("40"),
    amount=Decimal("40"),
    po_box="",
    forwarding_service="",
    shipping_country="",
    billing_country="",
)
# name: (facts, bad how, days ago). Active v1: review from 30. Draft v2: review from 20, PO box 30.
FIXTURE = {
    "A": (dict(KNOWN), None, 1),  # 0 / 0: neither reviews
    "B": ({**KNOWN, "customer_orders": 0}, "chargeback", 2),  # first order 15 / 15: missed by both
    "C": ({**KNOWN, "customer_orders": 0, "po_box": "PO Box"}, "suspected_fraud", 3),  # 30 / 45: caught by both
    "D": ({**KNOWN, "customer": ""}, None, 4),  # unknown 30 / 30: reviewed by both
    "E": ({**KNOWN, "po_box": "PO Box"}, "fraud_confirmed", 5),  # 15 / 30: caught by the draft only
    "F": ({**KNOWN, "customer": "", "lists": (ALLOW,)}, None, 6),  # allowed: neither reviews
    "G": ({**KNOWN, "lists": (BLOCK,)}, "removed_chargeback", 7),  # blocked: both; its label was removed
    "H": (None, None, 8),  # assessed before facts: unscored
    "I": ({**KNOWN, "customer": ""}, "chargeback", 40),  # outside the 30 days
}


def _fixture() -> None:
    now = timezone.now()
    for name, (facts, bad, days) in FIXTURE.items():
        order = Order.objects.create(
            order_id=f"BT-{name}", workflow_id=f"bt-{name}", address="x", status="completed", cancel_reason_code=""
        )
        if bad == "suspected_fraud":
            Order.objects.filter(pk=order.pk).update(
                status="cancelled", cancel_reason="fraud", cancel_reason_code="suspected_fraud"
            )
        elif bad:
            label = OrderLabel.objects.create(
                order=order, label=bad.replace("removed_", ""), actor="lea", source="admin"
            )
            if bad.startswith("removed_"):
                OrderLabel.objects.filter(pk=label.pk).update(removed_at=now, removed_by="lea")
        record = RiskFacts(**facts).record() if facts is not None else {}
        assessment = RiskAssessment.objects.create(order=order, score=0, level="low", facts=record)
        RiskAssessment.objects.filter(pk=assessment.pk).update(created_at=now - timedelta(days=days))


def _draft(boss) -> RiskPolicy:
    draft = risk_policy_draft(user=boss)
    return risk_policy_update(
        user=boss,
        policy_id=draft.pk,
        points={**draft.points, "po_box": 30},
        thresholds=_thresholds(draft, review_threshold=20),
    )


def test_the_backtest_matches_the_hand_computed_fixture():
    first_policy()
    boss = lead()
    _fixture()
    draft = _draft(boss)
    now = timezone.now()
    result = risk_backtest_run(policy=draft, user=boss, since=now - timedelta(days=30), until=now).result
    figures = {
        name: result[name]
        for name in (
            "orders",
            "unscored",
            "would_review",
            "would_review_active",
            "review_change",
            "bad",
            "caught",
            "missed",
            "caught_active",
            "missed_active",
            "newly_reviewed",
            "no_longer_reviewed",
        )
    }
    assert figures == {
        "orders": 7,
        "unscored": 1,
        "would_review": 4,
        "would_review_active": 3,
        "review_change": 1,
        "bad": 3,
        "caught": 2,
        "missed": 1,
        "caught_active": 1,
        "missed_active": 2,
        "newly_reviewed": 1,
        "no_longer_reviewed": 0,
    }
    assert result["missed_orders"] == ["BT-B"] and result["caught_only_by_this"] == ["BT-E"]
    rules = {row["rule"]: row for row in result["rules"]}
    # (matched, matched_bad, decisive: without it the order would not go to review, decisive_bad)
    got = {
        rule: (row["matched"], row["matched_bad"], row["decisive"], row["decisive_bad"])
        for rule, row in rules.items()
        if row["matched"]
    }
    assert got == {
        "first_order": (2, 2, 0, 0),
        "po_box": (2, 2, 2, 2),
        "unknown_customer": (2, 0, 1, 0),
        "allow_list": (1, 0, 0, 0),
        "block_list": (1, 0, 1, 0),
    }
    # Under the active policy a PO box (15) sends C to review only with its first order (15): both decide.
    assert (rules["po_box"]["decisive_active"], rules["first_order"]["decisive_active"]) == (1, 1)
    assert rules["po_box"]["points"] == 30 and rules["po_box"]["points_active"] == 15
    assert result["gathering_changed"] == []


def test_the_command_prints_one_json_object_last_and_writes_csv(tmp_path):
    first_policy()
    _fixture()
    draft = _draft(lead())
    out = io.StringIO()
    call_command(
        "risk_backtest", "--policy", str(draft.version), "--days", "30", "--csv", str(tmp_path / "bt.csv"), stdout=out
    )
    last = json.loads(out.getvalue().strip().splitlines()[-1])
    assert {k: last[k] for k in ("orders", "would_review", "would_review_active", "caught", "missed")} == {
        "orders": 7,
        "would_review": 4,
        "would_review_active": 3,
        "caught": 2,
        "missed": 1,
    }
    assert last["policy"] == 2 and last["active"] == 1
    csv_text = (tmp_path / "bt.csv").read_text()
    assert "po_box,PO box or locker,30,15,2,2,2,2,2,1" in csv_text.splitlines()
    assert "caught,2" in csv_text.splitlines()
    from reviews.models import RiskBacktest

    assert backtest_csv(RiskBacktest.objects.get()).splitlines() == csv_text.splitlines()
    with pytest.raises(Exception, match="no risk policy v9"):
        call_command("risk_backtest", "--policy", "9", stdout=io.StringIO())


def test_a_range_larger_than_the_limit_scores_its_latest_orders():
    first_policy()
    _fixture()
    now = timezone.now()
    from reviews.backtest import backtest_compute

    rules = RiskThresholds()
    result = backtest_compute(policy=rules, active=rules, since=now - timedelta(days=30), until=now, limit=3)
    # The latest three of the range: A (1 day), B (2), C (3).
    assert (result["orders"], result["truncated"], result["bad"], result["missed"]) == (3, True, 2, 1)


@pytest.mark.django_db(transaction=False)
def test_the_backtest_scores_as_the_live_assessment_does():
    """The backtest asks each rule only whether it matches (explain=False): over varied facts and
    two policies, its review answer and its rules are the live assessment's."""
    import random

    from devtools.management.commands.bench_backtest import bench_facts
    from reviews.backtest import _matched, _review_decisive, _weighed
    from reviews.risk import review_pass_text, risk_evaluate

    rng = random.Random(7)
    policies = [
        RiskThresholds(),
        RiskThresholds(review_threshold=20, points={**RiskThresholds().points, "po_box": 0, "quantity_spike": 40}),
    ]
    for i in range(3000):
        facts = RiskFacts.from_record(bench_facts(i, rng))
        for t in policies:
            live = risk_evaluate(facts, t)
            found = _matched(facts, t, _weighed(t))
            review, _ = _review_decisive(found, t)
            assert sorted(found) == sorted((r.rule, r.points) for r in live.reasons), i
            assert review == (review_pass_text(live, t) == ""), i
