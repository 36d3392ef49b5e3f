"""httpx's own client and transport behind our interface (`LLM_HTTP_TRANSPORT=stock`): the way
out if our client (`_wire`) misbehaves with some server, and the baseline it is measured and
tested against. httpx's exceptions become ours (`_transport`), so users read the same messages
whichever transport failed. Private to `agents.providers`.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager

import httpx

from agents.providers._transport import (
    KEEPALIVE_EXPIRY,
    BadRequest,
    BadResponse,
    ConnectFailed,
    Dropped,
    read_at_most,
)


@contextmanager
def _as_ours() -> Iterator[None]:
    try:
        yield
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        raise ConnectFailed(str(exc) or type(exc).__name__) from exc
    except (httpx.LocalProtocolError, httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        raise BadRequest(str(exc) or type(exc).__name__) from exc
    except httpx.DecodingError as exc:
        raise BadResponse(str(exc) or type(exc).__name__) from exc
    except httpx.TransportError as exc:
        # h11's RemoteProtocolError included, as before: reported as a drop.
        raise Dropped(str(exc) or type(exc).__name__) from exc


class StockClient:
    """Same limits as ours: no cap on connections, `max_idle` kept for `keepalive_expiry`
    seconds, connect, write and pool waits bounded by `connect_timeout`, no read timeout (the
    caller bounds the wait for the answer)."""

    def __init__(self, *, max_idle: int, connect_timeout: float,
                 keepalive_expiry: float = KEEPALIVE_EXPIRY,
                 ssl_context: ssl.SSLContext) -> None:
        t = connect_timeout
        # An explicit transport, as before: httpx then ignores HTTP(S)_PROXY in the environment,
        # as ours does.
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(None, connect=t, write=t, pool=t),
            headers={"Accept-Encoding": "identity"},
            transport=httpx.AsyncHTTPTransport(verify=ssl_context, limits=httpx.Limits(
                max_connections=None, max_keepalive_connections=max_idle,
                keepalive_expiry=keepalive_expiry)))

    @property
    def is_closed(self) -> bool:
        return self.http.is_closed

    async def send(self, method: str, url: str, *, headers: Mapping[str, str],
                   body: bytes | None = None) -> StockResponse:
        with _as_ours():
            request = self.http.build_request(method, url, headers=headers, content=body)
            return StockResponse(await self.http.send(request, stream=True))

    async def aclose(self) -> None:
        await self.http.aclose()


class StockResponse:
    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.status = response.status_code
        self.headers: Mapping[str, str] = response.headers

    def __aiter__(self) -> AsyncIterator[bytes]:
        # Undecoded bytes unless the server compressed anyway: one layer less per token.
        coding = self._response.headers.get("content-encoding", "identity")
        if coding in ("", "identity"):
            return _as_ours_each(self._response.aiter_raw())
        return _as_ours_each(self._response.aiter_bytes())

    async def read(self, limit: int) -> bytes:
        return await read_at_most(self, limit)

    async def aclose(self) -> None:
        await self._response.aclose()


async def _as_ours_each(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    with _as_ours():
        async for chunk in chunks:
            yield chunk
