"""The per-process broker: runs turns in tasks, fans their events out to this process's
watchers, relays them to other processes over a shared channel layer, and routes control
requests (stop, state, decisions) to the process that runs a turn.

A turn belongs to the server, not to a socket: it runs in a task of the process that started
it, so closing a tab neither stops nor duplicates it. Control requests reach the owning
process through a per-conversation control group that only that process's control channel
joins while the turn runs, so they work across Daphne processes. One broker per event loop.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import uuid
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings

from conversations import actions
from conversations.frames import turn_json
from conversations.groups import control_group, conversation_group
from conversations.hooks import Decision
from conversations.payloads import Envelope, MessagePayload, message_payload
from conversations.runner import TurnPlan, TurnRunner, TurnSink

logger = logging.getLogger(__name__)

# How long a Stop waits for the process running the turn to answer before it takes the turn
# for one no live process owns (its process died) and ends it itself.
STOP_ANSWER_TIMEOUT = 1.5


@dataclass(frozen=True, slots=True)
class Delivery:
    """One turn event as a socket sends it: numbered, serialised once for every watcher."""

    conversation_id: str
    message_id: int
    seq: int
    json: str


class Watcher(Protocol):
    """A socket's side of a conversation (conversations.joining.Joiner)."""

    async def deliver(self, delivery: Delivery) -> None: ...

    # The conversation changed behind the turns' backs (turns of a dead process interrupted):
    # read it again.
    async def refresh(self) -> None: ...


class BrokerSink:
    """A turn's events to every watcher, in this process and (shared layer) in the others."""

    __slots__ = ("_broker", "_runner")

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._runner: TurnRunner | None = None

    async def emit(self, envelope: Envelope) -> None:
        delivery = Delivery(envelope.conversation_id, envelope.message_id, envelope.seq,
                            turn_json(envelope))
        broker = self._broker
        await broker.deliver(delivery)
        if broker.shared_layer:
            await get_channel_layer().group_send(
                conversation_group(envelope.conversation_id),
                {"type": "turn.event", "conversation": delivery.conversation_id,
                 "message": delivery.message_id, "seq": delivery.seq, "json": delivery.json,
                 "origin": broker.channel})

    async def close(self) -> None:
        if self._runner is not None:
            await self._broker.turn_ended(self._runner)


