"""The chat socket's server frames, built from conversations.payloads and nothing else.

Server frames: hello, conversation (the state of the watched branch: its newest messages, and
"older" when there are more before them), older_messages (the page before a message, answering
the client's "older"), ack, turn (one numbered turn event), error, pong, conversations_changed,
and part: a frame too large for one WebSocket
message (a long conversation's state, a huge message) goes as consecutive parts, slices of its
JSON text, that the page joins and reads as the frame they make up. Nothing a conversation holds
can make a message the socket cannot carry. Client frames are read in consumers.py.

JSON goes out as UTF-8, not escaped to ASCII (an emoji is 4 bytes instead of 12).
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

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
# A part's JSON around its slice: {"type":"part","id":N,"last":false,"data":"..."}.
_PART_OVERHEAD = 80


def dumps(frame: dict[str, Any]) -> str:
    return _dumps(frame)


def parts(text: str, *, limit: int, part_id: int) -> list[str]:
    """`text` (one frame's JSON) as part frames of at most `limit` bytes of UTF-8 each.

    Each slice is at most a quarter of the budget in characters: a character is at most 4 bytes
    of UTF-8, and the only characters JSON escapes again inside a string (quote and backslash;
    control characters are already escaped in `text`) take 2.
    """
    step = max((limit - _PART_OVERHEAD) // 4, 1)
    slices = [text[i:i + step] for i in range(0, len(text), step)]
    return [f'{{"type":"part","id":{part_id},"last":{"true" if i == len(slices) - 1 else "false"},'
            f'"data":{_dumps(piece)}}}' for i, piece in enumerate(slices)]


def well_formed(text: str) -> str:
    """`text` with lone surrogates (which UTF-8 cannot carry; JSON escapes can make them) as
    U+FFFD, and split surrogate pairs joined."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def hello(*, username: str) -> dict[str, Any]:
    return {"type": "hello", "user": username}


def pong() -> dict[str, Any]:
    return {"type": "pong"}


def error(*, code: str, message: str, ref: Any = None) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message, "ref": ref}


def conversations_changed(*, conversation_id: str) -> dict[str, Any]:
    return {"type": "conversations_changed", "conversation": conversation_id}


def conversation_state(*, conversation: ConversationPayload, messages: list[MessagePayload],
                       siblings: dict[int, list[int]], older: bool) -> dict[str, Any]:
    return {"type": "conversation", "conversation": conversation, "messages": messages,
            "siblings": {str(k): v for k, v in siblings.items()}, "older": older}


def older_messages(*, conversation_id: str, before: int, messages: list[MessagePayload],
                   siblings: dict[int, list[int]], older: bool) -> dict[str, Any]:
    """The messages just before `before` on its branch, oldest first; `older`: more before
    messages[0]."""
    return {"type": "older_messages", "conversation": conversation_id, "before": before,
            "messages": messages, "siblings": {str(k): v for k, v in siblings.items()},
            "older": older}


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
