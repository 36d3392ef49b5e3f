"""The turn runner: one answer, from the agent loop's typed events to numbered turn events.

A runner consumes agents.loop.run_turn's events, keeps the answer's state, numbers what it
tells its sinks (conversations.sinks: the broker for sockets, an iterator for in-process
readers such as the API), writes the assistant message at boundaries (start, periodic flush,
each tool call, end; never per token) and calls the hooks (conversations.hooks) at their fixed
points. It knows nothing of sockets or frames. conversations.broker runs runners in tasks of
this process and routes stop, state and decision requests to them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone

from agents.context_window import ContextTooLong
from agents.definitions import AgentSpec, live_targets
from agents.events import (
    ChatMessage,
    ClientToolCalls,
    Finished,
    ModelSelected,
    ProviderError,
    ReasoningDelta,
    RequestOptions,
    Retrying,
    TextDelta,
    ToolCall,
    ToolCallFinished,
    ToolCallStarted,
    ToolSpec,
    Usage,
    Waiting,
)
from agents.loop import RoundLimitReached, run_turn
from agents.model_info import estimated_tokens, request_tokens
from agents.toolbox import McpToolBox
from agents.tools import ToolBox, ToolResult
from conversations import actions, hooks, tool_records
from conversations.coalescing import Coalescer, DeltaKind
from conversations.models import Conversation, Message
from conversations.payloads import (
    Envelope,
    MessageView,
    ModelChosen,
    ReasoningAdded,
    StatusChanged,
    TextAdded,
    ToolCallChanged,
    ToolCallView,
    TurnEvent,
    TurnFinished,
    TurnStarted,
    UsageView,
)

logger = logging.getLogger(__name__)

SERVER_ERROR = "The answer failed because of an error on our server."


@dataclass(frozen=True, slots=True)
class TurnPlan:
    """Everything a turn needs to run, prepared by conversations.sending."""

    conversation_id: str
    message_id: int
    user_message_id: int
    user_id: int
    spec: AgentSpec
    history: tuple[ChatMessage, ...]
    created_at: datetime | None = None
    tools: ToolBox | None = None
    # Set by the /v1 API: its client's sampling values, and the tools the client runs itself.
    options: RequestOptions | None = None
    client_tools: tuple[ToolSpec, ...] = ()
    source: str = Conversation.Source.WEB


class TurnSink(Protocol):
    """Where a turn's numbered events go. `emit` must not raise for a reader's failure (a sink
    isolates its readers); `close` follows the last event."""

    async def emit(self, envelope: Envelope) -> None: ...

    async def close(self) -> None: ...


class TurnRunner:
    def __init__(self, *, plan: TurnPlan, sinks: Sequence[TurnSink]) -> None:
        self.plan = plan
        self.sinks = tuple(sinks)
        self.seq = 0
        self.status: str = Message.Status.PENDING
        self.model = ""
        self.error = ""
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.reasoning_signature = ""
        self.reasoning_ms: int | None = None
        self.tool_calls: dict[str, ToolCallView] = {}
        self.usage = UsageView()
        self.first_token_at: datetime | None = None
        self.finished_at: datetime | None = None
        self.stop_requested = False
        # Why the model's answer ended ("stop", "length", "tool_calls"...; None until it has),
        # and what failed the turn: an API response reports them in OpenAI's terms.
        self.finish_reason: str | None = None
        self.failure: Exception | None = None
        self.context = hooks.TurnContext(
            conversation_id=plan.conversation_id, message_id=plan.message_id,
            user_id=plan.user_id, spec=plan.spec, history=plan.history,
            _wait=self._wait_for_decision, source=plan.source)
        self._reasoning_started: float | None = None
        self._new_round = False
        self._last_usage: Usage | None = None
        self._decisions: dict[str, asyncio.Future[hooks.Decision]] = {}
        self._stream_task: asyncio.Task | None = None
        # Publishes in progress (the stream's and a coalescing timer's may overlap).
        self._publishing = 0
        self._lock = asyncio.Lock()
        self._coalescer = Coalescer(self._publish_delta)
        self._handlers = {
            "text": self._on_text, "reasoning": self._on_reasoning,
            "tool_call_started": self._on_tool_started,
            "tool_call_finished": self._on_tool_finished, "usage": self._on_usage,
            "model_selected": self._on_model, "waiting": self._on_waiting,
            "retrying": self._on_retrying, "finished": self._on_finished,
            "client_tool_calls": self._on_client_tools,
        }

    # --- what a joining watcher needs -------------------------------------------------------

    def view(self) -> MessageView:
        """The answer as published so far (only published text: a joining watcher's state and
        the numbered events after it never overlap)."""
        return MessageView(
            id=self.plan.message_id, role=Message.Role.ASSISTANT,
            parent=self.plan.user_message_id, status=self.status, content="".join(self.text),
            reasoning="".join(self.reasoning), reasoning_ms=self.reasoning_ms, model=self.model,
            error=self.error, created_at=self.plan.created_at, finished_at=self.finished_at,
            usage=self.usage, tool_calls=tuple(self.tool_calls.values()), seq=self.seq,
        )

    # --- control ------------------------------------------------------------------------------

    def stop(self) -> None:
        self.stop_requested = True
        if self._stream_task is not None and not self._publishing:
            # Wherever the stream waits (mostly on the model server): the provider closes its
            # HTTP response as the cancellation unwinds it.
            self._stream_task.cancel()

    def decide(self, *, call_id: str, decision: hooks.Decision) -> bool:
        """A decision for a paused tool call; False when no call waits for one."""
        future = self._decisions.get(call_id)
        if future is None or future.done():
            return False
        future.set_result(decision)
        return True

    # --- running ------------------------------------------------------------------------------

    async def run(self) -> None:
        flusher = asyncio.create_task(self._flush_periodically())
        try:
            await self._publish(TurnStarted(message=self.view()))
            self._stream_task = asyncio.create_task(self._stream())
            if self.stop_requested:  # asked while the start was being published
                self._stream_task.cancel()
            try:
                await self._stream_task
                self.status = Message.Status.COMPLETE
            except asyncio.CancelledError:
                if not self.stop_requested:
                    raise
                self.status = Message.Status.STOPPED
            except (ProviderError, hooks.TurnRefused, RoundLimitReached, ContextTooLong) as exc:
                self.status, self.error = Message.Status.FAILED, exc.message
                self.failure = exc
            except Exception as exc:
                logger.exception("turn %s failed", self.plan.message_id)
                self.status, self.error = Message.Status.FAILED, SERVER_ERROR
                self.failure = exc
        finally:
            flusher.cancel()
            if self.status in Message.UNFINISHED_STATUSES:
                # Cancelled from outside (the process is stopping): keep what we have.
                self.status, self.error = Message.Status.INTERRUPTED, actions.INTERRUPTED_ERROR
            self._close_reasoning()
            try:
                # Deltas still waiting (a stop or an error mid-window) are part of the answer.
                await self._coalescer.flush()
                await asyncio.shield(self._finish())
            finally:
                for sink in self.sinks:
                    try:
                        await sink.close()
                    except Exception:  # the other sinks (an API reader) must still end
                        logger.exception("a sink of turn %s did not close", self.plan.message_id)
        # The turn is over and its sinks closed: slow hooks (a title) delay nobody.
        await hooks.run_observers("turn_finished", self.context, self.view())

    async def _stream(self) -> None:
        for hook in hooks.registered("before_model"):
            await hook(self.context)
        spec = self.plan.spec
        targets = live_targets(spec)
        tools = self.plan.tools
        if tools is None and spec.tools:
            tools = McpToolBox(spec.tools, user_id=self.plan.user_id)
        handlers = self._handlers
        async for event in run_turn(targets=targets, system=spec.system_prompt,
                                    history=self.plan.history, tools=tools,
                                    before_tool_call=self._before_tool_call,
                                    max_rounds=spec.max_rounds,
                                    client_tools=self.plan.client_tools,
                                    options=spec.options(self.plan.options),
                                    before_round=self._before_round,
                                    context=spec.model_info("")):
            await handlers[event.type](event)
        await self._coalescer.flush()

    # --- events from the agent loop -----------------------------------------------------------

    async def _on_text(self, event: TextDelta) -> None:
        if self.first_token_at is None:
            self._first_token()
        if self._reasoning_started is not None and self.reasoning_ms is None:
            self._close_reasoning()
        await self._coalescer.add("text", event.text)

    async def _on_reasoning(self, event: ReasoningDelta) -> None:
        if self.first_token_at is None:
            self._first_token()
        if self._reasoning_started is None:
            self._reasoning_started = time.monotonic()
        if event.signature:
            self.reasoning_signature = event.signature
        if event.text:
            text = event.text
            if self._new_round and self.reasoning:
                # A later round's reasoning starts a new paragraph, not mid-sentence.
                text = "\n\n" + text
            self._new_round = False
            await self._coalescer.add("reasoning", text)

    async def _on_tool_started(self, event: ToolCallStarted) -> None:
        await self._coalescer.flush()
        if self.first_token_at is None:
            self._first_token()
        self._close_reasoning()
        call = event.call
        view = self.tool_calls[call.id] = ToolCallView(
            id=call.id, name=call.name, server=event.server, arguments=call.arguments,
            round=event.round, text_offset=event.text_offset)
        await database_sync_to_async(tool_records.do_record_tool_call)(
            message_id=self.plan.message_id, call_id=call.id, name=call.name,
            server=event.server, arguments=call.arguments, round=event.round,
            text_offset=event.text_offset, definition_hash=event.definition_hash)
        await self._publish(ToolCallChanged(call=view, kind="tool_call_started"))

    async def _on_tool_finished(self, event: ToolCallFinished) -> None:
        await self._coalescer.flush()
        status = "denied" if event.denied else "failed" if event.is_error else "complete"
        view = self.tool_calls[event.call_id] = replace(
            self.tool_calls[event.call_id], status=status, result=event.result,
            is_error=event.is_error, duration_ms=event.duration_ms, truncated=event.truncated)
        await database_sync_to_async(tool_records.do_finish_tool_call)(
            message_id=self.plan.message_id, call_id=event.call_id, result=event.result,
            is_error=event.is_error, denied=event.denied, truncated=event.truncated,
            original_chars=event.original_chars)
        self._new_round = True
        await self._publish(ToolCallChanged(call=view, kind="tool_call_finished"))
        await hooks.run_observers("after_tool_call", self.context, view)

    async def _on_usage(self, event: Usage) -> None:
        self._last_usage = event
        self.usage = self.usage.plus(
            input_tokens=event.input_tokens, output_tokens=event.output_tokens,
            reasoning_tokens=event.reasoning_tokens, cached_tokens=event.cached_tokens)

    async def _on_model(self, event: ModelSelected) -> None:
        await self._coalescer.flush()
        self.model = event.model if event.provider == "default" else (
            f"{event.provider}:{event.model}")
        await self._publish(ModelChosen(model=self.model))

    async def _on_waiting(self, event: Waiting) -> None:
        await self._publish(StatusChanged(
            status="waiting",
            detail=f"Waiting for a free slot on the model server (position {event.position})."))

    async def _on_retrying(self, event: Retrying) -> None:
        detail = (f"{event.message} Trying {event.model} instead." if event.fallback
                  else f"{event.message} Retrying in {event.delay:.1f} s.")
        await self._publish(StatusChanged(status="retrying", detail=detail))

    async def _on_finished(self, event: Finished) -> None:
        self.finish_reason = event.reason

    async def _on_client_tools(self, event: ClientToolCalls) -> None:
        """Recorded like the server's calls (the audit shows what the model asked the client
        to run), and left with the client: their results come in its next request."""
        await self._coalescer.flush()
        if self.first_token_at is None:
            self._first_token()
        self._close_reasoning()
        for call in event.calls:
            view = self.tool_calls[call.id] = ToolCallView(
                id=call.id, name=call.name, server="", arguments=call.arguments,
                round=event.round, text_offset=event.text_offset, status="client")
            await database_sync_to_async(tool_records.do_record_client_tool_call)(
                message_id=self.plan.message_id, call_id=call.id, name=call.name,
                arguments=call.arguments, round=event.round, text_offset=event.text_offset)
            await self._publish(ToolCallChanged(call=view, kind="tool_call_started"))

    def _first_token(self) -> None:
        self.first_token_at = timezone.now()
        self.status = Message.Status.STREAMING

    def _close_reasoning(self) -> None:
        if self._reasoning_started is not None and self.reasoning_ms is None:
            self.reasoning_ms = int((time.monotonic() - self._reasoning_started) * 1000)

    # --- hooks between rounds and around tool calls -------------------------------------------

    async def _before_round(self, number: int) -> None:
        points = hooks.registered("before_round")
        if not points:
            return
        # The last request's input, what the model wrote, and the tool results it gets back
        # (about three characters a token; a server that reported no usage: from the history).
        last = self._last_usage
        added = sum(len(c.result) for c in self.tool_calls.values() if c.round == number - 1)
        if last is not None and last.input_tokens:
            estimate = last.input_tokens + last.output_tokens + estimated_tokens(added)
        else:
            estimate = request_tokens(system=self.plan.spec.system_prompt,
                                      history=self.plan.history, tools=self.plan.spec.tools
                                      ) + estimated_tokens(sum(map(len, self.text)) + added)
        info = hooks.RoundInfo(number=number, usage=self._priced_usage(),
                               next_input_tokens=estimate)
        for hook in points:
            await hook(self.context, info)

    async def _before_tool_call(self, call: ToolCall) -> ToolResult | None:
        for hook in hooks.registered("before_tool_call"):
            result = await hook(self.context, call)
            if result is not None:
                return result
        return None

    async def _wait_for_decision(self, call_id: str, timeout: float | None) -> hooks.Decision:
        if call_id not in self.tool_calls or call_id in self._decisions:
            raise ValueError(f"no tool call {call_id!r} can wait for a decision now")
        future = self._decisions[call_id] = asyncio.get_running_loop().create_future()
        await self._mark_call(call_id, "awaiting_approval")
        try:
            async with asyncio.timeout(timeout):
                decision = await future
        finally:
            del self._decisions[call_id]
        # The decision itself (who, when) was stored by whoever made it
        # (tool_records.do_decide_tool_call); a denied call's end follows at once.
        if decision == "approve":
            await self._mark_call(call_id, "running", approval="approved")
        return decision

    async def _mark_call(self, call_id: str, status: str, *, approval: str = "") -> None:
        view = self.tool_calls[call_id] = replace(self.tool_calls[call_id], status=status,
                                                  approval=approval)
        await database_sync_to_async(tool_records.do_mark_tool_call)(
            message_id=self.plan.message_id, call_id=call_id, status=status)
        await self._publish(ToolCallChanged(call=view, kind="tool_call_updated"))

    # --- publishing ---------------------------------------------------------------------------

    async def _publish_delta(self, kind: DeltaKind, text: str) -> None:
        # Only published text is in the view (see view()).
        if kind == "text":
            self.text.append(text)
            await self._publish(TextAdded(text))
        else:
            self.reasoning.append(text)
            await self._publish(ReasoningAdded(text))

    async def _publish(self, event: TurnEvent) -> None:
        # A stop must not land inside a send (watchers would see a numbered event missing):
        # while publishing, stop() only raises the flag, and the stop happens right after.
        self._publishing += 1
        try:
            # Publishes from the stream and from a coalescing timer go out in the order their
            # numbers were given (the lock is FIFO).
            async with self._lock:
                self.seq += 1
                envelope = Envelope(self.plan.conversation_id, self.plan.message_id, self.seq,
                                    event)
                for sink in self.sinks:
                    await sink.emit(envelope)
        finally:
            self._publishing -= 1
        if self.stop_requested and asyncio.current_task() is self._stream_task:
            raise asyncio.CancelledError

    # --- persistence --------------------------------------------------------------------------

    def _priced_usage(self) -> UsageView:
        """The usage so far, with its cost at the answering model's prices."""
        usage = self.usage
        return replace(usage, cost=self.plan.spec.model_info(self.model).cost(
            input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
            cached_tokens=usage.cached_tokens))

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
                await database_sync_to_async(actions.do_flush_message)(
                    message_id=self.plan.message_id, content="".join(self.text),
                    reasoning="".join(self.reasoning), status=self.status, last_seq=self.seq,
                    model=self.model, first_token_at=self.first_token_at)
            except Exception:  # a busy or briefly unreachable database: try at the next one
                logger.exception("could not store the progress of turn %s", self.plan.message_id)

    async def _finish(self) -> None:
        running = [c for c in self.tool_calls.values() if c.status in ("running",
                                                                         "awaiting_approval")]
        for call in running:
            self.tool_calls[call.id] = replace(call, status="cancelled", is_error=True,
                                               result=actions.CANCELLED_TOOL)
        self.finished_at = timezone.now()
        self.usage = self._priced_usage()
        try:
            await database_sync_to_async(actions.do_finish_message)(
                message_id=self.plan.message_id, content="".join(self.text),
                reasoning="".join(self.reasoning), reasoning_signature=self.reasoning_signature,
                reasoning_ms=self.reasoning_ms, status=self.status, error=self.error,
                last_seq=self.seq + 1, model=self.model, first_token_at=self.first_token_at,
                usage=self.usage, cancel_running_tools=bool(running), finished_at=self.finished_at)
        except Exception:
            logger.exception("could not store the end of turn %s", self.plan.message_id)
        # Numbered seq + 1, the number stored above.
        await self._publish(TurnFinished(message=replace(self.view(), seq=self.seq + 1)))
