"""Retries, fallbacks and queueing, against the fake model server (two of them for fallbacks)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agents.events import (
    Finished,
    ModelSelected,
    ProviderError,
    Retrying,
    StreamEvent,
    TextDelta,
    Waiting,
)
from agents.providers import OpenAIProvider, ProviderConfig, Timeouts
from agents.providers.base import Provider
from agents.resilience import _retry_delay, stream_with_retries
from fakellm import run_in_thread
from tests.agents.streams import ask, collect, collect_until_error, text_of

FAST = Timeouts(connect=1.0, first_token=2.0, gap=2.0, total=10.0)


@pytest.fixture
def fake(fake_llm_server):
    fake_llm_server.reset(config=True)
    return fake_llm_server


@pytest.fixture(scope="module")
def other_server():
    """A second model server, for fallbacks that live elsewhere."""
    server = run_in_thread()
    yield server
    server.stop()


@pytest.fixture
def other(other_server):
    other_server.reset(config=True)
    return other_server


@pytest.fixture
async def providers() -> AsyncIterator[list[Provider]]:
    """Providers made by a test, closed after it."""
    made: list[Provider] = []
    yield made
    for provider in made:
        await provider.aclose()


@pytest.fixture
def make(providers):
    def make_provider(base_url: str, **overrides: Any) -> OpenAIProvider:
        values: dict[str, Any] = {"name": "local", "kind": "openai", "base_url": base_url, "timeouts": FAST}
        provider = OpenAIProvider(ProviderConfig(**(values | overrides)))
        providers.append(provider)
        return provider

    return make_provider


class Sleeps:
    """An injected sleep: records the delays and waits only a moment, so tests stay fast."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


def of_type(events: list[StreamEvent], kind: type) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


# --- Retries ------------------------------------------------------------------------------------


async def test_429_with_retry_after_waits_that_long_then_succeeds(fake, make):
    provider = make(fake.base_url, max_retries=3)
    started = time.monotonic()
    events = await collect(
        stream_with_retries(
            providers_and_models=[(provider, "fake-model")],
            request=ask({"fail": {"status": 429, "times": 1, "retry_after": 0.3}, "reply": "Done."}),
        )
    )

    assert time.monotonic() - started >= 0.3  # the real sleep, honouring Retry-After
    assert events[0] == Retrying(
        attempt=2,
        delay=0.3,
        message="The model server is rate limiting us (HTTP 429). fake failure 429 (injected)",
        provider="local",
        model="fake-model",
    )
    assert events[1] == ModelSelected(provider="local", model="fake-model")
    assert text_of(events) == "Done."
    assert events[-1] == Finished(reason="stop")
    stats = fake.stats()
    assert stats.requests == 2 and stats.by_status == {429: 1, 200: 1}


async def test_500_is_retried_with_jittered_exponential_backoff(fake, make):
    provider = make(fake.base_url, max_retries=3)
    sleeps = Sleeps()
    events = await collect(
        stream_with_retries(
            providers_and_models=[(provider, "fake-model")],
            request=ask({"fail": {"status": 500, "times": 2}, "reply": "Back."}),
            sleep=sleeps,
            backoff_base=0.5,
            jitter=lambda: 0.5,
        )
    )

    # Full jitter: jitter * min(cap, base * 2**retry) = 0.5 * 0.5, then 0.5 * 1.0.
    assert sleeps.delays == [0.25, 0.5]
    assert [(r.attempt, r.delay) for r in of_type(events, Retrying)] == [(2, 0.25), (3, 0.5)]
    assert text_of(events) == "Back."
    assert fake.stats().requests == 3


def test_backoff_is_capped_and_bounded_by_the_retry_budget():
    config = ProviderConfig(name="p", kind="openai", base_url="http://x", max_retries=10, max_retry_wait=30.0)
    error = ProviderError("boom", kind="server_error", retryable=True)

    def delay(retries_done: int, waited: float = 0.0) -> float | None:
        return _retry_delay(
            error=error, retries_done=retries_done, waited=waited, config=config,
            backoff_base=0.5, backoff_cap=8.0, jitter=lambda: 0.99,
        )

    assert delay(0) == pytest.approx(0.495)
    assert delay(6) == pytest.approx(7.92)  # 0.5 * 2**6 = 32, capped at 8
    assert delay(6, waited=25.0) is None  # would exceed max_retry_wait
    assert delay(10) is None  # max_retries spent


