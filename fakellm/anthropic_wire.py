"""Anthropic Messages API wire format.

Stream: message_start (usage with input and cache tokens) and ping at once; then one block at a
time (thinking: thinking_delta pieces then one signature_delta; text: text_delta; tool_use: an
empty input_json_delta then partial_json pieces), each framed by content_block_start/stop; then
message_delta (stop_reason, usage.output_tokens) and message_stop.

Prompt caching, deterministically: the request is flattened into items in cache order (tools,
system blocks, message blocks; `cache_control` itself ignored). Each item that carries
`cache_control` ends a cacheable prefix. Reads = the longest marked prefix already seen since the
last reset; creation = the longest marked prefix minus that; input = the rest. Tokens are
characters / 4. There is no minimum length (the real API needs 1024+ tokens).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from fakellm.jsonfmt import dumps, json_string
from fakellm.scenario import Plan, PlannedCall
from fakellm.state import FakeState
from fakellm.streaming import Frame

_ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_body(status: int, message: str) -> dict[str, Any]:
    kind = _ERROR_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def stop_reason(plan: Plan) -> str:
    if plan.stop_reason:
        return plan.stop_reason
    if plan.truncated:
        return "max_tokens"
    return "tool_use" if plan.calls else "end_turn"


def tool_use_id(call: PlannedCall) -> str:
    return f"toolu_{call.id_stem}"


def signature(thinking: str) -> str:
    """Stands in for Anthropic's opaque signature: deterministic, base64 like the real one."""
    return base64.b64encode(hashlib.sha256(thinking.encode()).digest()).decode()


@dataclass(frozen=True, slots=True)
class PromptUsage:
    input_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int


