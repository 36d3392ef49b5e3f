"""Writes. Each action is one plain, synchronous function (ORM inside one transaction where it
matters); async callers wrap it with database_sync_to_async. Views and consumers only translate."""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from agents import context_window
from agents.access import AgentNotAvailable, open_to, spec_for
from agents.definitions import AgentSpec, resolve_agent
from agents.models import Agent
from conversations.groups import announce_changed_on_commit, announce_refresh_on_commit
from conversations.models import Conversation, Message, ToolCall
from conversations.payloads import UsageView
from conversations.selectors import ConversationNotFound, access_conversation, sent_with_key

AUTO: Final = "auto"
INTERRUPTED_ERROR = "The server stopped while writing this answer; the text so far is kept."
CANCELLED_TOOL = "Cancelled: the answer ended before the tool finished."


class InvalidInput(Exception):
    """Bad input from a user; the message says what to change. `code` is the socket's error
    code: "bad_frame" for a value of the wrong type, "invalid" for one a person can fix."""

    def __init__(self, message: str, *, code: str = "invalid") -> None:
        super().__init__(message)
        self.code = code


class TurnInProgress(Exception):
    """The conversation already has an answer being written."""


class AgentUnavailable(InvalidInput):
    """The agent asked for, or the conversation's, is not one this user may use: it does not
    exist, is turned off, or is limited to groups they are not in (which of these is not said,
    as for a conversation that is not theirs)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="agent_unavailable")


NO_SUCH_AGENT = "That agent does not exist or is not available to you."
# The default agent cannot be limited in the admin (agents.admin); limited by other means, it
# leaves those outside its groups no agent to talk to.
NO_AGENT = "No agent is available to you: ask an admin."
AGENT_GONE = ("The agent of this conversation is no longer available to you: start a new "
              "conversation.")


class TooManyTurns(Exception):
    """The user already has USER_MAX_CONCURRENT_TURNS answers being written; retry when one
    ends."""


@dataclass(frozen=True, slots=True)
class SendResult:
    conversation: Conversation
    user_message: Message
    assistant_message: Message
    # False when the client key had been seen: nothing new was stored and no turn must start.
    created: bool
    # The conversation was made by this send (it has no earlier messages).
    new_conversation: bool = False
    # The agent the turn runs with, resolved and checked for this user before anything was
    # stored (None when nothing was: created=False).
    spec: AgentSpec | None = None


def _clean_text(text: Any) -> str:
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("Type a message first.")
    if len(text) > settings.MAX_MESSAGE_CHARS:
        raise InvalidInput(
            f"The message is too long ({len(text)} characters; at most "
            f"{settings.MAX_MESSAGE_CHARS})."
        )
    _check_unicode(text, what="The message")
    return text


def unstorable(text: str) -> str | None:
    """What in `text` cannot be stored or sent, said for a person, or None. A JSON escape can
    make a NUL, which PostgreSQL cannot store, or a lone surrogate, which neither UTF-8 (the
    socket, the database) nor a person can use."""
    if "\x00" in text:
        return "a NUL character, which cannot be stored"
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            return "an invalid character (a lone surrogate)"
    return None


def _check_unicode(text: str, *, what: str) -> None:
    if problem := unstorable(text):
        raise InvalidInput(f"{what} contains {problem}.")


def _clean_client_key(client_key: Any) -> str | None:
    if client_key in (None, ""):
        return None
    if not isinstance(client_key, str) or len(client_key) > 64:
        raise InvalidInput("client_key must be a string of at most 64 characters.")
    return client_key


def _existing_send(*, user, client_key: str) -> SendResult | None:
    sent = sent_with_key(user=user, client_key=client_key)
    # Nearly every key is new: a bare probe costs half what loading the pair does (a wider
    # SELECT with a join and an ordering, all ORM work on the database thread).
    if not sent.exists():
        return None
    user_message = sent.select_related("conversation").first()
    if user_message is None:
        return None
    reply = user_message.children.filter(role=Message.Role.ASSISTANT).order_by("id").first()
    return SendResult(user_message.conversation, user_message, reply, created=False)


def _ensure_idle(conversation: Conversation) -> None:
    """Call with the conversation locked (see _send): no new turn can then start in it."""
    unfinished = conversation.messages.filter(status__in=Message.UNFINISHED_STATUSES)
    # Usually nothing is unfinished, and one read settles it: with the conversation locked, no
    # unfinished message can appear before we commit. Otherwise, interrupt the stale ones and
    # look again (a running turn's flush may have refreshed one meanwhile).
    if not unfinished.exists():
        return
    do_interrupt_stale_turns(conversation=conversation)
    if unfinished.exists():
        raise TurnInProgress("An answer is still being written in this conversation: stop it first.")


def do_send_message(
    *,
    user,
    conversation_id: uuid.UUID | str | None,
    text: Any,
    client_key: Any = None,
    parent: int | None | str = AUTO,
    agent_id: int | None = None,
    source: str = Conversation.Source.WEB,
) -> SendResult:
    """Store the user's message and an empty (pending) assistant reply, before any model call.

    `parent` AUTO continues the newest branch; None or a message id starts a new branch there
    (editing a message). A client_key already seen from this user returns the stored pair with
    created=False. Raises ConversationNotFound, InvalidInput, TurnInProgress."""
    text = _clean_text(text)
    client_key = _clean_client_key(client_key)
    if client_key and (existing := _existing_send(user=user, client_key=client_key)):
        return existing
    try:
        with transaction.atomic():
            return _send(user=user, conversation_id=conversation_id, text=text,
                         client_key=client_key, parent=parent, agent_id=agent_id, source=source)
    except IntegrityError:
        # The same key raced in from another socket: the first one won.
        if client_key and (existing := _existing_send(user=user, client_key=client_key)):
            return existing
        raise


def check_capacity(user) -> None:
    """One person cannot take everyone's model capacity: at most USER_MAX_CONCURRENT_TURNS of
    their answers are written at once, across conversations, tabs and processes. Call inside
    the send's transaction, before the conversation is locked."""
    # Answers of a dead process (silent for TURN_STALE_AFTER) hold no capacity.
    cutoff = timezone.now() - timedelta(seconds=settings.TURN_STALE_AFTER)
    with connection.cursor() as cursor:
        cursor.execute(_capacity_sql(), [*Message.UNFINISHED_STATUSES,
                                         connection.ops.adapt_datetimefield_value(cutoff),
                                         user.pk])
        count = cursor.fetchone()[0]
    if count >= settings.USER_MAX_CONCURRENT_TURNS:
        raise TooManyTurns(
            f"You have {count} answers being written, the most at once: send again when one "
            "of them has finished.")


