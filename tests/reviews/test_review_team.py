"""A team runs the review queue (issue 20): claims that lapse and leads who reassign, notes,
the Escalated view, linked orders, the escalation's side effects, and their query counts. These
read and write Postgres only; tests/reviews/test_review_team_workflows.py drives the workflows."""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, Permission
from django.contrib.messages import get_messages
from django.core import mail
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from orderweb.models import Order, OrderEvent, WebhookDelivery
from orderweb.services import MAX_ORDER_NOTE_LENGTH, NOTE_CONTROL_CHARS, NOTE_EMPTY, NOTE_TOO_LONG, order_note_add
from orderweb.webhooks import webhook_body
from reviews import services
from reviews.metrics import review_escalation_metrics
from reviews.models import ReviewTask
from reviews.selectors import QueueView, linked_orders, review_queue_counts, review_queue_list
from tests.reviews.conftest import client_for, decide_in_db, make_user, make_waiting_order, reason

pytestmark = pytest.mark.django_db


def _messages(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)._queued_messages]


def _rows(response) -> list[str]:
    import re

    return re.findall(r'<tr class="row-[\w-]+(?: row-escalated)?" data-order="([^"]+)"', response.content.decode())


def lead_group() -> Group:
    """reviews/migrations/0009's group (transactional tests flush it with the tables)."""
    group, _ = Group.objects.get_or_create(name="review_lead")
    group.permissions.add(
        Permission.objects.get(codename="lead_review", content_type__app_label="reviews"),
        Permission.objects.get(codename="add_order_note", content_type__app_label="orderweb"),
    )
    return group


@pytest.fixture
def lead(db):
    user = make_user("lena", reviewer=True)
    user.groups.add(lead_group())
    return user


def lapse(order: Order, minutes: float = 61) -> None:
    """Make the order's claim as old as ``minutes`` (the default timeout is 60)."""
    ReviewTask.objects.filter(order=order).update(claimed_at=timezone.now() - timedelta(minutes=minutes))


# -- claims lapse ----------------------------------------------------------------------------------


def test_a_claim_lapses_after_the_timeout_and_a_colleague_takes_it_over(reviewer, reviewer2):
    order = make_waiting_order(claimed_by=reviewer2)
    bob_client, alice_client = client_for(reviewer2), client_for(reviewer)
    assert _messages(alice_client.post(reverse("reviews:claim", args=[order.order_id]))) == [
        services.CLAIM_TAKEN.format(order_id=order.order_id, user="bob")
    ]
    lapse(order)
    # Read time: the queue shows it free, in Unclaimed, and not in bob's Mine.
    assert order.order_id in _rows(alice_client.get(reverse("reviews:queue"), {"filter": "unclaimed"}))
    assert _rows(bob_client.get(reverse("reviews:queue"), {"filter": "mine"})) == []
    assert "Unclaimed (lapsed)" in alice_client.get(reverse("reviews:queue")).content.decode()
    assert _messages(alice_client.post(reverse("reviews:claim", args=[order.order_id]))) == [
        services.CLAIM_OK.format(order_id=order.order_id)
    ]
    assert ReviewTask.objects.get(order=order).claimed_by == reviewer
    lapsed = OrderEvent.objects.get(order=order, type=OrderEvent.Type.REVIEW_CLAIM_LAPSED)
    assert lapsed.actor == "alice" and lapsed.details["holder"] == "bob"
    assert "bob's claim lapsed after 60 idle minutes" in lapsed.message


def test_the_holder_extends_the_claim_and_the_page_warns_before_it_lapses(reviewer, settings):
    settings.REVIEW_CLAIM_WARN_MINUTES = 5
    order = make_waiting_order(claimed_by=reviewer)
    lapse(order, minutes=57)
    client = client_for(reviewer)
    html = client.get(reverse("reviews:order", args=[order.order_id])).content.decode()
    assert 'id="claim-clock"' in html and 'data-warn-seconds="300"' in html and 'id="extend-claim"' in html
    before = ReviewTask.objects.get(order=order).claimed_at
    answer = client.post(reverse("reviews:extend", args=[order.order_id]), HTTP_ACCEPT="application/json")
    assert answer.status_code == 200 and answer.json()["ok"]
    task = ReviewTask.objects.get(order=order)
    assert task.claimed_at > before + timedelta(minutes=56)
    assert abs(answer.json()["lapses_at"] - task.claim_lapses_at.timestamp()) < 1
    assert (
        OrderEvent.objects.filter(order=order, type=OrderEvent.Type.REVIEW_CLAIM_EXTENDED, actor="alice").count() == 1
    )
    # Someone else's claim cannot be extended.
    other = client_for(make_user("carl", reviewer=True))
    refused = other.post(reverse("reviews:extend", args=[order.order_id]), HTTP_ACCEPT="application/json")
    assert refused.status_code == 409 and refused.json()["message"] == services.CLAIM_TAKEN.format(
        order_id=order.order_id, user="alice"
    )


