"""A /v1/chat/completions body, checked: every limit of the rest of the app (message size,
history length, output tokens) answered with a 400 that names the field, before anything is
stored or sent upstream.

Fields we do not use (user, logprobs, frequency_penalty, metadata, ...) are ignored, as most
OpenAI-compatible servers do: clients send them by default. Fields that would change the answer
in a way we cannot honour (n > 1, non-text content) are refused.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from agents.events import ChatMessage, RequestOptions, ToolCall, ToolSpec
from conversations.actions import unstorable
from conversations.api.errors import ApiError

ROLES = ("system", "developer", "user", "assistant", "tool")
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_TOOLS = 128
MAX_STOP = 4


@dataclass(frozen=True, slots=True)
class InputMessage:
    """One message of the request, its content reduced to text."""

    role: str  # one of ROLES ("developer" is OpenAI's newer name for "system")
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str = ""


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    model: str
    messages: tuple[InputMessage, ...]
    stream: bool
    include_usage: bool
    options: RequestOptions
    tools: tuple[ToolSpec, ...]

    @property
    def system_text(self) -> str:
        return "\n\n".join(m.content for m in self.messages
                           if m.role in ("system", "developer") and m.content.strip())

    def history(self) -> tuple[ChatMessage, ...]:
        """The conversation for the model; system messages go with the system prompt."""
        out = []
        for m in self.messages:
            if m.role in ("system", "developer"):
                continue
            out.append(ChatMessage(role=m.role, content=m.content, tool_calls=m.tool_calls,
                                   tool_call_id=m.tool_call_id))
        return tuple(out)


def _bad(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


def parse_body(raw: bytes, *, content_type: str) -> CompletionRequest:
    if content_type != "application/json":
        raise ApiError(415, "Send the request as JSON (Content-Type: application/json).")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad(f"The body is not valid JSON: {exc}.") from None
    if not isinstance(data, dict):
        raise _bad("The body must be a JSON object.")
    if b"\\u0000" in raw:
        # PostgreSQL cannot store it, in text or in JSON; refused rather than half stored.
        raise _bad("The request contains a NUL character (\\u0000), which cannot be stored.")
    return check_completion(data)


def check_completion(data: dict[str, Any]) -> CompletionRequest:
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("\"model\" is required: one of the ids GET /v1/models lists.", "model")
    if data.get("n") not in (None, 1):
        raise _bad("Only n=1 is supported.", "n")
    stream = _optional(data, "stream", bool) or False
    stream_options = _optional(data, "stream_options", dict) or {}
    include_usage = stream_options.get("include_usage", False)
    if not isinstance(include_usage, bool):
        raise _bad("stream_options.include_usage must be true or false.", "stream_options")
    tools = _tools(data.get("tools"))
    return CompletionRequest(
        model=model, messages=_messages(data.get("messages")), stream=stream,
        include_usage=include_usage, tools=tools,
        options=RequestOptions(
            temperature=_number(data, "temperature", 0, 2),
            top_p=_number(data, "top_p", 0, 1),
            max_tokens=_max_tokens(data),
            stop=_stop(data.get("stop")),
            seed=_integer(data, "seed"),
            response_format=_response_format(data.get("response_format")),
            tool_choice=_tool_choice(data.get("tool_choice"), tools),
        ),
    )


def _optional(data: dict, name: str, kind: type) -> Any:
    value = data.get(name)
    if value is not None and not isinstance(value, kind):
        raise _bad(f"\"{name}\" has the wrong type.", name)
    return value


def _number(data: dict, name: str, low: float, high: float) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or not low <= value <= high:
        raise _bad(f"\"{name}\" must be a number from {low} to {high}.", name)
    return float(value)


def _integer(data: dict, name: str) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise _bad(f"\"{name}\" must be an integer.", name)
    return value


def _max_tokens(data: dict) -> int | None:
    limit = settings.MAX_OUTPUT_TOKENS
    values = [(name, data.get(name)) for name in ("max_completion_tokens", "max_tokens")
              if data.get(name) is not None]
    for name, value in values:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise _bad(f"\"{name}\" must be a positive integer.", name)
        if value > limit:
            raise _bad(f"\"{name}\" is {value}; this server allows at most {limit}.", name)
    # max_completion_tokens is the newer name; a client that sends both means it.
    return values[0][1] if values else None


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if (not isinstance(value, list) or len(value) > MAX_STOP
            or not all(isinstance(s, str) and s for s in value)):
        raise _bad(f"\"stop\" must be a string or a list of at most {MAX_STOP} strings.", "stop")
    return tuple(value)


def _response_format(value: Any) -> dict | None:
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        schema = value.get("json_schema")
        if not (isinstance(schema, dict) and isinstance(schema.get("name"), str)
                and isinstance(schema.get("schema", {}), dict)):
            raise _bad("response_format.json_schema needs a name and a schema object.",
                       "response_format")
        return {"type": "json_schema", "json_schema": schema}
    raise _bad("response_format.type must be text, json_object or json_schema.",
               "response_format")


def _tools(value: Any) -> tuple[ToolSpec, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_TOOLS:
        raise _bad(f"\"tools\" must be a list of at most {MAX_TOOLS} tools.", "tools")
    specs: list[ToolSpec] = []
    for i, tool in enumerate(value):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(
                function, dict):
            raise _bad(f"tools[{i}] must be {{\"type\": \"function\", \"function\": {{...}}}}.",
                       "tools")
        name = function.get("name")
        if not isinstance(name, str) or not TOOL_NAME.match(name):
            raise _bad(f"tools[{i}].function.name must be 1-64 letters, digits, _ or -.",
                       "tools")
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        description = function.get("description") or ""
        if not isinstance(parameters, dict) or not isinstance(description, str):
            raise _bad(f"tools[{i}]: parameters must be an object, description a string.",
                       "tools")
        if any(s.name == name for s in specs):
            raise _bad(f"Two tools are named {name!r}.", "tools")
        specs.append(ToolSpec(name=name, description=description, input_schema=parameters))
    return tuple(specs)


def _tool_choice(value: Any, tools: tuple[ToolSpec, ...]) -> str | dict | None:
    if value is None:
        return None
    if value in ("none", "auto", "required"):
        return value
    name = ((value.get("function") or {}).get("name")
            if isinstance(value, dict) and value.get("type") == "function" else None)
    if not isinstance(name, str):
        raise _bad("tool_choice must be none, auto, required or "
                   "{\"type\": \"function\", \"function\": {\"name\": ...}}.", "tool_choice")
    if not any(t.name == name for t in tools):
        raise _bad(f"tool_choice names {name!r}, which is not in \"tools\".", "tool_choice")
    return {"type": "function", "function": {"name": name}}


def _messages(value: Any) -> tuple[InputMessage, ...]:
    if not isinstance(value, list) or not value:
        raise _bad("\"messages\" must be a non-empty list.", "messages")
    if len(value) > settings.API_MAX_MESSAGES:
        raise _bad(f"\"messages\" has {len(value)} messages; at most "
                   f"{settings.API_MAX_MESSAGES} are accepted.", "messages")
    messages: list[InputMessage] = []
    open_calls: set[str] = set()
    total = 0
    for i, item in enumerate(value):
        message = _message(item, i, open_calls)
        total += len(message.content)
        messages.append(message)
    if total > settings.API_MAX_INPUT_CHARS:
        raise _bad(f"The messages have {total} characters; at most "
                   f"{settings.API_MAX_INPUT_CHARS} are accepted.", "messages")
    if messages[-1].role not in ("user", "tool"):
        raise _bad("The last message must be from the user or a tool result.", "messages")
    if not any(m.role == "user" for m in messages):
        raise _bad("The messages need at least one user message.", "messages")
    return tuple(messages)


def _message(item: Any, i: int, open_calls: set[str]) -> InputMessage:
    where = f"messages[{i}]"
    if not isinstance(item, dict) or item.get("role") not in ROLES:
        raise _bad(f"{where} must be an object with a role ({', '.join(ROLES)}).", "messages")
    role = item["role"]
    content = _content(item.get("content"), where=where,
                       optional=role == "assistant" and bool(item.get("tool_calls")))
    if role == "tool":
        call_id = item.get("tool_call_id")
        if not isinstance(call_id, str) or call_id not in open_calls:
            raise _bad(f"{where}: tool_call_id must name a tool call of an earlier assistant "
                       "message.", "messages")
        open_calls.discard(call_id)
        return InputMessage(role="tool", content=content, tool_call_id=call_id)
    calls: tuple[ToolCall, ...] = ()
    if role == "assistant" and item.get("tool_calls") is not None:
        calls = _assistant_calls(item["tool_calls"], where=where)
        open_calls.update(c.id for c in calls)
    return InputMessage(role=role, content=content, tool_calls=calls)


def _content(value: Any, *, where: str, optional: bool) -> str:
    if value is None and optional:
        return ""
    if isinstance(value, list):
        texts = []
        for part in value:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(
                    part.get("text"), str):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise _bad(f"{where}: only text content parts are supported (got {kind!r}).",
                           "messages")
            texts.append(part["text"])
        value = "\n\n".join(texts)
    if not isinstance(value, str):
        raise _bad(f"{where}: content must be a string or a list of text parts.", "messages")
    if len(value) > settings.MAX_MESSAGE_CHARS:
        raise _bad(f"{where} is too long ({len(value)} characters; at most "
                   f"{settings.MAX_MESSAGE_CHARS}).", "messages")
    if problem := unstorable(value):
        raise _bad(f"{where} contains {problem}.", "messages")
    return value


def _assistant_calls(value: Any, *, where: str) -> tuple[ToolCall, ...]:
    if not isinstance(value, list) or len(value) > MAX_TOOLS:
        raise _bad(f"{where}.tool_calls must be a list.", "messages")
    calls = []
    for call in value:
        function = call.get("function") if isinstance(call, dict) else None
        if not (isinstance(function, dict) and isinstance(call.get("id"), str)
                and call["id"] and isinstance(function.get("name"), str)
                and isinstance(function.get("arguments", ""), str)):
            raise _bad(f"{where}.tool_calls: each needs an id and a function with a name and "
                       "arguments (a JSON string).", "messages")
        raw = function.get("arguments") or ""
        try:
            arguments = json.loads(raw) if raw.strip() else {}
        except ValueError:
            arguments = {}
        calls.append(ToolCall(id=call["id"], name=function["name"],
                              arguments=arguments if isinstance(arguments, dict) else {},
                              arguments_raw=raw))
    return tuple(calls)
