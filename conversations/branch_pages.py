"""A branch a page at a time, for the socket: opening a conversation sends the newest messages
of its branch (enough to fill a screen), and older ones come as the person scrolls up.

The branch's path comes from ids and parents only (selectors.branch_tree); only a page's
messages are loaded whole. A page is at most PAGE_MESSAGES messages and, past its newest
message, at most page_bytes() of JSON: a conversation of any length opens in one small frame,
and one message too large for a frame on its own still goes (in parts, conversations.frames).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from conversations import frames
from conversations.branches import BranchTree
from conversations.models import Conversation
from conversations.payloads import MessagePayload, message_from_row, message_payload
from conversations.selectors import access_conversation, branch_tree, messages_by_ids

# More than a tall screen holds of short exchanges; fewer than make the first frame slow.
PAGE_MESSAGES = 40


def page_bytes() -> int:
    """A page's JSON budget: half a WebSocket message, so a page nearly always goes whole."""
    return settings.WS_MAX_SEND_BYTES // 2


class MessageNotFound(Exception):
    """The message is not one of the conversation's (or does not exist)."""


@dataclass(frozen=True, slots=True)
class BranchPage:
    """Consecutive messages of one branch, oldest first, with their versions (siblings)."""

    messages: list[MessagePayload]
    siblings: dict[int, list[int]]
    # Older messages of the branch come before messages[0]: ask with "before" its id.
    older: bool


def newest_page(*, conversation: Conversation, leaf_id: int | None = None) -> BranchPage:
    """The newest messages of the branch through `leaf_id` (default: the newest message)."""
    tree = branch_tree(conversation=conversation)
    return _page(conversation=conversation, tree=tree, path=tree.path(leaf_id))


def read_older(*, user, conversation_id: str, before: int) -> BranchPage:
    """The messages before `before` on its branch, the newest of them last. Raises
    ConversationNotFound, MessageNotFound (another user's message is not in the tree of a
    conversation of this user's, so it is not found either)."""
    conversation = access_conversation(user=user, conversation_id=conversation_id)
    tree = branch_tree(conversation=conversation)
    if before not in tree:
        raise MessageNotFound
    return _page(conversation=conversation, tree=tree, path=tree.ancestors(before))


def _page(*, conversation: Conversation, tree: BranchTree, path: list[int]) -> BranchPage:
    """The tail of `path` that fits a page."""
    ids = path[-PAGE_MESSAGES:]
    loaded = messages_by_ids(conversation=conversation, ids=ids)
    budget = page_bytes()
    kept: list[MessagePayload] = []
    for message in reversed(loaded):  # newest first: the newest always goes
        payload = message_payload(message_from_row(message))
        # Characters undercount bytes beyond ASCII; close enough for a budget half the bound.
        budget -= len(frames.dumps(payload))
        if kept and budget < 0:
            break
        kept.append(payload)
    kept.reverse()
    return BranchPage(messages=kept, siblings=tree.siblings(m["id"] for m in kept),
                      older=len(kept) < len(path))
