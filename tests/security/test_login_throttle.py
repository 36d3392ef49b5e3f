"""Failed sign-ins are throttled per account and per address (issue 8: twenty wrong passwords in a
row were all checked, without delay). Past the limits the login page answers 429 with how long
to wait, without checking the password, and the same way whether the account exists or not.

The counters are in Django's cache: these run on whichever the settings name (LocMem, or Redis
with REDIS_URL)."""

from __future__ import annotations

import re
import time
import uuid

import pytest
from django.test import Client

from tests.factories import make_user

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"
LOCKED = "Too many failed sign-ins; try again in 15 minutes."


@pytest.fixture(autouse=True)
def _own_counters(settings):
    # Each test counts from nothing. Redis is shared by every run and every process, so it is
    # given keys of its own rather than cleared.
    settings.CACHES = {"default": {**settings.CACHES["default"],
                                   "KEY_PREFIX": f"test-{uuid.uuid4().hex}"}}
    settings.LOGIN_FAILURES_PER_ACCOUNT = 5
    settings.LOGIN_FAILURES_PER_ADDRESS = 20
    settings.LOGIN_FAILURE_WINDOW = 15 * 60


def sign_in(username: str, password: str, *, address: str = "192.0.2.1", path: str = "/login/"):
    return Client().post(path, {"username": username, "password": password},
                         REMOTE_ADDR=address)


def signed_in(response) -> bool:
    return response.status_code == 302 and "sessionid" in response.cookies


def refused(response, message: str = LOCKED) -> bool:
    return (response.status_code == 429 and message in response.content.decode()
            and "sessionid" not in response.cookies)


def alert(response) -> str:
    return re.search(r'<p class="error" role="alert">(.*?)</p>', response.content.decode()).group(1)


def fail(username: str, times: int, *, address: str = "192.0.2.1") -> None:
    for _ in range(times):
        response = sign_in(username, "wrong", address=address)
        assert response.status_code == 200
        assert "didn't match" in response.content.decode()


def test_the_sixth_attempt_for_an_account_is_refused_even_with_the_right_password():
    make_user(username="alice", password=PASSWORD)
    make_user(username="bob", password=PASSWORD)
    fail("alice", 5)
    response = sign_in("alice", PASSWORD)
    assert refused(response)
    assert int(response["Retry-After"]) > 14 * 60
    # The account is refused from anywhere, and the form is still there to try again later.
    assert refused(sign_in("alice", PASSWORD, address="198.51.100.7"))
    assert 'name="password"' in response.content.decode()
    # Another account from another address is not affected.
    assert signed_in(sign_in("bob", PASSWORD, address="198.51.100.8"))


def test_a_username_counts_as_one_whatever_its_case():
    make_user(username="alice", password=PASSWORD)
    for spelling in ("Alice", "ALICE", "alice", "aLiCe", "ＡＬＩＣＥ"):
        fail(spelling, 1)
    assert refused(sign_in("alice", PASSWORD))


def test_an_unknown_username_is_answered_as_a_known_one():
    make_user(username="alice", password=PASSWORD)
    fail("alice", 5)
    fail("nobody", 5)
    known, unknown = sign_in("alice", "wrong"), sign_in("nobody", "wrong")
    assert refused(known) and refused(unknown)
    assert alert(known) == alert(unknown) == LOCKED


def test_an_address_is_refused_after_twenty_failures_whatever_the_usernames():
    make_user(username="alice", password=PASSWORD)
    for n in range(20):
        fail(f"guess{n}", 1, address="203.0.113.5")
    assert refused(sign_in("alice", PASSWORD, address="203.0.113.5"))
    # The account itself is fine from elsewhere.
    assert signed_in(sign_in("alice", PASSWORD, address="203.0.113.6"))


def test_a_success_clears_the_accounts_count():
    make_user(username="alice", password=PASSWORD)
    fail("alice", 4)
    assert signed_in(sign_in("alice", PASSWORD))
    fail("alice", 4)
    assert signed_in(sign_in("alice", PASSWORD))


def test_sign_ins_open_again_when_the_window_ends(settings):
    settings.LOGIN_FAILURE_WINDOW = 1
    make_user(username="alice", password=PASSWORD)
    fail("alice", 5)
    assert refused(sign_in("alice", PASSWORD),
                   "Too many failed sign-ins; try again in 1 minute.")
    time.sleep(1.1)
    assert signed_in(sign_in("alice", PASSWORD))


def test_the_admin_sign_in_is_throttled_too():
    make_user(username="alice", password=PASSWORD, is_staff=True, is_superuser=True)
    fail("alice", 5)
    response = sign_in("alice", PASSWORD, path="/admin/login/")
    assert LOCKED in response.content.decode()
    assert "sessionid" not in response.cookies
    # And the other way round: failures in the admin count for the login page.
    make_user(username="bob", password=PASSWORD, is_staff=True)
    for _ in range(5):
        sign_in("bob", "wrong", path="/admin/login/")
    assert refused(sign_in("bob", PASSWORD))
