"""Request bodies over MAX_REQUEST_BODY_BYTES are refused (413) before anything buffers them.

Why here and not in Django (DATA_UPLOAD_MAX_MEMORY_SIZE) or an ASGI middleware alone: by the
time a request reaches the application, the server has already read its whole body. Twisted's
HTTP parser, beneath Daphne, stores the body (in a temporary file past 100 kB); Daphne then puts
all of it into the application's queue at once; then Django copies it again. An anonymous 50 MB
POST to the login page, refused by Django for its missing CSRF token, raised Daphne's memory by
about 600 MB at peak, and left it about 50 MB higher for good (issue 8). So the limit is kept in
the parser, as it reads: a declared Content-Length over it is answered before one byte of the
body is stored, and a chunked body (no length declared) is cut off by the read that passes it.
This leans on Twisted's and Daphne's internals: docs/private-apis.md, "Bounding request
bodies inside Daphne's HTTP parser".

`RequestBodyLimit` keeps the same limit at the ASGI level, for servers other than Daphne and for
in-process ASGI tests. Under Daphne it never sees an oversized body.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from io import BytesIO
from typing import Any

from daphne import http_protocol

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
App = Callable[[Scope, Any, Any], Awaitable[None]]


def _too_large_body(max_bytes: int, path: bytes = b"") -> tuple[bytes, bytes]:
    """The 413's content type and body: in OpenAI's error shape for the /v1 API (its SDKs read
    the message from it), plain text for everyone else."""
    message = f"Request body too large: the limit is {max_bytes} bytes."
    if path.startswith(b"/v1/"):
        return b"application/json", json.dumps({"error": {
            "message": message, "type": "invalid_request_error", "param": None,
            "code": "request_too_large"}}).encode()
    return b"text/plain; charset=utf-8", (message + "\n").encode()


def _too_large_response(max_bytes: int, path: bytes = b"") -> bytes:
    content_type, body = _too_large_body(max_bytes, path)
    return (
        b"HTTP/1.1 413 Content Too Large\r\n"
        b"Content-Type: %s\r\n"
        b"Content-Length: %d\r\n"
        b"Connection: close\r\n\r\n%s" % (content_type, len(body), body)
    )


class BoundedWebRequest(http_protocol.WebRequest):
    """Daphne's HTTP request, refusing a body over `max_body_bytes` while Twisted reads it.

    Twisted's HTTPChannel calls `gotLength` once the headers are in (with the declared length,
    or None for a chunked body), then `handleContentChunk` for each piece of the body as it is
    read, then `requestReceived` once the body is whole, which runs Daphne's `process()` and so
    the application. A refused request is answered and its connection closed at once, and it
    never gets to `requestReceived`.
    """

    max_body_bytes: int = 10 * 1024 * 1024  # set by install_daphne_body_limit
    _body_bytes = 0
    _refused = False

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > self.max_body_bytes:
            self._refuse()
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            # The rest of the read that passed the limit: Twisted's decoder hands it over
            # before it notices the connection is closing.
            return
        self._body_bytes += len(data)
        if self._body_bytes > self.max_body_bytes:
            self._refuse()
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        # A chunked body can end within the read that passed the limit: the request is then
        # "complete" for Twisted, but was answered already.
        if self._refused:
            return
        super().requestReceived(command, path, version)

    def _refuse(self) -> None:
        self._refused = True
        logger.info("Refused a request body over %d bytes from %s", self.max_body_bytes,
                    getattr(self.client, "host", "?"))
        # What a chunked body stored so far goes now, not when the connection is collected.
        if self.content is not None:
            self.content.close()
        self.content = BytesIO()  # Twisted closes it when the connection goes
        # Twisted sends "100 Continue" right after gotLength when the client asks for it: it
        # must not follow our answer, or the client would send the body after all.
        self.requestHeaders.removeHeader(b"Expect")
        # As Twisted's own _respondToBadRequestAndDisconnect: the answer, then the connection
        # closes, without reading the rest.
        # The request line is parsed before the headers, so its path is known here (Twisted
        # keeps it on the channel until requestReceived: docs/private-apis.md).
        path = getattr(self.channel, "_path", b"") or b""
        self.channel.transport.write(_too_large_response(self.max_body_bytes, path))
        self.channel.loseConnection()


def install_daphne_body_limit(*, max_bytes: int) -> None:
    """Make Daphne build a BoundedWebRequest for every HTTP request this process serves.

    Call it before the server accepts connections: chatsite.asgi calls it, which Daphne imports
    (`daphne chatsite.asgi:application`, `manage.py runserver`) before it listens. Daphne's
    HTTPFactory.buildProtocol looks `WebRequest` up in its module on each connection.
    """
    BoundedWebRequest.max_body_bytes = max_bytes
    http_protocol.WebRequest = BoundedWebRequest


class RequestBodyTooLarge(Exception):
    """Raised from `receive` inside the application when a body without a declared length
    passes the limit; RequestBodyLimit answers 413 for it."""


class RequestBodyLimit:
    """ASGI middleware: an HTTP request whose body is over `max_bytes` is answered 413.

    A declared Content-Length over the limit is refused without reading any of the body, and
    without calling the application. A body without one (chunked) is counted as the
    application reads it, and the application's read fails once it passes the limit. That
    fails before the application answers only if it reads the whole body before it answers,
    as Django does; otherwise the error ends the request.
    """

    def __init__(self, app: App, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = _declared_length(scope)
        if length is not None:
            if length > self.max_bytes:
                return await self._refuse(send, scope)
            # The server ends the body at the declared length, so it cannot pass the limit:
            # the request goes through untouched, and a streamed answer (the /v1 API) costs
            # nothing more per chunk.
            return await self.app(scope, receive, send)

        received = 0
        answered = False

        async def counted_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise RequestBodyTooLarge
            return message

        async def watched_send(message):
            nonlocal answered
            answered = answered or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except RequestBodyTooLarge:
            if answered:
                raise
            await self._refuse(send, scope)

    async def _refuse(self, send, scope: Scope) -> None:
        content_type, body = _too_large_body(self.max_bytes, scope.get("path", "").encode())
        await send({"type": "http.response.start", "status": 413, "headers": [
            (b"content-type", content_type),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]})
        await send({"type": "http.response.body", "body": body})


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name.lower() == b"content-length":
            # The server has refused a malformed one already; anything else counts as none.
            return int(value) if value.isdigit() else None
    return None
