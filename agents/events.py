"""The typed event stream that runs from a provider to the browser.

Providers yield `ProviderEvent`s and nothing else; the agent loop turns them into `TurnEvent`s
(adding tool-call progress, queueing, model selection and the end of the turn). Persistence and
both transports (WebSocket, /v1 API) consume the same values. Values are pure: no Django here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]


# --- What goes upstream -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A whole tool call as the model asked for it (deltas already accumulated by the adapter)."""

    id: str
    name: str
    # Parsed JSON object ({} when the model's text was not one).
    arguments: dict[str, Any]
    # The exact text the model sent: when it is not a JSON object, the loop answers the call
    # with an error the model can act on instead of running the tool (agents.loop).
    arguments_raw: str = ""


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str = ""
    # Reasoning the assistant produced before `content` (gpt-oss reasoning_content, Anthropic
    # thinking). Sent back upstream only where the provider expects it.
    reasoning: str = ""
    # Anthropic requires the signature of a thinking block to send it back; other providers ignore it.
    reasoning_signature: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    # For role == "tool": which call this is the result of, and whether it failed.
    tool_call_id: str = ""
    is_error: bool = False


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    description: str
    input_schema: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RequestOptions:
    """What a turn's caller sets on every model request of the turn (the /v1 API passes its
    client's values; the chat page sets none). `tool_choice` applies to the first round only:
    after the server has run tools, "required" would make the model call tools until the
    round limit."""

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    # OpenAI's forms, as a client of the /v1 API sent them ({"type": "json_object"} or
    # {"type": "json_schema", ...}; "auto", "none", "required" or {"type": "function", ...}).
    response_format: dict[str, Any] | None = None
    tool_choice: str | dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str
    messages: tuple[ChatMessage, ...]
    system: str = ""
    tools: tuple[ToolSpec, ...] = ()
    options: RequestOptions = RequestOptions()
    # False: nobody watches this answer arrive (a title), so a provider may ask for it in one
    # JSON response (one read instead of one per token); it yields the same events either way.
    stream: bool = True


# --- What a provider yields ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str
    type: Literal["text"] = "text"


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    text: str
    # Anthropic signs thinking blocks; the signature arrives once, at the end of the block.
    signature: str = ""
    type: Literal["reasoning"] = "reasoning"


@dataclass(frozen=True, slots=True)
class ToolCallRequested:
    call: ToolCall
    type: Literal["tool_call"] = "tool_call"


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    # Input tokens served from the provider's prompt cache (a subset of input_tokens).
    cached_tokens: int = 0
    type: Literal["usage"] = "usage"


FinishReason = Literal["stop", "tool_calls", "length", "content_filter", "other"]


@dataclass(frozen=True, slots=True)
class Finished:
    reason: FinishReason
    type: Literal["finished"] = "finished"


ProviderEvent = TextDelta | ReasoningDelta | ToolCallRequested | Usage | Finished


# --- Errors -------------------------------------------------------------------------------------

ErrorKind = Literal[
    "rate_limited",  # 429 / 529: retry later
    "server_error",  # 5xx
    "connection",  # could not connect, connection dropped
    "timeout",  # first-token, gap or total timeout
    "auth",  # 401 / 403
    "not_found",  # 404: unknown model or wrong URL
    "bad_request",  # 400 / 422
    "protocol",  # the server answered something we cannot parse
]


class ProviderError(Exception):
    """Raised by a provider's `stream()`; `message` is safe to show to a user (no secrets)."""

    def __init__(
        self,
        message: str,
        *,
        kind: ErrorKind,
        status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after


# --- What agents.resilience adds (retries, fallbacks, queueing) --------------------------------


@dataclass(frozen=True, slots=True)
class ModelSelected:
    """A model started answering (emitted once per successful attempt, before its first event).

    After a fallback this names the fallback: the model that actually wrote the answer."""

    provider: str
    model: str
    type: Literal["model_selected"] = "model_selected"


@dataclass(frozen=True, slots=True)
class Waiting:
    """The turn is queued behind the provider's concurrency limit (`max_concurrency`)."""

    provider: str
    # 1 = next in line, counted when the turn joined the queue.
    position: int
    reason: Literal["concurrency_limit"] = "concurrency_limit"
    type: Literal["waiting"] = "waiting"


@dataclass(frozen=True, slots=True)
class Retrying:
    """The previous attempt failed before the first token; another starts after `delay` s.

    `attempt` is the 1-based number of the attempt about to start on `model` (so the first
    retry of a model is attempt 2); `fallback` is True when it moves to the next configured
    model, whose first attempt is attempt 1. `message` is the failed attempt's user-safe text.
    """

    attempt: int
    delay: float
    message: str
    provider: str
    model: str
    fallback: bool = False
    type: Literal["retrying"] = "retrying"


# What `agents.resilience.stream_with_retries` yields.
StreamEvent = ProviderEvent | ModelSelected | Waiting | Retrying


# --- What the agent loop adds -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolCallStarted:
    call: ToolCall
    round: int
    # Where in the answer's text the call happened, so history can be rebuilt in order.
    text_offset: int
    server: str = ""
    # The definition the model was offered (agents.mcp.config.ToolDefinition.definition_hash).
    definition_hash: str = ""
    type: Literal["tool_call_started"] = "tool_call_started"


@dataclass(frozen=True, slots=True)
class ToolCallFinished:
    call_id: str
    result: str
    is_error: bool
    duration_ms: int
    # Not run: no one approved it (agents.tools.ToolResult).
    denied: bool = False
    # `result` was cut from `original_chars` characters.
    truncated: bool = False
    original_chars: int = 0
    type: Literal["tool_call_finished"] = "tool_call_finished"


@dataclass(frozen=True, slots=True)
class ClientToolCalls:
    """The model called tools that the turn's caller brought (the /v1 API's `tools`): nobody
    here can run them, so the turn ends and hands them back. Server tools the model called in
    the same round are not run (ToolCallStarted and ToolCallFinished say so)."""

    calls: tuple[ToolCall, ...]
    round: int
    text_offset: int
    type: Literal["client_tool_calls"] = "client_tool_calls"


# What agents.loop.run_turn yields: one typed union, everything a turn's consumer sees (the
# provider's tool-call requests are folded into the tool-call events; its Finished comes once,
# for the last round: why the answer ended).
LoopEvent = (TextDelta | ReasoningDelta | Usage | ModelSelected | Waiting | Retrying
             | ToolCallStarted | ToolCallFinished | ClientToolCalls | Finished)
