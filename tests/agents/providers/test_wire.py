"""Our HTTP/1.1 client (agents/providers/_wire.py) against a raw server writing bytes by hand:
framing whatever the splits, decoding, the limits that keep a server from filling our memory,
what we send, and the keep-alive rules only ours has (the retry of a kept connection found
dead, expiry). What both transports must do is in test_transport.py."""

from __future__ import annotations

import asyncio
import base64
import gzip
import zlib

import httpx
import pytest

from agents.providers import OpenAIProvider, ProviderConfig
from agents.providers._transport import BadRequest, BadResponse, Dropped
from agents.providers._wire import MAX_DECODED, MAX_HEAD, READ_HIGH_WATER, WireClient
from tests.agents.providers.rawserver import CLOSE, fetch, settle
from tests.agents.streams import ask, collect_until_error

# The response the splitting test cuts at every byte: a 1xx first, a folded header, chunk
# extensions, an upper-case size, an extension on the last chunk, and trailers.
CHUNKED = (b"HTTP/1.1 100 Continue\r\n\r\n"
           b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Long: a\r\n  folded\r\n\r\n"
           b"5;name=value\r\nhello\r\n"
           b"1A\r\n data: {\"a\": 1}\n\n and more\r\n"
           b"0;last\r\nX-Trailer: yes\r\n\r\n")
CHUNKED_BODY = b"hello data: {\"a\": 1}\n\n and more"


@pytest.fixture
async def client():
    """Makes our clients; each is closed at the end."""
    made = []

    def make(**options) -> WireClient:
        options.setdefault("max_idle", 8)
        options.setdefault("connect_timeout", 2.0)
        made.append(WireClient(ssl_context=httpx.create_ssl_context(), **options))
        return made[-1]

    yield make
    for http in made:
        await http.aclose()


def chunked(body: bytes, *, headers: bytes = b"", size: int = 1000) -> bytes:
    pieces = [body[i:i + size] for i in range(0, len(body), size)]
    return (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n" + headers + b"\r\n"
            + b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n")


# --- Framing ------------------------------------------------------------------------------------


async def test_a_chunked_response_cut_at_any_byte_reads_the_same(server, client,
                                                                 kept_connections):
    for cut in range(1, len(CHUNKED)):
        server.canned[b"/cut%d" % cut] = [CHUNKED[:cut], CHUNKED[cut:]]
    http = client()
    for cut in range(1, len(CHUNKED)):
        response = await http.send("GET", server.url + f"/cut{cut}", headers={})
        try:
            assert response.status == 200
            assert response.headers["x-long"] == "a folded"
            assert b"".join([chunk async for chunk in response]) == CHUNKED_BODY, cut
        finally:
            await response.aclose()
    # Every one of them was read to its end: one connection served them all.
    assert server.accepted == 1
    assert kept_connections(http) == [len(CHUNKED) - 1]


@pytest.mark.parametrize(("raw", "body", "reused"), [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", b"hello", True),
    (b"HTTP/1.1 204 No Content\r\n\r\n", b"", True),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", b"", True),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello", b"hello", False),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello", b"hello", False),
    # Servers that end lines with LF alone.
    (b"HTTP/1.1 200 OK\nContent-Length: 5\n\nhello", b"hello", True),
], ids=["length", "no-content", "empty", "connection-close", "http-1.0", "bare-lf"])
async def test_bodies_framed_by_length_and_when_a_connection_may_be_reused(
        server, client, kept_connections, raw, body, reused):
    server.canned[b"/r"] = [raw]
    http = client()
    assert await fetch(http, server.url + "/r") == (int(raw[9:12]), body)
    assert kept_connections(http) == ([1] if reused else [])


async def test_a_body_without_length_runs_until_the_server_closes(server, client,
                                                                 kept_connections):
    server.canned[b"/r"] = [b"HTTP/1.1 200 OK\r\n\r\nhel", b"lo", CLOSE]
    http = client()
    assert await fetch(http, server.url + "/r") == (200, b"hello")
    assert kept_connections(http) == []


async def test_bytes_a_server_sends_while_the_connection_is_idle_retire_it(server, client,
                                                                          kept_connections):
    # A server's "408 Request Timeout" before it closes, say: the next response's framing
    # could not be trusted, so the connection is not reused.
    server.canned[b"/r"] = [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                            b"HTTP/1.1 408 Request Timeout\r\n\r\n"]
    http = client()
    assert await fetch(http, server.url + "/r") == (200, b"ok")
    await settle(lambda: kept_connections(http) == [])
    assert await fetch(http, server.url + "/ok") == (200, b"hello")
    assert server.accepted == 2


