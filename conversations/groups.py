"""Channel-layer group names, and the two notices: a user's conversation list changed, and a
conversation's answers were ended by someone other than their turn (re-read it)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)


def conversation_group(conversation_id: Any) -> str:
    """Every process with a socket watching the conversation (its broker's control channel)."""
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


def on_commit_run(notice: Callable[[], Awaitable[None]]) -> None:
    """Run the coroutine `notice()` makes once the transaction commits (nothing on a rollback),
    from synchronous code: a view's or the database thread (async_to_sync, onto the server's
    loop), or synchronous code called on a loop's own thread (a task on that loop)."""
    async def send() -> None:
        await notice()

    def run() -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            async_to_sync(send)()
        else:
            loop.create_task(send())
    transaction.on_commit(run)


def announce_changed_on_commit(*, user_id: int, conversation_id: Any) -> None:
    """The same from synchronous code (views, actions): sent once the transaction commits, so
    a tab that refetches at once reads the change (and nothing is announced on a rollback)."""
    on_commit_run(lambda: announce_changed(user_id=user_id, conversation_id=conversation_id))


async def announce_refresh(*, conversation_ids: list[str]) -> None:
    """Tell every socket watching these conversations, in any process, to read them again:
    their unfinished answers were marked interrupted with no turn left to say so."""
    layer = get_channel_layer()
    for conversation_id in conversation_ids:
        try:
            await layer.group_send(conversation_group(conversation_id),
                                   {"type": "conversation.refresh", "conversation": conversation_id})
        except Exception:  # stored; the sockets see it on their next read
            logger.exception("could not announce interrupted turns in %s", conversation_id)


def announce_refresh_on_commit(*, conversation_ids: list[str]) -> None:
    """The same from synchronous code, once the transaction commits."""
    if conversation_ids:
        on_commit_run(lambda: announce_refresh(conversation_ids=conversation_ids))