class Broker:
    def __init__(self) -> None:
        self.channel = ""
        self.runners: dict[str, TurnRunner] = {}
        self.tasks: set[asyncio.Task] = set()
        self._reader: asyncio.Task | None = None
        self._sweeper: asyncio.Task | None = None
        # Stops waiting for the owning process's answer, by request id.
        self._stops: dict[str, asyncio.Future] = {}
        # The watchers of this process for each conversation. Turn events reach them by a
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
        # Turns left streaming by a process that died are interrupted now, and then every
        # TURN_SWEEP_INTERVAL, so that they end without anyone having to open them.
        await self.sweep()
        self._sweeper = asyncio.create_task(self._sweep_periodically())
        _before_server_stops(self.shutdown)

    async def sweep(self) -> None:
        found = await database_sync_to_async(actions.do_interrupt_stale_turns)()
        if found:
            logger.warning("marked the turns of a stopped process as interrupted in %d "
                           "conversation(s)", len(found))

    async def _sweep_periodically(self) -> None:
        while True:
            await asyncio.sleep(settings.TURN_SWEEP_INTERVAL)
            try:
                await self.sweep()
            except Exception:  # the database may be away for a while; the next sweep retries
                logger.exception("sweep for stale turns failed")

    async def shutdown(self) -> None:
        """The server is stopping (SIGTERM, SIGINT): every turn of this process ends now and
        stores all the text it has, as interrupted; the user can retry it after the restart."""
        if self.tasks:
            logger.warning("server stopping: interrupting %d running turn(s)", len(self.tasks))
        await wait_for_turns(timeout=0)

    # --- turns --------------------------------------------------------------------------------

    async def start_turn(self, *, plan: TurnPlan, sinks: Sequence[TurnSink] = ()) -> TurnRunner:
        sink = BrokerSink(self)
        runner = sink._runner = TurnRunner(plan=plan, sinks=(sink, *sinks))
        # Registered before the task starts, so a stop or a state request sent right after
        # start_turn returns finds it.
        self.runners[plan.conversation_id] = runner
        await get_channel_layer().group_add(control_group(plan.conversation_id), self.channel)
        task = asyncio.create_task(runner.run(), name=f"turn-{plan.message_id}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return runner

    async def turn_ended(self, runner: TurnRunner) -> None:
        conversation_id = runner.plan.conversation_id
        # A newer turn of the conversation may have started since (after the finished event):
        # it keeps its registration.
        if self.runners.get(conversation_id) is runner:
            del self.runners[conversation_id]
            await get_channel_layer().group_discard(control_group(conversation_id), self.channel)

    async def ask_to_stop(self, conversation_id: str) -> bool:
        """Stop the turn another process runs; whether a process answered that it did."""
        request = uuid.uuid4().hex
        answered = self._stops[request] = asyncio.get_running_loop().create_future()
        try:
            await get_channel_layer().group_send(control_group(conversation_id), {
                "type": "turn.stop", "conversation": conversation_id,
                "reply_to": self.channel, "request": request})
            async with asyncio.timeout(STOP_ANSWER_TIMEOUT):
                return await answered
        except TimeoutError:
            return False
        finally:
            del self._stops[request]

    def local_view(self, conversation_id: str) -> MessagePayload | None:
        """The running turn's answer so far, when this process runs it."""
        runner = self.runners.get(conversation_id)
        return message_payload(runner.view()) if runner is not None else None

    # --- watchers -----------------------------------------------------------------------------

    async def watch(self, conversation_id: str, watcher: Watcher) -> None:
        """Deliver the conversation's events to `watcher`. Returns once events from any process
        will reach it (join first, then read the state)."""
        watchers = self.watchers.setdefault(conversation_id, set())
        first = not watchers
        watchers.add(watcher)
        # Even on the in-memory layer: the refresh notice comes through this group.
        if first:
            await get_channel_layer().group_add(conversation_group(conversation_id), self.channel)

    async def unwatch(self, conversation_id: str, watcher: Watcher) -> None:
        watchers = self.watchers.get(conversation_id)
        if not watchers or watcher not in watchers:
            return
        watchers.discard(watcher)
        if not watchers:
            del self.watchers[conversation_id]
            await get_channel_layer().group_discard(
                conversation_group(conversation_id), self.channel)

    async def deliver(self, delivery: Delivery) -> None:
        watchers = self.watchers.get(delivery.conversation_id)
        if not watchers:
            return
        for watcher in tuple(watchers):
            try:
                await watcher.deliver(delivery)
            except Exception:  # one broken socket must not stop the turn or the others
                logger.exception("could not deliver an event to a socket; dropping it")
                await self.unwatch(delivery.conversation_id, watcher)

    # --- the control channel ------------------------------------------------------------------

    async def _read(self, layer) -> None:
        # This loop is how stops, state requests and decisions reach this process's turns:
        # one bad message, or a passing channel-layer error, must not end it.
        while True:
            try:
                await self._handle_control(layer, await layer.receive(self.channel))
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("control channel %s: message not handled", self.channel)
                await asyncio.sleep(0.1)

    async def _handle_control(self, layer, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "turn.event":
            # Another process's turn; this process's own events were delivered directly.
            if message.get("origin") != self.channel:
                await self.deliver(Delivery(message["conversation"], message["message"],
                                            message["seq"], message["json"]))
            return
        if kind == "conversation.refresh":
            for watcher in tuple(self.watchers.get(message["conversation"], ())):
                await watcher.refresh()
            return
        if kind == "turn.stopping":
            waiting = self._stops.get(message.get("request", ""))
            if waiting is not None and not waiting.done():
                waiting.set_result(True)
            return
        runner = self.runners.get(message.get("conversation", ""))
        if runner is None:
            return
        if kind == "turn.stop":
            runner.stop()
            if message.get("reply_to"):
                await layer.send(message["reply_to"],
                                 {"type": "turn.stopping", "request": message.get("request", "")})
        elif kind == "turn.state" and message.get("reply_to"):
            await layer.send(message["reply_to"], {
                "type": "turn.snapshot", "conversation": runner.plan.conversation_id,
                "snapshot": message_payload(runner.view())})
        elif kind == "turn.decide" and message.get("decision") in ("approve", "deny"):
            runner.decide(call_id=str(message.get("call_id", "")), decision=message["decision"])


def _before_server_stops(shutdown: Callable[[], Awaitable[None]]) -> None:
    """Under Daphne, have Twisted run `shutdown()` when the server is asked to stop, and wait
    for it before stopping the loop (docs/private-apis.md). Elsewhere (tests, management
    commands) there is no server to stop, and nothing to do."""
    reactor = sys.modules.get("twisted.internet.reactor")
    if reactor is None or not getattr(reactor, "running", False):
        return
    from twisted.internet import defer

    loop = asyncio.get_running_loop()
    reactor.addSystemEventTrigger(
        "before", "shutdown", lambda: defer.Deferred.fromFuture(loop.create_task(shutdown())))


_brokers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Broker] = (
    weakref.WeakKeyDictionary())
_broker_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary())


