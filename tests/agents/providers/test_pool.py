"""The model servers' connection pool, against a raw keep-alive HTTP server that counts the
connections it accepts and sees closed (a new connection is a TCP, and on https a TLS,
handshake that a user waits for). Our pool only: httpx's own is httpx's to test."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from agents.providers import OpenAIProvider, ProviderConfig
from agents.providers._pool import StackPoolTransport
from tests.agents.streams import ask, collect_until_error


def client(max_idle: int = 8) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=StackPoolTransport(max_idle=max_idle))


async def settle(predicate, timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_one_connection_serves_requests_one_after_another(server):
    async with client() as http:
        for _ in range(5):
            response = await http.get(server.url + "/ok")
            assert response.text == "hello"
    assert server.accepted == 1


async def test_concurrent_streams_open_connections_then_keep_at_most_max_idle(server):
    async with client(max_idle=4) as http:
        responses = await asyncio.gather(*(http.get(server.url + "/slow") for _ in range(10)))
        assert [r.text for r in responses] == ["hello" * 3] * 10
        assert server.accepted == 10
        await settle(lambda: server.closed == 6)  # the surplus beyond 4 idle is closed
        assert len(http._transport._pool.connections()) == 4
        # Four at once again: all served by the kept connections.
        await asyncio.gather(*(http.get(server.url + "/slow") for _ in range(4)))
        assert server.accepted == 10


async def test_a_connection_the_server_closed_while_idle_is_not_reused(server):
    async with client() as http:
        assert (await http.get(server.url + "/bye")).text == "hello"
        await settle(lambda: server.closed == 1)
        # No error for the user: the dead connection is noticed and a new one made.
        assert (await http.get(server.url + "/ok")).text == "hello"
    assert server.accepted == 2


async def test_a_response_closed_half_read_drops_its_connection(server):
    async with client() as http:
        async with http.stream("GET", server.url + "/slow") as response:
            async for _ in response.aiter_raw():
                break
        # The server sees the client go away at once (a model server stops generating).
        await settle(lambda: server.closed == 1)
        assert http._transport._pool.connections() == []
        assert (await http.get(server.url + "/ok")).text == "hello"
    assert server.accepted == 2


async def test_closing_the_client_closes_idle_connections(server):
    http = client()
    await asyncio.gather(*(http.get(server.url + "/ok") for _ in range(3)))
    await http.aclose()
    await settle(lambda: server.closed == server.accepted)
    assert http._transport._pool.connections() == []


async def test_a_refused_connection_is_an_httpx_connect_error():
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    async with client() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"http://127.0.0.1:{port}/ok")
        assert http._transport._pool.connections() == []


# httpcore refuses a request on a connection that is not idle (ConnectionNotAvailable), which is
# what a kept connection that turned unusable looks like. A connection busy streaming a response
# of its own, handed out by the pool as if it were free, makes httpcore say so for real.


async def test_one_unusable_connection_is_replaced_by_a_new_one_unseen(server, monkeypatch):
    async with client() as http:
        pool = http._transport._pool
        async with http.stream("GET", server.url + "/slow"):
            (busy,) = pool.connections()
            handed_out = iter([busy])
            new_connection = pool._new_connection
            monkeypatch.setattr(pool, "_new_connection",
                                lambda origin: next(handed_out, None) or new_connection(origin))
            assert (await http.get(server.url + "/ok")).text == "hello"
    assert server.accepted == 2


async def test_a_second_unusable_connection_is_a_retryable_connection_error(server, monkeypatch):
    provider = OpenAIProvider(ProviderConfig(name="raw", kind="openai",
                                             base_url=server.url + "/v1"))
    pool = provider._client._transport._pool
    try:
        async with provider._client.stream("GET", server.url + "/slow"):
            (busy,) = pool.connections()
            monkeypatch.setattr(pool, "_new_connection", lambda origin: busy)
            _, error = await collect_until_error(provider.stream(ask()))
    finally:
        await provider.aclose()

    # What the user sees, and a turn retries; not "an error on our server".
    assert (error.kind, error.retryable) == ("connection", True)
    assert error.message == f"Cannot reach the model server at {server.url}/v1."
