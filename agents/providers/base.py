"""What every provider adapter shares: its configuration and the shape of `stream()`.

A provider is one small module with one class whose `stream()` is an async generator over its
HTTP client (`_transport`: which kind carries it is not the adapter's concern) that yields
`agents.events.ProviderEvent`s, raises `ProviderError`, and closes its response in `finally` (so
a consumer that stops iterating closes the upstream HTTP stream at once).
Nothing here imports Django.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal, Protocol

from agents.events import ChatRequest, ProviderEvent

ProviderKind = Literal["openai", "anthropic"]
# Which HTTP transport carries the requests: our HTTP/1.1 client or httpx's own; see
# agents.providers._transport.
HttpTransport = Literal["own", "stock"]


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 10.0
    # From sending the request to the first event (text, reasoning or tool call).
    first_token: float = 60.0
    # Longest silence allowed between two events once streaming.
    gap: float = 60.0
    # The whole stream, first byte to last.
    total: float = 600.0


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    name: str
    kind: ProviderKind
    base_url: str
    # Never logged or shown; adapters put it only in the Authorization / x-api-key header.
    api_key: str = field(default="", repr=False)
    timeouts: Timeouts = Timeouts()
    # Turns beyond this many concurrent streams wait in a queue (see agents.resilience).
    max_concurrency: int = 32
    max_retries: int = 3
    # Upper bound on the total time spent waiting between retries of one request.
    max_retry_wait: float = 30.0
    transport: HttpTransport = "own"


class Provider(Protocol):
    config: ProviderConfig

    def stream(self, request: ChatRequest) -> AsyncIterator[ProviderEvent]: ...

    # The model ids the server offers; doubles as the "can we reach the model server" check.
    async def list_models(self) -> list[str]: ...

    async def aclose(self) -> None: ...
