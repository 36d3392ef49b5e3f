"""Server-owned turns: start one, stop one, and tell a joining socket where one stands.

A turn runs in a task of the process that started it, not in a socket's handler: closing a tab
neither stops nor duplicates it. It numbers its events and publishes them to the conversation's
channel-layer group; it writes the assistant message at boundaries (start, periodic flush, tool
calls, end), never per token. Stop and "what is your state?" reach the owning process through a
per-conversation control group that only that process's control channel joins while the turn
runs, so they work across Daphne processes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ObjectDoesNotExist
from django.utils import timezone

from agents.definitions import AgentSpec, resolve_agent
from agents.events import (
    ModelSelected,
    ProviderError,
    ReasoningDelta,
    Retrying,
    TextDelta,
    ToolCallFinished,
    ToolCallStarted,
    Usage,
    Waiting,
)
from agents.loop import Target, run_turn
from agents.providers import get_provider
from conversations import actions
from conversations.history import upstream_history
from conversations.models import Message
from conversations.selectors import branch, message_dict, tool_calls_by_message
from conversations.titles import generate_title

logger = logging.getLogger(__name__)

# Seconds: deltas closer together than this are sent together (see Turn._delta).
DELTA_WINDOW = 0.012


class Watcher(Protocol):
    """A socket watching a conversation (conversations.consumers.ChatConsumer)."""

    async def turn_event(self, event: dict[str, Any]) -> None: ...


def conversation_group(conversation_id: Any) -> str:
    """Every socket watching a conversation."""
    return f"conv.{conversation_id}"


def control_group(conversation_id: Any) -> str:
    """The process running the conversation's turn, if any."""
    return f"turnctl.{conversation_id}"


def user_group(user_id: int) -> str:
    """Every socket of one user (sidebar updates: new conversations, titles)."""
    return f"user.{user_id}"


@dataclass(slots=True)
class _ToolCallState:
    id: str
    name: str
    server: str
    arguments: dict[str, Any]
    round: int
    text_offset: int
    started: float
    status: str = "running"
    result: str = ""
    is_error: bool = False
    duration_ms: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "server": self.server, "arguments": self.arguments,
            "round": self.round, "text_offset": self.text_offset, "status": self.status,
            "result": self.result, "is_error": self.is_error, "duration_ms": self.duration_ms,
        }


