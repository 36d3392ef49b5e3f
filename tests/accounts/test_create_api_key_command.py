"""`manage.py create_api_key`: prints the new key alone on one line, and the key it prints
works; an unknown or deactivated user is a clear error and makes no key."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from accounts.api_keys import authenticate_api_key
from accounts.models import ApiKey
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = io.StringIO()
    call_command("create_api_key", *args, stdout=out)
    return out.getvalue()


def test_the_key_printed_is_the_only_output_and_lets_its_user_in():
    alice = make_user(username="alice")
    out = run("alice")
    assert out.endswith("\n") and out.count("\n") == 1
    raw = out.strip()
    assert raw.startswith("sk-ch-")
    assert authenticate_api_key(raw=raw, address=None).user == alice
    key = ApiKey.objects.get(user=alice)
    assert key.name == "Made with manage.py" and key.expires_at is None
    assert raw not in str(list(ApiKey.objects.values()))


def test_a_name_and_an_expiry_can_be_given():
    alice = make_user(username="alice")
    run("alice", "--name", "deploy bot", "--expires-days", "30")
    key = ApiKey.objects.get(user=alice)
    assert key.name == "deploy bot"
    expected = timezone.now() + timedelta(days=30)
    assert abs(key.expires_at - expected) < timedelta(minutes=1)


@pytest.mark.parametrize("days", ["0", "-3", "soon"])
def test_an_expiry_must_be_a_positive_number_of_days(days):
    make_user(username="alice")
    with pytest.raises(CommandError, match="expires-days"):
        run("alice", "--expires-days", days)
    assert not ApiKey.objects.exists()


def test_an_unknown_or_deactivated_user_is_an_error():
    make_user(username="carol", is_active=False)
    with pytest.raises(CommandError, match="No user is called 'nobody'"):
        run("nobody")
    with pytest.raises(CommandError, match="'carol' is deactivated"):
        run("carol")
    assert not ApiKey.objects.exists()


def test_a_bad_name_is_an_error():
    make_user(username="alice")
    with pytest.raises(CommandError, match="too long"):
        run("alice", "--name", "x" * 101)
