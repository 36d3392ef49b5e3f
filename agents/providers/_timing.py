"""The clock of one stream (first-token, gap and total deadlines) and the SSE events read under
it with one timer per stream. Private to `agents.providers`; `_http.open_sse` builds them."""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Literal

from agents.events import ProviderError
from agents.providers._sse import Event, SSEParser
from agents.providers._transport import BadResponse, TransportError
from agents.providers.base import Timeouts

if TYPE_CHECKING:
    from agents.providers._http import ErrorContext

TimeoutPhase = Literal["first_token", "gap", "total"]


class StreamClock:
    """The deadlines of one stream: first token, then gap between events, and total.

    Times are taken from the event loop clock. The adapter calls `started_answering()` when the
    first text, reasoning or tool-call delta arrives; until then the first-token deadline holds,
    after it each wait for the next SSE event may last `gap` seconds. Time the consumer spends
    between two events does not count against the gap, only against the total.
    """

    def __init__(self, timeouts: Timeouts) -> None:
        self._timeouts = timeouts
        self._loop = asyncio.get_running_loop()
        self._start = self._loop.time()
        self.answering = False

    def started_answering(self) -> None:
        self.answering = True

    def next_deadline(self) -> tuple[float, TimeoutPhase]:
        t = self._timeouts
        total = self._start + t.total
        if not self.answering:
            first = self._start + t.first_token
            return (first, "first_token") if first <= total else (total, "total")
        gap = self._loop.time() + t.gap
        return (gap, "gap") if gap <= total else (total, "total")

    def timeout_error(self, phase: TimeoutPhase) -> ProviderError:
        t = self._timeouts
        if phase == "first_token":
            # The only retryable timeout: nothing reached the user yet, and a stuck first
            # request (a wedged worker, a lost connection) often succeeds on a second try.
            return ProviderError(
                f"The model did not start answering within {t.first_token:g} s.",
                kind="timeout",
                retryable=True,
            )
        if phase == "gap":
            return ProviderError(
                f"The model stopped answering for more than {t.gap:g} s.", kind="timeout"
            )
        return ProviderError(f"The answer took longer than {t.total:g} s.", kind="timeout")


class TimedEvents:
    """The SSE events of a response, each wait for more bytes bounded by the clock's deadline.

    One timer per stream instead of a timeout scope per read (a timer armed and cancelled for
    every token was a measurable share of a busy server's CPU). A read records its deadline; the
    timer, armed at the earliest deadline, fires, finds that later reads moved the deadline on,
    and sleeps again until it; only a read still waiting at its own deadline is cancelled, and
    the cancellation is turned into the clock's timeout error. Time the consumer spends between
    reads is never cut short: no read is waiting then.
    """

    def __init__(
        self, *, chunks: AsyncIterator[bytes], clock: StreamClock, errors: ErrorContext
    ) -> None:
        self._chunks = chunks
        self._parser = SSEParser()
        self._ready: deque[Event] = deque()
        self._eof = False
        self.clock = clock
        self._errors = errors
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._deadline = math.inf
        self._reader: asyncio.Task | None = None
        self._expired = False

    def __aiter__(self) -> TimedEvents:
        return self

    async def __anext__(self) -> Event:
        ready = self._ready
        while not ready:
            if self._eof:
                raise StopAsyncIteration
            chunk = await self._read()
            if chunk is None:
                self._eof = True
            else:
                ready.extend(self._parser.feed(chunk))
        return ready.popleft()

    async def _read(self) -> bytes | None:
        deadline, phase = self.clock.next_deadline()
        self._deadline = deadline
        if deadline < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer, self._timer_at = self._loop.call_at(deadline, self._on_timer), deadline
        task = self._reader = asyncio.current_task()
        cancelling = task.cancelling()
        try:
            return await self._chunks.__anext__()
        except StopAsyncIteration:
            return None
        except asyncio.CancelledError:
            if self._expired and task.uncancel() <= cancelling:
                raise self.clock.timeout_error(phase) from None
            raise
        except BadResponse as exc:
            raise self._errors.protocol(str(exc)) from None
        except TransportError:
            raise self._errors.dropped() from None
        finally:
            self._reader = None

    def _on_timer(self) -> None:
        self._timer, self._timer_at = None, math.inf
        if self._reader is None:
            return  # between reads: the next read arms the timer again
        if self._loop.time() < self._deadline:
            self._timer = self._loop.call_at(self._deadline, self._on_timer)
            self._timer_at = self._deadline
            return
        self._expired = True
        self._reader.cancel()

    async def drain(self, *, limit: float = 1.0) -> None:
        """Read what follows the end-of-answer event (the chunked-encoding terminator).

        Without this the response is closed half-read and its connection is dropped instead of
        returned to the pool: every turn would pay a new TCP (and TLS) handshake. Bounded and
        best effort: the answer is complete whatever happens here.
        """
        try:
            async with asyncio.timeout(limit):
                async for _ in self._chunks:
                    pass
        except (TimeoutError, TransportError):
            pass

    async def aclose(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        aclose = getattr(self._chunks, "aclose", None)
        if aclose is not None:
            await aclose()
