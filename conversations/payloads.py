"""The shapes that leave the process: a message, a tool call, a conversation and a turn event.

Each has one typed value (a frozen dataclass) and one serializer to its JSON form (a TypedDict).
A value is built either from stored rows (`*_from_row`) or, for a turn in progress, by the turn
runner from its live state; both go through the same serializer, so the socket's state, the
live snapshot and (later) the API cannot drift apart. No other module builds these dicts.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Literal, TypedDict

from agents.definitions import resolve_agent
from conversations.models import Conversation, Message, ToolCall

# --- Usage -------------------------------------------------------------------------------------


class UsagePayload(TypedDict):
    input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cached_tokens: int
    # A decimal number as text (COST_CURRENCY): floats would round a sum of small costs.
    cost: str


@dataclass(frozen=True, slots=True)
class UsageView:
    input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cached_tokens: int = 0
    # Set when the turn ends (conversations.runner), from the answering model's prices.
    cost: Decimal = Decimal(0)

    def plus(self, *, input_tokens: int, output_tokens: int, reasoning_tokens: int,
             cached_tokens: int) -> UsageView:
        return replace(self, input_tokens=self.input_tokens + input_tokens,
                       output_tokens=self.output_tokens + output_tokens,
                       reasoning_tokens=self.reasoning_tokens + reasoning_tokens,
                       cached_tokens=self.cached_tokens + cached_tokens)


def usage_payload(usage: UsageView) -> UsagePayload:
    return {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
            "reasoning_tokens": usage.reasoning_tokens, "cached_tokens": usage.cached_tokens,
            "cost": str(usage.cost.normalize()) if usage.cost else "0"}


# --- Tool calls --------------------------------------------------------------------------------

ToolCallStatus = Literal["pending", "awaiting_approval", "running", "complete", "failed",
                         "denied", "cancelled", "client"]


class ToolCallPayload(TypedDict):
    id: str
    name: str
    server: str
    arguments: dict
    round: int
    text_offset: int
    status: str
    result: str
    is_error: bool
    duration_ms: int | None
    approval: str
    truncated: bool


@dataclass(frozen=True, slots=True)
class ToolCallView:
    id: str
    name: str
    server: str
    arguments: dict
    round: int
    text_offset: int
    status: ToolCallStatus = "running"
    result: str = ""
    is_error: bool = False
    duration_ms: int | None = None
    # How it was allowed to run: "" (not yet, or no approval needed), policy, approved, denied,
    # timed_out (ToolCall.Approval).
    approval: str = ""
    # The result was cut before it reached the model.
    truncated: bool = False


def tool_call_from_row(call: ToolCall) -> ToolCallView:
    duration = None
    if call.started_at and call.finished_at:
        duration = int((call.finished_at - call.started_at).total_seconds() * 1000)
    return ToolCallView(
        id=call.call_id, name=call.tool_name, server=call.server, arguments=call.arguments,
        round=call.round, text_offset=call.text_offset, status=call.status, result=call.result,
        is_error=call.is_error, duration_ms=duration, approval=call.approval,
        truncated=call.result_truncated,
    )


def tool_call_payload(call: ToolCallView) -> ToolCallPayload:
    return {
        "id": call.id, "name": call.name, "server": call.server, "arguments": call.arguments,
        "round": call.round, "text_offset": call.text_offset, "status": call.status,
        "result": call.result, "is_error": call.is_error, "duration_ms": call.duration_ms,
        "approval": call.approval, "truncated": call.truncated,
    }


# --- Messages ----------------------------------------------------------------------------------


class MessagePayload(TypedDict):
    id: int
    role: str
    parent: int | None
    status: str
    model: str
    content: str
    reasoning: str
    reasoning_ms: int | None
    error: str
    client_key: str | None
    created_at: str | None
    finished_at: str | None
    usage: UsagePayload
    tool_calls: list[ToolCallPayload]
    seq: int


@dataclass(frozen=True, slots=True)
class MessageView:
    """What a client sees of a message: no secrets, no internals beyond the audit's own view."""

    id: int
    role: str
    parent: int | None
    status: str
    content: str = ""
    reasoning: str = ""
    reasoning_ms: int | None = None
    model: str = ""
    error: str = ""
    client_key: str | None = None
    created_at: datetime | None = None
    finished_at: datetime | None = None
    usage: UsageView = UsageView()
    tool_calls: tuple[ToolCallView, ...] = ()
    # Number of the last turn event included in this view (joining a turn mid-way).
    seq: int = 0