async def get_broker() -> Broker:
    """This event loop's broker, started on first use (its control channel, and turns left by
    dead processes interrupted)."""
    loop = asyncio.get_running_loop()
    broker = _brokers.get(loop)
    if broker is not None:
        return broker
    async with _broker_locks.setdefault(loop, asyncio.Lock()):
        if loop not in _brokers:
            broker = Broker()
            await broker.start()
            _brokers[loop] = broker
    return _brokers[loop]


async def start_turn(*, plan: TurnPlan, sinks: Sequence[TurnSink] = ()) -> TurnRunner:
    """Run the model for a stored user message in a task of this process. Returns at once;
    the turn's events go to the conversation's watchers and to `sinks`."""
    return await (await get_broker()).start_turn(plan=plan, sinks=sinks)


async def request_stop(*, conversation_id: Any) -> None:
    """Stop the conversation's turn, wherever it runs. When no live process runs it (its
    process died, or never started it), the answer is marked interrupted at once, with its text,
    and the sockets watching it are told."""
    conversation_id = str(conversation_id)
    broker = await get_broker()
    runner = broker.runners.get(conversation_id)
    if runner is not None:
        runner.stop()
        return
    if broker.shared_layer and await broker.ask_to_stop(conversation_id):
        return
    # The in-memory layer serves one process: a turn it does not run, nobody runs.
    await database_sync_to_async(actions.do_interrupt_orphaned_turn)(
        conversation_id=conversation_id)


async def request_state(*, conversation_id: Any, reply_to: str) -> None:
    """Ask the owning process to send `turn.snapshot` to `reply_to`; no answer when no process
    runs a turn there (the caller falls back to the database after a short wait)."""
    await get_channel_layer().group_send(
        control_group(conversation_id),
        {"type": "turn.state", "conversation": str(conversation_id), "reply_to": reply_to})


async def request_decision(*, conversation_id: Any, call_id: str, decision: Decision) -> None:
    """Approve or deny a paused tool call, wherever its turn runs (see conversations.hooks).
    The caller has checked that the user may decide for this conversation."""
    await get_channel_layer().group_send(
        control_group(conversation_id),
        {"type": "turn.decide", "conversation": str(conversation_id), "call_id": call_id,
         "decision": decision})


async def wait_for_turns(*, timeout: float | None = None) -> None:
    """Wait until the turns running on this event loop end; after `timeout` seconds, cancel
    those still running (they keep their text as interrupted). For tests and shutdown."""
    broker = _brokers.get(asyncio.get_running_loop())
    if broker is None or not broker.tasks:
        return
    _, pending = await asyncio.wait(list(broker.tasks), timeout=timeout)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=5)