@dataclass(eq=False)
class Turn:
    conversation_id: str
    message_id: int
    user_message_id: int
    user_id: int
    spec: AgentSpec
    history: list
    seq: int = 0
    status: str = Message.Status.PENDING
    model: str = ""
    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    reasoning_signature: str = ""
    reasoning_started: float | None = None
    reasoning_ms: int | None = None
    tool_calls: dict[str, _ToolCallState] = field(default_factory=dict)
    usage: dict[str, int] = field(default_factory=dict)
    error: str = ""
    first_token_at: datetime | None = None
    stop_requested: bool = False
    _stream_task: asyncio.Task | None = None
    # Publishes in progress (the stream's and a coalescing timer's may overlap).
    _publishing: int = 0
    _process: _ProcessControl | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _pending: list[str] = field(default_factory=list)
    _pending_kind: str = ""
    _last_delta: float = 0.0
    _flush_timer: asyncio.TimerHandle | None = None
    _flush_task: asyncio.Future | None = None
    _new_round: bool = False

    # --- state a joining socket needs --------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "id": self.message_id,
            "role": "assistant",
            "parent": self.user_message_id,
            "status": self.status,
            "model": self.model,
            "content": "".join(self.text),
            "reasoning": "".join(self.reasoning),
            "reasoning_ms": self.reasoning_ms,
            "error": self.error,
            "tool_calls": [c.as_dict() for c in self.tool_calls.values()],
            "usage": self.usage,
            "seq": self.seq,
        }

    # --- publishing ---------------------------------------------------------------------------

    async def _delta(self, kind: str, text: str) -> None:
        """Publish a text or reasoning delta, coalescing under load.

        A delta that arrives at least DELTA_WINDOW after the last delta goes out at once (an
        unhurried stream, token by token, with no added delay); one that arrives sooner waits at
        most the rest of the window and goes out with the others that came meanwhile. A busy
        process thus sends fewer, larger frames instead of falling behind."""
        if self._pending and self._pending_kind != kind:
            await self._flush_pending()
        loop = asyncio.get_running_loop()
        if not self._pending and loop.time() - self._last_delta >= DELTA_WINDOW:
            await self._publish_delta(kind, text)
            return
        self._pending.append(text)
        self._pending_kind = kind
        if self._flush_timer is None:
            self._flush_timer = loop.call_at(self._last_delta + DELTA_WINDOW, self._flush_later)

    def _flush_later(self) -> None:
        self._flush_timer = None
        if self._pending:
            self._flush_task = asyncio.ensure_future(self._flush_pending())

    async def _flush_pending(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        if self._pending:
            text, self._pending = "".join(self._pending), []
            await self._publish_delta(self._pending_kind, text)

    async def _publish_delta(self, kind: str, text: str) -> None:
        # Only published text is in the snapshot, so a joining socket's state and the numbered
        # events after it never overlap.
        (self.text if kind == "text" else self.reasoning).append(text)
        await self.publish({"kind": kind, "text": text})
        # Only deltas open a coalescing window: the model or status event sent just before the
        # first token must not hold that token back (it cost every answer ~12 ms of TTFT).
        self._last_delta = asyncio.get_running_loop().time()

    async def publish(self, event: dict[str, Any]) -> None:
        self.seq += 1
        # Serialised once here, not once per watching socket.
        payload = json.dumps(
            {"type": "turn", "conversation": self.conversation_id, "message": self.message_id,
             "seq": self.seq, "event": event},
            separators=(",", ":"),
        )
        message = {"type": "turn.event", "conversation": self.conversation_id,
                   "message": self.message_id, "seq": self.seq, "json": payload}
        # A stop must not land inside a send (watchers would see a numbered event missing):
        # while publishing, stop() only raises the flag, and the stop happens right after.
        self._publishing += 1
        try:
            # Publishes from the stream and from a coalescing timer go out in the order their
            # numbers were given (the lock is FIFO).
            async with self._lock:
                control = self._process
                await control.deliver(self.conversation_id, message)
                if control.shared_layer:
                    await get_channel_layer().group_send(
                        conversation_group(self.conversation_id),
                        {**message, "origin": control.channel})
        finally:
            self._publishing -= 1
        if self.stop_requested and asyncio.current_task() is self._stream_task:
            raise asyncio.CancelledError

    # --- running ------------------------------------------------------------------------------

    async def run(self) -> None:
        control = self._process = await _control()
        layer = get_channel_layer()
        flusher = asyncio.create_task(self._flush_periodically())
        try:
            await self.publish({"kind": "started", "message": self.snapshot()})
            self._stream_task = asyncio.create_task(self._stream())
            try:
                await self._stream_task
                self.status = Message.Status.COMPLETE
            except asyncio.CancelledError:
                if not self.stop_requested:
                    raise
                self.status = Message.Status.STOPPED
            except ProviderError as exc:
                self.status = Message.Status.FAILED
                self.error = exc.message
            except Exception:
                logger.exception("turn %s failed", self.message_id)
                self.status = Message.Status.FAILED
                self.error = "The answer failed because of an error on our server."
        finally:
            flusher.cancel()
            if self.status in (Message.Status.PENDING, Message.Status.STREAMING):
                # Cancelled from outside (process shutting down): keep what we have.
                self.status = Message.Status.INTERRUPTED
                self.error = actions.INTERRUPTED_ERROR
            self._close_reasoning()
            try:
                # Deltas still waiting (a stop or an error mid-window) are part of the answer.
                await self._flush_pending()
                await asyncio.shield(self._finish())
            finally:
                control.turns.pop(self.conversation_id, None)
                await layer.group_discard(control_group(self.conversation_id), control.channel)
        if (self.status == Message.Status.COMPLETE and settings.GENERATE_TITLES
                and len(self.history) == 1):
            # After the first exchange; the turn is over, so a slow title delays nothing.
            await generate_title(
                conversation_id=self.conversation_id, user_id=self.user_id, spec=self.spec,
                history=self.history, answer="".join(self.text))

    async def _stream(self) -> None:
        targets = [Target(provider=get_provider(config), model=model)
                   for config, model in self.spec.targets]
        async for event in run_turn(targets=targets, system=self.spec.system_prompt,
                                    history=self.history):
            await self._handle(event)
        await self._flush_pending()

    async def _handle(self, event: object) -> None:
        if isinstance(event, TextDelta):
            self._first_token()
            self._close_reasoning()
            await self._delta("text", event.text)
        elif isinstance(event, ReasoningDelta):
            self._first_token()
            if self.reasoning_started is None:
                self.reasoning_started = time.monotonic()
            if event.signature:
                self.reasoning_signature = event.signature
            if event.text:
                text = event.text
                if self._new_round and self.reasoning:
                    # A later round's reasoning starts a new paragraph, not mid-sentence.
                    text = "\n\n" + text
                self._new_round = False
                await self._delta("reasoning", text)
        elif isinstance(event, ToolCallStarted):
            await self._flush_pending()
            self._first_token()
            self._close_reasoning()
            call = event.call
            self.tool_calls[call.id] = state = _ToolCallState(
                id=call.id, name=call.name, server=event.server, arguments=call.arguments,
                round=event.round, text_offset=event.text_offset, started=time.monotonic(),
            )
            await database_sync_to_async(actions.do_record_tool_call)(
                message_id=self.message_id, call_id=call.id, name=call.name, server=event.server,
                arguments=call.arguments, round=event.round, text_offset=event.text_offset,
            )
            await self.publish({"kind": "tool_call_started", "call": state.as_dict()})
        elif isinstance(event, ToolCallFinished):
            await self._flush_pending()
            state = self.tool_calls[event.call_id]
            state.status = "failed" if event.is_error else "complete"
            state.result, state.is_error, state.duration_ms = (
                event.result, event.is_error, event.duration_ms)
            await database_sync_to_async(actions.do_finish_tool_call)(
                message_id=self.message_id, call_id=event.call_id, result=event.result,
                is_error=event.is_error,
            )
            self._new_round = True
            await self.publish({"kind": "tool_call_finished", "call": state.as_dict()})
        elif isinstance(event, Usage):
            for key in ("input_tokens", "output_tokens", "reasoning_tokens", "cached_tokens"):
                self.usage[key] = self.usage.get(key, 0) + getattr(event, key)
        elif isinstance(event, ModelSelected):
            await self._flush_pending()
            self.model = event.model if event.provider == "default" else (
                f"{event.provider}:{event.model}")
            await self.publish({"kind": "model", "model": self.model})
        elif isinstance(event, Waiting):
            await self.publish({"kind": "status", "status": "waiting",
                                "detail": f"Waiting for a free slot on the model server "
                                          f"(position {event.position})."})
        elif isinstance(event, Retrying):
            detail = (f"{event.message} Trying {event.model} instead." if event.fallback
                      else f"{event.message} Retrying in {event.delay:.1f} s.")
            await self.publish({"kind": "status", "status": "retrying", "detail": detail})

    def _first_token(self) -> None:
        if self.first_token_at is None:
            self.first_token_at = timezone.now()
            self.status = Message.Status.STREAMING

    def _close_reasoning(self) -> None:
        if self.reasoning_started is not None and self.reasoning_ms is None:
            self.reasoning_ms = int((time.monotonic() - self.reasoning_started) * 1000)

    # --- persistence --------------------------------------------------------------------------

    async def _flush_periodically(self) -> None:
        """Write the answer so far at 1, 3, 7, 15… seconds (each wait twice the last, up to
        TURN_FLUSH_MAX_INTERVAL): a typical answer costs two or three writes whatever its
        length, and a process that dies loses at most one interval of text."""
        interval = settings.TURN_FLUSH_INTERVAL
        while True:
            await asyncio.sleep(interval)
            interval = min(interval * 2, settings.TURN_FLUSH_MAX_INTERVAL)
            # Written even when nothing changed: the write is also the turn's heartbeat.
            try:
                await self._flush_once()
            except Exception:  # a busy or briefly unreachable database: try at the next one
                logger.exception("could not store the progress of turn %s", self.message_id)

    async def _flush_once(self) -> None:
        await database_sync_to_async(actions.do_flush_message)(
            message_id=self.message_id, content="".join(self.text),
            reasoning="".join(self.reasoning), status=self.status, last_seq=self.seq,
            model=self.model, first_token_at=self.first_token_at,
        )

    async def _finish(self) -> None:
        running = [c for c in self.tool_calls.values() if c.status == "running"]
        for call in running:
            call.status, call.is_error = "cancelled", True
            call.result = "Cancelled: the answer ended before the tool finished."
        seq_at_finish = self.seq + 1
        try:
            await database_sync_to_async(actions.do_finish_message)(
                message_id=self.message_id, content="".join(self.text),
                reasoning="".join(self.reasoning), reasoning_signature=self.reasoning_signature,
                reasoning_ms=self.reasoning_ms, status=self.status, error=self.error,
                last_seq=seq_at_finish, model=self.model, first_token_at=self.first_token_at,
                usage=self.usage, cancel_running_tools=bool(running),
            )
        except Exception:
            logger.exception("could not store the end of turn %s", self.message_id)
        await self.publish({"kind": "finished", "message": self.snapshot()})

    # --- control ------------------------------------------------------------------------------

    def stop(self) -> None:
        self.stop_requested = True
        if self._stream_task is not None and not self._publishing:
            # Wherever the stream waits (mostly on the model server): the provider closes its
            # HTTP response as the cancellation unwinds it.
            self._stream_task.cancel()


class _ProcessControl:
    """This process's control channel (one per event loop) and the turns it runs."""

    def __init__(self) -> None:
        self.channel = ""
        self.turns: dict[str, Turn] = {}
        self.tasks: set[asyncio.Task] = set()
        self._reader: asyncio.Task | None = None
        # The sockets of this process watching each conversation. Turn events reach them by a
        # direct call, not through the channel layer: per token, per socket, the layer's hops
        # (a queue, a task, a dispatch) cost more than the rest of the path together.
        self.watchers: dict[str, set[Watcher]] = {}
        # Whether other processes may watch too (Redis layer): then each process's control
        # channel joins the conversation's group while it has watchers, and relays events.
        self.shared_layer = False

    async def start(self) -> None:
        layer = get_channel_layer()
        self.shared_layer = not isinstance(layer, InMemoryChannelLayer)
        # The default prefix: channels-redis reads every process-local channel through one
        # shared receive loop keyed by it; another prefix would never be read.
        self.channel = await layer.new_channel()
        self._reader = asyncio.create_task(self._read(layer))
        # At start-up: turns left streaming by a process that died are interrupted now.
        count = await database_sync_to_async(actions.do_interrupt_stale_turns)()
        if count:
            logger.warning("marked %d turn(s) of a stopped process as interrupted", count)
        _before_server_stops(self.shutdown)

    async def shutdown(self) -> None:
        """The server is stopping (SIGTERM, SIGINT): every turn of this process ends now and
        stores all the text it has, as interrupted; the user can retry it after the restart."""
        if self.tasks:
            logger.warning("server stopping: interrupting %d running turn(s)", len(self.tasks))
        await wait_for_turns(timeout=0)

    async def watch(self, conversation_id: str, watcher: Watcher) -> None:
        """Start delivering the conversation's events to `watcher`. Returns once events from
        any process will reach it (join first, then read the state)."""
        watchers = self.watchers.setdefault(conversation_id, set())
        first = not watchers
        watchers.add(watcher)
        if first and self.shared_layer:
            await get_channel_layer().group_add(conversation_group(conversation_id), self.channel)

    async def unwatch(self, conversation_id: str, watcher: Watcher) -> None:
        watchers = self.watchers.get(conversation_id)
        if not watchers or watcher not in watchers:
            return
        watchers.discard(watcher)
        if not watchers:
            del self.watchers[conversation_id]
            if self.shared_layer:
                await get_channel_layer().group_discard(
                    conversation_group(conversation_id), self.channel)

    async def deliver(self, conversation_id: str, event: dict[str, Any]) -> None:
        for watcher in tuple(self.watchers.get(conversation_id, ())):
            try:
                await watcher.turn_event(event)
            except Exception:  # one broken socket must not stop the turn or the others
                logger.exception("could not deliver an event to a socket; dropping it")
                await self.unwatch(conversation_id, watcher)

    async def _read(self, layer) -> None:
        # This loop is how stops and state requests reach this process's turns: one bad
        # message, or a passing channel-layer error, must not end it.
        while True:
            try:
                await self._handle_control(layer, await layer.receive(self.channel))
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("control channel %s: message not handled", self.channel)
                await asyncio.sleep(0.1)

    async def _handle_control(self, layer, message: dict[str, Any]) -> None:
        if message["type"] == "turn.event":
            # Another process's turn; this process's own events were delivered directly.
            if message.get("origin") != self.channel:
                await self.deliver(message["conversation"], message)
            return
        turn = self.turns.get(message.get("conversation", ""))
        if turn is None:
            return
        if message["type"] == "turn.stop":
            turn.stop()
        elif message["type"] == "turn.state" and message.get("reply_to"):
            await layer.send(
                message["reply_to"],
                {"type": "turn.snapshot", "conversation": turn.conversation_id,
                 "snapshot": turn.snapshot()},
            )


def _before_server_stops(shutdown: Callable[[], Any]) -> None:
    """Under Daphne, have Twisted run `shutdown()` (a coroutine function) when the server is
    asked to stop, and wait for it before stopping the loop. Elsewhere (tests, management
    commands) there is no server to stop, and nothing to do."""
    reactor = sys.modules.get("twisted.internet.reactor")
    if reactor is None or not getattr(reactor, "running", False):
        return
    from twisted.internet import defer

    loop = asyncio.get_running_loop()
    reactor.addSystemEventTrigger(
        "before", "shutdown", lambda: defer.Deferred.fromFuture(loop.create_task(shutdown())))


_controls: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _ProcessControl] = (
    weakref.WeakKeyDictionary()
)
_control_lock: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


