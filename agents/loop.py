"""The agent loop: model → tools → model, bounded, yielding one typed event stream.

`run_turn` knows models and tools, not storage or sockets: `conversations.runner` consumes its
events, numbers them, publishes and persists them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace

from agents import context_window
from agents.events import (
    ChatMessage,
    ChatRequest,
    ClientToolCalls,
    Finished,
    LoopEvent,
    ReasoningDelta,
    RequestOptions,
    TextDelta,
    ToolCall,
    ToolCallFinished,
    ToolCallRequested,
    ToolCallStarted,
    ToolSpec,
    Usage,
)
from agents.model_info import ModelInfo
from agents.providers.base import Provider
from agents.resilience import stream_with_retries
from agents.tool_arguments import check_arguments
from agents.tools import BeforeToolCall, NoTools, ToolBox, ToolResult

# Called before each model round after the first, with its number.
BeforeRound = Callable[[int], Awaitable[None]]

# Bounds a model that keeps asking for tools: on the last round it is offered none, and must
# answer in text (agents set their own bound; TOOL_MAX_ROUNDS is the default).
DEFAULT_MAX_ROUNDS = 10


class RoundLimitReached(Exception):
    """The model still asked for tools on the last round it had: the turn ends with `message`
    (what it wrote so far is kept, the calls are recorded as not run)."""

    def __init__(self, rounds: int) -> None:
        self.message = (f"The answer stopped after {rounds} model rounds, the limit for this "
                        "agent: the model was still asking for tools.")
        super().__init__(self.message)


@dataclass(frozen=True, slots=True)
class Target:
    """One model on one provider; an agent has a list of them (main first, then fallbacks)."""

    provider: Provider
    model: str


@dataclass(slots=True)
class _Round:
    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    signature: str = ""
    calls: list[ToolCall] = field(default_factory=list)


async def run_turn(
    *,
    targets: Sequence[Target],
    system: str,
    history: Sequence[ChatMessage],
    tools: ToolBox | None = None,
    before_tool_call: BeforeToolCall | None = None,
    max_rounds: int = DEFAULT_MAX_ROUNDS,
    client_tools: Sequence[ToolSpec] = (),
    options: RequestOptions | None = None,
    before_round: BeforeRound | None = None,
    context: ModelInfo | None = None,
) -> AsyncIterator[LoopEvent]:
    """Yield provider events (text, reasoning, usage), resilience events (waiting, retrying,
    model selected) and tool-call events, until the model answers without tools; then the last
    round's Finished (why it ended).

    `client_tools` are offered beside the tool box's but run by the caller's client: a round
    that calls one ends the turn with ClientToolCalls (after a Finished with reason
    "tool_calls"). Usage is summed over rounds and yielded once per round as it arrives. Raises
    ProviderError when the model fails, and RoundLimitReached when it asks for tools on its
    last round; whatever was yielded before stays valid (the caller keeps it).

    `before_round(number)` is awaited before each round after the first (after tools ran);
    whatever it raises ends the turn there (a spent budget). With `context` (the main model's
    limits), each round's history is fitted to its window (agents.context_window), which raises
    ContextTooLong when the newest turn alone does not fit."""
    tools = tools or NoTools()
    options = options or RequestOptions()
    later_options = replace(options, tool_choice=None)
    schemas = {spec.name: spec.input_schema for spec in tools.specs()}
    client_names = {spec.name for spec in client_tools}
    messages = list(history)
    text_offset = 0
    targets_arg = [(t.provider, t.model) for t in targets]
    for round_no in range(max_rounds):
        # On the last round the server's tools are withheld, so the model has to answer in
        # text (or call the client's tools, which end the turn anyway).
        last_round = round_no == max_rounds - 1
        if round_no and before_round is not None:
            await before_round(round_no)
        specs = (*(() if last_round else tools.specs()), *client_tools)
        fitted = (context_window.fit(context, system=system, messages=messages, tools=specs)
                  if context is not None else None)
        request = ChatRequest(
            model=targets[0].model,
            messages=fitted.messages if fitted else tuple(messages),
            system=fitted.system if fitted else system, tools=specs,
            options=options if round_no == 0 else later_options,
        )
        current = _Round()
        finished: Finished | None = None
        async for event in stream_with_retries(providers_and_models=targets_arg, request=request):
            if isinstance(event, TextDelta):
                current.text.append(event.text)
                text_offset += len(event.text)
            elif isinstance(event, ReasoningDelta):
                if event.signature:
                    current.signature = event.signature
                if event.text:
                    current.reasoning.append(event.text)
            elif isinstance(event, ToolCallRequested):
                current.calls.append(event.call)
                continue  # announced below as ToolCallStarted, with its place in the text
            elif isinstance(event, Finished):
                finished = event
                continue
            elif isinstance(event, Usage) and fitted is not None:
                context_window.observe(context.label, estimate=fitted.estimate,
                                       reported=event.input_tokens)
            yield event
        messages.append(
            ChatMessage(
                role="assistant", content="".join(current.text),
                reasoning="".join(current.reasoning), reasoning_signature=current.signature,
                tool_calls=tuple(current.calls),
            )
        )
        if not current.calls:
            yield finished or Finished(reason="stop")
            return
        handed_back = tuple(c for c in current.calls if c.name in client_names)
        server_calls = [c for c in current.calls if c.name not in client_names]
        for call in server_calls:
            yield ToolCallStarted(
                call=call, round=round_no, text_offset=text_offset,
                server=tools.server_of(call.name),
                definition_hash=tools.definition_hash_of(call.name),
            )
        if handed_back:
            # The client runs its own tools and sends their results in its next request, which
            # starts a new turn: server tools asked for beside them are recorded as not run
            # (their results could not reach that request).
            for call in server_calls:
                yield ToolCallFinished(
                    call_id=call.id, is_error=True, duration_ms=0,
                    result="Not run: the answer was handed back to the client for its tools.")
            yield Finished(reason="tool_calls")
            yield ClientToolCalls(calls=handed_back, round=round_no, text_offset=text_offset)
            return
        if last_round:
            # The model asked for tools on the round that offered none (the bound is reached):
            # record the calls as not run, and end the turn with what it has.
            refusal = ToolResult(
                content=f"Not run: this answer reached its limit of {max_rounds} model rounds.",
                is_error=True,
            )
            results = [(refusal, 0)] * len(current.calls)
        else:
            results = await asyncio.gather(
                *(_call_tool(tools, call, before_tool_call, schemas) for call in current.calls)
            )
        for call, (result, duration_ms) in zip(current.calls, results, strict=True):
            yield ToolCallFinished(
                call_id=call.id, result=result.content, is_error=result.is_error,
                duration_ms=duration_ms, denied=result.denied, truncated=result.truncated,
                original_chars=result.original_chars,
            )
            messages.append(
                ChatMessage(role="tool", content=result.content, tool_call_id=call.id,
                            is_error=result.is_error)
            )
        if last_round:
            raise RoundLimitReached(max_rounds)


async def complete_text(*, targets: Sequence[Target], request: ChatRequest) -> str:
    """One answer's text, through the same retries, fallbacks and concurrency limit as a turn
    (titles use it). `request.model` is replaced by each target's. Raises ProviderError."""
    parts: list[str] = []
    async for event in stream_with_retries(
            providers_and_models=[(t.provider, t.model) for t in targets], request=request):
        if event.type == "text":
            parts.append(event.text)
    return "".join(parts)