@functools.cache
def _capacity_sql() -> str:
    """The count as one statement that also locks the user's row on PostgreSQL, so two sends of
    one user in two processes count one after the other (SQLite serialises writing transactions
    anyway). SQL rather than the ORM: built with a subquery, the ORM's compilation cost a fifth
    of the database thread's time under load (bench/stream.py --profile), on every send."""
    q = connection.ops.quote_name
    message, conversation = Message._meta.db_table, Conversation._meta.db_table
    user_table = get_user_model()._meta.db_table
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    return (
        f"SELECT (SELECT COUNT(*) FROM {q(message)} m JOIN {q(conversation)} c"
        f" ON c.{q('id')} = m.{q('conversation_id')}"
        f" WHERE c.{q('owner_id')} = u.{q('id')} AND m.{q('status')} IN (%s, %s)"
        f" AND m.{q('updated_at')} >= %s)"
        f" FROM {q(user_table)} u WHERE u.{q('id')} = %s{lock}")


def _send(*, user, conversation_id, text, client_key, parent, agent_id, source) -> SendResult:
    new = not conversation_id
    check_capacity(user)  # first: the user's row is locked before the conversation's
    if not new:
        # Locked: serialises two sends into one conversation (a no-op on SQLite, which already
        # serialises writers).
        conversation = access_conversation(user=user, conversation_id=conversation_id,
                                           for_update=True)
        _ensure_idle(conversation)
        spec = _spec_for(user=user, agent_id=conversation.agent_id, refused=AGENT_GONE)
        _check_fits(spec, text)
    else:
        if agent_id is not None and not Agent.objects.filter(
                open_to(Agent, user_id=user.pk), pk=agent_id, enabled=True).exists():
            raise AgentUnavailable(NO_SUCH_AGENT)
        spec = _spec_for(user=user, agent_id=agent_id,
                         refused=NO_SUCH_AGENT if agent_id is not None else NO_AGENT)
        _check_fits(spec, text)
        conversation = Conversation.objects.create(owner=user, agent_id=agent_id, source=source)
    # Only the parent's id is needed: loading the row would read the whole previous answer.
    if new:
        parent_id = None
    elif parent == AUTO:
        parent_id = conversation.messages.order_by("-created_at", "-id").values_list(
            "pk", flat=True).first()
    elif parent is None:
        parent_id = None
    else:
        parent_id = conversation.messages.filter(pk=parent).values_list("pk", flat=True).first()
        if parent_id is None:
            raise InvalidInput("The message to answer is not in this conversation.")
    user_message = Message.objects.create(
        conversation=conversation, role=Message.Role.USER, content=text, client_key=client_key,
        parent_id=parent_id, status=Message.Status.COMPLETE,
    )
    reply = Message.objects.create(
        conversation=conversation, role=Message.Role.ASSISTANT, parent=user_message,
        status=Message.Status.PENDING,
    )
    if not new:  # a new conversation's updated_at is already now
        Conversation.objects.filter(pk=conversation.pk).update(updated_at=timezone.now())
    return SendResult(conversation, user_message, reply, created=True, new_conversation=new,
                      spec=spec)


