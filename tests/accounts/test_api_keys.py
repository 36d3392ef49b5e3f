"""Personal API keys (accounts/api_keys.py): only a hash is stored, every refused key is a 401
that never repeats the key, an address that keeps presenting bad keys is refused with 429 before
any key is checked, and a busy key is not written on every request."""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.api_keys import (
    MAX_LIVE_KEYS,
    ApiKeyInvalid,
    ApiKeyNotFound,
    ApiKeyRefused,
    ApiKeyUse,
    authenticate_api_key,
    bearer_key,
    do_create_api_key,
    do_revoke_api_key,
    keys_for,
)
from accounts.models import ApiKey
from tests.factories import make_user

pytestmark = pytest.mark.django_db

ADDRESS = "192.0.2.10"
KEY_SHAPE = re.compile(r"sk-ch-[A-Za-z0-9]{8}_[A-Za-z0-9_-]{43}")


@pytest.fixture(autouse=True)
def _own_counters(settings):
    # Each test counts from nothing (Redis, when the settings name it, is shared: own keys).
    settings.CACHES = {"default": {**settings.CACHES["default"],
                                   "KEY_PREFIX": f"test-{uuid.uuid4().hex}"}}
    settings.API_KEY_FAILURES_PER_ADDRESS = 20
    settings.API_KEY_FAILURE_WINDOW = 15 * 60


def refusal(raw: str, *, address: str | None = ADDRESS) -> ApiKeyRefused:
    with pytest.raises(ApiKeyRefused) as caught:
        authenticate_api_key(raw=raw, address=address)
    return caught.value


def assert_401_without_echo(raw: str) -> ApiKeyRefused:
    refused = refusal(raw)
    assert refused.status == 401 and refused.code == "invalid_api_key"
    assert refused.retry_after is None
    said = f"{refused.message} {refused}"
    if len(raw) > len("sk-ch-"):  # (the message may say what keys start with)
        assert raw not in said
    if KEY_SHAPE.fullmatch(raw):
        # Neither the public part nor the secret is said back.
        prefix, secret = raw[6:14], raw[15:]
        assert prefix not in said and secret not in said
    return refused


# --- making ------------------------------------------------------------------------------------


def test_a_new_key_is_returned_once_and_only_its_hash_and_prefix_are_stored():
    user = make_user()
    key, raw = do_create_api_key(user=user, name="  laptop   script ")
    assert KEY_SHAPE.fullmatch(raw)
    assert key.name == "laptop script"
    assert raw == f"sk-ch-{key.prefix}_{raw[15:]}"
    stored = ApiKey.objects.filter(pk=key.pk).values().get()
    assert stored["key_hash"] == hashlib.sha256(raw.encode()).hexdigest()
    assert not any(raw in str(value) or raw[15:] in str(value) for value in stored.values())
    assert [(k.pk, k.shown) for k in keys_for(user=user)] == [(key.pk, f"sk-ch-{key.prefix}…")]
    assert keys_for(user=make_user()).count() == 0
    # Two keys never share a prefix or a secret.
    _, other = do_create_api_key(user=user, name="second")
    assert other[6:14] != raw[6:14] and other[15:] != raw[15:]


@pytest.mark.parametrize("name, why", [
    ("", "Give the key a name"),
    ("   \n ", "Give the key a name"),
    ("x" * 101, "too long"),
    ("bad\x00name", "cannot be used"),
    (None, "Give the key a name"),
])
def test_a_key_needs_a_usable_name(name, why):
    with pytest.raises(ApiKeyInvalid, match=why):
        do_create_api_key(user=make_user(), name=name)
    assert ApiKey.objects.count() == 0


