"""What either HTTP transport must do (agents/providers/_transport.py), over real sockets, on
both kinds: keep-alive reuse and its limits, closing, TLS, certificate checks, timeouts and
drops, each ending in the same error whichever kind carried it. A new connection is a TCP, and
on https a TLS, handshake that a user waits for: the servers count them."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from agents.providers import OpenAIProvider, ProviderConfig
from agents.providers._http import make_transport
from agents.providers._transport import ConnectFailed, Dropped
from tests.agents.providers.rawserver import CountingServer, fetch, self_signed, settle
from tests.agents.streams import ask, collect_until_error


@pytest.fixture
async def client(transport):
    """Makes clients on the test's transport; each is closed at the end."""
    made = []

    def make(**options):
        options.setdefault("max_idle", 8)
        options.setdefault("connect_timeout", 2.0)
        made.append(make_transport(transport, **options))
        return made[-1]

    yield make
    for http in made:
        await http.aclose()


@pytest.fixture
async def tls(tmp_path):
    server_context, client_context = self_signed(tmp_path)
    server = CountingServer(ssl_context=server_context)
    server.url = await server.start()
    yield server, client_context
    await server.stop()


async def test_one_connection_serves_requests_one_after_another(server, client,
                                                                kept_connections):
    http = client()
    for _ in range(5):
        assert await fetch(http, server.url + "/ok") == (200, b"hello")
    assert kept_connections(http) == [5]
    assert server.accepted == 1


async def test_concurrent_streams_open_connections_then_keep_at_most_max_idle(
        server, client, kept_connections):
    http = client(max_idle=4)
    answers = await asyncio.gather(*(fetch(http, server.url + "/slow") for _ in range(10)))
    assert answers == [(200, b"hello" * 3)] * 10
    assert server.accepted == 10
    await settle(lambda: server.closed == 6)  # the surplus beyond 4 idle is closed
    assert kept_connections(http) == [1] * 4
    # Four at once again: all served by the kept connections.
    await asyncio.gather(*(fetch(http, server.url + "/slow") for _ in range(4)))
    assert server.accepted == 10


async def test_a_connection_the_server_closed_while_idle_is_not_reused(server, client,
                                                                      kept_connections):
    http = client()
    assert await fetch(http, server.url + "/bye") == (200, b"hello")
    await settle(lambda: server.closed == 1)
    # No error for the user: the dead connection is known dead, and a new one made.
    assert await fetch(http, server.url + "/ok") == (200, b"hello")
    assert kept_connections(http) == [1]
    assert server.accepted == 2


async def test_a_response_closed_half_read_closes_its_connection_at_once(
        server, client, kept_connections):
    http = client()
    response = await http.send("GET", server.url + "/slow", headers={})
    async for _ in response:
        break
    await response.aclose()
    # The server sees the client go away at once (a model server stops generating).
    await settle(lambda: server.closed == 1, timeout=0.5)
    assert kept_connections(http) == []
    assert await fetch(http, server.url + "/ok") == (200, b"hello")
    assert server.accepted == 2


async def test_reading_a_limited_part_of_a_body_closes_the_rest(server, client):
    http = client()
    response = await http.send("GET", server.url + "/slow", headers={})
    try:
        assert await response.read(3) == b"hel"
    finally:
        await response.aclose()
    await settle(lambda: server.closed == 1, timeout=0.5)


async def test_closing_the_client_closes_every_connection(server, client):
    http = client()
    await asyncio.gather(*(fetch(http, server.url + "/ok") for _ in range(3)))
    busy = await http.send("GET", server.url + "/slow", headers={})
    await http.aclose()
    assert http.is_closed
    await settle(lambda: server.closed == server.accepted == 3)
    await busy.aclose()


async def test_a_refused_connection_is_connect_failed(client):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    http = client()
    with pytest.raises(ConnectFailed):
        await fetch(http, f"http://127.0.0.1:{port}/ok")


async def test_a_tls_handshake_that_never_completes_hits_the_connect_timeout(client):
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accepts TCP, never speaks TLS
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    started = time.monotonic()
    try:
        http = client(connect_timeout=0.3)
        with pytest.raises(ConnectFailed):
            await fetch(http, f"https://127.0.0.1:{port}/ok")
    finally:
        server.close()
        await server.wait_closed()
    assert 0.3 <= time.monotonic() - started < 1.5


async def test_https_with_a_trusted_certificate_streams_and_keeps_the_connection(
        tls, client, kept_connections):
    server, client_context = tls
    http = client(ssl_context=client_context)
    response = await http.send("GET", server.url + "/slow", headers={})
    try:
        chunks = [chunk async for chunk in response]
    finally:
        await response.aclose()
    assert b"".join(chunks) == b"hello" * 3
    assert await fetch(http, server.url + "/ok") == (200, b"hello")
    assert kept_connections(http) == [2]
    assert server.accepted == 1


async def test_an_untrusted_certificate_is_refused(tls, client):
    server, _ = tls
    # The usual trust store: it does not know the test's certificate.
    http = client()
    with pytest.raises(ConnectFailed, match="CERTIFICATE_VERIFY_FAILED"):
        await fetch(http, server.url + "/ok")


async def test_a_server_that_closes_mid_answer_is_a_drop(server, client):
    http = client()
    response = await http.send("GET", server.url + "/slow", headers={})
    try:
        server.server.close()
        for writer in list(server.writers):
            writer.transport.abort()
        with pytest.raises(Dropped):
            async for _ in response:
                pass
    finally:
        await response.aclose()


async def test_kept_connections_the_server_closes_unanswered_are_a_retryable_connection_error(
        server, transport):
    # The keep-alive race, twice: the kept connection is closed as the request goes out, and
    # so is the new one tried after it (ours tries one; httpx none).
    provider = OpenAIProvider(ProviderConfig(name="raw", kind="openai", transport=transport,
                                             base_url=server.url + "/v1"))
    try:
        assert await fetch(provider._client, server.url + "/once") == (200, b"hello")
        server.hang_up = True
        _, error = await collect_until_error(provider.stream(ask()))
    finally:
        await provider.aclose()

    # What the user sees, and a turn retries; not "an error on our server".
    assert (error.kind, error.retryable) == ("connection", True)
    assert error.message == (f"The connection to the model server at {server.url}/v1 dropped "
                             "before the answer was complete.")


async def test_a_huge_error_page_is_read_in_part_and_its_connection_closed(
        server, transport, kept_connections):
    page = b"<html>" + b"Bad gateway. " * 100_000 + b"</html>"
    server.canned[b"/v1/chat/completions"] = [
        b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n%s"
        % (len(page), page)]
    provider = OpenAIProvider(ProviderConfig(name="raw", kind="openai", transport=transport,
                                             base_url=server.url + "/v1"))
    try:
        _, error = await collect_until_error(provider.stream(ask()))
        # The rest of the page was never read: its connection is not kept.
        await settle(lambda: server.closed == 1)
        assert kept_connections(provider._client) == []
    finally:
        await provider.aclose()
    assert (error.kind, error.status, error.retryable) == ("server_error", 502, True)
    assert error.message.startswith("The model server failed (HTTP 502). <html>Bad gateway.")
    assert len(error.message) < 400


# Reaches neither the tests' database nor the channel layer (tests/conftest.py).
pytestmark = pytest.mark.backend_free
