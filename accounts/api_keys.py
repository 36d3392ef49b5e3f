"""Personal API keys for the /v1 API (issue 11): made and revoked by their person (the account
page, `manage.py create_api_key`), checked on every API request.

A key is `sk-ch-<prefix>_<secret>`: the prefix (8 letters and digits) is its public part, stored
and shown in lists so a person can tell their keys apart; the secret is
`secrets.token_urlsafe(32)` (43 characters, 32 random bytes) and is never stored, only a sha256
of the whole key. The key itself is returned once, by `do_create_api_key`.

`authenticate_api_key` reads the key and its user from the database on every call, with no
cache: a revoke, an expiry or a deactivated account takes effect on the very next request.
Refused keys are counted per client address (accounts/throttle.py); past
API_KEY_FAILURES_PER_ADDRESS, the address is refused before any key is checked. Nothing here
puts a presented key, or any part of it, into a message.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import string
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts import throttle
from accounts.models import ApiKey, User

KEY_START = "sk-ch-"
PREFIX_LENGTH = 8
# Letters and digits only (a subset of the URL-safe alphabet): the prefix is read by people in
# lists, and the "_" after it then always marks where it ends.
_PREFIX_ALPHABET = string.ascii_letters + string.digits
_KEY_SHAPE = re.compile(r"sk-ch-([A-Za-z0-9]{8})_([A-Za-z0-9_-]{43})")
NAME_MAX_CHARS = 100  # ApiKey.name's max_length
# Live keys (neither revoked nor expired) one person may have: enough for every script and
# machine, few enough that a runaway loop making keys stops early.
MAX_LIVE_KEYS = 50
# last_used_at is written at most this often per key: a busy key costs no write per request.
LAST_USED_RESOLUTION = timedelta(seconds=60)

# The codes OpenAI's API answers with, which its client libraries know.
INVALID_KEY = "invalid_api_key"
RATE_LIMITED = "rate_limit_exceeded"


class ApiKeyInvalid(ValueError):
    """A new key's name or expiry is not usable, or its person has too many keys. The message is
    for that person."""


class ApiKeyNotFound(Exception):
    """No key with that id is the user's (another user's key is the same as a missing one)."""


class ApiKeyRefused(Exception):
    """A presented key is not let in: `status` is the HTTP status to answer (401, or 429 with
    `retry_after` seconds), `code` the OpenAI-style error code. `message` never contains the
    key or any part of it."""

    def __init__(self, status: int, message: str, retry_after: int | None = None,
                 code: str = INVALID_KEY) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after
        self.code = code


@dataclass(frozen=True)
class ApiKeyUse:
    """A request let in by a key: whose it is, and which key (for records of what it did)."""

    user: User
    key_id: int


# --- making and revoking -------------------------------------------------------------------------


def do_create_api_key(*, user, name: str, expires_at: datetime | None = None
                      ) -> tuple[ApiKey, str]:
    """A new key for `user`: the row, and the raw key, which exists only in this return value
    (show it to the person once; it cannot be had again). Raises ApiKeyInvalid for an empty,
    too long or unprintable name, an expiry not in the future, an inactive user, or a user
    who already has MAX_LIVE_KEYS live keys."""
    name = _clean_name(name)
    now = timezone.now()
    if expires_at is not None and expires_at <= now:
        raise ApiKeyInvalid("An expiry date must be in the future.")
    with transaction.atomic():
        # The user's row is locked so that two keys made at once cannot both see the count
        # below the limit.
        locked = User.objects.select_for_update().filter(pk=user.pk, is_active=True)
        if not locked.exists():
            raise ApiKeyInvalid("This account is deactivated: it cannot have new API keys.")
        if live_keys(user=user, now=now).count() >= MAX_LIVE_KEYS:
            raise ApiKeyInvalid(
                f"You already have {MAX_LIVE_KEYS} API keys in use: revoke one you no longer "
                "need first.")
        for _ in range(5):
            prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
            raw = f"{KEY_START}{prefix}_{secrets.token_urlsafe(32)}"
            try:
                # A savepoint: a prefix that is taken (one in 62**8 per existing key) is tried
                # again without losing the lock.
                with transaction.atomic():
                    key = ApiKey.objects.create(user=user, name=name, prefix=prefix,
                                                key_hash=_hash(raw), expires_at=expires_at)
            except IntegrityError:
                continue
            return key, raw
    raise RuntimeError("Could not find a free API key prefix in five tries.")


def do_revoke_api_key(*, user, key_id: int | str) -> ApiKey:
    """Revoke one of the user's keys: it is refused from the next request on. Revoking a
    revoked key keeps the first revocation's time. Raises ApiKeyNotFound for a key that is not
    the user's, whether it exists or not."""
    try:
        key_id = int(key_id)
    except (TypeError, ValueError):
        raise ApiKeyNotFound from None
    mine = ApiKey.objects.filter(pk=key_id, user=user)
    mine.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
    try:
        return mine.get()
    except ApiKey.DoesNotExist:
        raise ApiKeyNotFound from None


def do_revoke_api_keys(*, keys: QuerySet[ApiKey]) -> int:
    """Revoke every key in `keys` not revoked yet (the admin's action: any person's keys, for
    staff allowed to change keys); returns how many."""
    return keys.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())


