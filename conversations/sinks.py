"""In-process readers of one turn: an async iterator over its typed events.

The broker (conversations.broker.BrokerSink) is the sockets' sink; this one is for code in the
same process that follows one turn from start to end without any socket (tests read from it;
the /v1 API has its own, conversations.api.asgi.ApiSink, which also writes the stream out from
the turn's call). Pass it to conversations.broker.start_turn(sinks=[...]).

    events = TurnEvents()
    await start_turn(plan=prepared.plan, sinks=[events])
    async for envelope in events:   # ends after the "finished" event
        ...

Events are queued without bound while nobody reads: the turn never waits for this reader (a
slow API client must not slow the answer others watch, nor its storage). A turn emits a
bounded number of events (its length is bounded upstream), and a reader that goes away calls
`abandon()`, which drops what was queued and ignores the rest.
"""

from __future__ import annotations

import asyncio

from conversations.payloads import Envelope

_END = None


class TurnEvents:
    def __init__(self) -> None:
        self._queue: asyncio.Queue[Envelope | None] = asyncio.Queue()
        self._closed = False
        self._abandoned = False

    # --- the turn's side (TurnSink) -----------------------------------------------------------

    async def emit(self, envelope: Envelope) -> None:
        if not self._abandoned:
            self._queue.put_nowait(envelope)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put_nowait(_END)

    # --- the reader's side --------------------------------------------------------------------

    def __aiter__(self) -> TurnEvents:
        return self

    async def __anext__(self) -> Envelope:
        if self._abandoned:
            raise StopAsyncIteration
        item = await self._queue.get()
        if item is _END:
            self._abandoned = True
            raise StopAsyncIteration
        return item

    def abandon(self) -> None:
        """The reader is gone: drop what is queued; the turn goes on for its other watchers."""
        self._abandoned = True
        while not self._queue.empty():
            self._queue.get_nowait()