def _check_fits(spec: AgentSpec, text: str) -> None:
    """A message its model cannot take at all is refused before anything is stored."""
    if problem := context_window.too_long(spec.model_info(""), system=spec.system_prompt,
                                          text=text):
        raise InvalidInput(problem)


def _spec_for(*, user, agent_id: int | None, refused: str) -> AgentSpec:
    """The agent a turn of `user` runs with (the conversation's, else the default), its tools
    cut to the user's groups; raises AgentUnavailable (with `refused`) before anything is
    stored when the agent is limited to groups they are not in."""
    try:
        return spec_for(resolve_agent(agent_id), user_id=user.pk)
    except AgentNotAvailable:
        raise AgentUnavailable(refused) from None


def do_regenerate(*, user, conversation_id: uuid.UUID | str, message_id: int) -> SendResult:
    """A new answer to the same user message, as a sibling branch of `message_id`."""
    with transaction.atomic():
        check_capacity(user)  # first, as in a send: the user's row, then the conversation's
        conversation = access_conversation(user=user, conversation_id=conversation_id,
                                           for_update=True)
        _ensure_idle(conversation)
        spec = _spec_for(user=user, agent_id=conversation.agent_id, refused=AGENT_GONE)
        old = (conversation.messages.select_related("parent")
               .filter(pk=message_id, role=Message.Role.ASSISTANT).first())
        if old is None or old.parent is None:
            raise InvalidInput("There is no answer to regenerate there.")
        reply = Message.objects.create(
            conversation=conversation, role=Message.Role.ASSISTANT, parent=old.parent,
            status=Message.Status.PENDING,
        )
        Conversation.objects.filter(pk=conversation.pk).update(updated_at=timezone.now())
        return SendResult(conversation, old.parent, reply, created=True, spec=spec)


def do_flush_message(
    *, message_id: int, content: str, reasoning: str, status: str, last_seq: int,
    model: str, first_token_at: datetime | None,
) -> None:
    """A periodic write of a streaming answer; also the turn's heartbeat (updated_at)."""
    Message.objects.filter(pk=message_id).update(
        content=content, reasoning=reasoning, status=status, last_seq=last_seq, model=model,
        first_token_at=first_token_at, updated_at=timezone.now(),
    )


