"""The /v1 endpoints as a small ASGI application of their own, in front of Django (chatsite/
asgi.py routes every /v1/ path here): thin adapters from HTTP to conversations.api's services
and the turn pipeline, as a consumer is for the chat socket.

Why not Django views: a streamed answer is a few hundred chunks, and Django's request and
response machinery (middleware built for pages, a thread started per request for its
thread-sensitive context, the streaming response's layers of async iterators, then Twisted's
buffered write) cost more per request and per token than the rest of the turn
(bench/stream.py --transport api --profile). None of what it adds applies to a bearer-token
JSON API: no sessions, cookies, CSRF or templates. What does apply is kept here: the Host
header checked against ALLOWED_HOSTS, bodies bounded (chatsite.request_limits, outside this
app), nosniff and no-store on every answer.

A request's answer is a turn like the chat page's (stored, audited, its MCP tools run here);
this module reads its events from an in-process sink (ApiSink) and writes them out in OpenAI's
shapes. A client that goes away (http.disconnect) stops the turn, whose partial answer is then
stored as stopped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.http.request import split_domain_port, validate_host

from accounts.api_keys import ApiKeyRefused, authenticate_api_key, bearer_key
from conversations.api import catalog, chunks, storing
from conversations.api.errors import ApiError, turn_failure
from conversations.api.requests import CompletionRequest, parse_body
from conversations.api.stream_writer import direct_chunk_writer
from conversations.broker import start_turn
from conversations.models import Message
from conversations.payloads import (
    Envelope,
    MessageView,
    ReasoningAdded,
    TextAdded,
    ToolCallChanged,
    TurnFinished,
)
from conversations.runner import TurnRunner

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

MODELS, COMPLETIONS = "/v1/models", "/v1/chat/completions"
_COMMON_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"cache-control", b"no-store")]


class ApiApp:
    """ASGI: the /v1 paths here, everything else to `fallback` (Django)."""

    def __init__(self, fallback: App) -> None:
        self.fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/v1/"):
            return await self.fallback(scope, receive, send)
        started = False

        async def watched_send(message: dict[str, Any]) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            headers = _headers(scope)
            _check_host(headers)
            body = await _read_body(receive)
            if body is None:
                return  # the client left before sending its body
            if path == COMPLETIONS:
                # The server's own send too: the direct chunk writer recognises Daphne's.
                await _completions(scope, headers, body, receive, watched_send,
                                   server_send=send)
            elif path == MODELS or path.startswith(MODELS + "/"):
                await _models(scope, send, model_id=path[len(MODELS) + 1:] or None)
            else:
                raise ApiError(404, f"There is no endpoint {path}: this server has GET "
                                    f"{MODELS}, GET {MODELS}/<id> and POST {COMPLETIONS}.",
                               code="unknown_url")
        except ApiError as exc:
            await _send_error(send, exc)
        except Exception:
            logger.exception("the API failed on %s", path)
            if started:
                raise
            await _send_error(send, ApiError(
                500, "The request failed because of an error on our server.", code="server_error"))


# --- plumbing -------------------------------------------------------------------------------------


def _headers(scope: Scope) -> dict[str, str]:
    return {name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in scope.get("headers", ())}


def _check_host(headers: dict[str, str]) -> None:
    """As Django checks it for its pages (HttpRequest.get_host): no answer to a Host we are
    not."""
    host = headers.get("host", "")
    domain, _port = split_domain_port(host)
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    if not domain or not validate_host(domain, allowed):
        raise ApiError(400, f"Invalid Host header: {host!r}.", code="invalid_host")


async def _read_body(receive: Receive) -> bytes | None:
    # Bounded outside this app (chatsite.request_limits.RequestBodyLimit and Daphne's parser).
    parts = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts)


async def _send_json(send: Send, status: int, body: dict, *,
                     retry_after: float | None = None) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(data)).encode()), *_COMMON_HEADERS]
    if retry_after is not None:
        headers.append((b"retry-after", str(max(1, math.ceil(retry_after))).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


async def _send_error(send: Send, error: ApiError) -> None:
    await _send_json(send, error.status, error.body(), retry_after=error.retry_after)


def _authenticate(scope: Scope):
    """Synchronous: the key's use (its user checked active now, never from a cache)."""
    raw = bearer_key(scope.get("headers", ()))
    if raw is None:
        raise ApiError(401, "Send your API key as \"Authorization: Bearer <key>\" (make one "
                            "on your account page).", code="invalid_api_key")
    client = scope.get("client")
    try:
        return authenticate_api_key(raw=raw, address=client[0] if client else None)
    except ApiKeyRefused as exc:
        raise ApiError(exc.status, exc.message, code=exc.code,
                       retry_after=exc.retry_after) from None


