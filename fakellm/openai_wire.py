"""OpenAI Chat Completions wire format, as vLLM serving gpt-oss writes it.

Streams are `data: {chat.completion.chunk}\\n\\n` events ending with `data: [DONE]`. The first
content event also carries the `{"role": "assistant", "content": ""}` chunk vLLM sends first;
the finish chunk (empty delta, `finish_reason`, vLLM's `stop_reason: null`), the optional usage
chunk (`choices: []`) and [DONE] go out together at the end. JSON is compact, like vLLM's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from fakellm.jsonfmt import dumps, json_string
from fakellm.scenario import Plan, PlannedCall
from fakellm.streaming import Frame

_ERROR_KINDS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    408: ("timeout", None),
    413: ("invalid_request_error", "request_too_large"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    502: ("server_error", None),
    503: ("server_error", "service_unavailable"),
    504: ("timeout", None),
    529: ("server_error", "overloaded"),
}


def error_body(status: int, message: str) -> dict[str, Any]:
    kind, code = _ERROR_KINDS.get(status, ("server_error", None))
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def finish_reason(plan: Plan) -> str:
    if plan.finish_reason:
        return plan.finish_reason
    if plan.truncated:
        return "length"
    return "tool_calls" if plan.calls else "stop"


def call_id(call: PlannedCall) -> str:
    return f"call_{call.id_stem}"


def usage(plan: Plan, prompt_tokens: int) -> dict[str, Any]:
    """OpenAI usage; `usage` directive keys (same names) override the computed numbers."""
    o: Mapping[str, int] = plan.usage
    prompt = o.get("prompt_tokens", prompt_tokens)
    completion = o.get("completion_tokens", plan.output_tokens)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": o.get("total_tokens", prompt + completion),
        "completion_tokens_details": {
            "reasoning_tokens": o.get("reasoning_tokens", len(plan.reasoning))
        },
        "prompt_tokens_details": {"cached_tokens": o.get("cached_tokens", 0)},
    }


@dataclass(frozen=True, slots=True)
class Rendered:
    frames: list[Frame]
    tail: bytes


def render_stream(plan: Plan, *, model: str, include_usage: bool, prompt_tokens: int) -> Rendered:
    """Every byte of the stream, formatted up front; frame i is written at ttft + i*gap."""
    created = int(time.time())
    head = (
        f'data: {{"id":"chatcmpl-{os.urandom(12).hex()}","object":"chat.completion.chunk",'
        f'"created":{created},"model":{dumps(model)},"choices":'
    ).encode()
    # With include_usage, OpenAI puts "usage": null on every chunk but the last.
    end = (b',"usage":null}' if include_usage else b"}") + b"\n\n"
    open_choice = head + b'[{"index":0,"delta":'
    close_choice = b',"logprobs":null,"finish_reason":null}]' + end

    def chunk(delta: str) -> bytes:
        return open_choice + delta.encode() + close_choice

    reasoning_open = f'{{"{plan.reasoning_field}":'
    frames = [Frame(chunk(reasoning_open + json_string(piece) + "}"), 1) for piece in plan.reasoning]
    frames += [Frame(chunk('{"content":' + json_string(piece) + "}"), 1) for piece in plan.text]
    frames += [Frame(chunk(delta), 0) for delta in _call_deltas(plan)]

    role = chunk('{"role":"assistant","content":""}')
    reason = dumps(finish_reason(plan))
    finish = (
        open_choice
        + f'{{}},"logprobs":null,"finish_reason":{reason},"stop_reason":null}}]'.encode()
        + end
    )
    tail = finish
    if include_usage:
        tail += head + b"[]," + f'"usage":{dumps(usage(plan, prompt_tokens))}}}\n\n'.encode()
    tail += b"data: [DONE]\n\n"
    if frames:
        frames[0] = Frame(role + frames[0].data, frames[0].tokens)
    else:
        tail = role + tail
    return Rendered(frames=frames, tail=tail)


def _call_deltas(plan: Plan) -> Iterator[str]:
    sequences = [list(_one_call_deltas(index, call)) for index, call in enumerate(plan.calls)]
    if not plan.interleave_calls:
        for sequence in sequences:
            yield from sequence
        return
    # Round-robin, as some servers stream parallel calls: the index is what tells them apart.
    for step in range(max((len(s) for s in sequences), default=0)):
        for sequence in sequences:
            if step < len(sequence):
                yield sequence[step]


def _one_call_deltas(index: int, call: PlannedCall) -> Iterator[str]:
    yield (
        f'{{"tool_calls":[{{"index":{index},"id":{dumps(call_id(call))},"type":"function",'
        f'"function":{{"name":{dumps(call.name)},"arguments":""}}}}]}}'
    )
    for piece in call.argument_pieces:
        yield f'{{"tool_calls":[{{"index":{index},"function":{{"arguments":{json_string(piece)}}}}}]}}'


def render_body(plan: Plan, *, model: str, prompt_tokens: int) -> bytes:
    """The `stream: false` answer: one chat.completion object."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": plan.content_text if plan.text or not plan.calls else None,
        plan.reasoning_field: plan.reasoning_text or None,
        "tool_calls": [
            {
                "id": call_id(c),
                "type": "function",
                "function": {"name": c.name, "arguments": c.arguments},
            }
            for c in plan.calls
        ],
    }
    body = {
        "id": f"chatcmpl-{os.urandom(12).hex()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(plan),
                "stop_reason": None,
            }
        ],
        "usage": usage(plan, prompt_tokens),
    }
    return dumps(body).encode()


def prompt_tokens(body: Mapping[str, Any]) -> int:
    """A deterministic stand-in for tokenization: about four characters a token."""
    size = len(dumps(body.get("messages"))) + len(dumps(body.get("tools") or []))
    return max(1, size // 4)
