"""API chunks written straight onto the socket: byte-exact HTTP/1.1 chunked encoding, in order
whatever the socket takes, the stock path whenever anything is unusual, and the Daphne and
Twisted internals this leans on still there."""

from __future__ import annotations

import functools
import inspect
import json
import time

import httpx
import pytest
from daphne.http_protocol import WebRequest
from daphne.server import Server
from twisted.web import http

from conversations.api.stream_writer import direct_chunk_writer
from tests.conversations.api.conftest import daphne_api
from tests.conversations.test_socket_writer import (  # noqa: F401  (pair: a fixture)
    Transport,
    daphne_send,
    pair,
    recv_all,
)


class Channel:
    def __init__(self, transport) -> None:
        self.transport = transport


def request_on(transport: Transport) -> WebRequest:
    request = WebRequest.__new__(WebRequest)
    request.channel = Channel(transport)
    request.startedWriting = 1
    request.chunked = 1
    request.finished = 0
    request._disconnected = False
    return request


def unchunk(data: bytes) -> list[bytes]:
    out, i = [], 0
    while i < len(data):
        end = data.index(b"\r\n", i)
        size = int(data[i:end], 16)
        out.append(data[end + 2:end + 2 + size])
        assert data[end + 2 + size:end + 4 + size] == b"\r\n"
        i = end + 4 + size
    return out


def test_chunks_go_out_whole_and_in_order_when_the_socket_fills_up(pair, settings):
    settings.WS_DIRECT_WRITE = True
    ours, theirs = pair
    transport = Transport(ours)
    write = direct_chunk_writer(daphne_send(request_on(transport)))
    pieces = [f"data: chunk {i} é✓ {'x' * (i * 37 % 300)}\n\n".encode() for i in range(400)]
    assert all(write(p) for p in pieces)
    assert transport.buffered  # the socket took some; Twisted's buffer holds the rest
    assert unchunk(recv_all(theirs) + b"".join(transport.buffered)) == pieces


def test_anything_unusual_takes_the_stock_path(pair, settings):
    settings.WS_DIRECT_WRITE = True
    transport = Transport(pair[0])
    request = request_on(transport)
    write = direct_chunk_writer(daphne_send(request))
    for name, value in (("startedWriting", 0), ("chunked", 0), ("finished", 1),
                        ("_disconnected", True)):
        setattr(request, name, value)
        assert not write(b"x"), name
        setattr(request, name, request_on(transport).__dict__[name])
    transport.TLS = True
    assert not write(b"tls")
    transport.TLS = False
    assert not write(b"")
    assert transport.buffered == [] and recv_all(pair[1]) == b""


def test_not_daphne_or_switched_off_means_no_direct_writer(pair, settings):
    request = request_on(Transport(pair[0]))
    settings.WS_DIRECT_WRITE = False
    assert direct_chunk_writer(daphne_send(request)) is None
    settings.WS_DIRECT_WRITE = True

    async def send(message):
        pass

    assert direct_chunk_writer(send) is None
    assert direct_chunk_writer(functools.partial(send)) is None


def test_the_internals_it_leans_on_are_still_there():
    """An upgrade of Daphne or Twisted that moves any of these fails here first
    (docs/private-apis.md); set WS_DIRECT_WRITE=false until the writer is fixed."""
    write = inspect.getsource(http.Request.write)
    for name in ("self.finished", "self._disconnected", "self.startedWriting", "self.chunked",
                 "toChunk(data)", "self.channel.writeSequence"):
        assert name in write, f"twisted Request.write no longer uses {name}"
    assert http.toChunk(b"abc") == (b"3", b"\r\n", b"abc", b"\r\n")
    reply = inspect.getsource(WebRequest.handle_reply)
    assert "http.Request.write(self" in reply and "self.finish()" in reply
    assert "send=partial(self.handle_reply, protocol)" in inspect.getsource(
        Server.create_application)


@pytest.fixture
def direct_off_api(fake_llm_server, tmp_path):
    yield from daphne_api(fake_llm_server, tmp_path, WS_DIRECT_WRITE="false")


@pytest.mark.parametrize("direct", [True, False])
def test_a_long_answer_arrives_exactly_through_a_real_daphne(request, fake_llm_server, direct):
    """Single tokens and coalesced chunks, to a reader that stops reading for a while."""
    fake_llm_server.reset(config=True)
    api = request.getfixturevalue("shared_daphne_api" if direct else "direct_off_api")
    reply = "".join(f"wörd{i} 🙂 " for i in range(3000))
    body = {"model": "default", "stream": True, "messages": [{"role": "user", "content":
            "fake: " + json.dumps({"reply": reply, "chunk": 7, "gap_ms": 0},
                                  ensure_ascii=False)}]}
    text, finish = "", None
    with httpx.stream("POST", api.url, json=body, timeout=30,
                      headers={"Authorization": f"Bearer {api.key}"}) as response:
        time.sleep(1.0)  # not reading: the server's socket buffer fills up
        for line in response.iter_lines():
            if line == "data: [DONE]":
                break
            if line.startswith("data: "):
                choice = json.loads(line[6:])["choices"][0]
                text += choice["delta"].get("content") or ""
                finish = choice["finish_reason"] or finish
    assert text == reply and finish == "stop"


# Reaches neither the tests' database nor the channel layer (tests/conftest.py).
pytestmark = pytest.mark.backend_free