@pytest.mark.parametrize(("raw", "says"), [
    (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "not an HTTP/1.1 status line"),
    (b"HTTP/1.1 200 OK\r\nX: " + b"a" * MAX_HEAD + b"\r\n\r\n", "response head larger than"),
    (b"HTTP/1.1 200 OK\r\nX: " + b"a" * MAX_HEAD, "response head larger than"),
    (b"HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n", "a malformed header line"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * 5000, "chunk-size line"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "invalid chunk size"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n", "invalid chunk size"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", "longer than"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "unsupported Transfer-Encoding"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello", "invalid Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 1\r\n\r\nx",
     "unsupported Content-Encoding"),
    (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 5\r\n\r\nhello",
     "cannot decode the gzip body"),
], ids=["not-http", "long-head", "endless-head", "header-line", "chunk-line", "chunk-size",
        "negative-size", "chunk-overrun", "transfer-coding", "content-length", "br", "bad-gzip"])
async def test_what_we_cannot_read_is_a_bad_response_and_the_connection_goes(
        server, client, kept_connections, raw, says):
    server.canned[b"/r"] = [raw]
    http = client()
    with pytest.raises(BadResponse, match=says):
        await fetch(http, server.url + "/r")
    await settle(lambda: server.closed == 1)
    assert kept_connections(http) == []


async def test_a_protocol_error_reaches_the_user_as_one(server):
    server.canned[b"/v1/chat/completions"] = [b"SSH-2.0-OpenSSH_9.6\r\n\r\n"]
    provider = OpenAIProvider(ProviderConfig(name="raw", kind="openai",
                                             base_url=server.url + "/v1"))
    try:
        _, error = await collect_until_error(provider.stream(ask()))
    finally:
        await provider.aclose()
    assert error.kind == "protocol"
    assert error.message == ("The model server sent something we cannot read: not an HTTP/1.1 "
                             "status line: b'SSH-2.0-OpenSSH_9.6'")


# --- Decoding -----------------------------------------------------------------------------------


@pytest.mark.parametrize("coding", ["gzip", "deflate", "raw-deflate"])
async def test_a_compressed_body_is_decoded_although_we_ask_for_identity(server, client, coding):
    body = b"data: {\"choices\": []}\n\n" * 500
    if coding == "gzip":
        packed = gzip.compress(body)
    elif coding == "deflate":
        packed = zlib.compress(body)
    else:
        packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        packed = packer.compress(body) + packer.flush()
    name = b"deflate" if coding == "raw-deflate" else coding.encode()
    server.canned[b"/r"] = [chunked(packed, headers=b"Content-Encoding: " + name + b"\r\n",
                                    size=100)]
    http = client()
    assert await fetch(http, server.url + "/r") == (200, body)
    assert b"accept-encoding: identity" in server.heads[0].lower()


async def test_a_highly_compressed_body_comes_out_a_bounded_slice_at_a_time(server, client):
    body = bytes(20 * MAX_DECODED)  # zeros: about 20 KB compressed
    server.canned[b"/r"] = [chunked(gzip.compress(body), headers=b"Content-Encoding: gzip\r\n")]
    http = client()
    response = await http.send("GET", server.url + "/r", headers={})
    try:
        sizes = [len(chunk) async for chunk in response]
    finally:
        await response.aclose()
    assert sum(sizes) == len(body)
    assert max(sizes) <= MAX_DECODED


# --- Limits -------------------------------------------------------------------------------------


async def test_a_fast_server_is_paused_until_the_reader_catches_up(server, client,
                                                                  kept_connections):
    body = b"x" * (8 * READ_HIGH_WATER)
    server.canned[b"/r"] = [chunked(body, size=16 * 1024)]
    http = client()
    response = await http.send("GET", server.url + "/r", headers={})
    try:
        await asyncio.sleep(0.2)  # the server writes as fast as it can; nobody reads
        connection = response._connection
        assert connection.read_paused
        # One socket read (asyncio's are at most 256 KiB) beyond the mark, at most.
        assert connection.buffered <= READ_HIGH_WATER + 256 * 1024
        total = 0
        async for chunk in response:
            total += len(chunk)
            assert connection.buffered <= READ_HIGH_WATER + 256 * 1024
    finally:
        await response.aclose()
    assert total == len(body)
    assert kept_connections(http) == [1]