def do_finish_message(
    *, message_id: int, content: str, reasoning: str, reasoning_signature: str,
    reasoning_ms: int | None, status: str, error: str, last_seq: int, model: str,
    first_token_at: datetime | None, usage: UsageView, cancel_running_tools: bool = False,
    finished_at: datetime | None = None,
) -> None:
    """The end of a turn, whatever its outcome. Calls still running then (stopped, failed,
    interrupted) never finish: with `cancel_running_tools` they are marked cancelled."""
    now = finished_at or timezone.now()
    if cancel_running_tools:
        ToolCall.objects.filter(message_id=message_id, finished_at__isnull=True).update(
            status=ToolCall.Status.CANCELLED, is_error=True, finished_at=now,
            result=CANCELLED_TOOL,
        )
    Message.objects.filter(pk=message_id).update(
        content=content, reasoning=reasoning, reasoning_signature=reasoning_signature,
        reasoning_ms=reasoning_ms, status=status, error=error, last_seq=last_seq, model=model,
        first_token_at=first_token_at, finished_at=now, updated_at=now,
        input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
        reasoning_tokens=usage.reasoning_tokens, cached_tokens=usage.cached_tokens,
        cost=usage.cost,
    )


def do_interrupt_stale_turns(*, conversation: Conversation | None = None) -> list[str]:
    """Mark turns whose process died as interrupted, keeping their text: every such turn (a
    process's periodic sweep), or one conversation's (when it is read or sent into). A running
    turn writes at least every TURN_FLUSH_MAX_INTERVAL, so one not written for TURN_STALE_AFTER
    is dead. The sockets watching them are told once this commits. Returns the conversations."""
    rows = conversation.messages if conversation is not None else Message.objects
    cutoff = timezone.now() - timedelta(seconds=settings.TURN_STALE_AFTER)
    stale = rows.filter(status__in=Message.UNFINISHED_STATUSES, updated_at__lt=cutoff)
    # Nearly always none: one read of the partial index, and no write.
    conversation_ids = sorted({str(c) for c in stale.values_list("conversation_id", flat=True)})
    if conversation_ids:
        _interrupt(stale)
        announce_refresh_on_commit(conversation_ids=conversation_ids)
    return conversation_ids


def do_interrupt_orphaned_turn(*, conversation_id: str) -> bool:
    """Stop for an answer no live process is writing (its process died, and the sweep has not
    come yet): mark it interrupted now, keeping its text. Returns whether there was one."""
    ended = _interrupt(Message.objects.filter(
        conversation_id=conversation_id, status__in=Message.UNFINISHED_STATUSES))
    if ended:
        announce_refresh_on_commit(conversation_ids=[str(conversation_id)])
    return bool(ended)


def _interrupt(messages) -> int:
    """Unfinished answers no turn will end, ended as interrupted with their text kept."""
    return messages.update(status=Message.Status.INTERRUPTED, error=INTERRUPTED_ERROR,
                           finished_at=timezone.now())


def do_delete_conversation(*, user, conversation_id: uuid.UUID | str) -> None:
    """Hide a conversation from its owner; the audit keeps every row."""
    conversation = access_conversation(user=user, conversation_id=conversation_id)
    Conversation.objects.filter(pk=conversation.pk).update(is_deleted=True, deleted_at=timezone.now())
    announce_changed_on_commit(user_id=user.pk, conversation_id=conversation.pk)


def do_rename_conversation(*, user, conversation_id: uuid.UUID | str, title: Any) -> Conversation:
    if not isinstance(title, str) or not title.strip():
        raise InvalidInput("A title cannot be empty.")
    _check_unicode(title, what="The title")
    conversation = access_conversation(user=user, conversation_id=conversation_id)
    conversation.title = " ".join(title.split())[:200]
    conversation.save(update_fields=["title", "updated_at"])
    announce_changed_on_commit(user_id=user.pk, conversation_id=conversation.pk)
    return conversation


__all__ = [
    "AUTO", "AgentUnavailable", "ConversationNotFound", "InvalidInput", "SendResult",
    "TooManyTurns", "TurnInProgress",
    "do_delete_conversation", "do_finish_message", "do_flush_message",
    "do_interrupt_orphaned_turn", "do_interrupt_stale_turns",
    "do_regenerate", "do_rename_conversation", "do_send_message",
]
