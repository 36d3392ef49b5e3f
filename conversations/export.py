"""The audit's export: conversations as JSON Lines, one whole conversation per line (its
messages in order with their branches, reasoning, usage and tool calls), streamed in batches so
that a year of conversations never sits in memory at once. Each conversation exported is
recorded as read by whoever exported it (conversations.audit_reads).

The admin's "Export as JSON Lines" action (conversations.admin) serves it for the selected
conversations, or for all that its filters (user, agent, source, date) select.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.db.models import QuerySet

from conversations.models import AdminRead, Conversation, Message

BATCH = 100


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def conversation_record(conversation: Conversation) -> dict[str, Any]:
    """One conversation as exported (its messages and their tool calls prefetched)."""
    messages = sorted(conversation.messages.all(), key=lambda m: (m.created_at, m.pk))
    return {
        "id": str(conversation.pk), "owner": conversation.owner.get_username(),
        "title": conversation.title, "agent": conversation.agent.slug if conversation.agent else None,
        "source": conversation.source, "created_at": _time(conversation.created_at),
        "updated_at": _time(conversation.updated_at), "deleted": conversation.is_deleted,
        "legal_hold": conversation.legal_hold,
        "messages": [_message(m) for m in messages],
    }


def _message(message: Message) -> dict[str, Any]:
    calls = sorted(message.tool_calls.all(), key=lambda c: (c.round, c.pk))
    return {
        "id": message.pk, "parent": message.parent_id, "role": message.role,
        "status": message.status, "model": message.model, "content": message.content,
        "reasoning": message.reasoning, "error": message.error,
        "usage": {"input_tokens": message.input_tokens, "output_tokens": message.output_tokens,
                  "reasoning_tokens": message.reasoning_tokens,
                  "cached_tokens": message.cached_tokens, "cost": str(message.cost)},
        "created_at": _time(message.created_at), "first_token_at": _time(message.first_token_at),
        "finished_at": _time(message.finished_at),
        "tool_calls": [{
            "id": c.call_id, "server": c.server, "tool": c.tool_name, "arguments": c.arguments,
            "round": c.round, "status": c.status, "approval": c.approval,
            "decided_by": c.decided_by.get_username() if c.decided_by else None,
            "result": c.result, "is_error": c.is_error, "result_truncated": c.result_truncated,
            "started_at": _time(c.started_at), "finished_at": _time(c.finished_at),
        } for c in calls],
    }


def _batch(conversations: QuerySet[Conversation], *, after: tuple | None, reader) -> tuple[
        list[bytes], tuple | None]:
    """The next batch's lines, in (created_at, id) order after `after`, each recorded as
    exported by `reader`; and where the batch ended (None: the last one)."""
    rows = conversations.order_by("created_at", "id")
    if after is not None:
        created, pk = after
        rows = rows.filter(created_at__gte=created).exclude(created_at=created, id__lte=pk)
    batch = list(rows.select_related("owner", "agent").prefetch_related(
        "messages__tool_calls__decided_by")[:BATCH])
    AdminRead.objects.bulk_create([
        AdminRead(reader=reader, owner_id=c.owner_id, conversation_ref=str(c.pk),
                  what="export of the conversation") for c in batch])
    lines = [json.dumps(conversation_record(c), ensure_ascii=False).encode() + b"\n"
             for c in batch]
    end = (batch[-1].created_at, batch[-1].pk) if len(batch) == BATCH else None
    return lines, end


async def jsonl_lines(conversations: QuerySet[Conversation], *, reader) -> AsyncIterator[bytes]:
    """The export, batch by batch (an async iterator: Django's ASGI handler would read a
    synchronous one into memory whole before sending a byte)."""
    after = None
    while True:
        lines, after = await sync_to_async(_batch)(conversations, after=after, reader=reader)
        for line in lines:
            yield line
        if after is None:
            return
