"""The native Anthropic adapter against the fake model server (no mocks: real HTTP and SSE)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from agents.events import (
    ChatMessage,
    ChatRequest,
    Finished,
    ProviderError,
    ReasoningDelta,
    RequestOptions,
    TextDelta,
    ToolCall,
    ToolCallRequested,
    ToolSpec,
    Usage,
)
from agents.providers import AnthropicProvider, ProviderConfig, Timeouts
from agents.providers._http import ErrorContext
from agents.providers.anthropic import _StreamState, api_root
from fakellm.anthropic_wire import signature
from tests.agents.streams import ask as _ask, collect, collect_until_error, text_of


def ask(directive=None, *, text: str = "Hello", **fields):
    return _ask(directive, text=text, model="claude-fake", **fields)

FAST = Timeouts(connect=1.0, first_token=2.0, gap=2.0, total=10.0)
EPHEMERAL = {"type": "ephemeral"}


@pytest.fixture
def fake(fake_llm_server):
    fake_llm_server.reset(config=True)
    return fake_llm_server


@pytest.fixture
def config(transport) -> Callable[..., ProviderConfig]:
    """Configs on the test's transport: each test that makes one runs on both."""

    def make(base_url: str, **overrides: Any) -> ProviderConfig:
        values: dict[str, Any] = {
            "name": "claude",
            "kind": "anthropic",
            "base_url": base_url,
            "api_key": "sk-ant-test",
            "timeouts": FAST,
            "transport": transport,
        }
        return ProviderConfig(**(values | overrides))

    return make


@pytest.fixture
async def provider(fake, config) -> AsyncIterator[AnthropicProvider]:
    p = AnthropicProvider(config(fake.base_url))
    yield p
    await p.aclose()


# --- Streaming ----------------------------------------------------------------------------------


async def test_thinking_then_text_with_the_signature(provider):
    events = await collect(provider.stream(ask({"reasoning": "Let me think.", "reply": "Forty-two, ✓."})))

    reasoning = [e for e in events if isinstance(e, ReasoningDelta)]
    assert "".join(e.text for e in reasoning) == "Let me think."
    # The signature arrives once, at the end of the thinking block, before any text.
    signed = [e for e in reasoning if e.signature]
    assert signed == [ReasoningDelta(text="", signature=signature("Let me think."))]
    assert events.index(signed[0]) < next(i for i, e in enumerate(events) if isinstance(e, TextDelta))
    assert text_of(events) == "Forty-two, ✓."
    assert isinstance(events[-2], Usage) and events[-2].output_tokens > 0
    assert events[-1] == Finished(reason="stop")


async def test_tool_use_blocks_become_whole_tool_calls(provider):
    directive = {
        "preamble": "Let me look.",
        "tool_calls": [
            {"name": "get_weather", "arguments": {"city": "Paris", "units": "metric"}},
            {"name": "get_time", "arguments": {}},
            {"name": "broken", "arguments": '{"oops": '},
        ],
    }
    events = await collect(provider.stream(ask(directive)))

    calls = [e.call for e in events if isinstance(e, ToolCallRequested)]
    assert [(c.name, c.arguments) for c in calls] == [
        ("get_weather", {"city": "Paris", "units": "metric"}),
        ("get_time", {}),
        ("broken", {}),
    ]
    assert calls[2].arguments_raw == '{"oops": '
    assert all(c.id.startswith("toolu_") for c in calls) and len({c.id for c in calls}) == 3
    assert text_of(events) == "Let me look."
    assert events[-1] == Finished(reason="tool_calls")


async def test_max_tokens_defaults_to_4096_and_a_cut_reports_length(provider, fake):
    await collect(provider.stream(ask({"tokens": 2})))
    events = await collect(provider.stream(ask({"tokens": 10}, text="again",
                                               options=RequestOptions(max_tokens=3))))

    first, second = fake.requests()
    assert first["body"]["max_tokens"] == 4096
    assert second["body"]["max_tokens"] == 3
    assert text_of(events) == "tok0 tok1 tok2 "
    assert events[-1] == Finished(reason="length")


async def test_cache_reads_are_reported_as_part_of_the_input(provider):
    request = ask({"reply": "ok"}, system="You are a careful assistant. " * 20)

    first = next(e for e in await collect(provider.stream(request)) if isinstance(e, Usage))
    second = next(e for e in await collect(provider.stream(request)) if isinstance(e, Usage))

    assert first.cached_tokens == 0
    assert second.cached_tokens > 0
    # input_tokens is the whole prompt both times; the cached part is a subset of it.
    assert second.input_tokens == first.input_tokens > second.cached_tokens


