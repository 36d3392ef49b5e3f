"""What-if patches for the streaming benchmark, applied only when `bench/stream.py --patch NAME`
asks (through $BENCH_PATCH, read by bench/settings_bench.py). They measure what a proposed
backend change would buy; the default run measures the code as it is.

- dispatch: ChatConsumer.dispatch without channels' per-message `aclose_old_connections()`
  (channels >= 4.2 hops to the sync thread for EVERY channel-layer message, i.e. per token per
  socket; our consumer touches the ORM only through database_sync_to_async, which closes old
  connections itself).
- sqlite-persistent: CONN_MAX_AGE=None for SQLite (no connect + PRAGMAs + close per
  database_sync_to_async call).
- layer: InMemoryChannelLayer whose expiry sweep (O(channels + group members), run on every
  send and receive) runs at most once a second.
"""

from __future__ import annotations

import os


def enabled() -> set[str]:
    return {p.strip() for p in os.environ.get("BENCH_PATCH", "").split(",") if p.strip()}


def apply_runtime() -> None:
    """Patches that need the apps loaded (called from bench.countwrites' ready())."""
    patches = enabled()
    if "dispatch" in patches:
        from channels.consumer import get_handler_name

        from conversations.consumers import ChatConsumer

        async def dispatch(self, message):
            handler = getattr(self, get_handler_name(message), None)
            if handler is None:
                raise ValueError(f"No handler for message type {message['type']}")
            await handler(message)

        ChatConsumer.dispatch = dispatch
