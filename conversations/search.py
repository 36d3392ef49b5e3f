"""The sidebar's reads: a user's conversations a page at a time, optionally filtered by a search.

Paging is by cursor on (updated_at, id), newest first, so a page costs the same with ten
conversations or ten thousand (the conv_owner_recent index), and a conversation that moves to
the top while the user scrolls is neither skipped nor shown twice further down.
Search is a case-insensitive substring match on titles and message text (icontains: the same
on PostgreSQL and SQLite; a full-text index can replace it when it is too slow).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Exists, OuterRef, Q, Subquery
from django.db.models.functions import Substr

from conversations.models import Conversation, Message
from conversations.selectors import conversations_for

PREVIEW_CHARS = 120
MAX_QUERY_CHARS = 200


class BadCursor(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Page:
    items: list[dict[str, Any]]
    # Pass back as `cursor` for the next (older) page; None on the last page.
    next_cursor: str | None


def encode_cursor(conversation: Conversation) -> str:
    raw = f"{conversation.updated_at.isoformat()}|{conversation.pk}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, _, pk = raw.partition("|")
        moment = datetime.fromisoformat(stamp)
        if moment.tzinfo is None:
            raise ValueError("naive datetime")
        return moment, uuid.UUID(pk)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise BadCursor("That page cursor is not valid.") from None


def _snippet(text: str, query: str, width: int = PREVIEW_CHARS) -> str:
    """A window of `text` around the first match of `query`, on one line."""
    flat = " ".join(text.split())
    at = flat.lower().find(query.lower())
    if at < 0:
        return flat[:width]
    start = max(0, at - width // 3)
    piece = flat[start:start + width]
    return ("…" if start else "") + piece + ("…" if start + width < len(flat) else "")


def conversation_page(*, user, query: str = "", cursor: str | None = None,
                      limit: int = 50) -> Page:
    """One page of the user's conversations, newest activity first. Raises BadCursor.
    One query, two with a search (the snippets), whatever the page size."""
    query = " ".join(query.split())[:MAX_QUERY_CHARS]
    first_user_message = Message.objects.filter(
        conversation=OuterRef("pk"), role=Message.Role.USER
    ).order_by("created_at", "id")
    qs = conversations_for(user=user).annotate(
        preview=Subquery(first_user_message.annotate(
            head=Substr("content", 1, PREVIEW_CHARS * 2)).values("head")[:1])
    )
    if query:
        matching = Message.objects.filter(conversation=OuterRef("pk"), content__icontains=query)
        qs = qs.filter(Q(title__icontains=query) | Q(Exists(matching))).annotate(
            hit=Subquery(matching.order_by("created_at", "id").values("id")[:1]))
    if cursor:
        moment, pk = decode_cursor(cursor)
        qs = qs.filter(Q(updated_at__lt=moment) | Q(updated_at=moment, pk__lt=pk))
    rows = list(qs.order_by("-updated_at", "-pk")[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    snippets: dict[uuid.UUID, str] = {}
    if query and rows:
        # The first matching message of each listed conversation (one query for the page).
        hits = Message.objects.filter(pk__in=[r.hit for r in rows if r.hit]).values_list(
            "conversation_id", "content")
        snippets = {conversation_id: _snippet(content, query) for conversation_id, content in hits}
    items = [
        {
            "id": str(c.pk),
            "title": c.title,
            "preview": " ".join((c.preview or "").split())[:PREVIEW_CHARS],
            "snippet": snippets.get(c.pk, ""),
            "updated_at": c.updated_at.isoformat(),
        }
        for c in rows
    ]
    return Page(items=items, next_cursor=encode_cursor(rows[-1]) if more else None)
