"""OpenAI Chat Completions (streaming), as served by OpenAI, vLLM, llama.cpp, Ollama, LM Studio...

Wire format: POST {base_url}/chat/completions with `stream: true`; the answer is SSE `data:`
lines, each a JSON chunk `{"choices": [{"delta": {...}, "finish_reason": ...}], "usage": ...}`,
ended by `data: [DONE]`. Usage arrives in a last chunk with empty `choices` because we ask for
`stream_options.include_usage`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

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

_FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "eos": "stop",
    "end_turn": "stop",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "length": "length",
    "content_filter": "content_filter",
}


class OpenAIProvider:
    """One OpenAI-compatible server. Safe to share between concurrent turns."""

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self._client = _http.make_client(config)

    async def aclose(self) -> None:
        await self._client.aclose()

    def _headers(self) -> dict[str, str]:
        # Local servers usually want no key at all; an empty "Bearer " confuses some of them.
        return {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}

    def _errors(self, model: str) -> _http.ErrorContext:
        return _http.ErrorContext(
            base_url=self.config.base_url, model=model, api_key=self.config.api_key
        )

    async def list_models(self) -> list[str]:
        """The ids the server offers (GET /models): doubles as a "can we reach it" check.

        Raises `ProviderError` like `stream()` does.
        """
        data = await _http.request_json(
            client=self._client, method="GET",
            url=_http.join_url(self.config.base_url, "models"),
            headers=self._headers(),
            timeouts=self.config.timeouts,
            errors=self._errors(""),
        )
        items = data.get("data", []) if isinstance(data, dict) else []
        return [item["id"] for item in items if isinstance(item, dict) and "id" in item]

    async def stream(self, request: ChatRequest) -> AsyncGenerator[ProviderEvent, None]:
        """Stream one answer as `ProviderEvent`s, ending with `Finished`; raises `ProviderError`.

        Tool calls are yielded whole, once the server says the message is finished. Closing the
        generator early closes the HTTP response (and with it the upstream generation).
        """
        errors = self._errors(request.model)
        state = _StreamState()
        if not request.stream:
            for event in await self._whole(request, state=state, errors=errors):
                yield event
            return
        async with _http.open_sse(
            client=self._client,
            url=_http.join_url(self.config.base_url, "chat/completions"),
            body=build_body(request),
            headers=self._headers(),
            timeouts=self.config.timeouts,
            errors=errors,
        ) as events:
            async for sse in events:
                if sse.data.strip() == "[DONE]":
                    state.done = True
                    await events.drain()
                    break
                if not sse.data.strip():
                    continue
                chunk_events = state.feed(_http.parse_json(sse, errors=errors), errors=errors)
                # A tool call being streamed counts as answering: its arguments may take longer
                # than the first-token timeout, and they are yielded only when complete.
                if state.tool_slots or any(e.type in ("text", "reasoning") for e in chunk_events):
                    events.clock.started_answering()
                for event in chunk_events:
                    yield event
            if not state.done and state.finish_reason is None:
                # EOF with neither [DONE] nor a finish_reason: the answer was cut off.
                raise errors.dropped()
            for event in state.finish():
                yield event


    async def _whole(self, request: ChatRequest, *, state: _StreamState,
                     errors: _http.ErrorContext) -> list[ProviderEvent]:
        """A non-streamed answer, read as one chunk of a stream (the same parsing, so the same
        events): its message is that chunk's delta."""
        body = build_body(request)
        body["stream"] = False
        del body["stream_options"]
        data = await _http.request_json(
            client=self._client, method="POST", body=body,
            url=_http.join_url(self.config.base_url, "chat/completions"),
            headers=self._headers(), timeouts=self.config.timeouts, errors=errors)
        if not isinstance(data, dict):
            raise errors.protocol("the answer is not a JSON object")
        choices = []
        for choice in data.get("choices") or ():
            if isinstance(choice, dict):
                choices.append({**choice, "delta": choice.get("message") or {},
                                "finish_reason": choice.get("finish_reason") or "stop"})
        events = state.feed({**data, "choices": choices}, errors=errors)
        return [*events, *state.finish()]


