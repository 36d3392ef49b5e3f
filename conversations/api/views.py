"""The /v1 endpoints: thin adapters from HTTP to conversations.api's services and the turn
pipeline. A request's answer is a turn like the chat page's (stored, audited, its MCP tools
run here); this module only reads its events from an in-process sink and writes them out in
OpenAI's shapes. A client that goes away (Django cancels the view or its stream) stops the
turn, whose partial answer is stored as stopped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

from channels.db import database_sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from accounts.api_keys import ApiKeyRefused, authenticate_api_key, bearer_key
from conversations.api import catalog, chunks, storing
from conversations.api.errors import ApiError, turn_failure
from conversations.api.requests import CompletionRequest, parse_body
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
from conversations.sinks import TurnEvents

logger = logging.getLogger(__name__)


def _authenticate(request: HttpRequest):
    """Synchronous: the key's use (its user checked active now, never from a cache)."""
    raw = bearer_key(request.headers)
    if raw is None:
        raise ApiError(401, "Send your API key as \"Authorization: Bearer <key>\" (make one "
                            "on your account page).", code="invalid_api_key")
    try:
        return authenticate_api_key(raw=raw, address=request.META.get("REMOTE_ADDR"))
    except ApiKeyRefused as exc:
        raise ApiError(exc.status, exc.message, code=exc.code,
                       retry_after=exc.retry_after) from None


def _models(request: HttpRequest) -> list[catalog.ApiModel]:
    use = _authenticate(request)
    return catalog.models_for(user=use.user)


@csrf_exempt
async def models(request: HttpRequest) -> HttpResponse:
    """GET /v1/models: the agents and models the key's owner may use."""
    if request.method != "GET":
        return ApiError(405, "Use GET.").response()
    try:
        rows = await database_sync_to_async(_models)(request)
    except ApiError as exc:
        return exc.response()
    return JsonResponse({"object": "list", "data": [
        {"id": m.id, "object": "model", "created": m.created, "owned_by": m.owned_by}
        for m in rows]})


def _start(request: HttpRequest, completion: CompletionRequest | None,
           invalid: ApiError | None):
    # One trip to the database thread for the key and the storing; the key is checked first,
    # so a request without a valid key learns nothing about its body.
    use = _authenticate(request)
    if invalid is not None:
        raise invalid
    return storing.do_start_api_turn(user=use.user, request=completion, key_id=use.key_id)


@csrf_exempt
async def chat_completions(request: HttpRequest) -> HttpResponse:
    """POST /v1/chat/completions, streamed (server-sent events) or not."""
    if request.method != "POST":
        return ApiError(405, "Use POST.").response()
    completion, invalid = None, None
    try:
        completion = parse_body(request.body, content_type=request.content_type)
    except ApiError as exc:
        invalid = exc
    try:
        plan = await database_sync_to_async(_start)(request, completion, invalid)
    except ApiError as exc:
        return exc.response()
    events = TurnEvents()
    runner = await start_turn(plan=plan, sinks=[events])
    answer = _Answer(runner=runner, events=events, completion=completion)
    try:
        if completion.stream:
            head = await answer.until_visible()
        else:
            final = await answer.until_finished()
    except BaseException:  # the client went away (cancelled) while we waited
        answer.abandon()
        raise
    if not completion.stream:
        if final.status == Message.Status.FAILED:
            return turn_failure(runner.failure, final.error).response()
        return JsonResponse(chunks.completion(
            completion_id=answer.id, created=answer.created, model=completion.model,
            message=final, reason=runner.finish_reason))
    if isinstance(head[-1].event, TurnFinished) and head[-1].event.message.status == (
            Message.Status.FAILED):
        # Failed before anything was written: a status the client's SDK raises on.
        return turn_failure(runner.failure, head[-1].event.message.error).response()
    response = StreamingHttpResponse(answer.stream(head), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    # nginx and other proxies would otherwise buffer the stream.
    response["X-Accel-Buffering"] = "no"
    return response


class _Answer:
    """One request's turn, read from its sink."""

    def __init__(self, *, runner: TurnRunner, events: TurnEvents,
                 completion: CompletionRequest) -> None:
        self.runner = runner
        self.events = events
        self.completion = completion
        self.id = "chatcmpl-" + runner.plan.conversation_id.replace("-", "")
        self.created = int(time.time())
        self.finished = False

    def abandon(self) -> None:
        """Nobody reads the answer any more: stop the turn (stored as stopped)."""
        if not self.finished:
            self.finished = True
            self.events.abandon()
            self.runner.stop()

    async def until_finished(self) -> MessageView:
        async for envelope in self.events:
            if isinstance(envelope.event, TurnFinished):
                self.finished = True
                return envelope.event.message
        raise RuntimeError("the turn ended without a finished event")

    async def until_visible(self) -> list[Envelope]:
        """The events up to the first one the client sees (text, reasoning, a tool call) or the
        end: until then a failure can still be an HTTP status."""
        head: list[Envelope] = []
        async for envelope in self.events:
            head.append(envelope)
            event = envelope.event
            if isinstance(event, TurnFinished | TextAdded | ReasoningAdded | ToolCallChanged):
                # A server tool call starts the stream too: tools can take long, and a client
                # waiting without a byte may give up.
                break
        return head

    async def stream(self, head: list[Envelope]) -> AsyncIterator[bytes]:
        writer = chunks.ChunkWriter(completion_id=self.id, created=self.created,
                                    model=self.completion.model)
        try:
            yield writer.start()
            for envelope in head:
                for piece in self._pieces(writer, envelope):
                    yield piece
            if not self.finished:
                async for envelope in self.events:
                    for piece in self._pieces(writer, envelope):
                        yield piece
                    if self.finished:
                        break
        finally:
            self.abandon()

    def _pieces(self, writer: chunks.ChunkWriter, envelope: Envelope) -> list[bytes]:
        event = envelope.event
        if isinstance(event, TextAdded):
            return [writer.text(event.text)]
        if isinstance(event, ReasoningAdded):
            return [writer.reasoning(event.text)]
        if isinstance(event, ToolCallChanged):
            if event.call.status == "client":
                return [writer.tool_call(event.call)]
            return []
        if isinstance(event, TurnFinished):
            self.finished = True
            message = event.message
            if message.status == Message.Status.FAILED:
                return [writer.error(turn_failure(self.runner.failure, message.error).body())]
            out = [writer.finish(self.runner.finish_reason)]
            if self.completion.include_usage:
                out.append(writer.usage(message.usage))
            out.append(writer.DONE)
            return out
        return []