# --- What goes upstream -------------------------------------------------------------------------


async def test_upstream_body_has_system_blocks_merged_tool_results_and_cache_breakpoints(provider, fake):
    weather = ToolCall(id="toolu_1", name="get_weather", arguments={"city": "Paris"})
    clock = ToolCall(id="toolu_2", name="get_time", arguments={})
    request = ChatRequest(
        model="claude-fake",
        system="You are terse.",
        messages=(
            ChatMessage(role="user", content="Weather and time in Paris?"),
            ChatMessage(
                role="assistant",
                content="Checking both.",
                reasoning="Two tools.",
                reasoning_signature="c2lnbmF0dXJl",
                tool_calls=(weather, clock),
            ),
            ChatMessage(role="tool", tool_call_id="toolu_1", content="sunny"),
            ChatMessage(role="tool", tool_call_id="toolu_2", content="no clock", is_error=True),
        ),
        tools=(
            ToolSpec(name="get_weather", description="Weather", input_schema={"type": "object"}),
            ToolSpec(name="get_time", description="Time", input_schema={"type": "object"}),
        ),
    )
    events = await collect(provider.stream(request))

    # The fake quotes the tool results it read: proof they arrived as tool_result blocks.
    assert text_of(events) == "Tool results: get_weather=sunny; get_time=no clock;"
    (recorded,) = fake.requests()
    assert recorded["path"] == "/v1/messages"
    assert recorded["headers"]["anthropic-version"] == "2023-06-01"
    assert recorded["headers"]["x-api-key"] == "<redacted>"
    body = recorded["body"]
    assert body["stream"] is True
    assert body["system"] == [{"type": "text", "text": "You are terse.", "cache_control": EPHEMERAL}]
    assert body["tools"] == [
        {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}},
        {"name": "get_time", "description": "Time", "input_schema": {"type": "object"}, "cache_control": EPHEMERAL},
    ]
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather and time in Paris?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Two tools.", "signature": "c2lnbmF0dXJl"},
                {"type": "text", "text": "Checking both."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                # The earlier turns end here: the prefix up to this block is cached.
                {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}, "cache_control": EPHEMERAL},
            ],
        },
        {
            # Both results in one user message.
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "no clock", "is_error": True},
            ],
        },
    ]
    breakpoints = json.dumps(body).count('"cache_control"')
    assert breakpoints <= 4


async def test_a_second_turn_marks_the_first_turn_for_caching_and_reads_it(provider, fake):
    system = "You are a careful assistant. " * 20
    first_turn = ChatMessage(role="user", content="First question\nfake: {\"reply\": \"First answer\"}")
    await collect(provider.stream(ChatRequest(model="claude-fake", system=system, messages=(first_turn,))))
    second = ChatRequest(
        model="claude-fake",
        system=system,
        messages=(
            first_turn,
            ChatMessage(role="assistant", content="First answer"),
            ChatMessage(role="user", content="Second question"),
        ),
    )
    events = await collect(provider.stream(second))

    body = fake.requests()[-1]["body"]
    assert body["messages"][0]["content"][0].get("cache_control") is None
    assert body["messages"][1]["content"] == [{"type": "text", "text": "First answer", "cache_control": EPHEMERAL}]
    assert body["messages"][2]["content"][0].get("cache_control") is None
    usage = next(e for e in events if isinstance(e, Usage))
    assert usage.cached_tokens > 0  # the system prompt written by the first turn


async def test_unsigned_reasoning_and_empty_text_are_not_sent(provider, fake):
    request = ChatRequest(
        model="claude-fake",
        messages=(
            ChatMessage(role="user", content="Hi"),
            # Reasoning from an OpenAI model before a fallback: Anthropic would reject it unsigned.
            ChatMessage(role="assistant", content="Hello!", reasoning="greet back"),
            ChatMessage(role="user", content="Bye"),
        ),
    )
    await collect(provider.stream(request))

    body = fake.requests()[-1]["body"]
    assert body["messages"][1]["content"] == [{"type": "text", "text": "Hello!", "cache_control": EPHEMERAL}]
    assert "system" not in body and "tools" not in body


async def test_list_models_reaches_the_server(provider):
    assert "fake-model" in await provider.list_models()


def test_a_bare_host_gets_the_v1_prefix_other_urls_are_kept():
    assert api_root("https://api.anthropic.com") == "https://api.anthropic.com/v1"
    assert api_root("https://api.anthropic.com/") == "https://api.anthropic.com/v1"
    assert api_root("http://proxy:8080/anthropic/v1") == "http://proxy:8080/anthropic/v1"


# --- Errors -------------------------------------------------------------------------------------


