"""Login throttling (django-axes) on both sign-in pages, /accounts/login/ and /admin/login/.

A username and an address together are locked after LOGIN_FAILURE_LIMIT failures, even for the
right password, with a 429 page that says why and what to do; other usernames and other
addresses are not; a success resets the count; an administrator unlocks in the admin; the lock
expires after the cool-off; behind a configured proxy the address comes from the proxy's header.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import SESSION_KEY
from django.contrib.auth.models import Permission, User
from django.db.models import F
from django.test import Client, RequestFactory
from django.urls import reverse

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "right-Password-123"
HOME = "10.1.1.1"  # the person's address
ELSEWHERE = "10.2.2.2"  # another address
# (sign-in page, where a successful sign-in lands)
PAGES = [("/accounts/login/", "/reviews/"), ("/admin/login/", "/admin/")]
LOCKED_TITLE = "Sign-in temporarily locked"
# The form error of each page ("... for a staff account." on the admin's)
WRONG_PASSWORD = "correct username and password"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """PBKDF2 costs about a second per check on these machines; these tests count attempts."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def limit(settings) -> int:
    return settings.AXES_FAILURE_LIMIT


@pytest.fixture
def staff(db) -> User:
    """May sign in on both pages (the admin wants is_staff)."""
    User.objects.create_user("stella", password=PASSWORD, is_staff=True)
    return User.objects.create_user("stan", password=PASSWORD, is_staff=True)


def sign_in(page: str, username: str, password: str, ip: str = HOME, client: Client | None = None, **extra):
    client = client or Client()
    landing = dict(PAGES)[page]
    response = client.post(page, {"username": username, "password": password, "next": landing}, REMOTE_ADDR=ip, **extra)
    return client, response


def signed_in(client: Client, user: User) -> bool:
    return client.session.get(SESSION_KEY) == str(user.pk)


def fail(page: str, username: str, times: int, ip: str = HOME, **extra) -> list[int]:
    return [sign_in(page, username, f"wrong-{n}", ip, **extra)[1].status_code for n in range(times)]


def assert_refused_as_wrong_password(response) -> None:
    assert response.status_code == 200
    assert WRONG_PASSWORD in response.content.decode()
    assert LOCKED_TITLE not in response.content.decode()


def assert_locked_page(response, page: str) -> str:
    """The lockout page's text, whitespace folded."""
    text = " ".join(response.content.decode().split())
    assert response.status_code == 429, response.status_code
    # The login page rendered first; axes' middleware replaced it with the lockout page.
    names = [t.name for t in response.templates]
    assert names[names.index("registration/locked_out.html") :][:2] == ["registration/locked_out.html", "base.html"]
    assert 'name="password"' not in text and WRONG_PASSWORD not in text
    assert LOCKED_TITLE in text
    assert "even with the right password" in text
    assert "contact an administrator" in text
    assert f'<a href="{page}">Back to sign-in</a>' in text
    return text


def is_locked(page: str, user: User, ip: str = HOME) -> bool:
    client, response = sign_in(page, user.username, PASSWORD, ip)
    if response.status_code == 429:
        assert not signed_in(client, user)
        return True
    assert response.status_code == 302 and response.url == dict(PAGES)[page], response.status_code
    assert signed_in(client, user)
    return False


# -- the limit -----------------------------------------------------------------------------------


@pytest.mark.parametrize("page", [p for p, _ in PAGES])
def test_fewer_failures_than_the_limit_then_the_right_password_works(page, staff, limit):
    assert limit == 5  # the default (LOGIN_FAILURE_LIMIT unset in tests)
    for _ in range(limit - 1):
        assert_refused_as_wrong_password(sign_in(page, staff.username, "wrong")[1])
    assert not is_locked(page, staff)
    # The success reset the count: as many failures again still leave the account open.
    assert not AccessAttempt.objects.filter(username=staff.username).exists()
    assert fail(page, staff.username, limit - 1) == [200] * (limit - 1)
    assert not is_locked(page, staff)


@pytest.mark.parametrize("page", [p for p, _ in PAGES])
def test_the_limit_locks_out_even_the_right_password(page, staff, limit):
    assert fail(page, staff.username, limit - 1) == [200] * (limit - 1)
    _, response = sign_in(page, staff.username, "wrong")
    text = assert_locked_page(response, page)  # the failure that reaches the limit says so at once
    assert f"After {limit} failed sign-in attempts in a row for <strong>{staff.username}</strong>" in text
    assert "You can try again 15 minutes after the attempt that locked it." in text

    client, response = sign_in(page, staff.username, PASSWORD)
    assert_locked_page(response, page)
    assert not signed_in(client, staff)
    assert client.get(dict(PAGES)[page]).status_code == 302  # not signed in: sent to a login page
    attempt = AccessAttempt.objects.get(username=staff.username, ip_address=HOME)
    assert attempt.failures_since_start == limit  # the refused right password was not counted


