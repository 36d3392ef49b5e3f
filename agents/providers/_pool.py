"""A keep-alive connection pool for the model server clients, constant time per request.

httpcore's pool (httpx's default) re-examines every connection it holds each time a request
starts or ends: a socket poll per idle connection, and for each idle one a count over all of
them. With a few hundred concurrent streams to one model server that scan cost more CPU than the
streams themselves (a fifth of the server's time in the benchmark). Here idle connections wait on
a stack per origin: a request takes the most recently used one (the warmest, the least likely to
have been closed by the server) and checks only that one.

Everything else stays httpx's and httpcore's: the connection objects, timeouts carried in the
request extensions, TLS, and the mapping of errors to httpx exceptions (the transport is httpx's,
with this pool in place of its own). Connections reach the network through plain asyncio streams
(`_network`). Private to `agents.providers`.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import httpcore
import httpx

from agents.providers._network import AsyncioBackend


class StackPool:
    """What httpx's transport needs of a pool: `handle_async_request` and `aclose`."""

    def __init__(self, *, ssl_context: ssl.SSLContext, max_idle: int,
                 keepalive_expiry: float) -> None:
        self._ssl_context = ssl_context
        self._max_idle = max_idle
        self._keepalive_expiry = keepalive_expiry
        self._network = AsyncioBackend()
        # By (scheme, host, port): httpcore.Origin is not hashable.
        self._idle: dict[tuple[bytes, bytes, int], list[httpcore.AsyncHTTPConnection]] = {}
        self._busy: set[httpcore.AsyncHTTPConnection] = set()

    def _new_connection(self, origin: httpcore.Origin) -> httpcore.AsyncHTTPConnection:
        return httpcore.AsyncHTTPConnection(
            origin=origin, ssl_context=self._ssl_context, keepalive_expiry=self._keepalive_expiry,
            network_backend=self._network)

    async def _idle_connection(self, origin: httpcore.Origin) -> httpcore.AsyncHTTPConnection:
        stack = self._idle.get(_key(origin))
        while stack:
            connection = stack.pop()
            if connection.is_idle() and not connection.has_expired():
                return connection
            await connection.aclose()  # closed or timed out by the server meanwhile
        return self._new_connection(origin)

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        origin = request.url.origin
        connection = await self._idle_connection(origin)
        for attempt in range(2):
            self._busy.add(connection)
            try:
                response = await connection.handle_async_request(request)
                break
            except httpcore.ConnectionNotAvailable as exc:
                # A kept connection that turned unusable between the check and the request:
                # one new connection instead. A new one refusing too is a failure to connect,
                # raised as one: httpx would pass ConnectionNotAvailable on unmapped, and the
                # turn would fail as "an error on our server" instead of being retried.
                self._busy.discard(connection)
                if attempt:
                    raise httpcore.ConnectError(
                        f"no usable connection to {origin} after a new one") from exc
                connection = self._new_connection(origin)
            except BaseException:
                self._busy.discard(connection)
                await connection.aclose()
                raise
        return httpcore.Response(
            status=response.status, headers=response.headers,
            content=_ReleasingStream(response.stream, pool=self, connection=connection,
                                     origin=origin),
            extensions=response.extensions,
        )

    async def _release(self, connection: httpcore.AsyncHTTPConnection,
                       origin: httpcore.Origin) -> None:
        self._busy.discard(connection)
        # A response read to its end leaves the connection idle; anything else (closed early,
        # an error, "Connection: close") leaves it closed, and it is dropped.
        if not connection.is_idle():
            await connection.aclose()
            return
        stack = self._idle.setdefault(_key(origin), [])
        stack.append(connection)
        if len(stack) > self._max_idle:
            await stack.pop(0).aclose()  # the least recently used

    async def aclose(self) -> None:
        connections = self.connections()
        self._idle.clear()
        self._busy.clear()
        for connection in connections:
            await connection.aclose()

    async def __aenter__(self) -> StackPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def connections(self) -> list[httpcore.AsyncHTTPConnection]:
        """Idle ones first, for tests and diagnostics."""
        return [c for stack in self._idle.values() for c in stack] + list(self._busy)


def _key(origin: httpcore.Origin) -> tuple[bytes, bytes, int]:
    return origin.scheme, origin.host, origin.port


class _ReleasingStream:
    """A response body that hands its connection back to the pool when closed."""

    def __init__(self, stream: AsyncIterator[bytes], *, pool: StackPool,
                 connection: httpcore.AsyncHTTPConnection, origin: httpcore.Origin) -> None:
        self._stream = stream
        self._pool = pool
        self._connection = connection
        self._origin = origin
        self._released = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return aiter(self._stream)  # no wrapper generator per chunk

    async def aclose(self) -> None:
        if self._released:
            return
        self._released = True
        try:
            if hasattr(self._stream, "aclose"):
                await self._stream.aclose()
        finally:
            await self._pool._release(self._connection, self._origin)


class StackPoolTransport(httpx.AsyncHTTPTransport):
    """httpx's transport (request conversion, error mapping) over a `StackPool`."""

    def __init__(self, *, max_idle: int, keepalive_expiry: float = 5.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__()
        self._pool = StackPool(ssl_context=ssl_context or httpx.create_ssl_context(),
                               max_idle=max_idle, keepalive_expiry=keepalive_expiry)
