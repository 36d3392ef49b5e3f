"""Stored messages → the history the model sees (agents.events.ChatMessage values)."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import groupby

from agents.events import ChatMessage, ToolCall
from conversations.models import Message
from conversations.models import ToolCall as ToolCallRow


def upstream_history(
    messages: list[Message], *, tool_calls: dict[int, list[ToolCallRow]] | None = None
) -> list[ChatMessage]:
    """The branch as the model expects it: user and assistant turns, an assistant turn split at
    its tool calls into text, calls, results, more text. Earlier reasoning is not sent back: no
    provider needs it for finished turns, and it would cost tokens.

    `tool_calls`: the assistant messages' calls by message id (selectors.tool_calls_by_message);
    when None, each message's own (prefetched) `tool_calls`."""
    history: list[ChatMessage] = []
    for message in messages:
        if message.role == Message.Role.USER:
            history.append(ChatMessage(role="user", content=message.content))
        elif message.role == Message.Role.ASSISTANT:
            calls = (message.tool_calls.all() if tool_calls is None
                     else tool_calls.get(message.pk, ()))
            history.extend(_assistant_turn(message, calls))
    return history


def _assistant_turn(message: Message, calls: Iterable[ToolCallRow]) -> list[ChatMessage]:
    out: list[ChatMessage] = []
    calls = sorted(calls, key=lambda c: (c.round, c.id))
    position = 0
    for _round, group in groupby(calls, key=lambda c: c.round):
        group = list(group)
        offset = max(position, group[0].text_offset)
        out.append(
            ChatMessage(
                role="assistant",
                content=message.content[position:offset],
                tool_calls=tuple(
                    ToolCall(id=c.call_id, name=c.tool_name, arguments=c.arguments) for c in group
                ),
            )
        )
        for c in group:
            finished = c.finished_at is not None
            out.append(
                ChatMessage(
                    role="tool",
                    tool_call_id=c.call_id,
                    content=c.result if finished else "The tool call did not finish.",
                    is_error=c.is_error or not finished,
                )
            )
        position = offset
    tail = message.content[position:]
    if tail:
        out.append(ChatMessage(role="assistant", content=tail))
    return out
