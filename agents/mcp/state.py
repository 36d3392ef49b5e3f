"""The visible state of one server's session, and the backoff between failed opens: pure values."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

SessionStatus = Literal["idle", "connecting", "ready", "failing", "backing_off", "closed"]


@dataclass(frozen=True, slots=True)
class SessionState:
    """What an admin page or a test can see about one server.

    - idle: no session yet (nothing needed it).
    - connecting: spawning the process / opening HTTP and shaking hands.
    - ready: open; `protocol_version` and (stdio) `pid` say what runs.
    - failing: the session died or turned unhealthy (`error` says how); the next need reopens
      it at once.
    - backing_off: opening failed (`error` says why); needs before `retry_at` (epoch seconds)
      fail fast, the first need after it tries again.
    - closed: the pool closed it (shutdown, or its config changed).
    """

    server: str
    status: SessionStatus = "idle"
    error: str = ""
    retry_at: float | None = None
    protocol_version: str = ""
    pid: int | None = None
    # Failed opens in a row (drives the backoff); 0 once a session opened.
    failures: int = 0
    since: float = 0.0

    def retry_in(self, *, now: float | None = None) -> float:
        """Seconds until the next open may be tried (0 when not backing off)."""
        if self.retry_at is None:
            return 0.0
        return max(0.0, self.retry_at - (time.time() if now is None else now))


@dataclass(slots=True)
class Backoff:
    """Exponential backoff between failed opens: `first`, doubling, at most `cap` seconds.

    Times are monotonic (`time.monotonic()`); SessionState shows the wall-clock equivalent."""

    first: float = 0.5
    cap: float = 30.0
    failures: int = 0
    retry_at: float = 0.0

    def failed(self, *, now: float) -> float:
        """Record a failed open; returns the delay before the next try."""
        delay = min(self.cap, self.first * (2 ** self.failures))
        self.failures += 1
        self.retry_at = now + delay
        return delay

    def succeeded(self) -> None:
        self.failures = 0
        self.retry_at = 0.0

    def remaining(self, *, now: float) -> float:
        return max(0.0, self.retry_at - now)
