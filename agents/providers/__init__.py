"""Model providers: one module per wire format, and a registry of live, pooled providers.

`get_provider(config)` is what the rest of the code calls: it keeps one provider (and so one
HTTP client, with its keep-alive connections) per provider config name and event loop;
call `close_all()` when that loop shuts down.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass, field

from agents.providers.anthropic import AnthropicProvider
from agents.providers.base import Provider, ProviderConfig, ProviderKind, Timeouts
from agents.providers.openai import OpenAIProvider

__all__ = [
    "AnthropicProvider",
    "OpenAIProvider",
    "Provider",
    "ProviderConfig",
    "ProviderKind",
    "Timeouts",
    "close_all",
    "get_provider",
    "make_provider",
]


@dataclass(slots=True)
class _LoopProviders:
    live: dict[str, Provider] = field(default_factory=dict)
    # Providers replaced by a changed config: turns may still stream through them, so they are
    # closed with everything else rather than under those turns' feet.
    retired: list[Provider] = field(default_factory=list)


# An HTTP client belongs to the event loop it first ran on, so providers are kept per loop: a
# server process has one loop; tests have one per test, and a provider left from an earlier,
# closed loop must never be used (or closed) from a new one.
_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopProviders] = (
    weakref.WeakKeyDictionary()
)


def make_provider(config: ProviderConfig) -> Provider:
    """A new provider for `config` (with its own client); prefer `get_provider`."""
    if config.kind == "openai":
        return OpenAIProvider(config)
    if config.kind == "anthropic":
        return AnthropicProvider(config)
    raise ValueError(f"unknown provider kind {config.kind!r}")


def get_provider(config: ProviderConfig) -> Provider:
    """The running loop's shared provider for `config.name`, replaced when the config changed
    (new URL, key, timeouts...). Call from async code."""
    providers = _by_loop.setdefault(asyncio.get_running_loop(), _LoopProviders())
    current = providers.live.get(config.name)
    if current is not None and current.config == config:
        return current
    if current is not None:
        providers.retired.append(current)
    provider = providers.live[config.name] = make_provider(config)
    return provider


async def close_all() -> None:
    """Close every client `get_provider` made on the running loop (at shutdown, between tests)."""
    providers = _by_loop.pop(asyncio.get_running_loop(), None)
    if providers is None:
        return
    for provider in [*providers.live.values(), *providers.retired]:
        await provider.aclose()
