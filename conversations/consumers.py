"""The chat WebSocket: frames in become calls (sending, broker, joining); events and results
become frames out (conversations.frames). Nothing else happens here.

Client frames: watch, older (the page before a message: scrolling up a long conversation),
send, stop, regenerate, decide, ping. Server frames: see conversations.frames.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from conversations import actions, branch_pages, broker, frames, sending, tool_records
from conversations.account_changes import session_fingerprint, session_user_id
from conversations.groups import announce_changed, user_group
from conversations.joining import Joiner
from conversations.selectors import ConversationNotFound, access_conversation
from conversations.socket_writer import direct_writer

logger = logging.getLogger(__name__)


class ClientError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class ChatConsumer(AsyncWebsocketConsumer):
    async def dispatch(self, message: dict) -> None:
        # Channels closes stale database connections before every message, through the one
        # thread all database work shares: per streamed token that hop dominated the cost.
        # Every ORM call here goes through database_sync_to_async, which does it already
        # (docs/private-apis.md).
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        await broker.get_broker()
        self.user = user
        self.user_id: int = user.pk
        session = self.scope.get("session")
        self.session_key = session.session_key if session is not None else None
        self.session = session_fingerprint(self.session_key)
        self.reply_channel = self.channel_name
        self.joiner = Joiner(self)
        self._part_id = 0
        await self.accept()
        # After the handshake, frames skip Channels' session wrapper, which inspects the session
        # on every send; a socket never changes the session, and per token that check cost
        # (docs/private-apis.md).
        real_send = getattr(getattr(self.base_send, "__self__", None), "real_send", None)
        if real_send is not None:
            self.base_send = real_send
        self._direct = direct_writer(self.base_send)
        await self.channel_layer.group_add(user_group(self.user_id), self.channel_name)
        await self.send_frame(frames.hello(username=user.get_username()))

    async def disconnect(self, code: int) -> None:
        if getattr(self, "user_id", None) is None:
            return
        await self.channel_layer.group_discard(user_group(self.user_id), self.channel_name)
        await self.joiner.close()

    # --- the JoinPort -------------------------------------------------------------------------

    async def send_json(self, text: str) -> None:
        # At most 4 bytes a character: nearly every frame is known to fit without encoding it.
        if len(text) * 4 > settings.WS_MAX_SEND_BYTES:
            text = _encodable(text)
            if len(text.encode()) > settings.WS_MAX_SEND_BYTES:
                self._part_id += 1
                for part in frames.parts(text, limit=settings.WS_MAX_SEND_BYTES,
                                         part_id=self._part_id):
                    await self._send_text(part)
                return
        await self._send_text(text)

    async def _send_text(self, text: str) -> None:
        if self._direct is not None:
            try:
                if self._direct(text):
                    return
            except UnicodeEncodeError:
                text = frames.well_formed(text)
                if self._direct(text):
                    return
        else:
            text = _encodable(text)
        await self.base_send({"type": "websocket.send", "text": text})

    async def send_frame(self, frame: dict[str, Any]) -> None:
        await self.send_json(frames.dumps(frame))

    # --- frames in ----------------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        frame: dict | None = None
        try:
            frame = _parse(text_data)
            handler = getattr(self, f"cmd_{frame['type']}", None)
            if handler is None:
                raise ClientError("unknown_type", f"Unknown frame type {frame['type']!r}.")
            # The user is checked on every command: a deactivated account is cut off at once.
            # send and regenerate check inside their own (single) trip to the database.
            if frame["type"] not in ("send", "regenerate"):
                self.user = await database_sync_to_async(sending.active_user)(
                    user_id=self.user_id)
            await handler(frame)
        except sending.UserInactive:
            await self.send_frame(frames.error(code="unauthorized",
                                               message="Your account is no longer active."))
            await self.close(code=4403)
        except ClientError as exc:
            await self._error(exc.code, exc.message, frame)
        except ConversationNotFound:
            await self._error("not_found", "That conversation does not exist.", frame)
        except actions.InvalidInput as exc:
            await self._error(exc.code, str(exc), frame)
        except actions.TurnInProgress as exc:
            await self._error("busy", str(exc), frame)
        except actions.TooManyTurns as exc:
            await self._error("too_many_turns", str(exc), frame)
        except tool_records.NotWaiting as exc:
            await self._error("not_waiting", str(exc), frame)

    async def _error(self, code: str, message: str, frame: dict | None) -> None:
        # The client's "ref" (if any) comes back, so it can match an error to its request.
        ref = frame.get("ref") if frame is not None else None
        await self.send_frame(frames.error(code=code, message=message, ref=ref))

    async def cmd_ping(self, frame: dict) -> None:
        await self.send_frame(frames.pong())

    async def cmd_watch(self, frame: dict) -> None:
        conversation_id = sending.check_conversation_id(frame.get("conversation"), required=True)
        leaf = frame.get("leaf")
        if leaf is not None and (not isinstance(leaf, int) or isinstance(leaf, bool)):
            raise ClientError("bad_frame", "\"leaf\" must be a message id.")
        await self.joiner.watch(user=self.user, conversation_id=conversation_id, leaf=leaf)

    async def cmd_older(self, frame: dict) -> None:
        """{"type": "older", "conversation": id, "before": message id}: the messages before
        that one on its branch (answered with older_messages)."""
        conversation_id = sending.check_conversation_id(frame.get("conversation"), required=True)
        before = frame.get("before")
        if not isinstance(before, int) or isinstance(before, bool) or not 0 < before < 2**63:
            raise ClientError("bad_frame", "\"before\" must be a message id.")
        try:
            page = await database_sync_to_async(branch_pages.read_older)(
                user=self.user, conversation_id=conversation_id, before=before)
        except branch_pages.MessageNotFound:
            raise ClientError("not_found", "That message is not in this conversation.") from None
        await self.send_frame(frames.older_messages(
            conversation_id=conversation_id, before=before, messages=page.messages,
            siblings=page.siblings, older=page.older))

    async def cmd_send(self, frame: dict) -> None:
        request = sending.check_send(
            conversation=frame.get("conversation"), text=frame.get("text"),
            client_key=frame.get("client_key"), parent=frame.get("parent", actions.AUTO),
            agent=frame.get("agent"))
        prepared = await database_sync_to_async(sending.do_send)(
            user_id=self.user_id, request=request)
        await self._acknowledge(prepared, client_key=frame.get("client_key"))

    async def cmd_regenerate(self, frame: dict) -> None:
        request = sending.check_regenerate(conversation=frame.get("conversation"),
                                           message=frame.get("message"))
        prepared = await database_sync_to_async(sending.do_regenerate)(
            user_id=self.user_id, request=request)
        await self._acknowledge(prepared, client_key=None)

    async def cmd_stop(self, frame: dict) -> None:
        conversation_id = sending.check_conversation_id(frame.get("conversation"), required=True)
        await database_sync_to_async(access_conversation)(
            user=self.user, conversation_id=conversation_id)
        await broker.request_stop(conversation_id=conversation_id)

    async def cmd_decide(self, frame: dict) -> None:
        """Approve or deny a tool call paused for approval (conversations.tool_approval)."""
        conversation_id = sending.check_conversation_id(frame.get("conversation"), required=True)
        call_id, decision = frame.get("call_id"), frame.get("decision")
        if not isinstance(call_id, str) or not call_id or len(call_id) > 200:
            raise ClientError("bad_frame", "\"call_id\" must be a tool call's id.")
        if decision not in ("approve", "deny"):
            raise ClientError("bad_frame", "\"decision\" must be \"approve\" or \"deny\".")
        await database_sync_to_async(tool_records.do_decide_for_owner)(
            user=self.user, conversation_id=conversation_id, call_id=call_id, decision=decision)
        await broker.request_decision(conversation_id=conversation_id, call_id=call_id,
                                      decision=decision)

    async def _acknowledge(self, prepared: sending.PreparedTurn, *, client_key: Any) -> None:
        self.user = prepared.user
        conversation_id = prepared.conversation_id
        # A socket already watching the conversation is in sync; one that sends into another
        # conversation joins it (the state follows the ack), and a new conversation has no
        # earlier events to catch up on.
        elsewhere = conversation_id != self.joiner.watching
        if elsewhere and prepared.new_conversation:
            await self.joiner.watch_new(user=self.user, conversation_id=conversation_id)
        try:
            await self.send_frame(frames.ack(
                client_key=client_key, duplicate=not prepared.created,
                conversation=prepared.conversation,
                user_message=prepared.user_message,
                assistant_message=prepared.assistant_message))
        finally:
            # Stored is promised: whatever became of the ack, the answer gets written (a
            # pending answer with no turn would refuse every later send).
            if prepared.plan is not None:
                await broker.start_turn(plan=prepared.plan)
                await announce_changed(user_id=self.user_id, conversation_id=conversation_id)
        if (elsewhere and not prepared.new_conversation) or not prepared.created:
            # After the turn started, so its view is there at once.
            await self.joiner.watch(user=self.user, conversation_id=conversation_id)

    # --- channel-layer messages ---------------------------------------------------------------

    async def turn_snapshot(self, event: dict) -> None:
        await self.joiner.on_view(conversation_id=event["conversation"], view=event["snapshot"])

    async def account_changed(self, event: dict) -> None:
        """Deactivated, password changed, logged out elsewhere: is this socket's session still
        good? (conversations.account_changes)"""
        if (event.get("ended_session") == self.session
                or await database_sync_to_async(session_user_id)(self.session_key) != self.user_id):
            await self.send_frame(frames.error(
                code="unauthorized", message="Your session has ended: sign in again."))
            await self.close(code=4401)

    async def conversation_changed(self, event: dict) -> None:
        await self.send_frame(frames.conversations_changed(conversation_id=event["conversation"]))


def _parse(text_data: str | None) -> dict:
    if text_data is None:
        raise ClientError("bad_frame", "Frames must be JSON text.")
    limit = settings.WS_MAX_FRAME_BYTES
    # Bytes, as documented: characters undercount anything beyond ASCII up to four times.
    if len(text_data) > limit or (len(text_data) * 4 > limit
                                  and len(text_data.encode("utf-8", "surrogatepass")) > limit):
        raise ClientError("frame_too_large", f"Frames are limited to {limit} bytes.")
    try:
        frame = json.loads(text_data)
    except ValueError:
        raise ClientError("bad_frame", "Frames must be JSON objects.") from None
    except RecursionError:
        raise ClientError("bad_frame", "Frames must not nest this deeply.") from None
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        raise ClientError("bad_frame", "A frame needs a string \"type\".")
    return frame


def _encodable(text: str) -> str:
    """`text` as UTF-8 can carry it (see frames.well_formed); nearly always `text` itself."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return frames.well_formed(text)
    return text