async def test_rejected_key_gives_a_readable_message_without_the_key(fake, config):
    fake.configure(required_api_key="sk-ant-right")
    provider = AnthropicProvider(config(fake.base_url, api_key="sk-ant-wrong-secret"))
    try:
        _, error = await collect_until_error(provider.stream(ask()))
    finally:
        await provider.aclose()

    assert (error.kind, error.status, error.retryable) == ("auth", 401, False)
    assert error.message == "The model server rejected the API key (HTTP 401)."
    assert "sk-ant-wrong-secret" not in str(error) and "sk-ant-right" not in str(error)


async def test_overloaded_is_retryable_with_retry_after(provider):
    _, error = await collect_until_error(provider.stream(ask({"fail": {"status": 529, "retry_after": 2}})))

    assert (error.kind, error.status, error.retryable, error.retry_after) == ("rate_limited", 529, True, 2.0)
    assert "overloaded" in error.message


def test_error_event_in_the_stream_becomes_a_provider_error():
    # The fake never sends mid-stream `error` events, so the parser is fed one directly.
    errors = ErrorContext(base_url="https://api.anthropic.com/v1", model="claude-x", api_key="k")
    state = _StreamState()
    with pytest.raises(ProviderError) as caught:
        state.feed(
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            event="error",
            errors=errors,
        )
    assert (caught.value.kind, caught.value.retryable) == ("rate_limited", True)
    with pytest.raises(ProviderError) as caught:
        state.feed(
            {"type": "error", "error": {"type": "invalid_request_error", "message": "prompt is too long"}},
            event="error",
            errors=errors,
        )
    assert caught.value.kind == "bad_request" and "prompt is too long" in caught.value.message


async def test_connection_dropped_mid_stream_after_some_tokens(provider):
    seen, error = await collect_until_error(provider.stream(ask({"tokens": 10, "drop_after": 3})))

    assert text_of(seen) == "tok0 tok1 tok2 "
    assert (error.kind, error.retryable) == ("connection", True)


async def test_first_token_timeout_counts_the_wait_after_message_start(fake, config):
    # message_start and ping come at once; only content counts as the first token.
    provider = AnthropicProvider(config(fake.base_url, timeouts=Timeouts(first_token=0.3, gap=0.1, total=10.0)))
    started = time.monotonic()
    try:
        _, error = await collect_until_error(provider.stream(ask({"tokens": 3, "ttft_ms": 5000})))
    finally:
        await provider.aclose()

    assert 0.3 <= time.monotonic() - started < 1.5
    assert (error.kind, error.retryable) == ("timeout", True)


async def test_a_stream_that_stalls_hits_the_gap_timeout(fake, config):
    provider = AnthropicProvider(config(fake.base_url, timeouts=Timeouts(first_token=5.0, gap=0.3, total=10.0)))
    try:
        seen, error = await collect_until_error(provider.stream(ask({"tokens": 10, "hang_after": 2})))
    finally:
        await provider.aclose()

    assert text_of(seen) == "tok0 tok1 "
    assert (error.kind, error.retryable) == ("timeout", False)


async def test_closing_the_generator_closes_the_upstream_stream(provider, fake):
    stream = provider.stream(ask({"tokens": 100, "gap_ms": 50}))
    assert isinstance(await anext(stream), TextDelta)

    await stream.aclose()

    await fake.await_for(lambda s: s.streams_abandoned == 1, timeout=1.0)


def test_sampling_values_and_tool_choice_in_anthropics_form():
    from agents.providers.anthropic import build_body

    tool = ToolSpec(name="get_weather", description="Weather", input_schema={"type": "object"})
    base = dict(model="claude-fake", messages=(ChatMessage(role="user", content="hi"),),
                tools=(tool,))
    sampling = dict(top_p=0.5, stop=("END",), seed=3)
    for choice, expected in (("required", {"type": "any"}), ("none", {"type": "none"}),
                             ("auto", {"type": "auto"}),
                             ({"type": "function", "function": {"name": "get_weather"}},
                              {"type": "tool", "name": "get_weather"})):
        body = build_body(ChatRequest(**base, options=RequestOptions(**sampling,
                                                                     tool_choice=choice)))
        assert body["tool_choice"] == expected
        assert (body["top_p"], body["stop_sequences"]) == (0.5, ["END"])
        assert "seed" not in body  # the Messages API has none
    # Without tools (the loop's last round) there is nothing to choose from.
    assert "tool_choice" not in build_body(ChatRequest(
        **{**base, "tools": ()}, options=RequestOptions(**sampling, tool_choice="required")))


# Reaches neither the tests' database nor the channel layer (tests/conftest.py).
pytestmark = pytest.mark.backend_free