async def _control() -> _ProcessControl:
    loop = asyncio.get_running_loop()
    lock = _control_lock.setdefault(loop, asyncio.Lock())
    async with lock:
        if loop not in _controls:
            control = _ProcessControl()
            await control.start()
            _controls[loop] = control
    return _controls[loop]


class UserInactive(Exception):
    """The socket's user was deactivated (or deleted) since it connected."""


@dataclass(frozen=True, slots=True)
class PreparedTurn:
    user: Any
    result: actions.SendResult
    user_message: dict[str, Any]
    assistant_message: dict[str, Any]
    # Set when a turn must start (the message was new): the agent and the upstream history.
    spec: AgentSpec | None
    history: list | None


def prepare_turn(
    *, user_id: int, action: Callable[[Any], actions.SendResult]
) -> PreparedTurn:
    """Everything a send needs from the database, in one trip to the database thread: the
    user checked again, the messages stored by `action(user)`, what the client is told, and
    (for a new message) the agent and the history. Synchronous."""
    try:
        # get(), not first(): a lookup by key needs no ORDER BY (less ORM work per send).
        user = get_user_model().objects.get(pk=user_id, is_active=True)
    except ObjectDoesNotExist:
        raise UserInactive from None
    result = action(user)
    reply_tools = [] if result.created else None
    spec = history = None
    if result.created:
        # A first message (a new conversation, or an edit of the first message) is the whole
        # branch: no need to load the conversation.
        if result.user_message.parent_id is None:
            messages, calls = [result.user_message], {}
        else:
            # Only the answers' tool calls matter here, fetched without a prefetch's work for
            # every message of the branch.
            messages = branch(conversation=result.conversation, leaf_id=result.user_message.pk,
                              with_tool_calls=False)
            calls = tool_calls_by_message(message_ids=[
                m.pk for m in messages if m.role == Message.Role.ASSISTANT])
        spec = resolve_agent(result.conversation.agent_id)
        history = upstream_history(messages, tool_calls=calls)
    return PreparedTurn(
        user=user,
        result=result,
        user_message=message_dict(result.user_message, tool_calls=[]),
        assistant_message=message_dict(result.assistant_message, tool_calls=reply_tools),
        spec=spec, history=history,
    )