def test_a_lapsed_claim_is_said_on_the_holders_page(reviewer):
    order = make_waiting_order(claimed_by=reviewer)
    lapse(order)
    html = client_for(reviewer).get(reverse("reviews:order", args=[order.order_id])).content.decode()
    assert "Your claim lapsed at" in html and 'id="extend-claim"' in html


def test_a_lead_releases_or_reassigns_any_claim_and_a_reviewer_cannot(reviewer, reviewer2, lead):
    order = make_waiting_order(claimed_by=reviewer2)
    with pytest.raises(ValidationError) as not_lead:
        services.review_task_reassign(order=order, user=reviewer, to_username="alice")
    assert not_lead.value.code == "not_lead"
    with pytest.raises(ValidationError):
        services.review_task_release(order=order, user=reviewer)
    html = client_for(lead).get(reverse("reviews:order", args=[order.order_id])).content.decode()
    assert 'id="reassign-to"' in html and "Release bob's claim" in html
    response = client_for(lead).post(reverse("reviews:reassign", args=[order.order_id]), {"to": "alice"})
    assert _messages(response) == [services.REASSIGN_OK.format(order_id=order.order_id, user="alice")]
    task = ReviewTask.objects.get(order=order)
    assert task.claimed_by == reviewer and task.claim_active()
    reassigned = OrderEvent.objects.get(order=order, type=OrderEvent.Type.REVIEW_REASSIGNED)
    assert (reassigned.actor, reassigned.details) == ("lena", {"holder": "bob", "to": "alice"})
    assert _messages(client_for(lead).post(reverse("reviews:release", args=[order.order_id]))) == [
        services.RELEASE_OTHERS_OK.format(order_id=order.order_id, user="alice")
    ]
    assert ReviewTask.objects.get(order=order).claimed_by is None
    # Only to someone who may review.
    with pytest.raises(ValidationError) as nobody:
        services.review_task_reassign(order=order, user=lead, to_username=make_user("pat").username)
    assert nobody.value.code == "not_reviewer"


def test_a_four_eyes_order_is_not_reassigned_to_its_first_approver(reviewer, lead):
    order = make_waiting_order()
    ReviewTask.objects.filter(order=order).update(
        approvals_required=2, first_approval_by="alice", first_approval_at=timezone.now()
    )
    with pytest.raises(ValidationError) as refused:
        services.review_task_reassign(order=order, user=lead, to_username="alice")
    assert refused.value.code == "same_reviewer"
    html = client_for(lead).get(reverse("reviews:order", args=[order.order_id])).content.decode()
    assert '<option value="alice"' not in html  # not offered either


# -- four eyes on the pages ----------------------------------------------------------------------


def test_the_queue_and_the_page_show_one_of_two_and_next_skips_the_first_approver(reviewer, reviewer2):
    first = make_waiting_order(order_id="FE-1", due_in=timedelta(hours=1), amount="1500.00")
    second = make_waiting_order(order_id="FE-2", due_in=timedelta(hours=2))
    ReviewTask.objects.filter(order=first).update(
        approvals_required=2,
        four_eyes_rule="amount 1500.00 ≥ REVIEW_FOUR_EYES_AMOUNT 1000.00",
        first_approval_by="alice",
        first_approval_at=timezone.now(),
        first_approval_note="fine by me",
    )
    alice, bob = client_for(reviewer), client_for(reviewer2)
    assert "1 of 2 · alice" in alice.get(reverse("reviews:queue")).content.decode()
    page = alice.get(reverse("reviews:order", args=[first.order_id])).content.decode()
    assert 'id="waiting-second"' in page and "You approved this order" in page
    assert "approve-form" not in page and "reject-form" in page  # alice may still reject
    bob_page = bob.get(reverse("reviews:order", args=[first.order_id])).content.decode()
    assert "approve-form" in bob_page and "approved by <strong>alice</strong>" in bob_page and "fine by me" in bob_page
    # "Next" goes past the order alice approved (it waits for someone else); bob's does not.
    from reviews.selectors import review_first

    assert review_first(user=reviewer, view=QueueView()) == second.order_id
    assert review_first(user=reviewer2, view=QueueView()) == first.order_id


