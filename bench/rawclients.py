"""Minimal asyncio-Protocol clients for the streaming benchmark: a WebSocket client and an HTTP/1.1
SSE client, each parsing every frame in `data_received` with no task switch per frame.

Why not `websockets` / httpx: on this 2-core machine the client shares the CPU with Daphne and the
fake, and at 200 streams x 50 tokens/s it must handle ~10,000 frames a second. `websockets` costs
~27 us of CPU per message even when messages arrive in batches (one task wake-up per recv more
when they do not), httpx more; these cost one `data_received` call per read plus a json.loads.
Both full clients stay available in bench/stream.py (--ws-client websockets, --direct-client
httpx) to cross-check the numbers.

Each client records into the current `Turn` (see stream.py): arrival time of every text token
(one clock reading per read from the socket), the text, the final status.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import time

clock = time.perf_counter
loads = json.loads
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_TOKEN_RE = re.compile(rb'"content":"([^"]+)"')


class ProtocolError(Exception):
    pass


class _Base(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.turn = None
        self.waiter: asyncio.Future | None = None
        self.closed: BaseException | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.closed = exc or ConnectionResetError("connection closed")
        self._finish(self.closed)

    def _finish(self, error: BaseException | None = None) -> None:
        waiter, self.waiter = self.waiter, None
        self.turn = None
        if waiter is not None and not waiter.done():
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


# --- WebSocket --------------------------------------------------------------------------------


class WSClient(_Base):
    """One chat socket. `start_turn(turn, frame)` sends a `send` frame and returns a future that
    resolves when the turn's `finished` event (or an error frame) arrives."""

    def __init__(self, *, host: str, path: str, origin: str, cookie: str) -> None:
        super().__init__()
        self.key = base64.b64encode(os.urandom(16))
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {self.key.decode()}\r\nSec-WebSocket-Version: 13\r\n"
            f"Origin: {origin}\r\nCookie: {cookie}\r\n\r\n"
        ).encode()
        self.open = False
        loop = asyncio.get_running_loop()
        self.handshake: asyncio.Future = loop.create_future()
        self.hello: asyncio.Future = loop.create_future()
        self.message_id = None
        self.last_seq = 0
        self.conversation = None
        self.fragments: list[bytes] = []

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        transport.write(self.request)

    def connection_lost(self, exc) -> None:
        if not self.handshake.done():
            self.handshake.set_exception(exc or ConnectionResetError("closed during handshake"))
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        now = clock()
        buf = self.buffer
        buf += data
        if not self.open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).decode("latin-1")
            del buf[:end + 4]
            accept = base64.b64encode(hashlib.sha1(self.key + _WS_GUID).digest()).decode()
            if not head.startswith("HTTP/1.1 101") or accept not in head:
                self.handshake.set_exception(ProtocolError(head.split("\r\n", 1)[0]))
                self.transport.close()
                return
            self.open = True
            self.handshake.set_result(None)
        pos, size = 0, len(buf)
        while size - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length = b1 & 0x7F
            head = 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(buf[pos + 2:pos + 4], "big")
                head = 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2:pos + 10], "big")
                head = 10
            if b1 & 0x80:
                raise ProtocolError("server frames must not be masked")
            if size - pos < head + length:
                break
            payload = bytes(buf[pos + head:pos + head + length])
            pos += head + length
            opcode = b0 & 0x0F
            if opcode in (1, 0):  # text, continuation
                if not b0 & 0x80:
                    self.fragments.append(payload)
                    continue
                if self.fragments:
                    payload = b"".join(self.fragments) + payload
                    self.fragments = []
                self.on_message(payload, now)
            elif opcode == 9:  # ping
                self._send_frame(0xA, payload)
            elif opcode == 8:  # close
                self._send_frame(0x8, payload[:2])
                self.transport.close()
                break
        del buf[:pos]

    def on_message(self, payload: bytes, now: float) -> None:
        turn = self.turn
        if turn is None:
            if not self.hello.done():  # the first frame after the handshake
                self.hello.set_result(loads(payload))
            return
        data = loads(payload)
        kind = data["type"]
        if kind == "turn":
            if data["message"] != self.message_id:
                return
            seq = data["seq"]
            if seq != self.last_seq + 1:
                turn.seq_gaps += 1
            self.last_seq = seq
            event = data["event"]
            if event["kind"] == "text":
                # A busy server coalesces deltas: one frame may carry several tokens, each
                # "tokN " with its trailing space; all of them arrived now.
                for _ in range(max(1, event["text"].count(" "))):
                    turn.times.append(now)
                turn.texts.append(event["text"])
            elif event["kind"] == "finished":
                turn.done = now
                turn.status = event["message"]["status"]
                turn.error = event["message"].get("error") or ""
                self._finish()
        elif kind == "ack":
            turn.ack = now
            self.message_id = turn.message = data["assistant_message"]["id"]
            self.conversation = data["conversation"]["id"]
            self.last_seq = 0
        elif kind == "error":
            turn.status = "failed"
            turn.error = f"{data.get('code')}: {data.get('message')}"
            self._finish()

    def start_turn(self, turn, text: str) -> asyncio.Future:
        if self.closed is not None:
            raise ConnectionResetError("socket closed")
        self.waiter = asyncio.get_running_loop().create_future()
        self.turn = turn
        self.message_id = None
        turn.sent = clock()
        self._send_frame(0x1, text.encode())
        return self.waiter

    def abandon(self) -> None:
        self.turn = None
        self.waiter = None

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        if n < 126:
            head = bytes((0x80 | opcode, 0x80 | n))
        elif n < 65536:
            head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
        else:
            head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
        mask = os.urandom(4)
        if n:
            key = (mask * (n // 4 + 1))[:n]
            payload = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
        self.transport.write(head + mask + payload)

    async def aclose(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self._send_frame(0x8, (1000).to_bytes(2, "big"))
            self.transport.close()


async def open_ws(*, port: int, cookie: str, timeout: float = 30) -> WSClient:
    loop = asyncio.get_running_loop()
    host = f"127.0.0.1:{port}"
    _, proto = await loop.create_connection(
        lambda: WSClient(host=host, path="/ws/chat/", origin=f"http://{host}", cookie=cookie),
        "127.0.0.1", port)
    async with asyncio.timeout(timeout):
        await proto.handshake
        # The first frame is "hello": the socket is then fully set up server-side.
        frame = await proto.hello
    if frame.get("type") != "hello":
        raise ProtocolError(f"expected hello, got {frame}")
    return proto


# --- HTTP/1.1 SSE (the direct baseline) -------------------------------------------------------


class SSEClient(_Base):
    """One keep-alive connection to the fake; `start_turn(turn, request)` writes a request and
    returns a future resolved when the chunked response ends."""

    def __init__(self) -> None:
        super().__init__()
        self.in_body = False
        self.chunked = False
        self.events = bytearray()
        self.saw_done = False

    def start_turn(self, turn, request: bytes) -> asyncio.Future:
        if self.closed is not None:
            raise ConnectionResetError("connection closed")
        self.waiter = asyncio.get_running_loop().create_future()
        self.turn = turn
        self.in_body = False
        self.saw_done = False
        self.events.clear()
        self.buffer.clear()
        turn.sent = clock()
        self.transport.write(request)
        return self.waiter

    def data_received(self, data: bytes) -> None:
        now = clock()
        turn = self.turn
        if turn is None:
            return
        buf = self.buffer
        buf += data
        if not self.in_body:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).decode("latin-1").lower()
            del buf[:end + 4]
            problem = None
            if not head.startswith("http/1.1 200"):
                problem = head.split("\r\n", 1)[0]
            elif "transfer-encoding: chunked" not in head:
                problem = "response is not chunked"
            if problem:
                turn.status, turn.error = "failed", problem
                self._finish()
                self.transport.close()  # the next turn reconnects
                return
            self.in_body = True
        pos, size = 0, len(buf)
        events = self.events
        ended = False
        while True:
            line_end = buf.find(b"\r\n", pos)
            if line_end < 0:
                break
            length = int(bytes(buf[pos:line_end]).split(b";", 1)[0], 16)
            if size < line_end + 2 + length + 2:
                break
            events += buf[line_end + 2:line_end + 2 + length]
            pos = line_end + 2 + length + 2
            if length == 0:
                ended = True
                break
        del buf[:pos]
        cut = events.rfind(b"\n\n")
        if cut >= 0:
            block = bytes(events[:cut])
            del events[:cut + 2]
            for piece in _TOKEN_RE.findall(block):
                # A busy server (our API) coalesces deltas: one chunk may carry several
                # tokens, each "tokN " with its trailing space; all of them arrived now.
                for _ in range(max(1, piece.count(b" "))):
                    turn.times.append(now)
                turn.texts.append(piece.decode())
            if b"data: [DONE]" in block:
                self.saw_done = True
        if ended:
            turn.done = now
            turn.status = "complete" if self.saw_done else "failed"
            if not self.saw_done:
                turn.error = "stream ended without [DONE]"
            self._finish()


async def open_sse(*, port: int) -> SSEClient:
    _, proto = await asyncio.get_running_loop().create_connection(SSEClient, "127.0.0.1", port)
    return proto


def sse_request(*, port: int, body: bytes, api_key: str = "") -> bytes:
    auth = f"Authorization: Bearer {api_key}\r\n" if api_key else ""
    return (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}"
        f"Content-Type: application/json\r\nAccept: text/event-stream\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
