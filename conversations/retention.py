"""Retention: conversations whose last activity is older than a configured age are removed with
their messages and tool calls (issue 12). `manage.py purge_conversations` is the caller; nothing
in a request path purges.

Kept whatever their age: conversations under legal hold (Conversation.legal_hold), and those
with an answer still being written. AdminRead rows are never touched: they name the
conversation by its id as text precisely so that the audit of reads outlives a purge.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from conversations.models import Conversation, Message, ToolCall

# Conversations removed per transaction: each batch locks and deletes only its own rows, so a
# first purge of a year of data neither holds one huge transaction (and its locks) open nor
# loads every id into memory. A module constant so tests can make batches small.
BATCH_SIZE = 500


@dataclass(frozen=True, slots=True)
class PurgeReport:
    # Removed, or that would be removed on a dry run.
    conversations: int
    messages: int
    tool_calls: int
    # Old enough to go, kept because they are under legal hold.
    held: int
    # Conversations last active before this moment were the ones considered.
    cutoff: datetime


def do_purge_conversations(*, older_than: timedelta, dry_run: bool = False,
                           now: datetime | None = None) -> PurgeReport:
    """Remove the conversations last active (updated_at) before `now - older_than`, except
    those under legal hold, with their messages and tool calls; `dry_run` counts the same rows
    and deletes nothing. Each batch is its own transaction, so a failure keeps the batches
    already removed; running it again continues where it stopped.

    Locking: each batch's conversations are locked (FOR UPDATE on PostgreSQL) and re-checked
    under the lock, so a message sent, or a legal hold set, while the purge runs either waits
    for the batch or makes the purge skip that conversation. A send takes the user's row first,
    then the conversation's; the purge takes only conversations, so the two cannot deadlock.
    """
    if older_than <= timedelta(0):
        raise ValueError("older_than must be positive.")
    cutoff = (now or timezone.now()) - older_than
    old = Conversation.objects.filter(updated_at__lt=cutoff)
    held = old.filter(legal_hold=True).count()
    # An unfinished answer is excluded, not counted as kept: either a turn is writing it (the
    # conversation is in use, whatever its updated_at says) or a dead process left it, and the
    # turn sweeper ends it within TURN_STALE_AFTER; the next purge then removes the conversation.
    busy = Message.objects.filter(conversation=OuterRef("pk"),
                                  status__in=Message.UNFINISHED_STATUSES)
    purgeable = old.filter(legal_hold=False).exclude(Exists(busy))

    conversations = messages = tool_calls = 0
    after: uuid.UUID | None = None
    while True:
        # Keyset paging on the primary key: every batch costs the same, and a conversation
        # skipped under the lock is not selected again.
        with transaction.atomic():
            rows = purgeable.order_by("pk")
            if after is not None:
                rows = rows.filter(pk__gt=after)
            ids = list(rows.select_for_update().values_list("pk", flat=True)[:BATCH_SIZE])
            if not ids:
                break
            after = ids[-1]
            batch_messages, batch_tool_calls = (
                _count(ids) if dry_run else _delete(ids))
        conversations += len(ids)
        messages += batch_messages
        tool_calls += batch_tool_calls
    return PurgeReport(conversations=conversations, messages=messages, tool_calls=tool_calls,
                       held=held, cutoff=cutoff)


def _messages_of(ids: list[uuid.UUID]) -> QuerySet[Message]:
    return Message.objects.filter(conversation_id__in=ids)


def _count(ids: list[uuid.UUID]) -> tuple[int, int]:
    return (_messages_of(ids).count(),
            ToolCall.objects.filter(message__conversation_id__in=ids).count())


def _delete(ids: list[uuid.UUID]) -> tuple[int, int]:
    """Leaf rows first, as the PROTECT foreign keys require: tool calls, then messages, then the
    conversations. Caller holds the transaction and the conversations' locks."""
    tool_calls, _ = ToolCall.objects.filter(message__conversation_id__in=ids).delete()
    # Message.parent is a PROTECT self-reference: one UPDATE cutting every link inside these
    # conversations is simpler than deleting a tree (with its branches) leaf first. A parent is
    # always in its message's own conversation (actions._send picks it there).
    _messages_of(ids).exclude(parent=None).update(parent=None)
    # Only the ids are loaded for Django's delete (which checks the PROTECT references); the
    # messages' text is never read.
    _, removed = _messages_of(ids).only("pk").delete()
    Conversation.objects.filter(pk__in=ids).only("pk").delete()
    return removed.get(Message._meta.label, 0), tool_calls