@dataclass(slots=True)
class _ToolSlot:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _StreamState:
    tool_slots: dict[int, _ToolSlot] = field(default_factory=dict)
    finish_reason: str | None = None
    tool_calls_sent: bool = False
    usage: Usage | None = None
    done: bool = False

    def feed(self, chunk: dict[str, Any], *, errors: _http.ErrorContext) -> list[ProviderEvent]:
        if "error" in chunk and not chunk.get("choices"):
            raise _chunk_error(chunk["error"], errors=errors)
        if isinstance(chunk.get("usage"), dict):
            # Keep the last one: vLLM's continuous usage stats repeat a running total per chunk.
            self.usage = _usage(chunk["usage"])
        out: list[ProviderEvent] = []
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue  # we never ask for n > 1
            delta = choice.get("delta") or {}
            # Servers disagree on the name (DeepSeek/llama.cpp: reasoning_content; vLLM/Ollama/
            # OpenRouter: reasoning) and some send both with the same text: take one.
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                out.append(ReasoningDelta(text=reasoning))
            content = delta.get("content")
            if isinstance(content, str) and content:
                out.append(TextDelta(text=content))
            for position, tool_delta in enumerate(delta.get("tool_calls") or ()):
                self._add_tool_delta(tool_delta, position=position)
            if choice.get("finish_reason"):
                self.finish_reason = str(choice["finish_reason"])
                out.extend(self._flush_tool_calls())
        return out

    def _add_tool_delta(self, tool_delta: dict[str, Any], *, position: int) -> None:
        index = tool_delta.get("index")
        if not isinstance(index, int):
            index = position  # some servers omit the index when they send whole calls
        slot = self.tool_slots.get(index)
        call_id = tool_delta.get("id") or ""
        if slot is not None and call_id and slot.id and call_id != slot.id:
            # A new id on a used index: a server that numbers every call 0. Start a new call.
            index = max(self.tool_slots) + 1
            slot = None
        if slot is None:
            slot = self.tool_slots[index] = _ToolSlot()
        if call_id and not slot.id:
            slot.id = call_id
        function = tool_delta.get("function") or {}
        # The name comes whole in one delta; some servers repeat it in every delta, so never
        # concatenate it.
        if function.get("name") and not slot.name:
            slot.name = function["name"]
        arguments = function.get("arguments")
        if isinstance(arguments, dict):
            arguments = json.dumps(arguments)
        if isinstance(arguments, str) and arguments:
            slot.arguments.append(arguments)

    def _flush_tool_calls(self) -> list[ProviderEvent]:
        if self.tool_calls_sent or not self.tool_slots:
            return []
        self.tool_calls_sent = True
        out: list[ProviderEvent] = []
        for index in sorted(self.tool_slots):
            slot = self.tool_slots[index]
            raw = "".join(slot.arguments)
            call = ToolCall(
                id=slot.id or f"call_{uuid.uuid4().hex[:24]}",
                name=slot.name,
                arguments=_http.parse_arguments(raw),
                arguments_raw=raw,
            )
            out.append(ToolCallRequested(call=call))
        return out

    def finish(self) -> list[ProviderEvent]:
        out = self._flush_tool_calls()
        if self.usage is not None:
            out.append(self.usage)
        reason = _FINISH_REASONS.get(self.finish_reason or "stop", "other")
        if self.tool_calls_sent and reason == "stop":
            # llama.cpp and Ollama have answered tool calls with "stop"; the loop keys on this.
            reason = "tool_calls"
        out.append(Finished(reason=reason))
        return out


def _usage(data: dict[str, Any]) -> Usage:
    completion_details = data.get("completion_tokens_details") or {}
    prompt_details = data.get("prompt_tokens_details") or {}
    return Usage(
        input_tokens=int(data.get("prompt_tokens") or 0),
        output_tokens=int(data.get("completion_tokens") or 0),
        reasoning_tokens=int(completion_details.get("reasoning_tokens") or 0),
        cached_tokens=int(prompt_details.get("cached_tokens") or 0),
    )


def _chunk_error(error: Any, *, errors: _http.ErrorContext) -> Exception:
    if not isinstance(error, dict):
        return errors.in_stream(status=None, error_type="", message=str(error))
    code = error.get("code")
    status = code if isinstance(code, int) and 400 <= code < 600 else None
    return errors.in_stream(
        status=status, error_type=str(error.get("type") or ""), message=str(error.get("message") or "")
    )


# --- Upstream request ---------------------------------------------------------------------------


def build_body(request: ChatRequest) -> dict[str, Any]:
    """The JSON body of a streaming Chat Completions request.

    `max_tokens` rather than `max_completion_tokens`: the servers we host talk to (vLLM,
    llama.cpp, Ollama) all read the former; only OpenAI's o-series insists on the latter.
    """
    body: dict[str, Any] = {
        "model": request.model,
        "messages": build_messages(request),
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if request.tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": tool.name,
                    "description": tool.description,
                    "parameters": tool.input_schema,
                },
            }
            for tool in request.tools
        ]
    options = request.options
    for name in ("max_tokens", "temperature", "top_p", "seed", "response_format", "tool_choice"):
        value = getattr(options, name)
        if value is not None:
            body[name] = value
    if options.stop:
        body["stop"] = list(options.stop)
    if "tool_choice" in body and not request.tools:
        # Servers refuse a tool_choice without tools (the last round offers none).
        del body["tool_choice"]
    return body


def build_messages(request: ChatRequest) -> list[dict[str, Any]]:
    """System prompt first, then the history in OpenAI form.

    Earlier reasoning is not sent back: Chat Completions has no input field for it, DeepSeek
    rejects `reasoning_content` in input messages with HTTP 400, and the chat templates of
    reasoning models (Qwen3, DeepSeek-R1, gpt-oss) drop earlier turns' thinking anyway, so it
    would only cost tokens or errors.
    """
    messages: list[dict[str, Any]] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    messages.extend(_message(m) for m in request.messages)
    return messages


def _message(message: ChatMessage) -> dict[str, Any]:
    if message.role == "tool":
        # No error flag in this API: the tool result text itself must say it failed.
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    if message.role == "assistant" and message.tool_calls:
        return {
            "role": "assistant",
            # null, not "", is OpenAI's form for "only tool calls".
            "content": message.content or None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    # Re-serialised rather than `arguments_raw`: invalid JSON sent back makes
                    # some servers (vLLM's templates parse it) fail the whole request.
                    "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
                }
                for call in message.tool_calls
            ],
        }
    return {"role": message.role, "content": message.content}