def test_an_expiry_must_be_in_the_future_and_an_inactive_user_gets_no_key():
    with pytest.raises(ApiKeyInvalid, match="future"):
        do_create_api_key(user=make_user(), name="old",
                          expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(ApiKeyInvalid, match="deactivated"):
        do_create_api_key(user=make_user(is_active=False), name="x")
    assert ApiKey.objects.count() == 0


def test_at_most_fifty_live_keys_and_a_revoked_one_makes_room():
    user = make_user()
    keys = [do_create_api_key(user=user, name=f"k{n}")[0] for n in range(MAX_LIVE_KEYS)]
    with pytest.raises(ApiKeyInvalid, match="revoke one"):
        do_create_api_key(user=user, name="one too many")
    # An expired key does not count either.
    ApiKey.objects.filter(pk=keys[0].pk).update(expires_at=timezone.now() - timedelta(days=1))
    do_create_api_key(user=user, name="replaces the expired one")
    do_revoke_api_key(user=user, key_id=keys[1].pk)
    do_create_api_key(user=user, name="replaces the revoked one")
    # Another user's keys are theirs to count.
    do_create_api_key(user=make_user(), name="someone else's")


def test_revoking_is_for_the_keys_own_user_only():
    alice, bob = make_user(), make_user()
    key, raw = do_create_api_key(user=alice, name="alice's")
    for key_id in (key.pk, 10**9, "nonsense", None):
        with pytest.raises(ApiKeyNotFound):
            do_revoke_api_key(user=bob, key_id=key_id)
    assert authenticate_api_key(raw=raw, address=ADDRESS).user == alice
    revoked = do_revoke_api_key(user=alice, key_id=key.pk)
    assert revoked.revoked_at is not None and revoked.state == "revoked"
    # Revoking again keeps the first time.
    assert do_revoke_api_key(user=alice, key_id=key.pk).revoked_at == revoked.revoked_at


# --- checking ----------------------------------------------------------------------------------


def test_a_good_key_lets_its_user_in():
    user = make_user()
    key, raw = do_create_api_key(user=user, name="ci")
    use = authenticate_api_key(raw=raw, address=ADDRESS)
    assert use == ApiKeyUse(user=user, key_id=key.pk)
    with pytest.raises(AttributeError):
        use.key_id = 1  # frozen


def test_every_bad_key_is_a_401_that_does_not_say_the_key_back():
    user = make_user()
    key, raw = do_create_api_key(user=user, name="ci")
    secret = raw[15:]
    wrong_secret = raw[:15] + ("A" if secret[0] != "A" else "B") + secret[1:]
    unknown = "sk-ch-Zz9Zz9Zz_" + secret
    answers = {bad: assert_401_without_echo(bad) for bad in (
        wrong_secret, unknown, "", "sk-ch-", raw + "x", raw[:-1], "Bearer " + raw,
        "sk-ch-" + key.prefix + "_", raw.replace("_", "-", 1), "sk-ch-é" + raw[7:])}
    # A wrong secret for a real prefix is answered exactly as an unknown prefix.
    assert answers[wrong_secret].message == answers[unknown].message
    # The good key still works afterwards.
    assert authenticate_api_key(raw=raw, address=ADDRESS).user == user


def test_a_revoked_key_is_refused_at_once():
    user = make_user()
    key, raw = do_create_api_key(user=user, name="ci")
    authenticate_api_key(raw=raw, address=ADDRESS)
    do_revoke_api_key(user=user, key_id=key.pk)
    assert "revoked" in assert_401_without_echo(raw).message


def test_an_expired_key_is_refused():
    user = make_user()
    key, raw = do_create_api_key(user=user, name="ci",
                                 expires_at=timezone.now() + timedelta(days=1))
    authenticate_api_key(raw=raw, address=ADDRESS)
    ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert "expired" in assert_401_without_echo(raw).message


def test_a_deactivated_users_key_is_refused_at_once_and_works_again_when_reactivated():
    user = make_user()
    _, raw = do_create_api_key(user=user, name="ci")
    authenticate_api_key(raw=raw, address=ADDRESS)
    user.is_active = False
    user.save(update_fields=["is_active"])
    assert "deactivated" in assert_401_without_echo(raw).message
    user.is_active = True
    user.save(update_fields=["is_active"])
    assert authenticate_api_key(raw=raw, address=ADDRESS).user == user


def test_a_deleted_users_key_is_refused():
    user = make_user()
    key, raw = do_create_api_key(user=user, name="ci")
    user.delete()
    assert not ApiKey.objects.filter(pk=key.pk).exists()
    assert_401_without_echo(raw)


def test_an_address_with_twenty_bad_keys_is_refused_before_any_key_is_checked(settings):
    user = make_user()
    _, raw = do_create_api_key(user=user, name="ci")
    for n in range(20):
        assert refusal(f"sk-ch-guess{n:03d}_" + "x" * 43).status == 401
    refused = refusal("sk-ch-guess999_" + "x" * 43)
    assert refused.status == 429 and refused.code == "rate_limit_exceeded"
    assert 14 * 60 < refused.retry_after <= 15 * 60
    assert "15 minutes" in refused.message
    # Refused unchecked, the good key too: no query is made for a locked address.
    with CaptureQueriesContext(connection) as queries:
        good = refusal(raw)
    assert good.status == 429 and raw not in good.message and len(queries) == 0
    # Another address, and a caller with no address, are not affected.
    assert authenticate_api_key(raw=raw, address="198.51.100.1").user == user
    assert authenticate_api_key(raw=raw, address=None).user == user


def test_an_address_opens_again_when_the_window_ends(settings):
    import time

    settings.API_KEY_FAILURE_WINDOW = 1
    settings.API_KEY_FAILURES_PER_ADDRESS = 2
    _, raw = do_create_api_key(user=make_user(), name="ci")
    refusal("nope")
    refusal("nope")
    assert refusal(raw).status == 429
    time.sleep(1.1)
    assert authenticate_api_key(raw=raw, address=ADDRESS)


def test_failed_api_keys_and_failed_sign_ins_are_counted_apart(settings):
    from accounts import throttle

    settings.API_KEY_FAILURES_PER_ADDRESS = 1
    refusal("nope")
    assert throttle.api_key_lockout(address=ADDRESS) is not None
    assert throttle.login_lockout(username="", address=ADDRESS) is None


def test_last_used_is_written_at_most_once_a_minute():
    key, raw = do_create_api_key(user=make_user(), name="busy")
    assert key.last_used_at is None
    with CaptureQueriesContext(connection) as first:
        authenticate_api_key(raw=raw, address=ADDRESS)
    assert [q["sql"].split()[0] for q in first.captured_queries] == ["SELECT", "UPDATE"]
    written = ApiKey.objects.get(pk=key.pk).last_used_at
    assert written is not None
    # Within the minute: one read, no write, and the time stays.
    with CaptureQueriesContext(connection) as busy:
        for _ in range(5):
            authenticate_api_key(raw=raw, address=ADDRESS)
    assert [q["sql"].split()[0] for q in busy.captured_queries] == ["SELECT"] * 5
    assert ApiKey.objects.get(pk=key.pk).last_used_at == written
    # A minute later it is written again.
    earlier = timezone.now() - timedelta(seconds=61)
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=earlier)
    authenticate_api_key(raw=raw, address=ADDRESS)
    assert ApiKey.objects.get(pk=key.pk).last_used_at > earlier + timedelta(seconds=60)