# -- the Escalated view --------------------------------------------------------------------------


def test_leads_see_the_escalated_view_and_everyone_the_badge(reviewer, lead):
    calm = make_waiting_order(order_id="E-CALM", due_in=timedelta(hours=2))
    late = make_waiting_order(order_id="E-LATE", due_in=timedelta(hours=5))
    ReviewTask.objects.filter(order=late).update(escalated_at=timezone.now())
    lead_html = client_for(lead).get(reverse("reviews:queue"), {"filter": "escalated"})
    assert _rows(lead_html) == ["E-LATE"]
    assert 'data-count="escalated">1<' in lead_html.content.decode()
    # A reviewer who is not a lead: no tab, and the filter falls back to every open review.
    reviewer_queue = client_for(reviewer).get(reverse("reviews:queue"), {"filter": "escalated"})
    html = reviewer_queue.content.decode()
    assert _rows(reviewer_queue) == ["E-CALM", "E-LATE"] and 'id="escalated-tab"' not in html
    assert html.count('class="pill pill-escalated"') == 1  # the badge, on the escalated order only
    assert review_queue_counts(user=reviewer)["escalated"] == 1
    page = client_for(reviewer).get(reverse("reviews:order", args=[late.order_id])).content.decode()
    assert 'id="escalated-badge"' in page and 'id="escalated-at"' in page
    assert calm  # (the calm one shows in the reviewer's full list above)


# -- notes ---------------------------------------------------------------------------------------


def test_a_reviewer_adds_a_note_that_every_reviewer_sees_and_the_timeline_keeps(reviewer, reviewer2):
    reviewer.groups.first().permissions.add(Permission.objects.get(codename="add_order_note"))
    order = make_waiting_order()
    response = client_for(reviewer).post(
        reverse("reviews:note", args=[order.order_id]), {"note": "Called the customer:\nthey confirm the address."}
    )
    assert _messages(response) == [f"Your note on {order.order_id} was added."]
    assert response.url.endswith("#notes")
    note = OrderEvent.objects.get(order=order, type=OrderEvent.Type.NOTE_ADDED)
    assert (note.actor, note.user, note.to_status, note.source) == ("alice", reviewer, "", "web")
    html = client_for(reviewer2).get(reverse("reviews:order", args=[order.order_id])).content.decode()
    notes = html.split('id="notes"')[1].split("</section>")[0]
    assert "Called the customer:<br>they confirm the address." in notes and "alice" in notes
    assert html.count("Called the customer:") == 2  # the notes and the timeline
    assert Order.objects.filter(pk=order.pk).values_list("status", flat=True).get() == "awaiting_manual_review"


@pytest.mark.parametrize(
    "text, error",
    [
        ("   ", NOTE_EMPTY),
        ("x" * (MAX_ORDER_NOTE_LENGTH + 1), NOTE_TOO_LONG),
        ("bell \x07", NOTE_CONTROL_CHARS),
    ],
)
def test_a_note_is_plain_text_within_its_limit(reviewer, text, error):
    reviewer.groups.first().permissions.add(Permission.objects.get(codename="add_order_note"))
    order = make_waiting_order()
    response = client_for(reviewer).post(reverse("reviews:note", args=[order.order_id]), {"note": text})
    assert _messages(response) == [error]
    assert not OrderEvent.objects.filter(order=order, type=OrderEvent.Type.NOTE_ADDED).exists()


def test_notes_need_the_permission():
    # Allowed to decide, but not given the note permission (the review groups have it).
    decider = make_user("dora")
    decider.user_permissions.add(Permission.objects.get(codename="decide_review"))
    order = make_waiting_order()
    with pytest.raises(ValidationError) as refused:
        order_note_add(order=order, user=decider, text="hello", source="web")
    assert refused.value.code == "not_allowed"
    assert (
        'id="add-note"' not in client_for(decider).get(reverse("reviews:order", args=[order.order_id])).content.decode()
    )
    assert client_for(decider).post(reverse("reviews:note", args=[order.order_id]), {"note": "x"}).status_code == 302
    assert not OrderEvent.objects.filter(order=order, type=OrderEvent.Type.NOTE_ADDED).exists()


