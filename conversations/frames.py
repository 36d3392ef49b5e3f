"""The chat socket's server frames, built from conversations.payloads and nothing else.

Server frames: hello, conversation (the state of the watched branch), ack, turn (one numbered
turn event), error, pong, conversations_changed. Client frames are read in consumers.py.
"""

from __future__ import annotations

import json
from typing import Any

from conversations.payloads import (
    ConversationPayload,
    Envelope,
    MessagePayload,
    MessageView,
    ReasoningAdded,
    TextAdded,
    message_payload,
    turn_event_payload,
)

_dumps = json.JSONEncoder(separators=(",", ":")).encode


def dumps(frame: dict[str, Any]) -> str:
    return _dumps(frame)


def hello(*, username: str) -> dict[str, Any]:
    return {"type": "hello", "user": username}


def pong() -> dict[str, Any]:
    return {"type": "pong"}


def error(*, code: str, message: str, ref: Any = None) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message, "ref": ref}


def conversations_changed(*, conversation_id: str) -> dict[str, Any]:
    return {"type": "conversations_changed", "conversation": conversation_id}


def conversation_state(*, conversation: ConversationPayload, messages: list[MessagePayload],
                       siblings: dict[int, list[int]]) -> dict[str, Any]:
    return {"type": "conversation", "conversation": conversation, "messages": messages,
            "siblings": {str(k): v for k, v in siblings.items()}}


def ack(*, client_key: Any, duplicate: bool, conversation: ConversationPayload,
        user_message: MessageView, assistant_message: MessageView) -> dict[str, Any]:
    return {"type": "ack", "client_key": client_key, "duplicate": duplicate,
            "conversation": conversation, "user_message": message_payload(user_message),
            "assistant_message": message_payload(assistant_message)}


def turn_json(envelope: Envelope) -> str:
    """A turn event as the socket sends it, serialised once for every watching socket."""
    event = envelope.event
    head = (f'{{"type":"turn","conversation":"{envelope.conversation_id}",'
            f'"message":{envelope.message_id},"seq":{envelope.seq},"event":')
    if event.__class__ is TextAdded or event.__class__ is ReasoningAdded:
        # Nearly every event of a stream: only the text needs escaping.
        return f'{head}{{"kind":"{event.kind}","text":{_dumps(event.text)}}}}}'
    return f"{head}{_dumps(turn_event_payload(event))}}}"
