"""Paced ASGI responses that notice a client leaving at once.

Why not Starlette's StreamingResponse: uvicorn (h11) silently drops writes after a disconnect
and reports ASGI spec 2.3, so a stream that is sleeping, or hanging on purpose, would learn that
its client left only at its next write, or never. Here a watcher task waits on `receive()` for
`http.disconnect` and wakes the writer, so `streams_abandoned` moves within milliseconds.

To keep 200 concurrent streams cheap, every byte is formatted before the first write and each
write is one `send()`; frames already due (a late timer, or gap 0) are coalesced into one write.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from typing import Any

from fakellm.state import Counters, FakeState

Scope = dict[str, Any]
Receive = Any
Send = Any


class DeliberateDrop(Exception):
    """Raised from a response to make uvicorn close the socket mid-response (no clean end)."""


class _ClientGone(Exception):
    pass


class _HideDeliberateDrops(logging.Filter):
    """uvicorn logs every exception escaping the app; ours are on purpose, not errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, DeliberateDrop)


def install_log_filter() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _HideDeliberateDrops) for f in logger.filters):
        logger.addFilter(_HideDeliberateDrops())


def _release(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _Watch:
    """Sleeps on the loop clock, waking early when the client leaves or the server aborts."""

    def __init__(self, receive: Receive, state: FakeState) -> None:
        self._receive = receive
        self._state = state
        self._waiter: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self.gone = False
        self.aborted = False
        self.finished = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._listen())
        self._state.abort_callbacks.add(self.abort)

    def close(self) -> None:
        self.finished = True
        self._state.abort_callbacks.discard(self.abort)
        if self._task is not None:
            self._task.cancel()

    async def _listen(self) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                # After the last write uvicorn reports "disconnect" at once; that is not a leave.
                if not self.finished:
                    self.gone = True
                    self._wake()
                return

    def abort(self) -> None:
        self.aborted = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None:
            _release(self._waiter)

    def check(self) -> None:
        if self.aborted:
            raise DeliberateDrop("server stopping")
        if self.gone:
            raise _ClientGone

    async def until(self, when: float) -> None:
        """Return at loop time `when` (math.inf: never); raise if the client left meanwhile."""
        self.check()
        loop = asyncio.get_running_loop()
        if when > loop.time():
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiter = waiter
            timer = None if math.isinf(when) else loop.call_at(when, _release, waiter)
            try:
                await waiter
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()
        self.check()


@dataclass(frozen=True, slots=True)
class Frame:
    """Bytes written at one instant, and how many text/reasoning tokens they carry."""

    data: bytes
    tokens: int


@dataclass(frozen=True, slots=True)
class Pacing:
    # Loop time at which the request arrived; TTFT counts from there.
    started: float
    ttft_s: float
    gap_s: float
    drop_after: int | None = None
    hang: bool = False
    hang_after: int | None = None

    def due(self, index: int) -> float:
        return self.started + self.ttft_s + index * self.gap_s

    def stop_at(self) -> tuple[int, bool] | None:
        """Token count after which the response stops, and whether it then drops (else hangs)."""
        drop, hang = self.drop_after, self.hang_after
        if drop is not None and (hang is None or drop <= hang):
            return drop, True
        return None if hang is None else (hang, False)


@dataclass(frozen=True, slots=True)
class PacedStream:
    """An ASGI response: headers and `head` at once, frame i at ttft + i*gap, then `tail`.

    Contract: counts exactly one of streams_completed / _abandoned / _dropped per stream started,
    in the counters current when the stream started (a reset in between discards it).
    """

    state: FakeState
    headers: list[tuple[bytes, bytes]]
    head: bytes
    frames: list[Frame]
    tail: bytes
    pacing: Pacing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state, pacing = self.state, self.pacing
        counters = state.counters
        watch = _Watch(receive, state)
        watch.start()
        state.active_streams += 1
        counters.streams_started += 1
        try:
            if pacing.hang:
                await watch.until(math.inf)
            await send({"type": "http.response.start", "status": 200, "headers": self.headers})
            counters.by_status[200] = counters.by_status.get(200, 0) + 1
            await self._write(watch, send, counters)
        except _ClientGone:
            counters.streams_abandoned += 1
        except DeliberateDrop:
            counters.streams_dropped += 1
            raise
        finally:
            state.active_streams -= 1
            watch.close()

    async def _write(self, watch: _Watch, send: Send, counters: Counters) -> None:
        loop = asyncio.get_running_loop()
        pacing = self.pacing
        stop = pacing.stop_at()
        buffer = bytearray(self.head)
        pending = 0
        sent = 0

        async def flush() -> None:
            nonlocal pending, sent
            if buffer:
                await send({"type": "http.response.body", "body": bytes(buffer), "more_body": True})
                buffer.clear()
            watch.check()
            counters.tokens_sent += pending
            sent += pending
            pending = 0

        for index, frame in enumerate(self.frames):
            if stop is not None and sent + pending >= stop[0]:
                break
            due = pacing.due(index)
            if due > loop.time():
                await flush()
                await watch.until(due)
            elif index % 256 == 255:
                # Frames all due at once (gap 0): still let other streams run now and then.
                await flush()
                await asyncio.sleep(0)
                watch.check()
            buffer += frame.data
            pending += frame.tokens
        if stop is not None:
            # Fewer tokens than the limit: still never send the clean end the test asked to lose.
            await flush()
            if stop[1]:
                raise DeliberateDrop("drop_after")
            await watch.until(math.inf)
        watch.check()
        counters.tokens_sent += pending
        watch.finished = True
        body = bytes(buffer + self.tail)
        await send({"type": "http.response.body", "body": body, "more_body": False})
        counters.streams_completed += 1


@dataclass(frozen=True, slots=True)
class DelayedBody:
    """An ASGI response for `stream: false`: the whole body after the generation time.

    `drop_after` sends the headers and half the body, then closes; `hang`/`hang_after` never
    answer. A client leaving early counts in responses_abandoned.
    """

    state: FakeState
    headers: list[tuple[bytes, bytes]]
    body: bytes
    tokens: int
    # Frames the stream would have had: the body is due when the last of them would be.
    frame_count: int
    pacing: Pacing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state, pacing = self.state, self.pacing
        counters = state.counters
        watch = _Watch(receive, state)
        watch.start()
        try:
            if pacing.hang or pacing.hang_after is not None:
                await watch.until(math.inf)
            await watch.until(pacing.due(max(0, self.frame_count - 1)))
            headers = [*self.headers, (b"content-length", str(len(self.body)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            counters.by_status[200] = counters.by_status.get(200, 0) + 1
            if pacing.drop_after is not None:
                half = self.body[: len(self.body) // 2]
                await send({"type": "http.response.body", "body": half, "more_body": True})
                raise DeliberateDrop("drop_after")
            watch.check()
            watch.finished = True
            await send({"type": "http.response.body", "body": self.body, "more_body": False})
            counters.tokens_sent += self.tokens
        except _ClientGone:
            counters.responses_abandoned += 1
        finally:
            watch.close()
