"""Joining a conversation, mid-turn or not, with no gap and no repeat: one socket's side.

Join first, then read: the joiner registers with the broker as a watcher, then reads the
branch's newest page from the database (conversations.branch_pages) and, when an answer is
still being written, the running turn's view (from this process's broker directly, or from the
owning process through the control channel).
Live events that arrive meanwhile are buffered; once the state is sent, only events numbered
after it pass. A jump in the numbers (a dropped message, or a database state older than the
live stream) makes it read the state again rather than show a hole. No socket here: a JoinPort
sends the frames, so this is tested on its own.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from channels.db import database_sync_to_async

from conversations import actions, frames
from conversations.broker import Delivery, get_broker, request_state
from conversations.models import Message
from conversations.branch_pages import newest_page
from conversations.payloads import ConversationPayload, MessagePayload, conversation_payload
from conversations.selectors import ConversationNotFound, access_conversation

logger = logging.getLogger(__name__)

# How long a joining socket waits for the owning process's view before it trusts the
# database's last flush instead (the process may have died; gaps are then re-synced).
SNAPSHOT_TIMEOUT = 1.5


@dataclass(slots=True)
class ConversationState:
    """What a joining socket is sent: the newest page of the branch (branch_pages). A running
    answer is the branch's newest message, so it is always on this page."""

    conversation: ConversationPayload
    messages: list[MessagePayload]
    siblings: dict[int, list[int]]
    older: bool = False

    def unfinished(self) -> bool:
        return any(m["status"] in Message.UNFINISHED_STATUSES for m in self.messages)

    def with_view(self, view: MessagePayload) -> ConversationState:
        """The state with the running answer replaced by its live view (same shape)."""
        return ConversationState(
            self.conversation, [view if m["id"] == view["id"] else m for m in self.messages],
            self.siblings, self.older)

    def frame(self) -> dict[str, Any]:
        return frames.conversation_state(conversation=self.conversation,
                                         messages=self.messages, siblings=self.siblings,
                                         older=self.older)


def read_state(*, user, conversation_id: str, leaf_id: int | None = None) -> ConversationState:
    """The branch's newest page as stored (a turn left by a dead process interrupted first).
    Synchronous; raises ConversationNotFound."""
    conversation = access_conversation(user=user, conversation_id=conversation_id)
    actions.do_interrupt_stale_turns(conversation=conversation)
    page = newest_page(conversation=conversation, leaf_id=leaf_id)
    return ConversationState(conversation=conversation_payload(conversation),
                             messages=page.messages, siblings=page.siblings, older=page.older)


class JoinPort(Protocol):
    """The socket's side: where frames go, and the channel a remote view is sent to."""

    reply_channel: str

    async def send_json(self, text: str) -> None: ...

    async def send_frame(self, frame: dict[str, Any]) -> None: ...


class Joiner:
    """One socket's watched conversation. Not thread-safe; one per socket."""

    def __init__(self, port: JoinPort) -> None:
        self.port = port
        self.watching: str | None = None
        self.synced = False
        self._user: Any = None
        self._pending: ConversationState | None = None
        self._buffer: list[Delivery] = []
        self._last_seq: dict[int, int] = {}
        self._timer: asyncio.Task | None = None
        self._resync_task: asyncio.Task | None = None

    async def watch(self, *, user, conversation_id: str, leaf: int | None = None) -> None:
        """Send the conversation's state, then its live events. Raises ConversationNotFound
        (and then watches nothing)."""
        self._user = user
        if conversation_id != self.watching:
            await self.leave()
            self.watching = conversation_id
            await (await get_broker()).watch(conversation_id, self)  # join first...
        self.synced = False
        self._buffer = []
        try:  # ...then read.
            state = await database_sync_to_async(read_state)(
                user=user, conversation_id=conversation_id, leaf_id=leaf)
        except ConversationNotFound:
            await self.leave()
            raise
        if not state.unfinished():
            await self._synced(state)
            return
        view = (await get_broker()).local_view(conversation_id)
        if view is not None:
            await self._synced(state.with_view(view))
            return
        self._pending = state
        await request_state(conversation_id=conversation_id, reply_to=self.port.reply_channel)
        if self._timer:
            self._timer.cancel()
        self._timer = asyncio.create_task(self._state_from_database_later(conversation_id))

    async def watch_new(self, *, user, conversation_id: str) -> None:
        """A conversation this socket just created: nothing happened in it to catch up on."""
        self._user = user
        await self.leave()
        self.watching = conversation_id
        await (await get_broker()).watch(conversation_id, self)
        self._last_seq, self.synced = {}, True

    async def leave(self) -> None:
        if self.watching:
            await (await get_broker()).unwatch(self.watching, self)
        self.watching = None
        self.synced = False
        self._buffer = []
        self._last_seq = {}
        self._pending = None

    async def close(self) -> None:
        await self.leave()
        for task in (self._timer, self._resync_task):
            if task:
                task.cancel()

    async def on_view(self, *, conversation_id: str, view: MessagePayload) -> None:
        """The owning process's answer to request_state."""
        if self.synced or self._pending is None or conversation_id != self.watching:
            return
        state, self._pending = self._pending, None
        if self._timer:
            self._timer.cancel()
        await self._synced(state.with_view(view))

    async def deliver(self, delivery: Delivery) -> None:
        """A live event (the broker's Watcher): passed on once, in order, or buffered."""
        if not self.synced:
            self._buffer.append(delivery)
            return
        message_id, seq = delivery.message_id, delivery.seq
        last = self._last_seq.get(message_id, 0)
        if seq <= last:
            return  # already in the state this socket was sent
        if seq > last + 1 and last:
            logger.info("gap in conversation %s: event %d after %d; re-syncing",
                        self.watching, seq, last)
            self.synced = False
            # Not awaited here: this runs in the publishing turn's task, which must not wait
            # for this socket's database read.
            if self._resync_task is None or self._resync_task.done():
                self._resync_task = asyncio.create_task(self._resync(self.watching))
            return
        self._last_seq[message_id] = seq
        await self.port.send_json(delivery.json)

    async def refresh(self) -> None:
        """(the broker's Watcher) The conversation changed with no turn to tell of it: its
        unfinished answers were marked interrupted. Read it again."""
        if self.watching is None:
            return
        self.synced = False
        if self._resync_task is None or self._resync_task.done():
            self._resync_task = asyncio.create_task(self._resync(self.watching))

    # --- internals ----------------------------------------------------------------------------

    async def _synced(self, state: ConversationState) -> None:
        await self.port.send_frame(state.frame())
        self._last_seq = {m["id"]: m["seq"] for m in state.messages}
        self.synced = True
        buffered, self._buffer = self._buffer, []
        for delivery in buffered:
            await self.deliver(delivery)

    async def _state_from_database_later(self, conversation_id: str) -> None:
        await asyncio.sleep(SNAPSHOT_TIMEOUT)
        if self.watching == conversation_id and not self.synced and self._pending:
            state, self._pending = self._pending, None
            await self._synced(state)

    async def _resync(self, conversation_id: str) -> None:
        try:
            await self.watch(user=self._user, conversation_id=conversation_id)
        except ConversationNotFound:  # deleted meanwhile
            await self.port.send_frame(frames.error(
                code="not_found", message="That conversation does not exist."))
