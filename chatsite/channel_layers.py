"""The in-memory channel layer (one process, no Redis), with its expiry sweep rate-limited.

Channels' layer sweeps every channel and every group for expired entries on each send and each
receive: with hundreds of open sockets that sweep cost more than the messages it was swept for.
Messages expire after a minute and group memberships after a day, so sweeping at most once a
second changes nothing anyone can observe.
"""

from __future__ import annotations

import time

from channels.layers import InMemoryChannelLayer

SWEEP_INTERVAL = 1.0


class SweepingInMemoryChannelLayer(InMemoryChannelLayer):
    _next_sweep = 0.0

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_INTERVAL
        super()._clean_expired()
