"""The HTTP transport under every provider client: ours (`pooled`) or httpx's own (`stock`).

`pooled`, the default, is our constant-time keep-alive pool on plain asyncio streams (`_pool`,
`_network`): it is what keeps the CPU cost of hundreds of concurrent streams down. It leans on
httpcore internals (docs/private-apis.md), so `stock`, httpx's AsyncHTTPTransport with
httpcore's own pool and AnyIO backend, is kept working beside it: the way out when an httpx or
httpcore upgrade breaks ours (LLM_HTTP_TRANSPORT=stock, no code change), and the baseline ours
is measured and tested against. Private to `agents.providers`.
"""

from __future__ import annotations

import ssl

import httpx

from agents.providers._pool import StackPoolTransport
from agents.providers.base import HttpTransport

# httpx's own default, kept for both kinds so that they differ only in pool and backend.
KEEPALIVE_EXPIRY = 5.0


def make_transport(kind: HttpTransport, *, max_idle: int,
                   keepalive_expiry: float = KEEPALIVE_EXPIRY,
                   ssl_context: ssl.SSLContext | None = None) -> httpx.AsyncBaseTransport:
    """A transport with the same limits whichever kind: no cap on connections (the caller limits
    concurrency, as agents.resilience does per provider, so a second cap here would only queue
    turns invisibly), at most `max_idle` idle connections kept for `keepalive_expiry` seconds
    (per origin in ours, in all in httpcore's: the same for a provider, which talks to one
    origin), and the default trust store unless `ssl_context` is given. Timeouts are the
    client's (httpx passes them to either in each request's extensions)."""
    ssl_context = ssl_context or httpx.create_ssl_context()
    if kind == "pooled":
        return StackPoolTransport(max_idle=max_idle, keepalive_expiry=keepalive_expiry,
                                  ssl_context=ssl_context)
    if kind == "stock":
        return httpx.AsyncHTTPTransport(verify=ssl_context, limits=httpx.Limits(
            max_connections=None, max_keepalive_connections=max_idle,
            keepalive_expiry=keepalive_expiry))
    raise ValueError(f"unknown HTTP transport {kind!r}")
