"""Anthropic Messages API (streaming), native: POST {base_url}/messages.

Wire format: SSE with named events: `message_start` (usage so far), then per content block
`content_block_start` / `content_block_delta` / `content_block_stop` (text, thinking, tool_use),
`message_delta` (stop_reason, final output usage), `message_stop`; `ping` and `error` may come
at any time.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

import httpx

from agents.events import (
    ChatMessage,
    ChatRequest,
    Finished,
    FinishReason,
    ProviderEvent,
    ReasoningDelta,
    TextDelta,
    ToolCall,
    ToolCallRequested,
    Usage,
)
from agents.providers import _http
from agents.providers.base import ProviderConfig

ANTHROPIC_VERSION = "2023-06-01"
# Anthropic requires max_tokens; this is enough for a long chat answer without thinking.
DEFAULT_MAX_TOKENS = 4096

_STOP_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "refusal": "content_filter",
}

_EPHEMERAL = {"type": "ephemeral"}


class AnthropicProvider:
    """One Anthropic-compatible server. Safe to share between concurrent turns."""

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self._client = _http.make_client(config)

    async def aclose(self) -> None:
        await self._client.aclose()

    def _url(self, path: str) -> str:
        return _http.join_url(api_root(self.config.base_url), path)

    def _headers(self) -> dict[str, str]:
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        if self.config.api_key:
            headers["x-api-key"] = self.config.api_key
        return headers

    def _errors(self, model: str) -> _http.ErrorContext:
        return _http.ErrorContext(
            base_url=self.config.base_url, model=model, api_key=self.config.api_key
        )

    async def list_models(self) -> list[str]:
        """The ids the server offers (GET /models); raises `ProviderError` like `stream()`."""
        data = await _http.request_json(
            client=self._client, method="GET",
            url=self._url("models"),
            headers=self._headers(),
            timeouts=self.config.timeouts,
            errors=self._errors(""),
        )
        items = data.get("data", []) if isinstance(data, dict) else []
        return [item["id"] for item in items if isinstance(item, dict) and "id" in item]

    async def stream(self, request: ChatRequest) -> AsyncGenerator[ProviderEvent, None]:
        """Stream one answer as `ProviderEvent`s, ending with `Finished`; raises `ProviderError`.

        Each tool call is yielded whole when its content block ends. Closing the generator early
        closes the HTTP response (and with it the upstream generation). `request.stream` False
        is not taken up here yet: the answer streams, with the same events.
        """
        errors = self._errors(request.model)
        state = _StreamState()
        async with _http.open_sse(
            client=self._client,
            url=self._url("messages"),
            body=build_body(request),
            headers=self._headers(),
            timeouts=self.config.timeouts,
            errors=errors,
        ) as events:
            async for sse in events:
                if not sse.data.strip():
                    continue
                data = _http.parse_json(sse, errors=errors)
                out = state.feed(data, event=sse.event, errors=errors)
                if state.answering:
                    events.clock.started_answering()
                for event in out:
                    yield event
                if state.stopped:
                    await events.drain()
                    break
            if not state.stopped and state.stop_reason is None:
                # EOF before the message said how it ended: the answer was cut off.
                raise errors.dropped()
            yield state.usage()
            yield Finished(reason=_STOP_REASONS.get(state.stop_reason or "end_turn", "other"))


def api_root(base_url: str) -> str:
    """`base_url` as configured ("https://api.anthropic.com/v1"), or with "/v1" added when it is
    a bare host, which is how Anthropic's own SDKs spell their base URL."""
    try:
        path = httpx.URL(base_url).path
    except httpx.InvalidURL:
        return base_url
    return base_url.rstrip("/") + "/v1" if path in ("", "/") else base_url


