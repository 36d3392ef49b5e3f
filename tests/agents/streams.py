"""Helpers for tests that read provider and resilience streams."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agents.events import ChatMessage, ChatRequest, ProviderError, TextDelta


def ask(directive: dict[str, Any] | None = None, *, text: str = "Hello", model: str = "fake-model",
        **fields: Any) -> ChatRequest:
    """A one-message request, steered by a `fake:` directive line."""
    content = text + (f"\nfake: {json.dumps(directive)}" if directive is not None else "")
    return ChatRequest(model=model, messages=(ChatMessage(role="user", content=content),),
                       **fields)


async def collect(stream: AsyncIterator[Any]) -> list[Any]:
    return [event async for event in stream]


async def collect_until_error(stream: AsyncIterator[Any]) -> tuple[list[Any], ProviderError]:
    seen: list[Any] = []
    with pytest.raises(ProviderError) as caught:
        async for event in stream:
            seen.append(event)
    return seen, caught.value


def text_of(events: list[Any]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))