def _invalid_arguments(call: ToolCall, schemas: dict[str, dict]) -> ToolResult | None:
    """The model's arguments were not a JSON object, or do not fit the tool's schema, or it
    named a tool it was not offered: it is told so (and can try again) rather than the tool
    being run with them. Nobody is asked to approve a call that cannot run."""
    if call.name not in schemas:
        return ToolResult(content=f"Not run: there is no tool named {call.name!r}.",
                          is_error=True)
    raw = call.arguments_raw.strip()
    if raw and not call.arguments:
        try:
            value = json.loads(raw)
        except ValueError:
            return ToolResult(content=f"Not run: the arguments are not valid JSON: {raw[:500]}",
                              is_error=True)
        if not isinstance(value, dict):
            return ToolResult(content="Not run: the arguments must be a JSON object.",
                              is_error=True)
    message = check_arguments(schema=schemas[call.name], arguments=call.arguments)
    return ToolResult(content=message, is_error=True) if message else None


async def _call_tool(
    tools: ToolBox, call: ToolCall, before: BeforeToolCall | None, schemas: dict[str, dict]
) -> tuple[ToolResult, int]:
    invalid = _invalid_arguments(call, schemas)
    if invalid is not None:
        return invalid, 0
    # The call's own time, not the time a person took to approve it.
    started = time.monotonic()
    try:
        result = await before(call) if before else None
        if result is None:
            started = time.monotonic()
            result = await tools.call(call)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a tool failure is the model's problem to handle, not the turn's
        result = ToolResult(content=f"Tool failed: {type(exc).__name__}: {exc}", is_error=True)
    return result, int((time.monotonic() - started) * 1000)