@dataclass(slots=True)
class _ToolBlock:
    id: str
    name: str
    initial_input: dict[str, Any]
    parts: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _StreamState:
    tool_blocks: dict[int, _ToolBlock] = field(default_factory=dict)
    input_tokens: int = 0
    cache_creation_tokens: int = 0
    cache_read_tokens: int = 0
    output_tokens: int = 0
    stop_reason: str | None = None
    answering: bool = False
    stopped: bool = False

    def feed(
        self, data: dict[str, Any], *, event: str, errors: _http.ErrorContext
    ) -> list[ProviderEvent]:
        kind = data.get("type") or event
        if kind == "message_start":
            self._take_usage((data.get("message") or {}).get("usage") or {})
        elif kind == "content_block_start":
            return self._block_start(int(data.get("index", 0)), data.get("content_block") or {})
        elif kind == "content_block_delta":
            return self._block_delta(int(data.get("index", 0)), data.get("delta") or {})
        elif kind == "content_block_stop":
            return self._block_stop(int(data.get("index", 0)))
        elif kind == "message_delta":
            self.stop_reason = (data.get("delta") or {}).get("stop_reason") or self.stop_reason
            self._take_usage(data.get("usage") or {})
        elif kind == "message_stop":
            self.stopped = True
        elif kind == "error":
            error = data.get("error") or {}
            raise errors.in_stream(
                status=None,
                error_type=str(error.get("type") or ""),
                message=str(error.get("message") or ""),
            )
        # `ping` and event types added after this was written are ignored, as Anthropic asks.
        return []

    def _take_usage(self, usage: dict[str, Any]) -> None:
        # message_delta repeats the totals (cumulative), so assigning is right for both events.
        if usage.get("input_tokens") is not None:
            self.input_tokens = int(usage["input_tokens"])
        if usage.get("cache_creation_input_tokens") is not None:
            self.cache_creation_tokens = int(usage["cache_creation_input_tokens"])
        if usage.get("cache_read_input_tokens") is not None:
            self.cache_read_tokens = int(usage["cache_read_input_tokens"])
        if usage.get("output_tokens") is not None:
            self.output_tokens = int(usage["output_tokens"])

    def usage(self) -> Usage:
        # Anthropic's input_tokens excludes tokens written to or read from the cache; ours is
        # the whole prompt, with cached_tokens the part of it served from the cache.
        return Usage(
            input_tokens=self.input_tokens + self.cache_creation_tokens + self.cache_read_tokens,
            output_tokens=self.output_tokens,
            cached_tokens=self.cache_read_tokens,
        )

    def _block_start(self, index: int, block: dict[str, Any]) -> list[ProviderEvent]:
        kind = block.get("type")
        if kind == "tool_use":
            self.answering = True
            initial = block.get("input")
            self.tool_blocks[index] = _ToolBlock(
                id=str(block.get("id") or ""),
                name=str(block.get("name") or ""),
                initial_input=initial if isinstance(initial, dict) else {},
            )
        elif kind == "text" and block.get("text"):
            self.answering = True
            return [TextDelta(text=block["text"])]
        elif kind == "thinking" and block.get("thinking"):
            self.answering = True
            return [ReasoningDelta(text=block["thinking"])]
        # redacted_thinking carries encrypted reasoning we cannot show; it is dropped (so it
        # is not sent back either, which Anthropic allows for earlier turns).
        return []

    def _block_delta(self, index: int, delta: dict[str, Any]) -> list[ProviderEvent]:
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            self.answering = True
            return [TextDelta(text=delta["text"])]
        if kind == "thinking_delta" and delta.get("thinking"):
            self.answering = True
            return [ReasoningDelta(text=delta["thinking"])]
        if kind == "signature_delta" and delta.get("signature"):
            return [ReasoningDelta(text="", signature=delta["signature"])]
        if kind == "input_json_delta" and index in self.tool_blocks:
            self.tool_blocks[index].parts.append(str(delta.get("partial_json") or ""))
        return []

    def _block_stop(self, index: int) -> list[ProviderEvent]:
        block = self.tool_blocks.pop(index, None)
        if block is None:
            return []
        raw = "".join(block.parts)
        if not raw.strip() and block.initial_input:
            # Some compatible servers put the whole input in content_block_start.
            raw = json.dumps(block.initial_input)
        call = ToolCall(
            id=block.id, name=block.name, arguments=_http.parse_arguments(raw), arguments_raw=raw
        )
        return [ToolCallRequested(call=call)]


# --- Upstream request ---------------------------------------------------------------------------