def test_the_update_of_last_used_is_conditional():
    # Another process wrote it just now (after this one read it): this one's UPDATE changes
    # nothing, rather than writing again.
    from accounts.api_keys import _note_use

    key, _ = do_create_api_key(user=make_user(), name="busy")
    now = timezone.now()
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
    _note_use(key, now + timedelta(seconds=5))  # `key` still has last_used_at None
    assert ApiKey.objects.get(pk=key.pk).last_used_at == now


# --- the header --------------------------------------------------------------------------------


def headers(**named) -> list[tuple[bytes, bytes]]:
    """An ASGI scope's headers."""
    return [(name.replace("_", "-").encode(), value.encode()) for name, value in named.items()]


@pytest.mark.parametrize("value, key", [
    ("Bearer sk-ch-abc", "sk-ch-abc"),
    ("bearer sk-ch-abc", "sk-ch-abc"),
    ("BEARER   sk-ch-abc  ", "sk-ch-abc"),
    ("Basic dXNlcjpwYXNz", None),
    ("Bearer", None),
    ("Bearer ", None),
    ("Bearer two words", None),
    ("sk-ch-abc", None),
    ("Token sk-ch-abc", None),
    ("", None),
])
def test_the_key_comes_from_a_bearer_authorization_header_only(value, key):
    assert bearer_key(headers(authorization=value)) == key
    assert bearer_key([(b"Authorization", value.encode())]) == key
    assert bearer_key([(b"AUTHORIZATION", value.encode())]) == key


def test_no_authorization_header_or_two_of_them_is_no_key():
    assert bearer_key(headers(x_api_key="sk-ch-abc")) is None
    assert bearer_key([]) is None
    assert bearer_key([(b"authorization", b"Bearer a"), (b"Authorization", b"Bearer b")]) is None