def test_the_lockout_page_without_expiry_says_an_administrator_must_unlock(settings, staff, limit):
    settings.AXES_COOLOFF_TIME = None  # LOGIN_LOCKOUT_MINUTES=0
    fail("/accounts/login/", staff.username, limit)
    _, response = sign_in("/accounts/login/", staff.username, PASSWORD)
    text = assert_locked_page(response, "/accounts/login/")
    assert "It stays locked until an administrator unlocks it." in text
    assert "try again" not in text


# -- per username and address ------------------------------------------------------------------


@pytest.mark.parametrize("page", [p for p, _ in PAGES])
def test_only_that_username_from_that_address_is_locked(page, staff, limit):
    colleague = User.objects.get(username="stella")
    fail(page, staff.username, limit, ip=HOME)
    assert is_locked(page, staff, ip=HOME)
    assert not is_locked(page, colleague, ip=HOME)  # another username, same address
    assert not is_locked(page, staff, ip=ELSEWHERE)  # same username, another address
    assert is_locked(page, staff, ip=HOME)  # and the pair itself is still locked


def test_failures_on_both_pages_count_together(staff, limit):
    """One counter per username and address, whichever sign-in page is used."""
    fail("/accounts/login/", staff.username, limit - 1)
    _, response = sign_in("/admin/login/", staff.username, "wrong")
    assert_locked_page(response, "/admin/login/")
    assert is_locked("/accounts/login/", staff)


# -- unlocking in the admin ----------------------------------------------------------------------


def _unlocker(codenames: tuple[str, ...]) -> Client:
    user = User.objects.create_user(f"unlocker-{len(codenames)}", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="axes", codename__in=codenames))
    client = Client()
    client.force_login(user)  # this test is about the unlock, not about the unlocker's sign-in
    return client


@pytest.mark.parametrize("page", [p for p, _ in PAGES])
def test_a_superuser_unlocks_by_deleting_the_access_attempt_in_the_admin(page, staff, limit):
    fail(page, staff.username, limit)
    assert is_locked(page, staff)
    admin = Client()
    admin.force_login(User.objects.create_superuser("root", password=None))

    listing = admin.get(reverse("admin:axes_accessattempt_changelist"), {"locked_out": "yes"})
    assert listing.status_code == 200
    text = listing.content.decode()
    assert staff.username in text and "Locked Out" in text

    attempt = AccessAttempt.objects.get(username=staff.username, ip_address=HOME)
    delete_url = reverse("admin:axes_accessattempt_delete", args=[attempt.pk])
    assert admin.get(delete_url).status_code == 200  # the confirmation page
    response = admin.post(delete_url, {"post": "yes"})
    assert response.status_code == 302 and response.url == reverse("admin:axes_accessattempt_changelist")
    assert not AccessAttempt.objects.filter(pk=attempt.pk).exists()
    assert not is_locked(page, staff)


def test_staff_need_the_delete_permission_to_unlock(staff, limit):
    fail("/accounts/login/", staff.username, limit)
    attempt = AccessAttempt.objects.get(username=staff.username)
    delete_url = reverse("admin:axes_accessattempt_delete", args=[attempt.pk])

    viewer = _unlocker(("view_accessattempt",))
    assert viewer.get(reverse("admin:axes_accessattempt_changelist")).status_code == 200
    assert viewer.post(delete_url, {"post": "yes"}).status_code == 403
    assert is_locked("/accounts/login/", staff)

    unlocker = _unlocker(("view_accessattempt", "delete_accessattempt"))
    response = unlocker.post(
        reverse("admin:axes_accessattempt_changelist"),
        {"action": "delete_selected", "_selected_action": [attempt.pk], "post": "yes"},
    )
    assert response.status_code == 302
    assert not is_locked("/accounts/login/", staff)


def test_axes_reset_username_command_unlocks(staff, limit):
    from django.core.management import call_command

    fail("/admin/login/", staff.username, limit)
    assert is_locked("/admin/login/", staff)
    call_command("axes_reset_username", staff.username)
    assert not is_locked("/admin/login/", staff)


# -- the cool-off --------------------------------------------------------------------------------


def age_attempts(by: timedelta) -> None:
    """Move every recorded attempt back in time: the cool-off is tested without waiting on a clock
    (a busy machine made a 2 s cool-off with sleeps miss its window)."""
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - by)


def test_the_lockout_expires_after_the_cool_off_and_attempts_do_not_extend_it(settings, staff, limit):
    settings.AXES_COOLOFF_TIME = timedelta(minutes=10)
    fail("/accounts/login/", staff.username, limit - 1)
    _, response = sign_in("/accounts/login/", staff.username, "wrong")
    assert "You can try again 10 minutes after the attempt that locked it." in assert_locked_page(
        response, "/accounts/login/"
    )
    assert is_locked("/accounts/login/", staff)

    age_attempts(timedelta(minutes=9))  # the attempt that locked it was 9 minutes ago
    # Still locked; neither the right password nor a wrong one now extends the lockout.
    assert is_locked("/accounts/login/", staff)
    assert sign_in("/accounts/login/", staff.username, "wrong")[1].status_code == 429

    age_attempts(timedelta(minutes=2))  # 11 minutes since the attempt that locked it
    assert not is_locked("/accounts/login/", staff)


