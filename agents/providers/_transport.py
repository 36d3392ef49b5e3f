"""What carries a provider's requests, whichever kind of transport: the interface both kinds
implement and the errors both raise. Private to `agents.providers`.

Two kinds (`LLM_HTTP_TRANSPORT`), made by `_http.make_transport`:

- `own`, the default: our HTTP/1.1 client on an asyncio Protocol (`_wire`). A streamed token
  costs one `data_received` call that de-frames it, where httpx's stack ran it through h11,
  httpcore, httpx's stream wrappers and a StreamReader; a request skips httpx's request model,
  cookies and auth flow. Public asyncio APIs only.
- `stock`: httpx's own AsyncClient and transport (`_stock`): the way out if ours misbehaves with
  some server (no code change), and the baseline ours is measured and tested against.

The adapters (`openai`, `anthropic`) and `_http` see only this interface, so a failure reads
the same to a user whichever kind carried it: `_http` turns these errors into `ProviderError`s.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import Protocol

# httpx's own default, kept for both kinds so that they differ only in how they do the work.
KEEPALIVE_EXPIRY = 5.0


class TransportError(Exception):
    """Base of what a transport raises. Messages may name hosts and OS errors, never header
    values (the API key travels in one)."""


class ConnectFailed(TransportError):
    """No connection: refused, unresolvable, timed out, the TLS handshake or certificate
    refused. Nothing reached the server."""


class Dropped(TransportError):
    """The connection failed after the request went out: closed or reset before the response
    was complete, or the request could not be written in time."""


class BadResponse(TransportError):
    """The server's bytes are not an HTTP/1.1 response we can read (or exceed our limits)."""


class BadRequest(TransportError):
    """The request cannot be sent as asked (an unsupported URL, a line break in a header
    value); nothing was sent."""


class HttpResponse(Protocol):
    """A response whose status line and headers have arrived; the body is read from it.

    The caller must `aclose()` it, however it ends. A response read to its end gives its
    connection back for reuse; one closed before its end closes its connection at once, so the
    server sees the client go away (and stops generating).
    """

    status: int
    # Case-insensitive, as `parse_retry_after` and `ErrorContext.from_status` read them.
    headers: Mapping[str, str]

    def __aiter__(self) -> AsyncIterator[bytes]:
        """The body as it arrives, de-framed and decompressed. Raises `Dropped` or
        `BadResponse`."""
        ...

    async def read(self, limit: int) -> bytes:
        """The body, or its first `limit` bytes when it is longer (the rest is not read)."""
        ...

    async def aclose(self) -> None: ...


class HttpClient(Protocol):
    """One provider's client, with its keep-alive connections. Belongs to one event loop."""

    async def send(self, method: str, url: str, *, headers: Mapping[str, str],
                   body: bytes | None = None) -> HttpResponse:
        """Send a request; return once the response's head has arrived (no timeout of its own
        beyond connecting and writing: the caller bounds the wait). Raises `ConnectFailed`,
        `Dropped`, `BadResponse` or `BadRequest`."""
        ...

    @property
    def is_closed(self) -> bool: ...

    async def aclose(self) -> None:
        """Close every connection, idle or in use."""
        ...


async def read_at_most(body: AsyncIterable[bytes], limit: int) -> bytes:
    """The first `limit` bytes of a response body (an error page, a whole JSON answer): what a
    `Response.read` of either kind returns."""
    parts = []
    size = 0
    async for chunk in body:
        parts.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(parts)[:limit]