# --- GET /v1/models ---------------------------------------------------------------------------------


def _list_models(scope: Scope) -> list[catalog.ApiModel]:
    return catalog.models_for(user=_authenticate(scope).user)


def _model_body(model: catalog.ApiModel) -> dict:
    return {"id": model.id, "object": "model", "created": model.created,
            "owned_by": model.owned_by}


async def _models(scope: Scope, send: Send, *, model_id: str | None) -> None:
    """GET /v1/models, or GET /v1/models/<id> (ids may hold a "/": "default/gpt-oss")."""
    if scope["method"] != "GET":
        raise ApiError(405, "Use GET.")
    rows = await database_sync_to_async(_list_models)(scope)
    if model_id is None:
        return await _send_json(send, 200, {"object": "list",
                                            "data": [_model_body(m) for m in rows]})
    found = next((m for m in rows if m.id == model_id), None)
    if found is None:
        raise catalog.ModelNotFound(model_id)
    await _send_json(send, 200, _model_body(found))


# --- POST /v1/chat/completions ------------------------------------------------------------------------


def _start(scope: Scope, completion: CompletionRequest | None, invalid: ApiError | None):
    # One trip to the database thread for the key and the storing; the key is checked first,
    # so a request without a valid key learns nothing about its body.
    use = _authenticate(scope)
    if invalid is not None:
        raise invalid
    return storing.do_start_api_turn(user=use.user, request=completion, key_id=use.key_id)


async def _completions(scope: Scope, headers: dict[str, str], body: bytes, receive: Receive,
                       send: Send, *, server_send: Send) -> None:
    if scope["method"] != "POST":
        raise ApiError(405, "Use POST.")
    completion, invalid = None, None
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        completion = parse_body(body, content_type=content_type)
    except ApiError as exc:
        invalid = exc
    plan = await database_sync_to_async(_start)(scope, completion, invalid)
    sink = ApiSink(completion=completion, plan_id=plan.conversation_id)
    runner = sink.runner = await start_turn(plan=plan, sinks=[sink])
    # The client may leave at any point from here: the turn then stops.
    watcher = asyncio.create_task(_until_disconnect(receive, sink))
    try:
        if not completion.stream:
            final = await sink.until_finished()
            if final is None:
                return  # the client left
            if final.status == Message.Status.FAILED:
                return await _send_error(send, turn_failure(runner.failure, final.error))
            return await _send_json(send, 200, chunks.completion(
                completion_id=sink.id, created=sink.created, model=completion.model,
                message=final, reason=runner.finish_reason))
        head = await sink.until_visible()
        if head is None:
            return
        last = head[-1].event
        if isinstance(last, TurnFinished) and last.message.status == Message.Status.FAILED:
            # Failed before anything was written: a status the client's SDK raises on.
            return await _send_error(send, turn_failure(runner.failure, last.message.error))
        await sink.stream(head, send, server_send=server_send)
    finally:
        watcher.cancel()
        sink.abandon()


async def _until_disconnect(receive: Receive, sink: ApiSink) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    sink.abandon()


