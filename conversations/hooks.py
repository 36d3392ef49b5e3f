"""Hooks: plain registered async functions the turn runner calls at fixed points of every turn.

    before_model(ctx)                 once, before the model is first called (budgets, rate
                                      limits): raise TurnRefused to refuse the turn
    before_round(ctx, round)          before each further model round of a tool loop, with a
                                      RoundInfo (the turn's usage so far): raise TurnRefused
                                      to end the turn there (what it wrote is kept)
    before_tool_call(ctx, call)       before each tool call (policy, approval): return None to
                                      let it run or a ToolResult to answer in its place; may
                                      `await ctx.wait_for_decision(...)`, which pauses the call
                                      until "approve" or "deny" arrives through the control
                                      channel (conversations.broker.request_decision)
    after_tool_call(ctx, call)        after each tool call, with its final ToolCallView (ledger)
    turn_finished(ctx, message)       at the end, with the final MessageView (usage, audit,
                                      metrics), whatever the outcome

Hooks run in registration order, in the turn's own task. An exception from a before_model hook
other than TurnRefused fails the turn with a server error; from a before_tool_call hook it
becomes the tool's error (the model sees it); from the others it is logged and ignored: the
answer is already stored, and a broken metric must not take it away.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from agents.definitions import AgentSpec
    from agents.events import ChatMessage, ToolCall
    from agents.tools import ToolResult
    from conversations.payloads import MessageView, ToolCallView, UsageView

logger = logging.getLogger(__name__)

HookPoint = Literal["before_model", "before_round", "before_tool_call", "after_tool_call",
                    "turn_finished"]
Decision = Literal["approve", "deny"]


class TurnRefused(Exception):
    """Raised by a before_model or before_round hook: the turn ends as failed, `message` shown
    to the user. `retry_after` (seconds), when the refusal has an end: a budget's period, a
    rate limit's window (the /v1 API answers 429 with it, rather than 403)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class RoundInfo:
    """Where a tool loop stands before its next model round."""

    # The round about to start (1 for the first after tools ran).
    number: int
    # The turn's usage over the rounds before it.
    usage: UsageView
    # The next request's input, estimated from the last round's reported input plus what
    # was added since (its output, the tool results).
    next_input_tokens: int


@dataclass(frozen=True, slots=True, eq=False)
class TurnContext:
    """What a hook knows of the turn it runs in."""

    conversation_id: str
    message_id: int
    user_id: int
    spec: AgentSpec
    history: tuple[ChatMessage, ...]
    # The runner's pause: (call id, timeout in seconds or None) -> the decision.
    _wait: Callable[[str, float | None], Awaitable[Decision]]
    # Where the turn was asked for: "web" (the chat page) or "api" (the /v1 API).
    source: str = "web"

    async def wait_for_decision(self, *, call_id: str, timeout: float | None = None) -> Decision:
        """Pause this tool call until a decision arrives (watchers see it awaiting approval).
        Raises TimeoutError after `timeout` seconds; a stop ends the wait with the turn."""
        return await self._wait(call_id, timeout)


BeforeModel = Callable[["TurnContext"], Awaitable[None]]
BeforeRound = Callable[["TurnContext", RoundInfo], Awaitable[None]]
BeforeToolCall = Callable[["TurnContext", "ToolCall"], Awaitable["ToolResult | None"]]
AfterToolCall = Callable[["TurnContext", "ToolCallView"], Awaitable[None]]
TurnFinishedHook = Callable[["TurnContext", "MessageView"], Awaitable[None]]

_registry: dict[HookPoint, list[Callable[..., Awaitable[Any]]]] = {
    "before_model": [], "before_round": [], "before_tool_call": [], "after_tool_call": [], "turn_finished": [],
}


def register(point: HookPoint, hook: Callable[..., Awaitable[Any]]) -> Callable[[], None]:
    """Add `hook` at `point`; returns a function that removes it again (tests use it)."""
    if point not in _registry:
        raise ValueError(f"unknown hook point {point!r}")
    _registry[point].append(hook)

    def unregister() -> None:
        if hook in _registry[point]:
            _registry[point].remove(hook)

    return unregister


def registered(point: HookPoint) -> tuple[Callable[..., Awaitable[Any]], ...]:
    return tuple(_registry[point])


async def run_observers(point: HookPoint, ctx: TurnContext, value: Any) -> None:
    """after_tool_call and turn_finished: every hook runs; failures are logged."""
    for hook in _registry[point]:
        try:
            await hook(ctx, value)
        except Exception:
            logger.exception("%s hook %r failed (turn %s)", point, hook, ctx.message_id)
