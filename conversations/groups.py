"""Channel-layer group names, and the one notice that a user's conversation list changed."""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)


def conversation_group(conversation_id: Any) -> str:
    """Every process with a socket watching the conversation (Redis layer only)."""
    return f"conv.{conversation_id}"


def control_group(conversation_id: Any) -> str:
    """The process running the conversation's turn, if any."""
    return f"turnctl.{conversation_id}"


def user_group(user_id: int) -> str:
    """Every socket of one user (sidebar updates: new conversations, titles, renames)."""
    return f"user.{user_id}"


def _changed_message(conversation_id: Any) -> dict[str, Any]:
    return {"type": "conversation.changed", "conversation": str(conversation_id)}


async def announce_changed(*, user_id: int, conversation_id: Any) -> None:
    """Tell the user's sockets to refetch their sidebar. Call after the change is committed
    (async callers write through database_sync_to_async, which has committed on return)."""
    try:
        await get_channel_layer().group_send(user_group(user_id), _changed_message(conversation_id))
    except Exception:  # the change is stored; other tabs catch up on their next refetch
        logger.exception("could not announce a change to conversation %s", conversation_id)


def announce_changed_on_commit(*, user_id: int, conversation_id: Any) -> None:
    """The same from synchronous code (views, actions): sent once the transaction commits, so
    a tab that refetches at once reads the change (and nothing is announced on a rollback)."""
    transaction.on_commit(lambda: async_to_sync(announce_changed)(
        user_id=user_id, conversation_id=conversation_id))
