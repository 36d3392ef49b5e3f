"""Which pages may open a chat socket: this site's own, compared as Django's CSRF check compares
an HTTP request's Origin (scheme, host and port), plus CSRF_TRUSTED_ORIGINS.

Why not Channels' AllowedHostsOriginValidator: it compares the Origin's host with ALLOWED_HOSTS
and nothing else, so a page on another port or scheme of an allowed host (another app on
127.0.0.1:8939, a plain-HTTP page of an HTTPS site) could open a socket with the user's cookie,
while a form post from the same page is refused. A socket carries the same authority as a form
post, so it gets the same rule.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.utils.http import is_same_domain

Scope = dict[str, Any]
App = Callable[[Scope, Any, Any], Awaitable[None]]


class SameOriginValidator:
    """ASGI middleware: a WebSocket whose Origin is not allowed is refused at the handshake
    (HTTP 403), before any consumer runs."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket" and not origin_allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.app(scope, receive, send)


def origin_allowed(scope: Scope) -> bool:
    headers = _headers(scope)
    origin, host = headers.get("origin"), headers.get("host")
    # Browsers always send both; a client that sends neither is not a page of ours.
    if not origin or not host:
        return False
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return False
    scheme = "https" if _is_secure(scope, headers) else "http"
    if origin == f"{scheme}://{host}" or origin in settings.CSRF_TRUSTED_ORIGINS:
        return True
    return _trusted_subdomain(origin)


def _headers(scope: Scope) -> dict[str, str]:
    # ASGI header names are lower-case bytes; the first of a repeated header wins, as in Django.
    found: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        found.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return found


def _is_secure(scope: Scope, headers: dict[str, str]) -> bool:
    """As HttpRequest.is_secure: the proxy's header when SECURE_PROXY_SSL_HEADER names one."""
    proxy = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy:
        name, expected = proxy
        # Django's form: HTTP_X_FORWARDED_PROTO for the X-Forwarded-Proto header.
        value = headers.get(name.removeprefix("HTTP_").replace("_", "-").lower())
        if value is not None:
            return value.split(",", 1)[0].strip() == expected
    return scope.get("scheme") == "wss"


def _trusted_subdomain(origin: str) -> bool:
    """CSRF_TRUSTED_ORIGINS entries like https://*.example.com, matched as Django matches them."""
    try:
        parsed = urlsplit(origin)
        netloc = parsed.netloc
    except ValueError:
        return False
    for trusted in settings.CSRF_TRUSTED_ORIGINS:
        scheme, _, pattern = trusted.partition("://")
        if pattern.startswith("*.") and scheme == parsed.scheme and is_same_domain(
                netloc, pattern[1:]):
            return True
    return False
