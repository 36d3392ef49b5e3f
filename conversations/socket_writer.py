"""Sending a text frame on a chat socket under Daphne: straight onto the TCP socket when nothing
is waiting to be written, through the normal ASGI send otherwise.

Why: every streamed token is one WebSocket frame, and the stock path costs more than the rest
of the turn: the ASGI send coroutine (daphne.server.handle_reply), autobahn's sendMessage (its
asserts, statistics and debug-log argument formatting), then Twisted's write, which only
buffers and registers a writer with the loop, so that a second loop iteration sends the bytes
and unregisters it (two epoll_ctl calls per frame). Here a small unmasked text frame is built
and sent at once with one send(); whatever the socket does not take, and every frame while
anything is still buffered, goes through Twisted's own write, so the order of bytes on the wire
is kept. Anything unusual (not open, compression, fragmentation, TLS in Twisted, a large frame,
autobahn mid-message) takes the stock path unchanged.

This leans on Daphne, autobahn and Twisted internals (docs/private-apis.md): the ASGI send being
`functools.partial(Server.handle_reply, protocol)`, autobahn's protocol state attributes, and
Twisted's transport buffers. tests/conversations/test_socket_writer.py checks each of them, and
WS_DIRECT_WRITE=false switches this off.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings

# Frames above this go the stock way (autobahn applies its size limits and fragmentation).
DIRECT_MAX = 0xFFFF

Send = Callable[[dict[str, Any]], Awaitable[None]]


def daphne_protocol(base_send: Send) -> Any:
    """The protocol object behind Daphne's ASGI send (`partial(Server.handle_reply, protocol)`),
    or None when it is not Daphne's send, or direct writes are switched off (WS_DIRECT_WRITE)."""
    if not settings.WS_DIRECT_WRITE:
        return None
    if not isinstance(base_send, functools.partial) or not base_send.args:
        return None
    if getattr(base_send.func, "__name__", "") != "handle_reply":
        return None
    return base_send.args[0]


def direct_writer(base_send: Send) -> Callable[[str], bool] | None:
    """A function that sends one text frame directly and says whether it did, or None when
    `base_send` is not Daphne's WebSocket send (tests' communicators, another server)."""
    protocol = daphne_protocol(base_send)
    try:
        from autobahn.websocket.protocol import WebSocketProtocol
        from daphne.ws_protocol import WebSocketProtocol as DaphneWebSocketProtocol
    except ImportError:  # pragma: no cover - Daphne is a dependency
        return None
    if not isinstance(protocol, DaphneWebSocketProtocol):
        return None
    open_state = WebSocketProtocol.STATE_OPEN
    ground = WebSocketProtocol.SEND_STATE_GROUND

    def write(text: str) -> bool:
        payload = text.encode()
        size = len(payload)
        transport = protocol.transport
        if (size > DIRECT_MAX or protocol.state != open_state
                or protocol._perMessageCompress is not None or protocol.send_queue
                or protocol.send_state != ground or protocol.trackedTimings
                or 0 < protocol.autoFragmentSize < size or unusable(transport)):
            return False
        # FIN + text opcode; server frames are never masked.
        if size < 126:
            frame = bytes((0x81, size)) + payload
        else:
            frame = b"\x81\x7e" + size.to_bytes(2, "big") + payload
        send_now_or_buffer(transport, frame)
        return True

    return write


def unusable(transport: Any) -> bool:
    """The Twisted transport cannot take a direct send (gone, closing, or TLS in Twisted)."""
    return (transport is None or getattr(transport, "TLS", False) or not transport.connected
            or transport.disconnecting or transport._writeDisconnected)


def send_now_or_buffer(transport: Any, data: bytes) -> None:
    """`data` onto the TCP socket at once when Twisted holds nothing unsent, whatever the socket
    does not take (and everything while anything is held) into Twisted's buffer, in order."""
    if transport._tempDataLen or len(transport.dataBuffer) != transport.offset:
        transport.write(data)  # behind what is already buffered
        return
    try:
        sent = transport.socket.send(data)
    except BlockingIOError:
        sent = 0
    except OSError:
        # A broken connection: Twisted's write finds out and closes it its own way.
        sent = 0
    if sent < len(data):
        transport.write(data[sent:])
