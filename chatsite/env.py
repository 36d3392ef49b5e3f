"""Every setting that comes from the environment is read here, and only here.

Each reader names the variable in its error, so a wrong value stops the start with a message a
person can act on. The README's configuration table lists the same variables.
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def text(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def flag(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}.")


def number(name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {raw!r}.") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {raw!r}.")
    return value


def integer(name: str, default: int, *, minimum: int = 0) -> int:
    value = number(name, default, minimum=minimum)
    if value != int(value):
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}.")
    return int(value)


def csv(name: str, default: str = "") -> list[str]:
    return [part.strip() for part in text(name, default).split(",") if part.strip()]


def url(name: str, default: str = "", *, schemes: tuple[str, ...]) -> str:
    value = text(name, default)
    if not value:
        return value
    parsed = urlparse(value)
    if parsed.scheme not in schemes:
        raise ImproperlyConfigured(
            f"{name} must be a URL starting with {' or '.join(s + '://' for s in schemes)}, "
            f"not {value!r}."
        )
    if parsed.scheme not in {"sqlite"} and not parsed.hostname:
        raise ImproperlyConfigured(f"{name} has no host: {value!r}.")
    return value


def choice(name: str, default: str, *, choices: tuple[str, ...]) -> str:
    value = text(name, default).lower()
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, not {value!r}.")
    return value
