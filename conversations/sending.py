"""Sending a message (or regenerating an answer): the one synchronous service every transport
calls before a turn runs.

`check_*` turn untrusted values (a socket frame, later an API body) into a typed request, or
raise InvalidInput. `do_*` then make one trip to the database: the user checked again, the user
message and the assistant placeholder stored (conversations.actions, which also resolves the
agent and checks that the user may use it, before storing anything), and, when a turn must
start, the history built. Async callers wrap a `do_*` in one
database_sync_to_async call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ObjectDoesNotExist

from agents.events import ChatMessage
from conversations import actions
from conversations.history import upstream_history
from conversations.models import Conversation, Message
from conversations.payloads import (
    ConversationPayload,
    MessageView,
    conversation_payload,
    message_from_row,
)
from conversations.runner import TurnPlan
from conversations.selectors import branch, tool_calls_by_message

MAX_ID_CHARS = 64


class UserInactive(Exception):
    """The user was deactivated (or deleted) since the socket connected."""


@dataclass(frozen=True, slots=True)
class SendRequest:
    conversation_id: str | None
    text: str
    client_key: str | None
    # actions.AUTO (continue the newest branch), None (a new first message) or a message id.
    parent: int | None | str
    agent_id: int | None


@dataclass(frozen=True, slots=True)
class RegenerateRequest:
    conversation_id: str
    message_id: int


@dataclass(frozen=True, slots=True)
class PreparedTurn:
    """What a send stored, what its client is told, and the turn to run (None for a resent
    message: nothing new was stored)."""

    user: Any
    conversation: ConversationPayload
    new_conversation: bool
    user_message: MessageView
    assistant_message: MessageView
    plan: TurnPlan | None

    @property
    def created(self) -> bool:
        return self.plan is not None

    @property
    def conversation_id(self) -> str:
        return self.conversation["id"]


def check_conversation_id(value: Any, *, required: bool) -> str | None:
    if value in (None, "") and not required:
        return None
    if not isinstance(value, str) or len(value) > MAX_ID_CHARS:
        raise actions.InvalidInput("\"conversation\" must be a conversation id.", code="bad_frame")
    return value


def _check_id(value: Any, *, name: str, what: str, nullable: bool) -> int | None:
    if value is None and nullable:
        return None
    # bool is an int to Python, never a row id.
    if not isinstance(value, int) or isinstance(value, bool):
        raise actions.InvalidInput(f"\"{name}\" must be {what}.", code="bad_frame")
    return value


def check_send(*, conversation: Any, text: Any, client_key: Any = None,
               parent: Any = actions.AUTO, agent: Any = None) -> SendRequest:
    """A send's values, checked. The text's own rules (empty, too long) are checked when it is
    stored, by actions.do_send_message, for every caller alike."""
    if parent is not actions.AUTO:
        parent = _check_id(parent, name="parent", what="a message id or null", nullable=True)
    return SendRequest(
        conversation_id=check_conversation_id(conversation, required=False), text=text,
        client_key=client_key, parent=parent,
        agent_id=_check_id(agent, name="agent", what="an agent id or null", nullable=True),
    )


def check_regenerate(*, conversation: Any, message: Any) -> RegenerateRequest:
    return RegenerateRequest(
        conversation_id=check_conversation_id(conversation, required=True),
        message_id=_check_id(message, name="message", what="a message id", nullable=False),
    )


def active_user(*, user_id: int):
    """The user, if still active; raises UserInactive. Synchronous."""
    try:
        # get(), not first(): a lookup by key needs no ORDER BY (less ORM work per send).
        return get_user_model().objects.get(pk=user_id, is_active=True)
    except ObjectDoesNotExist:
        raise UserInactive from None


def do_send(*, user_id: int, request: SendRequest,
            source: str = Conversation.Source.WEB) -> PreparedTurn:
    """Store a user message and its pending answer; see the module docstring. Raises
    UserInactive, ConversationNotFound, InvalidInput, TurnInProgress."""
    user = active_user(user_id=user_id)
    result = actions.do_send_message(
        user=user, conversation_id=request.conversation_id, text=request.text,
        client_key=request.client_key, parent=request.parent, agent_id=request.agent_id,
        source=source)
    return _prepared(user=user, result=result)


def do_regenerate(*, user_id: int, request: RegenerateRequest) -> PreparedTurn:
    """A new answer to the same user message, as a sibling branch. Raises as do_send."""
    user = active_user(user_id=user_id)
    result = actions.do_regenerate(user=user, conversation_id=request.conversation_id,
                                   message_id=request.message_id)
    return _prepared(user=user, result=result)


def _prepared(*, user, result: actions.SendResult) -> PreparedTurn:
    plan = None
    if result.created:
        history = _history(result)
        reply = result.assistant_message
        plan = TurnPlan(
            conversation_id=str(result.conversation.pk), message_id=reply.pk,
            user_message_id=result.user_message.pk, user_id=user.pk,
            spec=result.spec, history=tuple(history),
            created_at=reply.created_at,
        )
    return PreparedTurn(
        user=user, conversation=conversation_payload(result.conversation),
        new_conversation=result.new_conversation,
        user_message=message_from_row(result.user_message, tool_calls=[]),
        # A new placeholder has no tool calls; a resent one's are read.
        assistant_message=message_from_row(result.assistant_message,
                                           tool_calls=[] if result.created else None),
        plan=plan,
    )


def _history(result: actions.SendResult) -> list[ChatMessage]:
    # A first message (a new conversation, or an edit of the first message) is the whole
    # branch: no need to load the conversation.
    if result.user_message.parent_id is None:
        return upstream_history([result.user_message], tool_calls={})
    # Only the answers' tool calls matter here, fetched without a prefetch's work for every
    # message of the branch.
    messages = branch(conversation=result.conversation, leaf_id=result.user_message.pk,
                      with_tool_calls=False)
    calls = tool_calls_by_message(
        message_ids=[m.pk for m in messages if m.role == Message.Role.ASSISTANT])
    return upstream_history(messages, tool_calls=calls)