# -- the client's address ------------------------------------------------------------------------

PROXY = "10.9.9.9"


def test_without_a_configured_proxy_header_the_connection_address_counts(staff, limit):
    """X-Forwarded-For is the client's to write unless a trusted proxy sets it: ignored by default."""
    for n in range(limit):
        sign_in("/accounts/login/", staff.username, "wrong", ip=HOME, HTTP_X_FORWARDED_FOR=f"198.51.100.{n}")
    assert list(AccessAttempt.objects.values_list("ip_address", flat=True)) == [HOME]
    assert is_locked("/accounts/login/", staff)


def test_behind_a_proxy_the_address_the_proxy_saw_counts(settings, staff, limit):
    settings.LOGIN_CLIENT_IP_HEADER = "X-Forwarded-For"
    settings.LOGIN_TRUSTED_PROXIES = 1
    attacker, colleague = "203.0.113.5", "198.51.100.7"
    for n in range(limit):  # the attacker forges the left part of the header; the proxy appends
        sign_in("/accounts/login/", staff.username, "wrong", ip=PROXY, HTTP_X_FORWARDED_FOR=f"192.0.2.{n}, {attacker}")
    assert list(AccessAttempt.objects.values_list("ip_address", flat=True)) == [attacker]

    def through_proxy(forwarded_for: str) -> int:
        return sign_in("/accounts/login/", staff.username, PASSWORD, ip=PROXY, HTTP_X_FORWARDED_FOR=forwarded_for)[
            1
        ].status_code

    assert through_proxy(attacker) == 429
    assert through_proxy(f"{colleague}, {attacker}") == 429  # forging the colleague's address fails
    assert through_proxy(colleague) == 302  # the colleague, elsewhere, signs in


@pytest.mark.parametrize(
    "header, proxies, meta, expected",
    [
        ("", 1, {"HTTP_X_FORWARDED_FOR": "203.0.113.5"}, PROXY),
        ("X-Forwarded-For", 1, {"HTTP_X_FORWARDED_FOR": "203.0.113.5"}, "203.0.113.5"),
        ("X-Forwarded-For", 1, {"HTTP_X_FORWARDED_FOR": "1.1.1.1, 203.0.113.5"}, "203.0.113.5"),
        ("X-Forwarded-For", 2, {"HTTP_X_FORWARDED_FOR": "1.1.1.1, 203.0.113.5, 10.0.0.1"}, "203.0.113.5"),
        ("X-Forwarded-For", 2, {"HTTP_X_FORWARDED_FOR": "203.0.113.5"}, PROXY),  # fewer hops than proxies
        ("X-Forwarded-For", 1, {}, PROXY),  # not through the proxy
        ("X-Forwarded-For", 1, {"HTTP_X_FORWARDED_FOR": "not-an-address"}, PROXY),
        ("X-Real-IP", 1, {"HTTP_X_REAL_IP": "2001:db8::1"}, "2001:db8::1"),
        ("HTTP_X_REAL_IP", 1, {"HTTP_X_REAL_IP": "203.0.113.9"}, "203.0.113.9"),
    ],
)
def test_login_client_ip(settings, header, proxies, meta, expected):
    from orderweb.settings import login_client_ip

    settings.LOGIN_CLIENT_IP_HEADER = header
    settings.LOGIN_TRUSTED_PROXIES = proxies
    request = RequestFactory().post("/accounts/login/", REMOTE_ADDR=PROXY, **meta)
    assert login_client_ip(request) == expected


# -- the settings come from the environment ------------------------------------------------------


def _settings_in_a_fresh_process(env: dict[str, str]) -> str:
    base = {k: v for k, v in os.environ.items() if not k.startswith("LOGIN_")}
    code = (
        "from django.conf import settings as s; print(s.AXES_FAILURE_LIMIT, s.AXES_COOLOFF_TIME, "
        "s.AXES_LOCKOUT_PARAMETERS, s.AXES_RESET_ON_SUCCESS, repr(s.LOGIN_CLIENT_IP_HEADER), "
        "s.LOGIN_TRUSTED_PROXIES)"
    )
    proc = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "shell", "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**base, "SECRET_KEY": secrets.token_urlsafe(50), **env},
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


def test_settings_defaults_and_environment():
    assert _settings_in_a_fresh_process({}) == "5 0:15:00 [['username', 'ip_address']] True '' 1"
    assert (
        _settings_in_a_fresh_process(
            {
                "LOGIN_FAILURE_LIMIT": "3",
                "LOGIN_LOCKOUT_MINUTES": "0",
                "LOGIN_CLIENT_IP_HEADER": "X-Forwarded-For",
                "LOGIN_TRUSTED_PROXIES": "2",
            }
        )
        == "3 None [['username', 'ip_address']] True 'X-Forwarded-For' 2"
    )
