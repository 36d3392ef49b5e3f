"""The model servers' connection pool, against a raw keep-alive HTTP server that counts the
connections it accepts and sees closed (a new connection is a TCP, and on https a TLS,
handshake that a user waits for)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from agents.providers._pool import StackPoolTransport


class CountingServer:
    """HTTP/1.1 with keep-alive. GET /ok answers at once; /slow sends 3 chunks 50 ms apart;
    /bye answers, then closes the connection 50 ms later, as a server's idle timeout would."""

    def __init__(self) -> None:
        self.accepted = 0
        self.closed = 0

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1]
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                for _ in range(3 if path == b"/slow" else 1):
                    writer.write(b"5\r\nhello\r\n")
                    await writer.drain()
                    if path == b"/slow":
                        await asyncio.sleep(0.05)
                writer.write(b"0\r\n\r\n")
                await writer.drain()
                if path == b"/bye":
                    await asyncio.sleep(0.05)
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except ConnectionError:
                pass
            self.closed += 1

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture
async def server():
    s = CountingServer()
    s.url = await s.start()
    yield s
    await s.stop()


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