def build_body(request: ChatRequest) -> dict[str, Any]:
    """The JSON body of a streaming Messages request, with prompt-cache breakpoints.

    Breakpoints (Anthropic caches the prefix up to each one; the order is tools, system,
    messages): the last tool definition, the last system block, and the last block of the
    message before the newest user message, i.e. everything earlier turns already sent. Each
    later request's breakpoint finds the previous one's cache entry (Anthropic looks back ~20
    blocks), so a conversation pays full price for each token once. Three breakpoints: Anthropic
    refuses more than four.
    """
    body: dict[str, Any] = {
        "model": request.model,
        "max_tokens": request.options.max_tokens or DEFAULT_MAX_TOKENS,
        "messages": build_messages(request),
        "stream": True,
    }
    system = build_system(request)
    if system:
        body["system"] = system
    if request.tools:
        body["tools"] = [
            {"name": tool.name, "description": tool.description, "input_schema": tool.input_schema}
            for tool in request.tools
        ]
        body["tools"][-1]["cache_control"] = dict(_EPHEMERAL)
    options = request.options
    if options.temperature is not None:
        body["temperature"] = options.temperature
    if options.top_p is not None:
        body["top_p"] = options.top_p
    if options.stop:
        body["stop_sequences"] = list(options.stop)
    if request.tools and options.tool_choice is not None:
        body["tool_choice"] = _tool_choice(options.tool_choice)
    # No seed in the Messages API; response_format is refused before a turn starts
    # (conversations.api.requests), since Anthropic has no JSON mode to map it to.
    return body


def _tool_choice(choice: str | dict[str, Any]) -> dict[str, Any]:
    """OpenAI's tool_choice in Anthropic's form."""
    if isinstance(choice, dict):
        return {"type": "tool", "name": str((choice.get("function") or {}).get("name", ""))}
    return {"type": {"required": "any", "none": "none"}.get(choice, "auto")}


def build_system(request: ChatRequest) -> list[dict[str, Any]]:
    """Top-level system blocks: the agent's prompt, then any system messages of the history
    (the Messages API has no system role inside `messages`)."""
    texts = [request.system] + [m.content for m in request.messages if m.role == "system"]
    blocks: list[dict[str, Any]] = [{"type": "text", "text": t} for t in texts if t.strip()]
    if blocks:
        blocks[-1]["cache_control"] = dict(_EPHEMERAL)
    return blocks


def build_messages(request: ChatRequest) -> list[dict[str, Any]]:
    """The history as alternating user/assistant messages of content blocks.

    Tool results become `tool_result` blocks of a user message; consecutive ones (and a user
    message that follows them) are merged into one user message, since Anthropic wants all
    results of one assistant turn in the next user turn. Empty text blocks are left out:
    Anthropic rejects them.
    """
    turns: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})

    for message in request.messages:
        if message.role == "user":
            add("user", _text_blocks(message.content))
        elif message.role == "tool":
            add("user", [_tool_result(message)])
        elif message.role == "assistant":
            add("assistant", _assistant_blocks(message))

    _mark_earlier_turns(turns)
    return turns


def _text_blocks(text: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": text}] if text.strip() else []


def _tool_result(message: ChatMessage) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.tool_call_id}
    if message.content:
        block["content"] = message.content
    if message.is_error:
        block["is_error"] = True
    return block


def _assistant_blocks(message: ChatMessage) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    # Thinking goes back only with its signature (Anthropic rejects unsigned thinking, e.g.
    # reasoning that came from another provider before a fallback).
    if message.reasoning and message.reasoning_signature:
        blocks.append(
            {
                "type": "thinking",
                "thinking": message.reasoning,
                "signature": message.reasoning_signature,
            }
        )
    blocks.extend(_text_blocks(message.content))
    blocks.extend(
        {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
        for call in message.tool_calls
    )
    return blocks


def _mark_earlier_turns(turns: list[dict[str, Any]]) -> None:
    """Put a cache breakpoint on the last block of the message before the newest user message."""
    newest_user = next(
        (i for i in range(len(turns) - 1, -1, -1) if turns[i]["role"] == "user"), None
    )
    if not newest_user:  # None, or the conversation's first message: nothing earlier to cache
        return
    # Thinking blocks cannot carry cache_control; take the last block that can.
    for block in reversed(turns[newest_user - 1]["content"]):
        if block["type"] != "thinking":
            block["cache_control"] = dict(_EPHEMERAL)
            return
