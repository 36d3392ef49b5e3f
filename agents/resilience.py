"""Retries, fallbacks and queueing around provider streams: what makes one turn's answer robust.

Policy, in the order it applies to one turn:

- Per-provider concurrency: at most `config.max_concurrency` streams per provider config run at
  once, each holding its slot for its whole stream. A turn that must wait yields `Waiting`
  first, so the user sees it is queued rather than stuck.
- Retries: a retryable `ProviderError` (429/529, 5xx, connection failures, first-token timeout)
  is retried on the same model with exponential backoff and full jitter, or after exactly
  `retry_after` seconds when the server said so; at most `config.max_retries` times and at
  most `config.max_retry_wait` seconds of waiting in all. Only while nothing has been yielded
  to the user: once text, reasoning or a tool call went out, an error propagates and the turn
  keeps its partial answer (a retry would repeat or contradict what the user already read).
- Fallbacks: when a model fails before its first token and will not be retried (retries spent,
  or the error is not retryable), the next (provider, model) is tried. That includes auth,
  not-found and bad-request errors: they are not retried (asking the same server again gives
  the same answer), but a fallback often lives on another server with another key, URL or
  context size, so it is worth one request. With no fallback left, the last error is raised.
"""

from __future__ import annotations

import asyncio
import logging
import random
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

from agents.events import (
    ChatRequest,
    ModelSelected,
    ProviderError,
    Retrying,
    StreamEvent,
    Waiting,
)
from agents.providers.base import Provider, ProviderConfig

logger = logging.getLogger(__name__)

BACKOFF_BASE = 0.5
BACKOFF_CAP = 8.0

# Events after which a retry would show the user a second, different beginning.
_ANSWER_TYPES = frozenset({"text", "reasoning", "tool_call"})


async def stream_with_retries(
    *,
    providers_and_models: Sequence[tuple[Provider, str]],
    request: ChatRequest,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    backoff_base: float = BACKOFF_BASE,
    backoff_cap: float = BACKOFF_CAP,
    jitter: Callable[[], float] = random.random,
) -> AsyncGenerator[StreamEvent, None]:
    """Stream `request` from the first (provider, model) that answers; see the module docstring.

    `request.model` is replaced by each entry's model. Yields the provider's events plus
    `ModelSelected`, `Waiting` and `Retrying`; raises the last `ProviderError` when every
    model failed, or the current one when it fails after its first token. `sleep`, the
    backoff and `jitter` (a number in [0, 1)) are parameters so tests run fast and exactly.
    Closing the generator closes the upstream stream and frees the concurrency slot.
    """
    if not providers_and_models:
        raise ValueError("stream_with_retries needs at least one (provider, model)")
    last_error: ProviderError | None = None
    for provider, model in providers_and_models:
        config = provider.config
        if last_error is not None:
            logger.warning(
                "falling back to %s/%s after: %s", config.name, model, last_error.message
            )
            yield Retrying(
                attempt=1,
                delay=0.0,
                message=last_error.message,
                provider=config.name,
                model=model,
                fallback=True,
            )
        attempt = 1
        waited = 0.0
        while True:
            progress = _Progress()
            try:
                stream = _one_attempt(
                    provider=provider, request=replace(request, model=model), progress=progress
                )
                try:
                    async for event in stream:
                        yield event
                finally:
                    await stream.aclose()
                return
            except ProviderError as error:
                if progress.answered:
                    raise
                last_error = error
                delay = _retry_delay(
                    error=error,
                    retries_done=attempt - 1,
                    waited=waited,
                    config=config,
                    backoff_base=backoff_base,
                    backoff_cap=backoff_cap,
                    jitter=jitter,
                )
                if delay is None:
                    break  # to the next fallback
                attempt += 1
                waited += delay
                logger.warning(
                    "retrying %s/%s (attempt %d) in %.2f s after: %s",
                    config.name, model, attempt, delay, error.message,
                )
                yield Retrying(
                    attempt=attempt,
                    delay=delay,
                    message=error.message,
                    provider=config.name,
                    model=model,
                )
                await sleep(delay)
    assert last_error is not None
    raise last_error


def _retry_delay(
    *,
    error: ProviderError,
    retries_done: int,
    waited: float,
    config: ProviderConfig,
    backoff_base: float,
    backoff_cap: float,
    jitter: Callable[[], float],
) -> float | None:
    """Seconds to wait before retrying, or None when this model is done."""
    if not error.retryable or retries_done >= config.max_retries:
        return None
    if error.retry_after is not None:
        delay = error.retry_after
    else:
        # Full jitter: spreads the retries of many turns that failed together (a server
        # restart) instead of bringing them back in one wave.
        delay = jitter() * min(backoff_cap, backoff_base * 2**retries_done)
    if waited + delay > config.max_retry_wait:
        return None
    return delay


@dataclass(slots=True)
class _Progress:
    answered: bool = False


async def _one_attempt(
    *, provider: Provider, request: ChatRequest, progress: _Progress
) -> AsyncGenerator[StreamEvent, None]:
    """One stream from one provider, inside its concurrency slot."""
    gate = _gate_for(provider.config)
    if gate.semaphore.locked():
        gate.waiting += 1
        try:
            yield Waiting(provider=provider.config.name, position=gate.waiting)
            await gate.semaphore.acquire()
        finally:
            gate.waiting -= 1
    else:
        await gate.semaphore.acquire()
    try:
        events = provider.stream(request)
        try:
            selected = False
            async for event in events:
                if not selected:
                    selected = True
                    yield ModelSelected(provider=provider.config.name, model=request.model)
                if event.type in _ANSWER_TYPES:
                    progress.answered = True
                yield event
        finally:
            # Close the provider's stream before freeing the slot: the slot stands for an
            # open upstream connection.
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()
    finally:
        gate.semaphore.release()


@dataclass(slots=True)
class _Gate:
    semaphore: asyncio.Semaphore
    # Turns queued right now; a newcomer's position in the queue.
    waiting: int = 0


# One gate per provider config and event loop: keyed by the (frozen, hashable) config so two
# Provider objects for one server share its limit, and by loop because an asyncio.Semaphore
# belongs to the loop it first waited in (tests run one loop per test).
_gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[ProviderConfig, _Gate]] = (
    weakref.WeakKeyDictionary()
)


def _gate_for(config: ProviderConfig) -> _Gate:
    per_loop = _gates.setdefault(asyncio.get_running_loop(), {})
    gate = per_loop.get(config)
    if gate is None:
        gate = per_loop[config] = _Gate(semaphore=asyncio.Semaphore(max(1, config.max_concurrency)))
    return gate
