"""OpenAI's response shapes, built from our turn events: the chat.completion object and the
server-sent chat.completion.chunk stream (https://platform.openai.com/docs/api-reference/chat).

Reasoning goes out as `reasoning_content`, the field vLLM and DeepSeek use for it. Tool calls
go out whole, one delta each (index, id, name and all the arguments): OpenAI clients
accumulate deltas, and a whole call is a valid sequence of one.
"""

from __future__ import annotations

import json
from typing import Any

from conversations.payloads import MessageView, ToolCallView, UsageView

_FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool_calls",
           "content_filter": "content_filter"}


def finish_reason(reason: str | None) -> str:
    return _FINISH.get(reason or "stop", "stop")


def usage_body(usage: UsageView) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.input_tokens, "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def tool_call_body(call: ToolCallView) -> dict[str, Any]:
    return {"id": call.id, "type": "function",
            "function": {"name": call.name, "arguments": json.dumps(call.arguments)}}


def client_calls(message: MessageView) -> list[ToolCallView]:
    return [c for c in message.tool_calls if c.status == "client"]


def completion(*, completion_id: str, created: int, model: str, message: MessageView,
               reason: str | None) -> dict[str, Any]:
    """The whole answer, for a request without `stream`."""
    body: dict[str, Any] = {"role": "assistant", "content": message.content or None}
    if message.reasoning:
        body["reasoning_content"] = message.reasoning
    calls = client_calls(message)
    if calls:
        body["tool_calls"] = [tool_call_body(c) for c in calls]
    elif body["content"] is None:
        body["content"] = ""
    return {"id": completion_id, "object": "chat.completion", "created": created,
            "model": model, "choices": [{"index": 0, "message": body, "logprobs": None,
                                         "finish_reason": finish_reason(reason)}],
            "usage": usage_body(message.usage)}


class ChunkWriter:
    """The stream's lines for one answer. The prefix every chunk shares is serialised once: a
    token costs one json.dumps of its text."""

    def __init__(self, *, completion_id: str, created: int, model: str) -> None:
        self._head = {"id": completion_id, "object": "chat.completion.chunk",
                      "created": created, "model": model}
        self._prefix = ('data: {"id":%s,"object":"chat.completion.chunk","created":%d,'
                        '"model":%s,"choices":[{"index":0,"delta":{' % (
                            json.dumps(completion_id), created, json.dumps(model)))
        self._tool_index = 0

    def _delta(self, fields: str, finish: str | None = None) -> bytes:
        end = "null" if finish is None else json.dumps(finish)
        return (self._prefix + fields + '},"finish_reason":' + end + "}]}\n\n").encode()

    def start(self) -> bytes:
        return self._delta('"role":"assistant","content":""')

    def text(self, text: str) -> bytes:
        return self._delta('"content":' + json.dumps(text))

    def reasoning(self, text: str) -> bytes:
        return self._delta('"reasoning_content":' + json.dumps(text))

    def tool_call(self, call: ToolCallView) -> bytes:
        body = {"index": self._tool_index, **tool_call_body(call)}
        self._tool_index += 1
        return self._delta('"tool_calls":' + json.dumps([body]))

    def finish(self, reason: str | None) -> bytes:
        return self._delta("", finish_reason(reason))

    def usage(self, usage: UsageView) -> bytes:
        body = {**self._head, "choices": [], "usage": usage_body(usage)}
        return b"data: " + json.dumps(body).encode() + b"\n\n"

    @staticmethod
    def error(body: dict[str, Any]) -> bytes:
        return b"data: " + json.dumps(body).encode() + b"\n\n"

    DONE = b"data: [DONE]\n\n"
