"""The server's mutable state: counters, recent requests, retry attempts and cache prefixes.

Contract: `FakeState` is touched only from the server's event loop (request handlers, and the
in-process handle which hops onto that loop), so it needs no locks.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fakellm.config import FailSpec, FakeConfig


@dataclass(frozen=True, slots=True)
class Stats:
    """A snapshot of the counters since the last reset."""

    # Completion requests (OpenAI and Anthropic), failed ones included.
    requests: int = 0
    # Final HTTP status of those requests (a stream counts as 200 when its headers go out).
    by_status: dict[int, int] = field(default_factory=dict)
    streams_started: int = 0
    # Sent to the end ([DONE] / message_stop).
    streams_completed: int = 0
    # The client closed the connection before the end (includes leaving a `hang`).
    streams_abandoned: int = 0
    # The fake closed the connection on purpose (`drop_after`, or the server stopping).
    streams_dropped: int = 0
    # Non-streaming requests whose client left before the answer was sent.
    responses_abandoned: int = 0
    # Text and reasoning tokens actually written to a socket.
    tokens_sent: int = 0
    # Streams open right now (not reset: it is a gauge, not a counter).
    active_streams: int = 0

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["by_status"] = {str(status): count for status, count in sorted(self.by_status.items())}
        return data


@dataclass(slots=True)
class Counters:
    """The live counters behind `Stats`; replaced (not zeroed) by a reset."""

    requests: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    streams_started: int = 0
    streams_completed: int = 0
    streams_abandoned: int = 0
    streams_dropped: int = 0
    responses_abandoned: int = 0
    tokens_sent: int = 0


class FakeState:
    """Per-app state; see the module docstring for the threading contract."""

    def __init__(self, config: FakeConfig) -> None:
        self.initial_config = config
        self.config = config
        self.counters = Counters()
        # Bumped by reset: a stream started before a reset does not count after it, so one
        # test's leftovers (a hang ending late) never leak into the next test's numbers.
        self.epoch = 0
        self.active_streams = 0
        self.recent: deque[dict[str, Any]] = deque(maxlen=config.keep_requests)
        self.attempts: dict[str, int] = {}
        self.server_fail_used = 0
        self.cache_prefixes: set[str] = set()
        # Called by `abort_all` so a stopping server does not wait for hanging streams.
        self.abort_callbacks: set[Callable[[], None]] = set()

    def set_config(self, config: FakeConfig) -> None:
        if config.fail != self.config.fail:
            self.server_fail_used = 0
        if config.keep_requests != self.recent.maxlen:
            self.recent = deque(self.recent, maxlen=config.keep_requests)
        self.config = config

    def reset(self, *, config: bool = False) -> None:
        self.counters = Counters()
        self.epoch += 1
        self.recent.clear()
        self.attempts.clear()
        self.cache_prefixes.clear()
        self.server_fail_used = 0
        if config:
            self.set_config(self.initial_config)

    def stats(self) -> Stats:
        # asdict copies by_status, so the snapshot never changes under its reader.
        return Stats(**dataclasses.asdict(self.counters), active_streams=self.active_streams)

    def count_status(self, status: int) -> None:
        self.counters.by_status[status] = self.counters.by_status.get(status, 0) + 1

    def record(self, entry: dict[str, Any]) -> None:
        self.recent.append(entry)

    def next_failure(self, key: str, spec: FailSpec | None) -> FailSpec | None:
        """Count one attempt of scenario `key`; return the spec if this attempt must fail."""
        server_spec = self.config.fail
        if server_spec is not None and (
            server_spec.times is None or self.server_fail_used < server_spec.times
        ):
            self.server_fail_used += 1
            return server_spec
        if spec is None:
            return None
        attempt = self.attempts.get(key, 0) + 1
        self.attempts[key] = attempt
        if spec.times is None or attempt <= spec.times:
            return spec
        return None

    def abort_all(self) -> None:
        for callback in list(self.abort_callbacks):
            callback()