def prompt_usage(body: Mapping[str, Any], state: FakeState) -> PromptUsage:
    """Apply the caching rule of the module docstring and remember this request's prefixes."""
    hasher = hashlib.sha256()
    chars = 0
    marked: list[tuple[str, int]] = []
    for item, is_marked in _cache_items(body):
        text = dumps(item)
        hasher.update(text.encode())
        chars += len(text)
        if is_marked:
            marked.append((hasher.copy().hexdigest(), chars // 4))
    total = max(1, chars // 4)
    read = max((tokens for digest, tokens in marked if digest in state.cache_prefixes), default=0)
    longest = max((tokens for _, tokens in marked), default=0)
    state.cache_prefixes.update(digest for digest, _ in marked)
    creation = max(0, longest - read)
    return PromptUsage(
        input_tokens=max(0, total - read - creation),
        cache_creation_input_tokens=creation,
        cache_read_input_tokens=read,
    )


def _cache_items(body: Mapping[str, Any]) -> Iterator[tuple[Any, bool]]:
    for tool in body.get("tools") or ():
        yield from _marked(tool, "tool")
    system = body.get("system")
    if isinstance(system, str):
        yield ["system", system], False
    elif isinstance(system, list):
        for block in system:
            yield from _marked(block, "system")
    for message in body.get("messages") or ():
        if not isinstance(message, dict):
            continue
        role = str(message.get("role"))
        content = message.get("content")
        if isinstance(content, list):
            for block in content:
                yield from _marked(block, role)
        else:
            yield [role, content], False


def _marked(item: Any, where: str) -> Iterator[tuple[Any, bool]]:
    if isinstance(item, dict):
        stripped = {k: v for k, v in item.items() if k != "cache_control"}
        yield [where, stripped], "cache_control" in item
    else:
        yield [where, item], False


def _event(name: str, data: str) -> bytes:
    return f"event: {name}\ndata: {data}\n\n".encode()


@dataclass(frozen=True, slots=True)
class Rendered:
    head: bytes
    frames: list[Frame]
    tail: bytes


def _usage_json(plan: Plan, prompt: PromptUsage, output_tokens: int) -> dict[str, int]:
    computed = {
        "input_tokens": prompt.input_tokens,
        "cache_creation_input_tokens": prompt.cache_creation_input_tokens,
        "cache_read_input_tokens": prompt.cache_read_input_tokens,
        "output_tokens": output_tokens,
    }
    return {name: plan.usage.get(name, value) for name, value in computed.items()}


def render_stream(plan: Plan, *, model: str, prompt: PromptUsage) -> Rendered:
    """Every byte of the stream, formatted up front; frame i is written at ttft + i*gap."""
    message = {
        "id": f"msg_{os.urandom(12).hex()}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        # Like the real API: output_tokens is a placeholder until message_delta.
        "usage": _usage_json(plan, prompt, 1),
    }
    head = _event("message_start", dumps({"type": "message_start", "message": message}))
    head += _event("ping", '{"type": "ping"}')

    frames: list[Frame] = []
    index = 0

    def block(start: dict[str, Any], deltas: list[tuple[str, int]], closing: list[str]) -> None:
        """Append one block's frames: start rides on the first delta, closing on the last."""
        nonlocal index
        prefix = f'data: {{"type":"content_block_delta","index":{index},"delta":'
        datas = [b"event: content_block_delta\n" + (prefix + d + "}\n\n").encode() for d, _ in deltas]
        start_event = _event(
            "content_block_start",
            dumps({"type": "content_block_start", "index": index, "content_block": start}),
        )
        end = b"".join(
            b"event: content_block_delta\n" + (prefix + d + "}\n\n").encode() for d in closing
        ) + _event("content_block_stop", f'{{"type":"content_block_stop","index":{index}}}')
        datas[0] = start_event + datas[0]
        datas[-1] = datas[-1] + end
        frames.extend(Frame(data, tokens) for data, (_, tokens) in zip(datas, deltas, strict=True))
        index += 1

    if plan.reasoning:
        block(
            {"type": "thinking", "thinking": "", "signature": ""},
            [('{"type":"thinking_delta","thinking":' + json_string(p) + "}", 1)
             for p in plan.reasoning],
            ['{"type":"signature_delta","signature":' + dumps(signature(plan.reasoning_text)) + "}"],
        )
    if plan.text:
        block(
            {"type": "text", "text": ""},
            [('{"type":"text_delta","text":' + json_string(p) + "}", 1) for p in plan.text],
            [],
        )
    for call in plan.calls:
        pieces = ["", *call.argument_pieces]
        block(
            {"type": "tool_use", "id": tool_use_id(call), "name": call.name, "input": {}},
            [('{"type":"input_json_delta","partial_json":' + json_string(p) + "}", 0) for p in pieces],
            [],
        )

    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason(plan), "stop_sequence": None},
        "usage": {"output_tokens": plan.usage.get("output_tokens", plan.output_tokens)},
    }
    tail = _event("message_delta", dumps(delta)) + _event("message_stop", '{"type":"message_stop"}')
    return Rendered(head=head, frames=frames, tail=tail)


def render_body(plan: Plan, *, model: str, prompt: PromptUsage) -> bytes:
    """The `stream: false` answer: one message object."""
    content: list[dict[str, Any]] = []
    if plan.reasoning:
        thinking = plan.reasoning_text
        content.append({"type": "thinking", "thinking": thinking, "signature": signature(thinking)})
    if plan.text:
        content.append({"type": "text", "text": plan.content_text})
    for call in plan.calls:
        try:
            arguments = json.loads(call.arguments)
        except json.JSONDecodeError:
            # Only a streamed answer can carry arguments that are not JSON; keep the text visible.
            arguments = call.arguments
        content.append(
            {"type": "tool_use", "id": tool_use_id(call), "name": call.name, "input": arguments}
        )
    body = {
        "id": f"msg_{os.urandom(12).hex()}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(plan),
        "stop_sequence": None,
        "usage": _usage_json(plan, prompt, plan.usage.get("output_tokens", plan.output_tokens)),
    }
    return dumps(body).encode()
