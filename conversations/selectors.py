"""Reads. `access_conversation` is the only way a user-owned row is loaded for a user by its id:
another user's id and a missing id raise the same ConversationNotFound (404 everywhere).
Messages and tool calls are reached through a conversation loaded so (or, for a resent
message, `sent_with_key`, which is scoped to the user the same way); tests/security/
test_isolation.py walks every URL and socket command with another user's ids."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from conversations.branches import BranchTree
from conversations.models import Conversation, Message, ToolCall


class ConversationNotFound(Exception):
    pass


def access_conversation(*, user, conversation_id: uuid.UUID | str,
                        for_update: bool = False) -> Conversation:
    """`for_update`: lock the row until the caller's transaction ends (it must be in one)."""
    try:
        conversation_id = uuid.UUID(str(conversation_id))
    except ValueError:
        raise ConversationNotFound from None
    if not (user and user.is_authenticated and user.is_active):
        raise ConversationNotFound
    rows = Conversation.objects.select_for_update() if for_update else Conversation.objects
    try:
        return rows.get(pk=conversation_id, owner=user, is_deleted=False)
    except Conversation.DoesNotExist:
        raise ConversationNotFound from None


def sent_with_key(*, user, client_key: str) -> QuerySet[Message]:
    """The user's message sent with this client key (a resend finds it). The key is the
    client's to choose: scoped to the user, it never reaches another user's rows."""
    return Message.objects.filter(client_key=client_key, role=Message.Role.USER,
                                  conversation__owner=user)


def conversations_for(*, user) -> QuerySet[Conversation]:
    """The sidebar's list: the user's conversations, most recent first (conv_owner_recent).
    Those made through the /v1 API only if the user asked for them (show_api_conversations,
    on the account page): a script can make hundreds. Opening one by its URL works either way
    (access_conversation)."""
    rows = Conversation.objects.filter(owner=user, is_deleted=False)
    if not user.show_api_conversations:
        # A filter on the index's rows, not another index: most conversations are the web's.
        rows = rows.exclude(source=Conversation.Source.API)
    return rows.order_by("-updated_at")


def branch_tree(*, conversation: Conversation) -> BranchTree:
    """The conversation's shape: every message's id and parent, and nothing else (no text).
    One query, along msg_conv_order."""
    rows = conversation.messages.order_by("created_at", "id").values_list("id", "parent_id")
    return BranchTree.from_rows(rows)


def messages_by_ids(*, conversation: Conversation, ids: list[int]) -> list[Message]:
    """These messages of the conversation, whole, with their tool calls, in the order of `ids`
    (ids of other conversations are left out). Two queries, none for no ids."""
    if not ids:
        return []
    rows = {m.pk: m for m in conversation.messages.filter(pk__in=ids)
            .prefetch_related("tool_calls")}
    return [rows[i] for i in ids if i in rows]


def branch(*, conversation: Conversation, leaf_id: int | None = None,
           with_tool_calls: bool = True) -> list[Message]:
    """The messages from the first one to `leaf_id` (default: the newest message), following
    parents: the conversation as the user sees it on one branch (BranchTree.path), every one
    loaded. For the history sent upstream, which needs them all; the socket shows a branch a
    page at a time (conversations.branch_pages). Two queries, the second prefetching every
    message's tool calls; one with `with_tool_calls=False` (then `tool_calls.all()` costs a
    query per message: use tool_calls_by_message)."""
    messages = conversation.messages.order_by("created_at", "id")
    if with_tool_calls:
        messages = messages.prefetch_related("tool_calls")
    by_id = {m.pk: m for m in messages}
    tree = BranchTree.from_rows((m.pk, m.parent_id) for m in by_id.values())
    return [by_id[i] for i in tree.path(leaf_id)]


def tool_calls_by_message(*, message_ids: list[int]) -> dict[int, list[ToolCall]]:
    """The tool calls of these messages, by message id, unordered (as a prefetch gives them).
    One query, none for no ids. Cheaper than prefetching for a long branch: a prefetch does ORM
    work for every message, this only for every call."""
    if not message_ids:
        return {}
    calls: dict[int, list[ToolCall]] = {}
    for call in ToolCall.objects.filter(message_id__in=message_ids):
        calls.setdefault(call.message_id, []).append(call)
    return calls
