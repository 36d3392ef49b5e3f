"""Failed sign-ins, counted per account and per client address (issue 8: twenty wrong passwords
in a row were all checked, without delay).

After LOGIN_FAILURES_PER_ACCOUNT failures for one username, or LOGIN_FAILURES_PER_ADDRESS from
one address, within LOGIN_FAILURE_WINDOW seconds of the first of them, sign-ins for it are
refused without checking the password until that window ends. A successful sign-in clears the
account's count (not the address's: one good password must not reopen an address that is
guessing at others).

The counters live in Django's cache: Redis when REDIS_URL is set, so that every process counts
the same failures; this process's memory otherwise (one process, one machine). A counter is
made with `add` and grown with `incr`, both atomic, so concurrent failures are all counted.
Usernames are counted whether or not such an account exists, and the answer is the same
either way.

API keys refused (accounts/api_keys.py) are counted the same way, per address only
(API_KEY_FAILURES_PER_ADDRESS within API_KEY_FAILURE_WINDOW), in counters of their own: a
script with a wrong key does not lock its person out of the login page, nor the reverse.
"""

from __future__ import annotations

import hashlib
import math
import time
import unicodedata
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache


@dataclass(frozen=True)
class Lockout:
    retry_after: int  # seconds until the failures are counted afresh

    @property
    def message(self) -> str:
        # The sign-in pages' words; the API says its own (accounts/api_keys.py).
        minutes = max(1, math.ceil(self.retry_after / 60))
        return (f"Too many failed sign-ins; try again in {minutes} "
                f"minute{'' if minutes == 1 else 's'}.")


def login_lockout(*, username: str, address: str | None) -> Lockout | None:
    """Whether a sign-in as `username` from `address` is refused before its password is checked.
    Asking counts nothing."""
    limits = [(_account_key(username), settings.LOGIN_FAILURES_PER_ACCOUNT)] if username else []
    if address:
        limits.append((_address_key(address), settings.LOGIN_FAILURES_PER_ADDRESS))
    return _lockout(limits, window=settings.LOGIN_FAILURE_WINDOW)


def do_record_login_failure(*, username: str, address: str | None) -> None:
    if username:
        _count(_account_key(username), window=settings.LOGIN_FAILURE_WINDOW)
    if address:
        _count(_address_key(address), window=settings.LOGIN_FAILURE_WINDOW)


def do_clear_login_failures(*, username: str) -> None:
    key = _account_key(username)
    cache.delete_many([key, _since(key)])


def api_key_lockout(*, address: str | None) -> Lockout | None:
    """Whether API requests from `address` are refused before their key is checked. Asking
    counts nothing; no address (a test client, a socket) is never locked."""
    if not address:
        return None
    return _lockout([(_api_key_address_key(address), settings.API_KEY_FAILURES_PER_ADDRESS)],
                    window=settings.API_KEY_FAILURE_WINDOW)


def do_record_api_key_failure(*, address: str | None) -> None:
    if address:
        _count(_api_key_address_key(address), window=settings.API_KEY_FAILURE_WINDOW)


def _lockout(limits: list[tuple[str, int]], *, window: int) -> Lockout | None:
    """The longest wait among the counters at or over their limit (one cache round trip)."""
    stored = cache.get_many([name for key, _ in limits for name in (key, _since(key))])
    now = time.time()
    waits = []
    for key, limit in limits:
        if stored.get(key, 0) >= limit:
            since = stored.get(_since(key))
            waits.append(window if since is None else max(1, math.ceil(since + window - now)))
    return Lockout(retry_after=max(waits)) if waits else None


def _count(key: str, *, window: int) -> None:
    if cache.add(key, 1, timeout=window):
        # The first failure of a window: when it ends is when the refusals end.
        cache.set(_since(key), time.time(), timeout=window)
        return
    try:
        cache.incr(key)
    except ValueError:
        # The window ended between add and incr: this failure opens the next one.
        if cache.add(key, 1, timeout=window):
            cache.set(_since(key), time.time(), timeout=window)


def _account_key(username: str) -> str:
    # "Alice", "alice" and "ａｌｉｃｅ" are one account to a person guessing passwords; hashed,
    # so that any username makes a valid key.
    normal = unicodedata.normalize("NFKC", username).strip().casefold()
    return "login-failures:account:" + hashlib.sha256(normal.encode()).hexdigest()


def _address_key(address: str) -> str:
    return "login-failures:address:" + address


def _api_key_address_key(address: str) -> str:
    return "api-key-failures:address:" + address


def _since(key: str) -> str:
    return key + ":since"
