"""What the fake answers: directives, the conversation's shape, and the wire-neutral plan.

A request is steered by a line `fake: {json}` in its last user message (see `Directive`). The
answer is deterministic: the same request always yields the same text, tool calls and ids, so a
test can assert the exact text it should see. Both wire formats (OpenAI, Anthropic) render the
same `Plan`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fakellm.config import REASONING_FIELDS, ConfigError, FailSpec, FakeConfig

DIRECTIVE_PREFIX = "fake:"
# Pieces a tool call's JSON arguments are cut into are at most this long (and at least 3 pieces
# for anything 3 characters or longer), so adapters must really accumulate deltas.
ARGUMENT_PIECE_MAX = 8


class DirectiveError(ConfigError):
    """The `fake:` line is not valid JSON or has unknown keys (answered with 400)."""


@dataclass(frozen=True, slots=True)
class ToolCallSpec:
    name: str
    # Exact text streamed as the call's arguments (a JSON object unless the test wants otherwise).
    arguments: str


@dataclass(frozen=True, slots=True)
class Directive:
    """Per-request overrides from `fake: {json}`; every key is optional (absent = default).

    tokens: int           deterministic text "tok0 tok1 ..." (one chunk per token, trailing space)
    reply: str            exact text instead, cut into `chunk`-character chunks (default 4)
    reasoning: int | str  reasoning tokens "think0 think1 ..." or exact text, before the content
    reasoning_field: str  OpenAI delta field: "reasoning_content" (vLLM) or "reasoning"
    ttft_ms, gap_ms       timing: first chunk after ttft, then one chunk per gap
    tool_calls: [{"name", "arguments"}]  call these tools (in parallel); arguments as an object,
                          or a string streamed verbatim (to send invalid JSON)
    tool_rounds: int      ask for the tools this many rounds before answering (default 1)
    interleave_tools: bool  interleave the deltas of parallel OpenAI calls
    preamble: str         text streamed before the tool calls
    fail: {"status", "times", "retry_after"}  fail the first `times` attempts (omitted: always)
    drop_after: int       close the connection after this many tokens (no clean end)
    hang: bool            never answer; hang_after: int  go silent after this many tokens
    usage: {name: int}    override usage numbers (each wire's own field names)
    finish_reason / stop_reason: str  override the OpenAI / Anthropic end reason
    """

    # Canonical JSON of the directive, part of the scenario key.
    canonical: str = "{}"
    tokens: int | None = None
    reply: str | None = None
    chunk: int | None = None
    reasoning: int | str | None = None
    reasoning_field: str | None = None
    ttft_ms: float | None = None
    gap_ms: float | None = None
    tool_calls: tuple[ToolCallSpec, ...] = ()
    tool_rounds: int | None = None
    interleave_tools: bool = False
    preamble: str | None = None
    fail: FailSpec | None = None
    drop_after: int | None = None
    hang: bool = False
    hang_after: int | None = None
    usage: Mapping[str, int] | None = None
    finish_reason: str | None = None
    stop_reason: str | None = None


_INT_KEYS = ("tokens", "chunk", "tool_rounds", "drop_after", "hang_after")
_NUMBER_KEYS = ("ttft_ms", "gap_ms")
_STR_KEYS = ("reply", "preamble", "finish_reason", "stop_reason")
_KNOWN_KEYS = frozenset(
    (*_INT_KEYS, *_NUMBER_KEYS, *_STR_KEYS, "reasoning", "reasoning_field", "tool_calls",
     "interleave_tools", "fail", "hang", "usage")
)


def parse_directive(text: str) -> Directive:
    """Find the last `fake: {json}` line in `text`; no such line gives the empty Directive."""
    raw: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(DIRECTIVE_PREFIX):
            raw = stripped[len(DIRECTIVE_PREFIX):].strip()
    if raw is None:
        return Directive()
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise DirectiveError(f"fake directive is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise DirectiveError("fake directive must be a JSON object")
    unknown = set(data) - _KNOWN_KEYS
    if unknown:
        raise DirectiveError(f"fake directive: unknown keys {sorted(unknown)}")
    values: dict[str, Any] = {"canonical": json.dumps(data, sort_keys=True)}
    for key in _INT_KEYS:
        if key in data:
            values[key] = _int(data, key, minimum=1 if key in ("chunk", "tool_rounds") else 0)
    for key in _NUMBER_KEYS:
        if key in data:
            value = data[key]
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise DirectiveError(f"fake directive: {key} must be a non-negative number")
            values[key] = float(value)
    for key in _STR_KEYS:
        if key in data:
            if not isinstance(data[key], str):
                raise DirectiveError(f"fake directive: {key} must be a string")
            values[key] = data[key]
    if "reasoning" in data:
        reasoning = data["reasoning"]
        if isinstance(reasoning, str):
            values["reasoning"] = reasoning
        else:
            values["reasoning"] = _int(data, "reasoning", minimum=0)
    if "reasoning_field" in data:
        if data["reasoning_field"] not in REASONING_FIELDS:
            raise DirectiveError(f"fake directive: reasoning_field must be one of {REASONING_FIELDS}")
        values["reasoning_field"] = data["reasoning_field"]
    if "tool_calls" in data:
        values["tool_calls"] = _tool_calls(data["tool_calls"])
    for key in ("interleave_tools", "hang"):
        if key in data:
            if not isinstance(data[key], bool):
                raise DirectiveError(f"fake directive: {key} must be true or false")
            values[key] = data[key]
    if "fail" in data:
        try:
            values["fail"] = FailSpec.parse(data["fail"])
        except ConfigError as exc:
            raise DirectiveError(f"fake directive: {exc}") from None
    if "usage" in data:
        usage = data["usage"]
        if not isinstance(usage, dict) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in usage.values()
        ):
            raise DirectiveError("fake directive: usage must map field names to integers")
        values["usage"] = usage
    return Directive(**values)


def _int(data: Mapping[str, Any], key: str, *, minimum: int) -> int:
    value = data[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise DirectiveError(f"fake directive: {key} must be an integer >= {minimum}")
    return value


def _tool_calls(raw: Any) -> tuple[ToolCallSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise DirectiveError("fake directive: tool_calls must be a non-empty list")
    calls = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            raise DirectiveError("fake directive: each tool call needs a non-empty string name")
        arguments = item.get("arguments", {})
        # A string is streamed verbatim, so tests can send arguments that are not valid JSON.
        text = arguments if isinstance(arguments, str) else json.dumps(arguments)
        calls.append(ToolCallSpec(name=item["name"], arguments=text))
    return tuple(calls)


# --- The conversation, as far as the fake cares --------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolResult:
    # The tool's name when the call can be found earlier in the conversation, else the call id.
    label: str
    content: str


@dataclass(frozen=True, slots=True)
class Conversation:
    last_user_text: str
    # Groups of tool results (one per model round) since the last user message with text.
    rounds_done: int
    ends_with_tool_results: bool
    tool_results: tuple[ToolResult, ...]


def read_openai(messages: Sequence[Any]) -> Conversation:
    """Read Chat Completions `messages` (role "tool" messages carry results)."""
    last_user = _last_index(messages, lambda m: m.get("role") == "user")
    names: dict[str, str] = {}
    results: list[ToolResult] = []
    rounds = 0
    previous_role = None
    for message in messages[last_user + 1:]:
        role = message.get("role")
        if role == "assistant":
            for call in message.get("tool_calls") or ():
                if isinstance(call, dict):
                    function = call.get("function") or {}
                    names[str(call.get("id"))] = str(function.get("name", ""))
        elif role == "tool":
            if previous_role != "tool":
                rounds += 1
            call_id = str(message.get("tool_call_id", ""))
            label = names.get(call_id) or message.get("name") or call_id
            results.append(ToolResult(label=label, content=_text_of(message.get("content"))))
        previous_role = role
    text = _text_of(messages[last_user].get("content")) if last_user >= 0 else ""
    ends = bool(messages) and _is_dict(messages[-1]) and messages[-1].get("role") == "tool"
    return Conversation(text, rounds, ends, tuple(results))


def read_anthropic(messages: Sequence[Any]) -> Conversation:
    """Read Messages API `messages` (tool_result blocks inside user messages carry results)."""
    last_user = _last_index(
        messages, lambda m: m.get("role") == "user" and _has_text(m.get("content"))
    )
    names: dict[str, str] = {}
    results: list[ToolResult] = []
    rounds = 0
    for message in messages[max(last_user, 0):]:
        blocks = message.get("content")
        if not isinstance(blocks, list):
            continue
        if message.get("role") == "assistant":
            for block in blocks:
                if _is_dict(block) and block.get("type") == "tool_use":
                    names[str(block.get("id"))] = str(block.get("name", ""))
            continue
        found = [b for b in blocks if _is_dict(b) and b.get("type") == "tool_result"]
        if found:
            rounds += 1
        for block in found:
            call_id = str(block.get("tool_use_id", ""))
            label = names.get(call_id) or call_id
            results.append(ToolResult(label=label, content=_text_of(block.get("content"))))
    text = _text_of(messages[last_user].get("content")) if last_user >= 0 else ""
    last = messages[-1] if messages else None
    ends = (
        _is_dict(last)
        and last.get("role") == "user"
        and isinstance(last.get("content"), list)
        and any(_is_dict(b) and b.get("type") == "tool_result" for b in last["content"])
    )
    return Conversation(text, rounds, bool(ends), tuple(results))


def _last_index(messages: Sequence[Any], predicate: Any) -> int:
    for index in range(len(messages) - 1, -1, -1):
        if _is_dict(messages[index]) and predicate(messages[index]):
            return index
    return -1


def _is_dict(value: Any) -> bool:
    return isinstance(value, dict)


def _has_text(content: Any) -> bool:
    if isinstance(content, str):
        return True
    return isinstance(content, list) and any(_is_dict(b) and b.get("type") == "text" for b in content)


def _text_of(content: Any) -> str:
    """Flatten a string or a list of text parts/blocks (images and the like are skipped)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = (p.get("text", "") for p in content if _is_dict(p) and p.get("type") == "text")
        return "\n".join(str(text) for text in texts)
    return json.dumps(content)


# --- The plan both wire formats render ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlannedCall:
    # Unique within a conversation; wires prefix it ("call_", "toolu_").
    id_stem: str
    name: str
    argument_pieces: tuple[str, ...]

    @property
    def arguments(self) -> str:
        return "".join(self.argument_pieces)


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything the answer contains and how it is paced; contains no wire syntax."""

    reasoning: tuple[str, ...]
    text: tuple[str, ...]
    calls: tuple[PlannedCall, ...]
    interleave_calls: bool
    # True when `max_tokens` cut the answer short (finish "length" / stop "max_tokens").
    truncated: bool
    ttft_s: float
    gap_s: float
    reasoning_field: str
    drop_after: int | None
    hang: bool
    hang_after: int | None
    usage: Mapping[str, int]
    finish_reason: str | None
    stop_reason: str | None

    @property
    def output_tokens(self) -> int:
        """Tokens the usage reports: one per reasoning/text chunk and per tool-call delta."""
        call_pieces = sum(len(call.argument_pieces) + 1 for call in self.calls)
        return len(self.reasoning) + len(self.text) + call_pieces

    @property
    def reasoning_text(self) -> str:
        return "".join(self.reasoning)

    @property
    def content_text(self) -> str:
        return "".join(self.text)


def scenario_key(*, model: str, directive: Directive, last_user_text: str) -> str:
    """Identify "this request" across retries: same model, directive and last user text."""
    material = json.dumps([model, directive.canonical, last_user_text])
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def deterministic_tokens(count: int, word: str = "tok") -> tuple[str, ...]:
    """`count` chunks "tok0 ", "tok1 ", ...: joined they are the exact text a test expects."""
    return tuple(f"{word}{i} " for i in range(count))


def quote_tool_results(results: Sequence[ToolResult]) -> str:
    """The answer after tool results: "Tool results: <label>=<content>; <label>=<content>;"."""
    return "Tool results: " + " ".join(f"{r.label}={r.content};" for r in results)


def split_text(text: str, size: int) -> tuple[str, ...]:
    return tuple(text[i:i + size] for i in range(0, len(text), size))


def split_arguments(text: str) -> tuple[str, ...]:
    size = max(1, min(ARGUMENT_PIECE_MAX, math.ceil(len(text) / 3)))
    return split_text(text, size) or ("",)


def build_plan(
    *,
    directive: Directive,
    conversation: Conversation,
    config: FakeConfig,
    key: str,
    max_tokens: int | None,
) -> Plan:
    """Decide the answer for one request.

    Order of precedence: after tool results (and once `tool_rounds` rounds are done) the text
    quotes the results; else, with `tool_calls`, the model calls the tools (after `preamble`
    text if given); else it streams `reply` or `tokens` deterministic tokens. Reasoning comes
    first in every round. `max_tokens` cuts reasoning+text and then drops the tool calls.
    """
    chunk = directive.chunk or config.chunk
    if isinstance(directive.reasoning, str):
        reasoning = split_text(directive.reasoning, chunk)
    else:
        count = config.reasoning if directive.reasoning is None else directive.reasoning
        reasoning = deterministic_tokens(count, "think")

    rounds_wanted = directive.tool_rounds or (1 if directive.tool_calls else 0)
    calls: tuple[PlannedCall, ...] = ()
    if conversation.ends_with_tool_results and conversation.rounds_done >= rounds_wanted:
        text = split_text(quote_tool_results(conversation.tool_results), chunk)
    elif directive.tool_calls and conversation.rounds_done < rounds_wanted:
        text = split_text(directive.preamble or "", chunk)
        round_no = conversation.rounds_done
        calls = tuple(
            PlannedCall(
                id_stem=f"{key}_{round_no}_{index}",
                name=spec.name,
                argument_pieces=split_arguments(spec.arguments),
            )
            for index, spec in enumerate(directive.tool_calls)
        )
    elif directive.reply is not None:
        text = split_text(directive.reply, chunk)
    else:
        text = deterministic_tokens(config.tokens if directive.tokens is None else directive.tokens)

    truncated = False
    if max_tokens is not None and len(reasoning) + len(text) > max_tokens:
        truncated = True
        reasoning = reasoning[:max_tokens]
        text = text[: max(0, max_tokens - len(reasoning))]
        calls = ()

    ttft_ms = config.ttft_ms if directive.ttft_ms is None else directive.ttft_ms
    gap_ms = config.gap_ms if directive.gap_ms is None else directive.gap_ms
    return Plan(
        reasoning=reasoning,
        text=text,
        calls=calls,
        interleave_calls=directive.interleave_tools,
        truncated=truncated,
        ttft_s=ttft_ms / 1000,
        gap_s=gap_ms / 1000,
        reasoning_field=directive.reasoning_field or config.reasoning_field,
        drop_after=directive.drop_after,
        hang=directive.hang,
        hang_after=directive.hang_after,
        usage=directive.usage or {},
        finish_reason=directive.finish_reason,
        stop_reason=directive.stop_reason,
    )
