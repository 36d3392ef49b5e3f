"""Writing a streamed API answer's chunks under Daphne: straight onto the TCP socket when
nothing is waiting to be written, through the normal ASGI send otherwise.

Why: as for the chat socket's frames (conversations/socket_writer.py), the stock path costs
more per token than the rest of the turn: the ASGI send coroutine, Twisted's Request.write
(chunked encoding as a writeSequence), then the transport's buffering, which registers a writer
with the loop so that a later iteration sends the bytes and unregisters it (two epoll_ctl calls
per chunk). Here, once the response's headers are out, one chunk of HTTP/1.1 chunked encoding
is built and sent at once with one send(); what the socket does not take, and every chunk while
anything is still buffered, goes through Twisted's own write, so the bytes keep their order.
Anything unusual (no chunked encoding, the request finished or its client gone, TLS in
Twisted) takes the stock path.

This leans on Daphne and Twisted internals (docs/private-apis.md, "Writing API chunks onto the
socket"): the ASGI send being `functools.partial(Server.handle_reply, protocol)` with a
`daphne.http_protocol.WebRequest`, Twisted's Request attributes (startedWriting, chunked,
finished, _disconnected, channel) and the transport's buffers. tests/conversations/api/
test_stream_writer.py checks them; WS_DIRECT_WRITE=false switches this off too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from conversations.socket_writer import daphne_protocol, send_now_or_buffer, unusable

Send = Callable[[dict[str, Any]], Awaitable[None]]


def direct_chunk_writer(base_send: Send) -> Callable[[bytes], bool] | None:
    """A function that writes one body chunk directly and says whether it did, or None when
    `base_send` is not Daphne's HTTP send (uvicorn, tests' clients)."""
    request = daphne_protocol(base_send)
    # Twisted's Request, whose attributes the writer reads (Daphne's WebRequest is one; so is
    # chatsite.request_limits' subclass of it, which Daphne builds in its place).
    from twisted.web.http import Request

    if not isinstance(request, Request):
        return None

    def write(data: bytes) -> bool:
        channel = request.channel
        if (not data or not request.startedWriting or not request.chunked or request.finished
                or request._disconnected or channel is None):
            return False
        transport = channel.transport
        if unusable(transport):
            return False
        send_now_or_buffer(transport, b"%x\r\n%s\r\n" % (len(data), data))
        return True

    return write
