"""Deltas that arrive faster than a busy process can send them go out together.

A delta that arrives at least WINDOW after the last one is sent at once (an unhurried stream,
token by token, with no added delay); one that arrives sooner waits at most the rest of the
window and goes out with those that came meanwhile. A loaded process thus sends fewer, larger
frames instead of falling further behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Literal

# Seconds.
WINDOW = 0.012

DeltaKind = Literal["text", "reasoning"]


class Coalescer:
    """Owned by one turn runner; `send(kind, text)` is the runner's publish of one delta."""

    __slots__ = ("_send", "_pending", "_kind", "_last", "_timer", "task")

    def __init__(self, send: Callable[[DeltaKind, str], Awaitable[None]]) -> None:
        self._send = send
        self._pending: list[str] = []
        self._kind: DeltaKind = "text"
        self._last = 0.0
        self._timer: asyncio.TimerHandle | None = None
        # A flush started by the timer, outside the turn's task: held here, since the loop
        # keeps only a weak reference to a task.
        self.task: asyncio.Future | None = None

    async def add(self, kind: DeltaKind, text: str) -> None:
        if self._pending and self._kind != kind:
            await self.flush()
        loop = asyncio.get_running_loop()
        if not self._pending and loop.time() - self._last >= WINDOW:
            await self._out(kind, text)
            return
        self._pending.append(text)
        self._kind = kind
        if self._timer is None:
            self._timer = loop.call_at(self._last + WINDOW, self._flush_later)

    async def flush(self) -> None:
        """Send what waits now (before any other event, and at the end)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending:
            text, self._pending = "".join(self._pending), []
            await self._out(self._kind, text)

    def _flush_later(self) -> None:
        self._timer = None
        if self._pending:
            self.task = asyncio.ensure_future(self.flush())

    async def _out(self, kind: DeltaKind, text: str) -> None:
        await self._send(kind, text)
        # Only deltas open a window: the model or status event sent just before the first
        # token must not hold that token back (it cost every answer ~12 ms of TTFT).
        self._last = asyncio.get_running_loop().time()
