"""Fixtures for the review back office: the people of the permission matrix, and orders waiting
for review written straight into Postgres (for the pages that only read Postgres)."""

from __future__ import annotations

import itertools
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.test import Client
from django.utils import timezone

from orderweb.models import Order, OrderEvent, OrderLine
from reviews.models import ReviewTask, RiskAssessment

PASSWORD = "review-pass-123"
_seq = itertools.count(1)


def reviewer_group() -> Group:
    """The group of reviews/migrations/0002 (and 0010's note permission). Transactional tests
    flush the tables (and with them the migration's rows), so it is made again here, the same way."""
    group, _ = Group.objects.get_or_create(name="reviewer")
    group.permissions.add(
        Permission.objects.get(codename="decide_review", content_type__app_label="reviews"),
        Permission.objects.get(codename="view_order", content_type__app_label="orderweb"),
        Permission.objects.get(codename="add_order_note", content_type__app_label="orderweb"),
    )
    return group


def make_user(
    username: str, *, reviewer: bool = False, staff: bool = False, superuser: bool = False, supervisor: bool = False
) -> User:
    user = User.objects.create_user(username, password=PASSWORD, is_staff=staff or superuser, is_superuser=superuser)
    if reviewer:
        user.groups.add(reviewer_group())
    if supervisor:
        user.user_permissions.add(Permission.objects.get(codename="change_reviewtask"))
    return user


def client_for(user: User | None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def make_waiting_order(
    *,
    order_id: str | None = None,
    due_in: timedelta = timedelta(hours=20),
    amount: str = "42.00",
    claimed_by: User | None = None,
    address: str = "1 Review Road\nSpringfield",
    customer: str = "Ada Buyer",
    email: str = "",
    risk: tuple[int, str, list] | None = None,
) -> Order:
    """An order row in awaiting_manual_review with its open task, as the activities leave it
    (with its risk assessment when ``risk`` is (score, level, reasons)).

    For pages that read Postgres only; there is no workflow behind it."""
    order_id = order_id or f"DB-{next(_seq):05d}"
    now = timezone.now()
    order = Order.objects.create(
        order_id=order_id,
        workflow_id=order_id.lower(),
        address=address,
        customer=customer,
        customer_email=email,
        amount=Decimal(amount),
        status=Order.Status.AWAITING_MANUAL_REVIEW,
        status_changed_at=now,
    )
    OrderLine.objects.create(order=order, sku="SKU-1", name="Widget", quantity=2, unit_price=Decimal(amount) / 2)
    OrderEvent.objects.create(order=order, type="order_created", source="api", to_status="started")
    if risk is not None:
        RiskAssessment.objects.create(order=order, score=risk[0], level=risk[1], reasons=risk[2])
    ReviewTask.objects.create(
        order=order,
        due_at=now + due_in,
        claimed_by=claimed_by,
        claimed_at=now if claimed_by else None,
        amount=order.amount,
        risk_score=risk[0] if risk else None,
        risk_level=risk[1] if risk else "",
    )
    return order


def reason(rule: str, points: int, text: str, **figures) -> dict:
    """A stored risk reason, as reviews/risk.py writes it."""
    return {"rule": rule, "points": points, "text": text, "figures": figures}


def decide_in_db(
    order: Order, status: str = "approved", *, by: str = "alice", note: str = "", reason_code: str = "", at=None
) -> None:
    """Close the order's task as the workflow's projection would (no workflow here)."""
    from django.contrib.auth.models import User as _User

    ReviewTask.objects.filter(order=order).update(
        status=status,
        decided_at=at or timezone.now(),
        decided_by=_User.objects.filter(username=by).first(),
        decided_by_name=by,
        note=note,
        reason_code=reason_code,
    )
    final = {"approved": "completed", "rejected": "cancelled"}.get(status, "cancelled")
    Order.objects.filter(pk=order.pk).update(
        status=final, cancel_reason="x" if final == "cancelled" else "", cancel_reason_code=reason_code
    )


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """PBKDF2 costs about a second per user on these machines; these tests test no hashing."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def reviewer(db) -> User:
    return make_user("alice", reviewer=True)


@pytest.fixture
def reviewer2(db) -> User:
    return make_user("bob", reviewer=True)


@pytest.fixture
def people(db) -> dict[str, User | None]:
    """The permission matrix: who may use the back office."""
    return {
        "anonymous": None,
        "plain": make_user("pat"),
        "staff": make_user("sam", staff=True),
        "reviewer": make_user("rita", reviewer=True),
        "superuser": make_user("root", superuser=True),
    }