def keys_for(*, user) -> QuerySet[ApiKey]:
    """The user's keys, newest first, revoked and expired ones included (the account page
    shows them with their state)."""
    return ApiKey.objects.filter(user=user).order_by("-created_at", "-pk")


def live_keys(*, user, now: datetime | None = None) -> QuerySet[ApiKey]:
    """The user's keys that would let a request in now (the user being active)."""
    now = now or timezone.now()
    return ApiKey.objects.filter(user=user, revoked_at__isnull=True).filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=now))


def _clean_name(name) -> str:
    if not isinstance(name, str):
        raise ApiKeyInvalid("Give the key a name.")
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in name if not c.isspace()):
        # Control characters and lone surrogates (a JSON escape can make one) are no part of a
        # name a person types, and the database may refuse them (PostgreSQL: NUL).
        raise ApiKeyInvalid("The name contains a character that cannot be used.")
    name = " ".join(name.split())
    if not name:
        raise ApiKeyInvalid("Give the key a name, to tell it from your others.")
    if len(name) > NAME_MAX_CHARS:
        raise ApiKeyInvalid(f"The name is too long ({len(name)} characters; at most "
                            f"{NAME_MAX_CHARS}).")
    return name


# --- checking ------------------------------------------------------------------------------------


def authenticate_api_key(*, raw: str, address: str | None) -> ApiKeyUse:
    """Who `raw` (a key as presented, e.g. by `bearer_key`) lets in, asked from client `address`
    (REMOTE_ADDR; None counts and locks nothing). Sync: from async code call it through
    sync_to_async. At most one cache read and one query, plus one cache write when refused and
    one UPDATE a minute per key in use.

    Raises ApiKeyRefused: 429 (with retry_after) when the address is over its limit of refused
    keys; otherwise 401 for a malformed, unknown, revoked or expired key, or one whose user is
    deactivated (a deleted user's keys are gone with them: unknown). Each 401 is counted
    against the address."""
    lockout = throttle.api_key_lockout(address=address)
    if lockout:
        # Refused before the key is looked at, a good key too. The throttle exists to make an
        # address that is trying keys cost nothing: letting good keys through would need the
        # database lookup for every request it sends, and would answer each guess with whether
        # it was right. The price: a good client sharing an address (one NAT) with a broken one
        # waits out the window too; the 429's Retry-After says how long.
        minutes = max(1, math.ceil(lockout.retry_after / 60))
        raise ApiKeyRefused(
            429, f"Too many requests with wrong API keys from this address; try again in "
                 f"{minutes} minute{'' if minutes == 1 else 's'}.",
            retry_after=lockout.retry_after, code=RATE_LIMITED)
    try:
        return _check(raw)
    except ApiKeyRefused:
        throttle.do_record_api_key_failure(address=address)
        raise


def _check(raw: str) -> ApiKeyUse:
    shape = _KEY_SHAPE.fullmatch(raw) if isinstance(raw, str) else None
    if shape is None:
        raise ApiKeyRefused(401, "That is not an API key of this site. Keys start with "
                                 f"{KEY_START}; make one on your account page (/account/).")
    digest = _hash(raw)
    try:
        key = ApiKey.objects.select_related("user").get(prefix=shape[1])
    except ApiKey.DoesNotExist:
        key = None
    # Unknown prefix and wrong secret answer alike: the answer must not tell which prefixes
    # exist. compare_digest so that the time taken says nothing of how much of the hash matched.
    if key is None or not hmac.compare_digest(key.key_hash, digest):
        raise ApiKeyRefused(401, "Incorrect API key. Check it, or make a new one on your "
                                 "account page (/account/).")
    # From here the caller has shown the whole key, so it may be told what is wrong with it.
    now = timezone.now()
    if key.revoked_at is not None:
        raise ApiKeyRefused(401, "This API key was revoked. Make a new one on your account "
                                 "page (/account/).")
    if key.expires_at is not None and key.expires_at <= now:
        raise ApiKeyRefused(401, "This API key has expired. Make a new one on your account "
                                 "page (/account/).")
    if not key.user.is_active:
        raise ApiKeyRefused(401, "The account this API key belongs to is deactivated.")
    _note_use(key, now)
    return ApiKeyUse(user=key.user, key_id=key.pk)


def _note_use(key: ApiKey, now: datetime) -> None:
    stale = now - LAST_USED_RESOLUTION
    if key.last_used_at is not None and key.last_used_at >= stale:
        return  # written less than a minute ago (as read just now): no query at all
    # Conditional, so that of many processes noticing the same stale time one writes it.
    ApiKey.objects.filter(pk=key.pk).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=stale)).update(last_used_at=now)


def _hash(raw: str) -> str:
    # sha256, not a password hasher: the key is 32 random bytes, so there is no guessing for a
    # slow hash to slow down, and every API request pays for this one.
    return hashlib.sha256(raw.encode()).hexdigest()


# --- reading the header --------------------------------------------------------------------------


def bearer_key(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The key sent as `Authorization: Bearer <key>` (the scheme in any case), or None: no such
    header, more than one, another scheme, or no key after it. `headers` is an ASGI scope's list
    of (name, value) byte pairs, names in any case. The key is not checked here."""
    values = [value.decode("latin-1") for name, value in headers
              if name.lower() == b"authorization"]
    if len(values) != 1:
        return None
    scheme, _, key = values[0].strip().partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key or any(c.isspace() for c in key):
        return None
    return key
