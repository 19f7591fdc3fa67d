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
from reviews.models import ReviewTask

PASSWORD = "review-pass-123"
_seq = itertools.count(1)


def reviewer_group() -> Group:
    """The group of reviews/migrations/0002. Transactional tests flush the tables (and with them
    the migration's rows), so it is made again here, the same way."""
    group, _ = Group.objects.get_or_create(name="reviewer")
    group.permissions.add(
        Permission.objects.get(codename="decide_review", content_type__app_label="reviews"),
        Permission.objects.get(codename="view_order", content_type__app_label="orderweb"),
    )
    return group


def make_user(username: str, *, reviewer: bool = False, staff: bool = False, superuser: bool = False,
              supervisor: bool = False) -> User:
    user = User.objects.create_user(username, password=PASSWORD, is_staff=staff or superuser,
                                    is_superuser=superuser)
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
    *, order_id: str | None = None, due_in: timedelta = timedelta(hours=20), amount: str = "42.00",
    claimed_by: User | None = None, address: str = "1 Review Road\nSpringfield", customer: str = "Ada Buyer",
) -> Order:
    """An order row in awaiting_manual_review with its open task, as the activities leave it.

    For pages that read Postgres only; there is no workflow behind it."""
    order_id = order_id or f"DB-{next(_seq):05d}"
    now = timezone.now()
    order = Order.objects.create(
        order_id=order_id, workflow_id=order_id.lower(), address=address, customer=customer,
        amount=Decimal(amount), status=Order.Status.AWAITING_MANUAL_REVIEW, status_changed_at=now,
    )
    OrderLine.objects.create(order=order, sku="SKU-1", name="Widget", quantity=2, unit_price=Decimal(amount) / 2)
    OrderEvent.objects.create(order=order, type="order_created", source="api", to_status="started")
    ReviewTask.objects.create(
        order=order, due_at=now + due_in, claimed_by=claimed_by, claimed_at=now if claimed_by else None
    )
    return order


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