class ApiSink:
    """One request's turn sink (conversations.runner.TurnSink). Until the answer streams, it
    queues the events for the request's task; once it streams, each event is written out from
    the turn's own call when nothing is queued and the connection takes it at once (under
    Daphne: stream_writer), so a token costs no task switch and no buffered write. The queue is
    bounded by the turn's own length, as TurnEvents' is."""

    def __init__(self, *, completion: CompletionRequest, plan_id: str) -> None:
        self.completion = completion
        self.runner: TurnRunner | None = None
        self.id = "chatcmpl-" + plan_id.replace("-", "")
        self.created = int(time.time())
        # Events, or chunks already rendered; None: nothing more will come.
        self.queue: asyncio.Queue[Envelope | bytes | None] = asyncio.Queue()
        self.finished = False
        self.abandoned = False
        self._writer: chunks.ChunkWriter | None = None
        self._direct: Callable[[bytes], bool] | None = None
        # The request's task is between taking an event and writing it.
        self._busy = False

    # --- the turn's side ------------------------------------------------------------------------

    async def emit(self, envelope: Envelope) -> None:
        if self.abandoned:
            return
        if self._direct is not None and not self._busy and self.queue.empty():
            data = self._render(envelope)
            if data and not self._direct(data):
                # Not taken (the connection changed state): the stock path, in order.
                self.queue.put_nowait(data)
            if self.finished:
                self.queue.put_nowait(None)  # the request's task may end
            return
        self.queue.put_nowait(envelope)

    async def close(self) -> None:
        self.queue.put_nowait(None)

    def abandon(self) -> None:
        """Nobody reads the answer any more: stop the turn (stored as stopped, unless it has
        ended already)."""
        if not self.abandoned:
            self.abandoned = True
            if not self.finished and self.runner is not None:
                self.runner.stop()
            self.queue.put_nowait(None)

    # --- the request's side -----------------------------------------------------------------------

    async def until_finished(self) -> MessageView | None:
        while (envelope := await self.queue.get()) is not None:
            if isinstance(envelope.event, TurnFinished):
                self.finished = True
                return envelope.event.message
        return None

    async def until_visible(self) -> list[Envelope] | None:
        """The events up to the first one the client sees (text, reasoning, a tool call) or the
        end: until then a failure can still be an HTTP status. A server tool call starts the
        stream too: tools can take long, and a client waiting without a byte may give up."""
        head: list[Envelope] = []
        while (envelope := await self.queue.get()) is not None:
            head.append(envelope)
            if isinstance(envelope.event, TurnFinished | TextAdded | ReasoningAdded
                          | ToolCallChanged):
                return head
        return None

    async def stream(self, head: list[Envelope], send: Send, *, server_send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"text/event-stream"), *_COMMON_HEADERS,
            # nginx and other proxies would otherwise buffer the stream.
            (b"x-accel-buffering", b"no")]})
        self._writer = chunks.ChunkWriter(completion_id=self.id, created=self.created,
                                          model=self.completion.model)
        pieces = [self._writer.start(), *(self._render(e) for e in head)]
        await send({"type": "http.response.body", "body": b"".join(pieces), "more_body": True})
        if not self.finished:
            self._direct = direct_chunk_writer(server_send)
            while (envelope := await self.queue.get()) is not None:
                self._busy = True
                try:
                    data = envelope if isinstance(envelope, bytes) else self._render(envelope)
                    if data and not (self._direct and self._direct(data)):
                        await send({"type": "http.response.body", "body": data,
                                    "more_body": True})
                finally:
                    self._busy = False
                if self.finished:
                    break
        if self.finished and not self.abandoned:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _render(self, envelope: Envelope) -> bytes:
        writer, event = self._writer, envelope.event
        if isinstance(event, TextAdded):
            return writer.text(event.text)
        if isinstance(event, ReasoningAdded):
            return writer.reasoning(event.text)
        if isinstance(event, ToolCallChanged):
            return writer.tool_call(event.call) if event.call.status == "client" else b""
        if isinstance(event, TurnFinished):
            self.finished = True
            message = event.message
            if message.status == Message.Status.FAILED:
                return writer.error(turn_failure(self.runner.failure, message.error).body())
            out = [writer.finish(self.runner.finish_reason)]
            if self.completion.include_usage:
                out.append(writer.usage(message.usage))
            out.append(writer.DONE)
            return b"".join(out)
        return b""
