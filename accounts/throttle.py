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
    retry_after: int  # seconds until sign-ins are counted afresh

    @property
    def message(self) -> str:
        minutes = max(1, math.ceil(self.retry_after / 60))
        return (f"Too many failed sign-ins; try again in {minutes} "
                f"minute{'' if minutes == 1 else 's'}.")


def login_lockout(*, username: str, address: str | None) -> Lockout | None:
    """Whether a sign-in as `username` from `address` is refused before its password is checked.
    Asking counts nothing."""
    limits = [(_account_key(username), settings.LOGIN_FAILURES_PER_ACCOUNT)] if username else []
    if address:
        limits.append((_address_key(address), settings.LOGIN_FAILURES_PER_ADDRESS))
    stored = cache.get_many([name for key, _ in limits for name in (key, _since(key))])
    now = time.time()
    waits = []
    for key, limit in limits:
        if stored.get(key, 0) >= limit:
            since = stored.get(_since(key))
            window = settings.LOGIN_FAILURE_WINDOW
            waits.append(window if since is None else max(1, math.ceil(since + window - now)))
    return Lockout(retry_after=max(waits)) if waits else None


def do_record_login_failure(*, username: str, address: str | None) -> None:
    if username:
        _count(_account_key(username))
    if address:
        _count(_address_key(address))


def do_clear_login_failures(*, username: str) -> None:
    key = _account_key(username)
    cache.delete_many([key, _since(key)])


def _count(key: str) -> None:
    window = settings.LOGIN_FAILURE_WINDOW
    if cache.add(key, 1, timeout=window):
        # The first failure of a window: when it ends is when sign-ins open again.
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


def _since(key: str) -> str:
    return key + ":since"