async def watch(*, conversation_id: str, watcher: Watcher) -> None:
    await (await _control()).watch(conversation_id, watcher)


async def unwatch(*, conversation_id: str, watcher: Watcher) -> None:
    await (await _control()).unwatch(conversation_id, watcher)


async def ensure_started() -> None:
    """Set up this process's control channel, and interrupt turns left by dead processes
    (once per process, at its first socket)."""
    await _control()


async def start_turn(*, prepared: PreparedTurn, user_id: int) -> Turn:
    """Run the model for a stored user message in a task of this process. Returns at once;
    the turn's events go to the conversation's watchers."""
    assert prepared.spec is not None and prepared.history is not None
    result = prepared.result
    control = await _control()
    turn = Turn(
        conversation_id=str(result.conversation.pk), message_id=result.assistant_message.pk,
        user_message_id=result.user_message.pk, user_id=user_id, spec=prepared.spec,
        history=prepared.history,
    )
    # Registered before the task starts, so a stop or a state request sent right after
    # start_turn returns finds it.
    control.turns[turn.conversation_id] = turn
    await get_channel_layer().group_add(control_group(turn.conversation_id), control.channel)
    task = asyncio.create_task(turn.run(), name=f"turn-{turn.message_id}")
    control.tasks.add(task)
    task.add_done_callback(control.tasks.discard)
    return turn


async def request_stop(*, conversation_id: Any) -> None:
    """Ask whichever process runs the conversation's turn to stop it (a no-op when none does)."""
    await get_channel_layer().group_send(
        control_group(conversation_id), {"type": "turn.stop", "conversation": str(conversation_id)}
    )


async def request_state(*, conversation_id: Any, reply_to: str) -> None:
    """Ask the owning process to send `turn.snapshot` to `reply_to`; no answer when no process
    runs a turn there (the caller falls back to the database after a short wait)."""
    await get_channel_layer().group_send(
        control_group(conversation_id),
        {"type": "turn.state", "conversation": str(conversation_id), "reply_to": reply_to},
    )


async def wait_for_turns(*, timeout: float | None = None) -> None:
    """Wait until the turns running on this event loop end; after `timeout` seconds, cancel
    those still running (they keep their text as interrupted). For tests and shutdown."""
    control = _controls.get(asyncio.get_running_loop())
    if control is None or not control.tasks:
        return
    _, pending = await asyncio.wait(list(control.tasks), timeout=timeout)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=5)