def message_from_row(message: Message, *, tool_calls: list[ToolCall] | None = None) -> MessageView:
    """Pass `tool_calls` when they are known (a message just made has none) to save a query;
    otherwise the message's own (best prefetched) calls are read."""
    calls = message.tool_calls.all() if tool_calls is None else tool_calls
    return MessageView(
        id=message.pk, role=message.role, parent=message.parent_id, status=message.status,
        content=message.content, reasoning=message.reasoning, reasoning_ms=message.reasoning_ms,
        model=message.model, error=message.error, client_key=message.client_key,
        created_at=message.created_at, finished_at=message.finished_at,
        usage=UsageView(message.input_tokens, message.output_tokens, message.reasoning_tokens,
                        message.cached_tokens, message.cost),
        tool_calls=tuple(tool_call_from_row(c) for c in calls), seq=message.last_seq,
    )


def message_payload(message: MessageView) -> MessagePayload:
    return {
        "id": message.id,
        "role": message.role,
        "parent": message.parent,
        "status": message.status,
        "model": message.model,
        "content": message.content,
        "reasoning": message.reasoning,
        "reasoning_ms": message.reasoning_ms,
        "error": message.error,
        "client_key": message.client_key,
        "created_at": message.created_at.isoformat() if message.created_at else None,
        "finished_at": message.finished_at.isoformat() if message.finished_at else None,
        "usage": usage_payload(message.usage),
        "tool_calls": [tool_call_payload(c) for c in message.tool_calls],
        "seq": message.seq,
    }


# --- Conversations -----------------------------------------------------------------------------


class ConversationPayload(TypedDict):
    id: str
    title: str
    agent: int | None
    updated_at: str
    # Tokens the agent's main model can hold: the chat page's context meter measures the
    # last answer's input and output against it.
    context_window: int


def conversation_payload(conversation: Conversation) -> ConversationPayload:
    """Synchronous: the window comes from the resolved agent (agents.definitions caches it,
    and a send or a turn has just resolved the same one, so this rarely costs a query)."""
    return {
        "id": str(conversation.pk),
        "title": conversation.title,
        "agent": conversation.agent_id,
        "updated_at": conversation.updated_at.isoformat(),
        "context_window": resolve_agent(conversation.agent_id).model_info("").context_window,
    }


# --- Turn events -------------------------------------------------------------------------------
# What a running turn tells its sinks, in order. The agent loop's events (agents.events) are
# about models and tools; these are about one stored answer: what a watcher must apply to the
# message it shows to stay equal to what is (or will be) stored.


@dataclass(frozen=True, slots=True)
class TurnStarted:
    message: MessageView
    kind: Literal["started"] = "started"


@dataclass(frozen=True, slots=True)
class TextAdded:
    text: str
    kind: Literal["text"] = "text"


@dataclass(frozen=True, slots=True)
class ReasoningAdded:
    text: str
    kind: Literal["reasoning"] = "reasoning"


@dataclass(frozen=True, slots=True)
class ToolCallChanged:
    call: ToolCallView
    # started: the model asked for it; updated: waiting for or given a decision; finished.
    kind: Literal["tool_call_started", "tool_call_updated", "tool_call_finished"]


@dataclass(frozen=True, slots=True)
class ModelChosen:
    model: str
    kind: Literal["model"] = "model"


@dataclass(frozen=True, slots=True)
class StatusChanged:
    status: Literal["waiting", "retrying"]
    detail: str
    kind: Literal["status"] = "status"


@dataclass(frozen=True, slots=True)
class TurnFinished:
    message: MessageView
    kind: Literal["finished"] = "finished"


TurnEvent = (TurnStarted | TextAdded | ReasoningAdded | ToolCallChanged | ModelChosen
             | StatusChanged | TurnFinished)


@dataclass(frozen=True, slots=True)
class Envelope:
    """One numbered event of one turn: what every sink receives."""

    conversation_id: str
    message_id: int
    seq: int
    event: TurnEvent


def turn_event_payload(event: TurnEvent) -> dict:
    """The event's JSON form: {"kind": ..., ...}; the kinds and keys are the chat page's."""
    match event:
        case TextAdded(text=text) | ReasoningAdded(text=text):
            return {"kind": event.kind, "text": text}
        case TurnStarted(message=message) | TurnFinished(message=message):
            return {"kind": event.kind, "message": message_payload(message)}
        case ToolCallChanged(call=call):
            return {"kind": event.kind, "call": tool_call_payload(call)}
        case ModelChosen(model=model):
            return {"kind": "model", "model": model}
        case StatusChanged(status=status, detail=detail):
            return {"kind": "status", "status": status, "detail": detail}
    raise TypeError(f"not a turn event: {event!r}")