async def test_retry_after_beyond_the_retry_budget_gives_up_at_once(fake, make):
    provider = make(fake.base_url, max_retries=3, max_retry_wait=5.0)
    sleeps = Sleeps()
    events, error = await collect_until_error(
        stream_with_retries(
            providers_and_models=[(provider, "fake-model")],
            request=ask({"fail": {"status": 429, "retry_after": 60}}),
            sleep=sleeps,
        )
    )

    assert events == [] and sleeps.delays == []
    assert (error.kind, error.retry_after) == ("rate_limited", 60.0)
    assert fake.stats().requests == 1


async def test_a_hanging_server_hits_the_first_token_timeout_and_is_retried(fake, make):
    timeouts = Timeouts(connect=1.0, first_token=0.2, gap=5.0, total=10.0)
    provider = make(fake.base_url, max_retries=1, timeouts=timeouts)
    events, error = await collect_until_error(
        stream_with_retries(
            providers_and_models=[(provider, "fake-model")], request=ask({"hang": True}), sleep=Sleeps()
        )
    )

    assert [r.attempt for r in of_type(events, Retrying)] == [2]
    assert (error.kind, error.message) == ("timeout", "The model did not start answering within 0.2 s.")
    await fake.await_for(lambda s: s.requests == 2 and s.streams_abandoned == 2, timeout=1.0)


# --- Fallbacks ----------------------------------------------------------------------------------


async def test_a_server_failing_for_ever_falls_back_to_the_next_model(fake, other, make):
    other.configure(fail={"status": 500})  # every request, for ever
    primary = make(other.base_url, name="primary", max_retries=2)
    backup = make(fake.base_url, name="backup")
    sleeps = Sleeps()
    events = await collect(
        stream_with_retries(
            providers_and_models=[(primary, "fake-model"), (backup, "fake-model-2")],
            request=ask({"reply": "From the backup."}),
            sleep=sleeps,
        )
    )

    retrying = of_type(events, Retrying)
    assert [(r.provider, r.model, r.attempt, r.fallback) for r in retrying] == [
        ("primary", "fake-model", 2, False),
        ("primary", "fake-model", 3, False),
        ("backup", "fake-model-2", 1, True),
    ]
    assert retrying[-1].message.startswith("The model server failed (HTTP 500).")
    assert of_type(events, ModelSelected) == [ModelSelected(provider="backup", model="fake-model-2")]
    assert text_of(events) == "From the backup."
    assert len(sleeps.delays) == 2
    assert other.stats().requests == 3
    assert fake.requests()[-1]["body"]["model"] == "fake-model-2"


async def test_a_rejected_key_is_not_retried_and_its_message_is_readable(fake, make):
    fake.configure(required_api_key="sk-right-key")
    provider = make(fake.base_url, api_key="sk-wrong-key", max_retries=3)
    events, error = await collect_until_error(
        stream_with_retries(providers_and_models=[(provider, "fake-model")], request=ask(), sleep=Sleeps())
    )

    assert events == []
    assert (error.kind, error.message) == ("auth", "The model server rejected the API key (HTTP 401).")
    assert "sk-wrong-key" not in str(error) and "sk-right-key" not in str(error)
    assert fake.stats().requests == 1


async def test_a_rejected_key_falls_back_to_a_model_on_another_key(fake, make):
    fake.configure(required_api_key="sk-right-key")
    wrong = make(fake.base_url, name="wrong", api_key="sk-wrong-key")
    right = make(fake.base_url, name="right", api_key="sk-right-key")
    events = await collect(
        stream_with_retries(
            providers_and_models=[(wrong, "fake-model"), (right, "fake-model-2")],
            request=ask({"reply": "ok"}),
            sleep=Sleeps(),
        )
    )

    (retrying,) = of_type(events, Retrying)
    assert (retrying.fallback, retrying.provider, retrying.delay) == (True, "right", 0.0)
    assert of_type(events, ModelSelected) == [ModelSelected(provider="right", model="fake-model-2")]
    assert text_of(events) == "ok"
    assert fake.stats().requests == 2


