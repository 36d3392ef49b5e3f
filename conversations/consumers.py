"""The chat WebSocket: a thin adapter between JSON frames and conversations.actions / turns.

Client frames: watch, send, stop, regenerate, ping. Server frames: hello, conversation (the full
state of the watched branch), ack, turn (a numbered live event), error, pong.

Joining a conversation mid-turn, with no gap and no repeat: join the group first, then read the
state (the owning process's snapshot for a running turn, the database otherwise), buffer live
events until it arrives, then pass on only the events numbered after it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from channels.db import database_sync_to_async
from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.contrib.auth import get_user_model

from conversations import actions, turns
from conversations.models import Message
from conversations.selectors import (
    ConversationNotFound,
    access_conversation,
    branch,
    conversation_dict,
    message_dict,
    siblings,
)

logger = logging.getLogger(__name__)

# How long a joining socket waits for the owning process's snapshot before it trusts the
# database's last flush instead (the process may have died; gaps are then re-synced).
SNAPSHOT_TIMEOUT = 1.5


class ClientError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _conversation_state(*, user, conversation_id: str, leaf_id: int | None = None) -> dict:
    conversation = access_conversation(user=user, conversation_id=conversation_id)
    actions.do_interrupt_if_stale(conversation=conversation)
    messages = branch(conversation=conversation, leaf_id=leaf_id)
    return {
        "type": "conversation",
        "conversation": conversation_dict(conversation),
        "messages": [message_dict(m) for m in messages],
        "siblings": {str(k): v for k, v in siblings(messages=messages,
                                                    conversation=conversation).items()},
    }


def _active_user(user_id: int):
    return get_user_model().objects.filter(pk=user_id, is_active=True).first()


class ChatConsumer(AsyncWebsocketConsumer):
    async def dispatch(self, message: dict) -> None:
        # Channels closes stale database connections before every message, through the one
        # thread all database work shares: per streamed token that hop dominated the cost.
        # Every ORM call here goes through database_sync_to_async, which does it already.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        await turns.ensure_started()
        self.user_id: int = user.pk
        self.watching: str | None = None
        self.synced = False
        self.pending_state: dict | None = None
        self.buffer: list[dict] = []
        self.last_seq: dict[int, int] = {}
        self.sync_timer: asyncio.Task | None = None
        self.resync_task: asyncio.Task | None = None
        await self.accept()
        # After the handshake, frames skip Channels' session wrapper, which inspects the session
        # on every send; a socket never changes the session, and per token that check cost.
        real_send = getattr(getattr(self.base_send, "__self__", None), "real_send", None)
        if real_send is not None:
            self.base_send = real_send
        await self.channel_layer.group_add(turns.user_group(self.user_id), self.channel_name)
        await self._send({"type": "hello", "user": user.get_username()})

    async def disconnect(self, code: int) -> None:
        if getattr(self, "user_id", None) is None:
            return
        await self.channel_layer.group_discard(turns.user_group(self.user_id), self.channel_name)
        if self.watching:
            await turns.unwatch(conversation_id=self.watching, watcher=self)
        for task in (self.sync_timer, self.resync_task):
            if task:
                task.cancel()

    # --- frames in ----------------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            if text_data is None:
                raise ClientError("bad_frame", "Frames must be JSON text.")
            if len(text_data) > settings.WS_MAX_FRAME_BYTES:
                raise ClientError("frame_too_large",
                                  f"Frames are limited to {settings.WS_MAX_FRAME_BYTES} bytes.")
            try:
                frame = json.loads(text_data)
            except ValueError:
                raise ClientError("bad_frame", "Frames must be JSON objects.") from None
            if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
                raise ClientError("bad_frame", "A frame needs a string \"type\".")
            handler = getattr(self, f"cmd_{frame['type']}", None)
            if handler is None:
                raise ClientError("unknown_type", f"Unknown frame type {frame['type']!r}.")
            # The user is checked on every command: a deactivated account is cut off at once.
            # send and regenerate check inside their own (single) trip to the database.
            if frame["type"] not in ("send", "regenerate"):
                self.user = await database_sync_to_async(_active_user)(self.user_id)
                if self.user is None:
                    raise turns.UserInactive
            await handler(frame)
        except turns.UserInactive:
            await self._send({"type": "error", "code": "unauthorized",
                              "message": "Your account is no longer active."})
            await self.close(code=4403)
        except ClientError as exc:
            await self._send({"type": "error", "code": exc.code, "message": exc.message,
                              "ref": _ref(text_data)})
        except ConversationNotFound:
            await self._send({"type": "error", "code": "not_found",
                              "message": "That conversation does not exist.",
                              "ref": _ref(text_data)})
        except actions.InvalidInput as exc:
            await self._send({"type": "error", "code": "invalid", "message": str(exc),
                              "ref": _ref(text_data)})
        except actions.TurnInProgress as exc:
            await self._send({"type": "error", "code": "busy", "message": str(exc),
                              "ref": _ref(text_data)})

    async def cmd_ping(self, frame: dict) -> None:
        await self._send({"type": "pong"})

    async def cmd_watch(self, frame: dict) -> None:
        conversation_id = _conversation_id(frame, required=True)
        leaf = frame.get("leaf")
        if leaf is not None and not isinstance(leaf, int):
            raise ClientError("bad_frame", "\"leaf\" must be a message id.")
        await self._watch(conversation_id, leaf=leaf)

    async def cmd_send(self, frame: dict) -> None:
        conversation_id = _conversation_id(frame, required=False)
        parent = frame.get("parent", actions.AUTO)
        if parent is not actions.AUTO and parent is not None and not isinstance(parent, int):
            raise ClientError("bad_frame", "\"parent\" must be a message id or null.")
        agent = frame.get("agent")
        if agent is not None and not isinstance(agent, int):
            raise ClientError("bad_frame", "\"agent\" must be an agent id or null.")
        prepared = await database_sync_to_async(turns.prepare_turn)(
            user_id=self.user_id,
            action=lambda user: actions.do_send_message(
                user=user, conversation_id=conversation_id, text=frame.get("text"),
                client_key=frame.get("client_key"), parent=parent, agent_id=agent),
        )
        await self._acknowledge(prepared, client_key=frame.get("client_key"))

    async def cmd_regenerate(self, frame: dict) -> None:
        conversation_id = _conversation_id(frame, required=True)
        if not isinstance(frame.get("message"), int):
            raise ClientError("bad_frame", "\"message\" must be a message id.")
        prepared = await database_sync_to_async(turns.prepare_turn)(
            user_id=self.user_id,
            action=lambda user: actions.do_regenerate(
                user=user, conversation_id=conversation_id, message_id=frame["message"]),
        )
        await self._acknowledge(prepared, client_key=None)

    async def cmd_stop(self, frame: dict) -> None:
        conversation_id = _conversation_id(frame, required=True)
        await database_sync_to_async(access_conversation)(
            user=self.user, conversation_id=conversation_id)
        await turns.request_stop(conversation_id=conversation_id)

    async def _acknowledge(self, prepared: turns.PreparedTurn, *, client_key: Any) -> None:
        result = prepared.result
        self.user = prepared.user
        conversation_id = str(result.conversation.pk)
        # A socket already watching the conversation is in sync; one that sends into another
        # conversation joins it (the state follows the ack), and a new conversation has no
        # earlier events to catch up on.
        join = conversation_id != self.watching and not result.new_conversation
        if conversation_id != self.watching and result.new_conversation:
            await self._leave()
            self.watching = conversation_id
            await turns.watch(conversation_id=conversation_id, watcher=self)
            self._synced_at({})
        await self._send({
            "type": "ack", "client_key": client_key, "duplicate": not result.created,
            "conversation": conversation_dict(result.conversation),
            "user_message": prepared.user_message, "assistant_message": prepared.assistant_message,
        })
        if result.created:
            await turns.start_turn(prepared=prepared, user_id=self.user_id)
            await self.channel_layer.group_send(
                turns.user_group(self.user_id),
                {"type": "conversation.changed", "conversation": conversation_id})
        if join or not result.created:
            # After the turn started, so its owner answers the state request at once.
            await self._watch(conversation_id)

    # --- joining ------------------------------------------------------------------------------

    async def _leave(self) -> None:
        if self.watching:
            await turns.unwatch(conversation_id=self.watching, watcher=self)
        self.watching = None
        self.synced = False
        self.buffer = []
        self.last_seq = {}
        self.pending_state = None

    async def _watch(self, conversation_id: str, *, leaf: int | None = None) -> None:
        if conversation_id != self.watching:
            await self._leave()
            self.watching = conversation_id
            # Join first...
            await turns.watch(conversation_id=conversation_id, watcher=self)
        self.synced = False
        self.buffer = []
        # ...then read.
        try:
            state = await database_sync_to_async(_conversation_state)(
                user=self.user, conversation_id=conversation_id, leaf_id=leaf)
        except ConversationNotFound:
            await self._leave()
            raise
        running = [m for m in state["messages"]
                   if m["status"] in (Message.Status.PENDING, Message.Status.STREAMING)]
        if not running:
            await self._send(state)
            self._synced_at({m["id"]: m["seq"] for m in state["messages"]})
            return
        self.pending_state = state
        await turns.request_state(conversation_id=conversation_id, reply_to=self.channel_name)
        if self.sync_timer:
            self.sync_timer.cancel()
        self.sync_timer = asyncio.create_task(self._sync_from_database_later(conversation_id))

    async def _resync(self, conversation_id: str) -> None:
        try:
            await self._watch(conversation_id)
        except ConversationNotFound:  # deleted meanwhile
            await self._send({"type": "error", "code": "not_found",
                              "message": "That conversation does not exist."})

    async def _sync_from_database_later(self, conversation_id: str) -> None:
        await asyncio.sleep(SNAPSHOT_TIMEOUT)
        if self.watching == conversation_id and not self.synced and self.pending_state:
            state, self.pending_state = self.pending_state, None
            await self._send(state)
            self._synced_at({m["id"]: m["seq"] for m in state["messages"]})
            await self._flush_buffer()

    def _synced_at(self, seqs: dict[int, int]) -> None:
        self.last_seq = seqs
        self.synced = True

    async def _flush_buffer(self) -> None:
        buffered, self.buffer = self.buffer, []
        for event in buffered:
            await self.turn_event(event)

    # --- channel-layer messages ---------------------------------------------------------------

    async def turn_snapshot(self, event: dict) -> None:
        if self.synced or self.pending_state is None or event["conversation"] != self.watching:
            return
        snapshot = event["snapshot"]
        state, self.pending_state = self.pending_state, None
        state["messages"] = [
            {**m, **snapshot} if m["id"] == snapshot["id"] else m for m in state["messages"]
        ]
        if self.sync_timer:
            self.sync_timer.cancel()
        await self._send(state)
        self._synced_at({m["id"]: m["seq"] for m in state["messages"]})
        await self._flush_buffer()

    async def turn_event(self, event: dict) -> None:
        if not self.synced:
            self.buffer.append(event)
            return
        message_id, seq = event["message"], event["seq"]
        last = self.last_seq.get(message_id, 0)
        if seq <= last:
            return  # already in the state this socket was sent
        if seq > last + 1 and last:
            # A gap (a dropped message, or a database state older than the live stream):
            # fetch the state again rather than show a hole.
            logger.info("gap in conversation %s: event %d after %d; re-syncing",
                        self.watching, seq, last)
            self.synced = False
            # Not awaited here: this runs in the publishing turn's task, which must not wait
            # for this socket's database read.
            if self.resync_task is None or self.resync_task.done():
                self.resync_task = asyncio.create_task(self._resync(self.watching))
            return
        self.last_seq[message_id] = seq
        await self.send(text_data=event["json"])

    async def conversation_changed(self, event: dict) -> None:
        await self._send({"type": "conversations_changed", "conversation": event["conversation"]})

    async def _send(self, frame: dict) -> None:
        await self.send(text_data=json.dumps(frame, separators=(",", ":")))


def _conversation_id(frame: dict, *, required: bool) -> str | None:
    value = frame.get("conversation")
    if value in (None, "") and not required:
        return None
    if not isinstance(value, str) or len(value) > 64:
        raise ClientError("bad_frame", "\"conversation\" must be a conversation id.")
    return value


def _ref(text_data: str | None) -> Any:
    """Echo the client's "ref" (if any) so it can match an error to its request."""
    try:
        frame = json.loads(text_data or "")
        return frame.get("ref") if isinstance(frame, dict) else None
    except ValueError:
        return None