async def test_a_request_the_server_does_not_take_hits_the_write_timeout(client):
    finished = asyncio.Event()

    async def not_reading(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await finished.wait()
        writer.close()

    server = await asyncio.start_server(not_reading, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        http = client(connect_timeout=0.3)
        with pytest.raises(Dropped, match="not taken within 0.3 s"):
            await fetch(http, f"http://127.0.0.1:{port}/", method="POST", body=bytes(64 << 20))
    finally:
        finished.set()
        server.close()
        await server.wait_closed()


async def test_an_answer_before_the_request_is_all_out_is_read_and_the_connection_dropped(
        client, kept_connections):
    finished = asyncio.Event()

    async def refusing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\n\r\ntoo large")
        await finished.wait()  # reading no more of the body
        writer.close()

    server = await asyncio.start_server(refusing, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        http = client(connect_timeout=2.0)
        assert await fetch(http, f"http://127.0.0.1:{port}/", method="POST",
                           body=bytes(64 << 20)) == (413, b"too large")
        # The rest of the body would reach the server as a request of its own.
        assert kept_connections(http) == []
    finally:
        finished.set()
        server.close()
        await server.wait_closed()


# --- What we send -------------------------------------------------------------------------------


async def test_the_request_head_we_send(server, client):
    http = client()
    await fetch(http, server.url + "/ok?q=a b", method="POST", body=b"{}",
                headers={"Authorization": "Bearer sk-x", "Accept": "text/event-stream"})
    host = server.url.removeprefix("http://")
    assert server.heads[0].decode().split("\r\n") == [
        "POST /ok?q=a%20b HTTP/1.1", f"Host: {host}", "Authorization: Bearer sk-x",
        "Accept: text/event-stream", "User-Agent: chatsite", "Accept-Encoding: identity",
        "Content-Length: 2", "", ""]


async def test_credentials_in_the_url_are_sent_as_basic_auth_as_httpx_does(server, client):
    http = client()
    url = server.url.replace("http://", "http://us%40er:p%3Ass@") + "/ok"
    await fetch(http, url, headers={"Authorization": "Bearer replaced"})
    (head,) = server.heads
    assert f"Authorization: Basic {base64.b64encode(b'us@er:p:ss').decode()}".encode() in head
    assert b"Bearer" not in head


async def test_a_header_value_with_a_line_break_is_refused_without_quoting_it(server, client):
    http = client()
    with pytest.raises(BadRequest) as refused:
        await fetch(http, server.url + "/ok", headers={"x-api-key": "sk-secret\r\nX-Evil: 1"})
    assert "x-api-key" in str(refused.value) and "sk-secret" not in str(refused.value)
    assert server.heads == []


async def test_a_refused_request_reaches_the_user_without_the_key(server):
    provider = OpenAIProvider(ProviderConfig(name="raw", kind="openai", api_key="sk-se\ncret",
                                             base_url=server.url + "/v1"))
    try:
        _, error = await collect_until_error(provider.stream(ask()))
    finally:
        await provider.aclose()
    assert (error.kind, error.retryable) == ("bad_request", False)
    assert error.message.startswith(f"The request to the model server at {server.url}/v1 "
                                    "cannot be sent: the 'Authorization' header")
    assert "sk-se" not in error.message


# --- Keep-alive ---------------------------------------------------------------------------------


async def test_a_kept_connection_closed_as_we_write_is_replaced_unseen(server, client,
                                                                      kept_connections):
    http = client()
    assert await fetch(http, server.url + "/once") == (200, b"hello")
    # The server closes that connection when the next request arrives on it, unanswered.
    assert await fetch(http, server.url + "/ok") == (200, b"hello")
    assert server.accepted == 2
    assert kept_connections(http) == [1]


async def test_a_new_connection_closed_unanswered_is_not_retried(server, client):
    server.hang_up = True
    http = client()
    with pytest.raises(Dropped, match="without answering"):
        await fetch(http, server.url + "/ok")
    assert server.accepted == 1


async def test_an_idle_connection_past_its_keepalive_expiry_is_not_reused(server, client,
                                                                         kept_connections):
    http = client(keepalive_expiry=0.1)
    assert await fetch(http, server.url + "/ok") == (200, b"hello")
    await asyncio.sleep(0.2)
    assert await fetch(http, server.url + "/ok") == (200, b"hello")
    assert server.accepted == 2
    await settle(lambda: server.closed == 1)
    assert kept_connections(http) == [1]


# Reaches neither the tests' database nor the channel layer (tests/conftest.py).
pytestmark = pytest.mark.backend_free
