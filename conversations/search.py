"""The sidebar's reads: a user's conversations a page at a time, optionally filtered by a search.

Paging is by cursor on (updated_at, id), newest first, so a page costs the same with ten
conversations or ten thousand (the conv_owner_recent index), and a conversation that moves to
the top while the user scrolls is neither skipped nor shown twice further down.
Search finds words (conversations.fulltext has the rule and the indexes): a conversation is
listed when its title, or one of its messages, holds every term. The page is still newest
first by cursor, not by rank: the database walks the person's conversations newest first
and stops at a full page (a common word), or takes the few matches from the index and sorts
them (a rare one), whichever its statistics say is cheaper; either way the work is bounded
by the person's own history or by the matches, never by everyone's messages.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Substr

from conversations import fulltext
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


def _snippet(text: str, terms: list[fulltext.Term], width: int = PREVIEW_CHARS) -> str:
    """A window of `text` around the first match of the terms, on one line."""
    flat = " ".join(text.split())
    at = fulltext.first_match(flat, terms)
    if at is None:
        return flat[:width]
    start = max(0, at - width // 3)
    piece = flat[start:start + width]
    return ("…" if start else "") + piece + ("…" if start + width < len(flat) else "")


def conversation_page(*, user, query: str = "", cursor: str | None = None,
                      limit: int = 50) -> Page:
    """One page of the user's conversations, newest activity first. Raises BadCursor.
    One query, three with a search (text, titles, the snippets), whatever the page size."""
    query = " ".join(query.split())[:MAX_QUERY_CHARS]
    first_user_message = Message.objects.filter(
        conversation=OuterRef("pk"), role=Message.Role.USER
    ).order_by("created_at", "id")
    qs = conversations_for(user=user).annotate(
        preview=Subquery(first_user_message.annotate(
            head=Substr("content", 1, PREVIEW_CHARS * 2)).values("head")[:1])
    )
    if cursor:
        moment, pk = decode_cursor(cursor)
        qs = qs.filter(Q(updated_at__lt=moment) | Q(updated_at=moment, pk__lt=pk))
    qs = qs.order_by("-updated_at", "-pk")
    terms = fulltext.parse(query)
    if query and not terms:
        # Only punctuation: nothing to look for, so nothing is found (not everything).
        return Page(items=[], next_cursor=None)
    if terms:
        # Two bounded reads rather than one with "title OR EXISTS": PostgreSQL plans that OR
        # as a hashed subplan over every match of the words in everyone's messages (0.8 s for
        # a common word at 200,000 messages), as it cannot count on the LIMIT. Alone, the
        # EXISTS is a semi-join the planner bounds either way (walk the newest conversations
        # for a common word, or the index's few matches for a rare one); titles are one
        # short row per conversation of this person.
        matching = Message.objects.filter(fulltext.message_filter(terms),
                                          conversation=OuterRef("pk"))
        first_hit = Message.objects.filter(
            fulltext.message_filter(terms, within_conversation=True),
            conversation=OuterRef("pk")).order_by("created_at", "id").values("id")[:1]
        by_text = list(qs.filter(Exists(matching)).annotate(hit=Subquery(first_hit))
                       [: limit + 1])
        by_title = list(qs.filter(fulltext.title_filter(terms))[: limit + 1])
        merged = {c.pk: c for c in by_title} | {c.pk: c for c in by_text}
        rows = sorted(merged.values(), key=lambda c: (c.updated_at, c.pk), reverse=True)
        rows = rows[: limit + 1]
    else:
        rows = list(qs[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    snippets: dict[uuid.UUID, str] = {}
    if terms and rows:
        # The first matching message of each listed conversation (one query for the page).
        hits = Message.objects.filter(
            pk__in=[r.hit for r in rows if getattr(r, "hit", None)]).values_list(
            "conversation_id", "content")
        snippets = {conversation_id: _snippet(content, terms) for conversation_id, content in hits}
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


def messages_matching(*, messages: QuerySet[Message], query: str,
                      within_conversation: bool = False) -> QuerySet[Message]:
    """`messages` narrowed to those holding every term of `query`, through the search index
    (the audit's search of message text: everyone's, deleted conversations included, as
    `messages` has them), or, `within_conversation`, by reading one conversation's messages
    in order (fulltext.message_filter). None for a query without a word."""
    terms = fulltext.parse(" ".join(query.split())[:MAX_QUERY_CHARS])
    if not terms:
        return messages.none()
    return messages.filter(fulltext.message_filter(
        terms, within_conversation=within_conversation))


class CheckedPerRow(Exists):
    """EXISTS that the database checks for each outer row. PostgreSQL otherwise turns an
    EXISTS inside an OR into a hashed set of every match (all 75,000 messages of a common
    word, read before the first row is returned); an OFFSET keeps it from rewriting the
    subquery (a LIMIT alone it drops)."""

    template = "EXISTS(%(subquery)s OFFSET 0)"


def conversations_matching(*, conversations: QuerySet[Conversation],
                           query: str) -> QuerySet[Conversation]:
    """`conversations` narrowed to those with a message holding every term of `query`."""
    matching = messages_matching(messages=Message.objects.filter(conversation=OuterRef("pk")),
                                 query=query)
    return conversations.filter(Exists(matching))