def test_staff_add_a_note_in_the_admin(people):
    staff = people["staff"]
    staff.user_permissions.add(
        Permission.objects.get(codename="view_order"), Permission.objects.get(codename="add_order_note")
    )
    order = make_waiting_order()
    client = client_for(staff)
    page = client.get(reverse("admin:orderweb_order_change", args=[order.pk])).content.decode()
    assert 'id="add-note"' in page
    url = reverse("admin:orderweb_order_note", args=[order.pk])
    assert client.post(url, {"note": ""}).status_code == 200  # the form again, with its error
    response = client.post(url, {"note": "Refund asked by phone."})
    assert response.status_code == 302
    note = OrderEvent.objects.get(order=order, type=OrderEvent.Type.NOTE_ADDED)
    assert (note.actor, note.source) == ("sam", "admin")
    page = client.get(reverse("admin:orderweb_order_change", args=[order.pk])).content.decode()
    assert page.count("Refund asked by phone.") == 2  # the notes field and the timeline
    # Without the permission: no link, and the page refuses.
    staff.user_permissions.remove(Permission.objects.get(codename="add_order_note"))
    assert client_for(staff).post(url, {"note": "x"}).status_code == 403


# -- linked orders -------------------------------------------------------------------------------


def test_linked_orders_by_email_address_billing_and_ip_with_their_outcomes(reviewer):
    order = make_waiting_order(order_id="L-0", email="eve@example.com", address="1 Here\nTown")
    Order.objects.filter(pk=order.pk).update(billing_address="9 Bill St\nTown", client_ip="203.0.113.7")
    by_ip = make_waiting_order(order_id="L-IP", email="other@example.com", address="2 There\nTown")
    Order.objects.filter(pk=by_ip.pk).update(client_ip="203.0.113.7")
    by_billing = make_waiting_order(order_id="L-BILL", email="third@example.com", address="3 There\nTown")
    Order.objects.filter(pk=by_billing.pk).update(billing_address="9 BILL ST\nTown")
    decide_in_db(by_billing, "rejected", by="bob", reason_code="suspected_fraud")
    by_address = make_waiting_order(order_id="L-ADDR", email="fourth@example.com", address="1 HERE\nTown")
    make_waiting_order(order_id="L-NONE", email="none@example.com", address="4 Nowhere\nTown")
    order.refresh_from_db()
    found = {o.order_id: o.link_labels for o in linked_orders(order=order)}
    assert found == {
        "L-IP": ["same client IP"],
        "L-BILL": ["same billing address"],
        "L-ADDR": ["same shipping address"],
    }
    html = client_for(reviewer).get(reverse("reviews:order", args=["L-0"])).content.decode()
    linked = html.split('id="linked-orders"')[1].split("</section>")[0]
    assert "review rejected by bob" in linked and "Suspected fraud" in linked and "L-NONE" not in linked
    assert by_address


# -- the escalation's side effects (the activity's service) ---------------------------------------


def test_the_escalation_is_audited_emailed_and_sent_to_webhooks_once(
    reviewer, settings, django_capture_on_commit_callbacks
):
    settings.REVIEW_ESCALATION_EMAILS = ["leads@example.com"]
    settings.ORDER_WEBHOOK_URL = "https://hooks.example.com/orders"
    order = make_waiting_order(risk=(70, "high", []))
    due = timezone.now() + timedelta(hours=6)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.review_task_escalate(order_id=order.order_id, waited_seconds=18 * 3600, review_due=due)
    with django_capture_on_commit_callbacks(execute=True):  # a retried activity, a second worker
        assert not services.review_task_escalate(order_id=order.order_id, waited_seconds=18 * 3600, review_due=due)
    event = OrderEvent.objects.get(order=order, type=OrderEvent.Type.REVIEW_ESCALATED)
    assert event.message.startswith("undecided after 18h: escalated to the review leads (emailed leads@example.com")
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["leads@example.com"]
    assert "High risk" in mail.outbox[0].body or "high risk" in mail.outbox[0].body
    delivery = WebhookDelivery.objects.get(event=event)
    body = webhook_body(delivery.event)
    assert body["type"] == "review.escalated" and body["order_id"] == order.order_id
    assert body["review"]["waited_seconds"] == 18 * 3600
    assert ReviewTask.objects.get(order=order).escalated_at is not None
    assert {m.name: m.samples[0].value for m in review_escalation_metrics()} == {
        "orderweb_review_escalations": 1,
        "orderweb_reviews_escalated_open": 1,
    }


