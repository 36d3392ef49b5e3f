"""Model providers: one module per wire format, and a registry of live, pooled providers.

`get_provider(config)` is what the rest of the code calls: it keeps one provider (and so one
pooled httpx client, with its keep-alive connections) per provider config name. The clients
belong to the event loop that first used them; call `close_all()` when that loop shuts down.
"""

from __future__ import annotations

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

_live: dict[str, Provider] = {}
# Providers replaced by a changed config: turns may still stream through them, so they are
# closed with everything else rather than under those turns' feet.
_retired: list[Provider] = []


def make_provider(config: ProviderConfig) -> Provider:
    """A new provider for `config` (with its own client); prefer `get_provider`."""
    if config.kind == "openai":
        return OpenAIProvider(config)
    if config.kind == "anthropic":
        return AnthropicProvider(config)
    raise ValueError(f"unknown provider kind {config.kind!r}")


def get_provider(config: ProviderConfig) -> Provider:
    """The shared provider for `config.name`, replaced when the config changed (new URL, key,
    timeouts...)."""
    current = _live.get(config.name)
    if current is not None and current.config == config:
        return current
    if current is not None:
        _retired.append(current)
    provider = _live[config.name] = make_provider(config)
    return provider


async def close_all() -> None:
    """Close every client `get_provider` made (at shutdown, and between tests)."""
    providers = [*_live.values(), *_retired]
    _live.clear()
    _retired.clear()
    for provider in providers:
        await provider.aclose()
