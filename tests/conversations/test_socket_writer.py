"""Frames written straight onto the socket: byte-exact, in order, whatever the socket takes,
and the Daphne, autobahn and Twisted internals this leans on are still there."""

from __future__ import annotations

import asyncio
import functools
import json
import socket

import pytest
import websockets
from autobahn.websocket.protocol import WebSocketProtocol
from daphne.server import Server
from daphne.ws_protocol import WebSocketProtocol as DaphneWebSocketProtocol
from twisted.internet import abstract, tcp

from conversations.socket_writer import DIRECT_MAX, direct_writer
from tests.conversations.processes import serve


class Transport:
    """Twisted's buffering, as the writer sees it: a real non-blocking socket, and write()
    keeping what it is given (in order) as Twisted's buffer would."""

    TLS = False
    connected = True
    disconnecting = False
    _writeDisconnected = False

    def __init__(self, sock: socket.socket) -> None:
        self.socket = sock
        self.dataBuffer = b""
        self.offset = 0
        self._tempDataLen = 0
        self.buffered: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.buffered.append(data)
        self._tempDataLen += len(data)


def protocol_on(transport: Transport) -> DaphneWebSocketProtocol:
    protocol = DaphneWebSocketProtocol.__new__(DaphneWebSocketProtocol)
    protocol.transport = transport
    protocol.state = WebSocketProtocol.STATE_OPEN
    protocol.send_state = WebSocketProtocol.SEND_STATE_GROUND
    protocol._perMessageCompress = None
    protocol.send_queue = []
    protocol.trackedTimings = None
    protocol.autoFragmentSize = 0
    return protocol


def daphne_send(protocol):
    """The ASGI send Daphne gives an application (Server.create_application)."""
    return functools.partial(Server.__new__(Server).handle_reply, protocol)


def frames_in(data: bytes) -> list[str]:
    """Parse unmasked server text frames."""
    out, i = [], 0
    while i < len(data):
        assert data[i] == 0x81
        size = data[i + 1]
        i += 2
        if size == 126:
            size, i = int.from_bytes(data[i:i + 2], "big"), i + 2
        out.append(data[i:i + size].decode())
        i += size
    return out


def recv_all(sock: socket.socket) -> bytes:
    sock.settimeout(0.2)
    chunks = []
    try:
        while chunk := sock.recv(1 << 20):
            chunks.append(chunk)
    except TimeoutError:
        pass
    return b"".join(chunks)


@pytest.fixture
def pair():
    ours, theirs = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    ours.setblocking(False)
    yield ours, theirs
    ours.close()
    theirs.close()


def test_frames_go_out_whole_and_in_order_when_the_socket_fills_up(pair, settings):
    settings.WS_DIRECT_WRITE = True
    ours, theirs = pair
    transport = Transport(ours)
    protocol = protocol_on(transport)
    write = direct_writer(daphne_send(protocol))
    texts = [f"frame {i} é✓ " + "x" * (i * 37 % 300) for i in range(400)]
    texts.insert(50, "y" * 1000)  # a 2-byte length
    assert all(write(t) for t in texts)
    # The socket took some, Twisted's buffer holds the rest, and nothing jumped the queue.
    assert transport.buffered
    assert frames_in(recv_all(theirs) + b"".join(transport.buffered)) == texts


def test_anything_unusual_takes_the_stock_path(pair, settings):
    settings.WS_DIRECT_WRITE = True
    transport = Transport(pair[0])
    protocol = protocol_on(transport)
    write = direct_writer(daphne_send(protocol))
    assert not write("x" * (DIRECT_MAX + 1))  # autobahn applies its limits to large frames
    protocol.send_queue = [(b"queued", False)]
    assert not write("after the queue")
    protocol.send_queue = []
    protocol.state = WebSocketProtocol.STATE_CLOSING
    assert not write("closing")
    protocol.state = WebSocketProtocol.STATE_OPEN
    transport.TLS = True
    assert not write("tls")
    assert transport.buffered == [] and recv_all(pair[1]) == b""