async def test_when_every_model_fails_the_last_error_is_raised(fake, other, make):
    other.configure(fail={"status": 503})
    first = make(other.base_url, name="first", max_retries=0)
    second = make(fake.base_url, name="second", max_retries=0)
    events, error = await collect_until_error(
        stream_with_retries(
            providers_and_models=[(first, "fake-model"), (second, "fake-model")],
            request=ask({"fail": {"status": 404}}),
            sleep=Sleeps(),
        )
    )

    assert [r.provider for r in of_type(events, Retrying)] == ["second"]
    assert error.kind == "not_found"


# --- After the first token ----------------------------------------------------------------------


async def test_a_drop_after_the_first_tokens_propagates_and_is_not_retried(fake, other, make):
    provider = make(fake.base_url, max_retries=3)
    backup = make(other.base_url, name="backup")
    events, error = await collect_until_error(
        stream_with_retries(
            providers_and_models=[(provider, "fake-model"), (backup, "fake-model")],
            request=ask({"tokens": 10, "drop_after": 3}),
            sleep=Sleeps(),
        )
    )

    assert events[0] == ModelSelected(provider="local", model="fake-model")
    assert text_of(events) == "tok0 tok1 tok2 "  # the partial answer stays with the turn
    assert of_type(events, Retrying) == []
    assert (error.kind, error.retryable) == ("connection", True)
    assert fake.stats().requests == 1 and other.stats().requests == 0


# --- Concurrency --------------------------------------------------------------------------------


async def test_the_third_of_three_concurrent_streams_waits_its_turn(fake, make):
    provider = make(fake.base_url, max_concurrency=2)
    streams = [
        stream_with_retries(
            providers_and_models=[(provider, "fake-model")],
            request=ask({"tokens": 5, "gap_ms": 30}, text=f"question {i}"),
        )
        for i in range(3)
    ]
    # The first two start answering and hold the two slots.
    assert await anext(streams[0]) == ModelSelected(provider="local", model="fake-model")
    assert await anext(streams[1]) == ModelSelected(provider="local", model="fake-model")

    assert await anext(streams[2]) == Waiting(provider="local", position=1)

    rests = await asyncio.gather(*(collect(s) for s in streams))
    assert all(text_of(rest) == "tok0 tok1 tok2 tok3 tok4 " for rest in rests)
    assert rests[2][0] == ModelSelected(provider="local", model="fake-model")
    assert fake.stats().streams_completed == 3


async def test_closing_a_stream_closes_upstream_and_frees_its_slot(fake, make):
    provider = make(fake.base_url, max_concurrency=1)
    first = stream_with_retries(
        providers_and_models=[(provider, "fake-model")], request=ask({"tokens": 100, "gap_ms": 50})
    )
    assert isinstance(await anext(first), ModelSelected)
    assert isinstance(await anext(first), TextDelta)
    waiting = stream_with_retries(providers_and_models=[(provider, "fake-model")], request=ask(text="waits"))
    assert isinstance(await anext(waiting), Waiting)
    await waiting.aclose()  # leaving the queue must not take a slot with it

    await first.aclose()

    await fake.await_for(lambda s: s.streams_abandoned == 1, timeout=1.0)
    after = await collect(
        stream_with_retries(providers_and_models=[(provider, "fake-model")], request=ask({"reply": "next"}))
    )
    assert after[0] == ModelSelected(provider="local", model="fake-model")
    assert text_of(after) == "next"


async def test_limits_are_per_provider(fake, other, make):
    busy = make(fake.base_url, name="busy", max_concurrency=1)
    idle = make(other.base_url, name="idle", max_concurrency=1)
    holding = stream_with_retries(
        providers_and_models=[(busy, "fake-model")], request=ask({"tokens": 100, "gap_ms": 50})
    )
    assert isinstance(await anext(holding), ModelSelected)
    try:
        events = await collect(
            stream_with_retries(providers_and_models=[(idle, "fake-model")], request=ask({"reply": "free"}))
        )
    finally:
        await holding.aclose()

    assert of_type(events, Waiting) == [] and text_of(events) == "free"


# Reaches neither the tests' database nor the channel layer (tests/conftest.py).
pytestmark = pytest.mark.backend_free