def test_a_mail_server_that_refuses_leaves_the_escalation_standing(
    reviewer, settings, caplog, django_capture_on_commit_callbacks
):
    settings.REVIEW_ESCALATION_EMAILS = ["leads@example.com"]
    settings.EMAIL_BACKEND = "tests.reviews.test_review_team.RefusingBackend"
    order = make_waiting_order()
    with caplog.at_level(logging.ERROR, logger="reviews.services"), django_capture_on_commit_callbacks(execute=True):
        assert services.review_task_escalate(
            order_id=order.order_id, waited_seconds=60, review_due=timezone.now() + timedelta(minutes=1)
        )
    assert ReviewTask.objects.get(order=order).escalated_at is not None
    assert any("could not email the escalation" in r.getMessage() for r in caplog.records)


class RefusingBackend:
    def __init__(self, *args, **kwargs) -> None:
        pass

    def send_messages(self, messages):
        raise ConnectionRefusedError("SMTP is down")


# -- the rules the workflow is given ----------------------------------------------------------------


def test_the_rules_for_an_order(settings):
    settings.REVIEW_FOUR_EYES_AMOUNT = "1000.00"
    settings.REVIEW_FOUR_EYES_LEVELS = ["high"]
    settings.REVIEW_TIMEOUT_ACTION_LOW = "approve"
    settings.REVIEW_ESCALATE_AFTER = 0.75
    low = services.review_rules_for(amount=Decimal("20.00"), level="low")
    assert (low.approvals_required, low.timeout_action, low.escalate_after) == (1, "approve", 0.75)
    assert low.timeout_rule == "REVIEW_TIMEOUT_ACTION_LOW=approve, low risk"
    large = services.review_rules_for(amount=Decimal("1000.00"), level="low")
    assert (large.approvals_required, large.timeout_action) == (2, "expire")  # four eyes never times out to approve
    assert large.four_eyes_rule == "amount 1000.00 ≥ REVIEW_FOUR_EYES_AMOUNT 1000.00"
    assert services.review_rules_for(amount=Decimal("5.00"), level="high").approvals_required == 2
    assert services.review_rules_for(amount=Decimal("5.00"), level="medium").timeout_action == "expire"
    settings.REVIEW_FOUR_EYES_AMOUNT = ""
    assert services.review_rules_for(amount=Decimal("99999.00"), level="low").approvals_required == 1
    # The defaults reproduce the workflow's behaviour before the rules existed.
    validated = services.ReviewRules().validated()
    assert (validated.escalate_after, validated.timeout_action, validated.approvals_required) == (0.0, "expire", 1)


# -- what it costs -------------------------------------------------------------------------------


def _queries(client, url: str) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.get(url)  # warm: the session's first write
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


def test_the_escalated_view_and_a_leads_order_page_cost_a_fixed_number_of_queries(lead, reviewer):
    order = make_waiting_order(risk=(70, "high", [reason("first_order", 15, "First order")]))
    ReviewTask.objects.filter(order=order).update(
        escalated_at=timezone.now(), approvals_required=2, first_approval_by="alice", first_approval_at=timezone.now()
    )
    client = client_for(lead)
    escalated_url = reverse("reviews:queue") + "?filter=escalated"
    page_url = reverse("reviews:order", args=[order.order_id])
    few = (_queries(client, escalated_url), _queries(client, page_url))
    for i in range(20):
        other = make_waiting_order(claimed_by=(reviewer, lead, None)[i % 3], risk=(60, "high", []))
        ReviewTask.objects.filter(order=other).update(escalated_at=timezone.now())
        OrderEvent.objects.create(
            order=order, type=OrderEvent.Type.NOTE_ADDED, source="web", actor="x", message=f"note {i}"
        )
    make_user("extra-reviewer", reviewer=True)
    many = (_queries(client, escalated_url), _queries(client, page_url))
    # The queue's 7; the order page's 12 (11, and its outcome labels since issue 21) and, for a
    # lead on an open review, the reviewers to reassign to: 13; and for a lead, the allow/block list
    # entries that match the order now (its Lists panel, issue 21): 14.
    assert many == few == (7, 14)
    queue_page = review_queue_list(user=lead, view=QueueView(filter="escalated"))
    assert len(queue_page.object_list) == 21