def test_not_daphne_or_switched_off_means_no_direct_writer(pair, settings):
    protocol = protocol_on(Transport(pair[0]))
    settings.WS_DIRECT_WRITE = False
    assert direct_writer(daphne_send(protocol)) is None
    settings.WS_DIRECT_WRITE = True

    async def send(message):
        pass

    assert direct_writer(send) is None


def test_the_internals_it_leans_on_are_still_there():
    """An upgrade of Daphne, autobahn or Twisted that moves any of these fails here first
    (docs/private-apis.md); set WS_DIRECT_WRITE=false until the writer is fixed."""
    import inspect

    for name in ("STATE_OPEN", "SEND_STATE_GROUND"):
        assert hasattr(WebSocketProtocol, name), f"autobahn WebSocketProtocol.{name} is gone"
    # What makes autobahn's own sendMessage do more than frame and write: the writer steps
    # aside in each case. A new condition there is a reason to look again.
    send_message = inspect.getsource(WebSocketProtocol.sendMessage)
    for name in ("self.state", "self._perMessageCompress", "self.trackedTimings",
                 "self.autoFragmentSize", "self.maxMessagePayloadSize"):
        assert name in send_message, f"autobahn's sendMessage no longer reads {name}"
    assert "self.send_queue" in inspect.getsource(WebSocketProtocol.sendData)
    assert "self.send_state" in inspect.getsource(WebSocketProtocol.sendMessageFrameData)
    assert Server.handle_reply.__name__ == "handle_reply"
    descriptor = abstract.FileDescriptor(reactor=object())
    for name in ("dataBuffer", "offset", "_tempDataLen", "_writeDisconnected", "write",
                 "connected", "disconnecting"):
        assert hasattr(descriptor, name), f"twisted FileDescriptor.{name} is gone"
    # Buffered bytes are exactly dataBuffer[offset:] plus what _tempDataLen counts.
    assert "self._tempDataLen += len(data)" in inspect.getsource(abstract.FileDescriptor.write)
    assert hasattr(tcp.Connection, "TLS"), "twisted tcp.Connection.TLS is gone"
    # Daphne hands the application partial(Server.handle_reply, protocol): read it from the source.
    assert "send=partial(self.handle_reply, protocol)" in inspect.getsource(
        Server.create_application)


@pytest.mark.parametrize("direct", ["true", "false"])
async def test_a_long_mixed_answer_arrives_exactly_through_a_real_daphne(
        fake_llm_server, tmp_path, direct):
    """Small frames (one token each), coalesced frames and frames over DIRECT_MAX, to a
    reader that stops reading for a while, then reads everything."""
    with serve(fake_base_url=fake_llm_server.base_url, tmp_path=tmp_path,
               WS_DIRECT_WRITE=direct) as (port, session, proc, db):
        ws = await websockets.connect(
            f"ws://127.0.0.1:{port}/ws/chat/", origin=f"http://127.0.0.1:{port}", max_queue=1,
            additional_headers={"Cookie": f"sessionid={session}"}, max_size=None)
        assert json.loads(await ws.recv())["type"] == "hello"
        reply = "".join(f"wörd{i} 🙂 " for i in range(6500))
        await ws.send(json.dumps({"type": "send", "text": "fake: " + json.dumps(
            {"reply": reply, "chunk": 6000, "gap_ms": 0}, ensure_ascii=False)}))
        await asyncio.sleep(1.0)  # not reading: the server's socket buffer fills up
        text, seqs = "", []
        async with asyncio.timeout(30):
            async for raw in ws:
                frame = json.loads(raw)
                assert frame["type"] != "error", frame
                if frame["type"] != "turn":
                    continue
                seqs.append(frame["seq"])
                if frame["event"]["kind"] == "text":
                    text += frame["event"]["text"]
                if frame["event"]["kind"] == "finished":
                    break
        await ws.close()
    assert text == reply
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))


# Reaches neither the tests' database nor the channel layer (tests/conftest.py).
pytestmark = pytest.mark.backend_free
