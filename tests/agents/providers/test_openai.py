"""The OpenAI-compatible adapter against the fake model server (no mocks: real HTTP and SSE)."""

from __future__ import annotations

import asyncio
import email.utils
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
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
from agents.providers import (
    AnthropicProvider,
    OpenAIProvider,
    ProviderConfig,
    Timeouts,
    close_all,
    get_provider,
    make_provider,
)
from agents.providers._http import parse_retry_after
from tests.agents.streams import ask, collect, collect_until_error, text_of

# Fractions of a second, so a broken timeout fails fast instead of hanging the suite.
FAST = Timeouts(connect=1.0, first_token=2.0, gap=2.0, total=10.0)


@pytest.fixture
def fake(fake_llm_server):
    fake_llm_server.reset(config=True)
    return fake_llm_server


@pytest.fixture
def config(transport) -> Callable[..., ProviderConfig]:
    """Configs on the test's transport: each test that makes one runs on both."""

    def make(base_url: str, **overrides: Any) -> ProviderConfig:
        values: dict[str, Any] = {"name": "local", "kind": "openai", "base_url": base_url,
                                  "timeouts": FAST, "transport": transport}
        return ProviderConfig(**(values | overrides))

    return make


@pytest.fixture
async def provider(fake, config) -> AsyncIterator[OpenAIProvider]:
    p = OpenAIProvider(config(fake.base_url))
    yield p
    await p.aclose()


# --- Streaming ----------------------------------------------------------------------------------


async def test_streams_the_exact_text_then_usage_then_finished(provider):
    reply = "Héllo, wörld! ✓ Ünïcode and \"quotes\"\nand a second line."
    events = await collect(provider.stream(ask({"reply": reply, "chunk": 3})))

    assert text_of(events) == reply
    assert all(isinstance(e, TextDelta) for e in events[:-2])
    usage, finished = events[-2:]
    assert isinstance(usage, Usage) and usage.input_tokens > 0
    assert usage.output_tokens == len(reply) // 3 + 1  # one token per chunk in the fake
    assert finished == Finished(reason="stop")


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
async def test_reasoning_arrives_under_either_field_name(provider, field):
    events = await collect(
        provider.stream(ask({"reasoning": "Let me think.", "reasoning_field": field, "reply": "42"}))
    )

    reasoning = [e for e in events if isinstance(e, ReasoningDelta)]
    assert "".join(e.text for e in reasoning) == "Let me think."
    assert text_of(events) == "42"
    # Reasoning first, then the answer.
    assert events.index(reasoning[-1]) < next(i for i, e in enumerate(events) if isinstance(e, TextDelta))
    usage = next(e for e in events if isinstance(e, Usage))
    assert usage.reasoning_tokens == len(reasoning)


async def test_parallel_tool_calls_are_reassembled_whole(provider):
    directive = {
        "preamble": "Checking.",
        "tool_calls": [
            {"name": "get_weather", "arguments": {"city": "Paris", "units": "metric"}},
            {"name": "get_time", "arguments": {"timezone": "Europe/Paris"}},
        ],
        # Deltas of both calls alternate: only the index tells them apart.
        "interleave_tools": True,
    }
    events = await collect(provider.stream(ask(directive)))

    calls = [e.call for e in events if isinstance(e, ToolCallRequested)]
    assert [(c.name, c.arguments) for c in calls] == [
        ("get_weather", {"city": "Paris", "units": "metric"}),
        ("get_time", {"timezone": "Europe/Paris"}),
    ]
    assert all(c.id.startswith("call_") for c in calls) and len({c.id for c in calls}) == 2
    assert json.loads(calls[0].arguments_raw) == {"city": "Paris", "units": "metric"}
    assert text_of(events) == "Checking."
    assert [type(e) for e in events[-4:]] == [ToolCallRequested, ToolCallRequested, Usage, Finished]
    assert events[-1] == Finished(reason="tool_calls")


async def test_invalid_tool_arguments_keep_the_raw_text(provider):
    directive = {"tool_calls": [{"name": "search", "arguments": '{"q": "unterminated'}]}
    events = await collect(provider.stream(ask(directive)))

    (call,) = [e.call for e in events if isinstance(e, ToolCallRequested)]
    assert call.arguments == {}
    assert call.arguments_raw == '{"q": "unterminated'


async def test_cached_tokens_are_reported(provider):
    directive = {"usage": {"prompt_tokens": 1200, "cached_tokens": 1024, "reasoning_tokens": 0}}
    events = await collect(provider.stream(ask(directive)))

    usage = next(e for e in events if isinstance(e, Usage))
    assert (usage.input_tokens, usage.cached_tokens) == (1200, 1024)


async def test_max_tokens_cut_reports_length(provider):
    events = await collect(provider.stream(ask({"tokens": 10},
                                               options=RequestOptions(max_tokens=3))))

    assert text_of(events) == "tok0 tok1 tok2 "
    assert events[-1] == Finished(reason="length")


# --- What goes upstream -------------------------------------------------------------------------


async def test_upstream_body_carries_system_history_tool_results_and_tools(fake, config):
    provider = OpenAIProvider(config(fake.base_url, api_key="sk-test-secret"))
    weather = ToolCall(id="call_1", name="get_weather", arguments={"city": "Paris"})
    clock = ToolCall(id="call_2", name="get_time", arguments={})
    request = ChatRequest(
        model="fake-model",
        system="You are terse.",
        messages=(
            ChatMessage(role="user", content="Weather and time in Paris?"),
            ChatMessage(
                role="assistant",
                content="",
                reasoning="I should call both tools.",
                tool_calls=(weather, clock),
            ),
            ChatMessage(role="tool", tool_call_id="call_1", content="sunny"),
            ChatMessage(role="tool", tool_call_id="call_2", content="no clock", is_error=True),
        ),
        tools=(
            ToolSpec(
                name="get_weather",
                description="Weather for a city",
                input_schema={"type": "object", "properties": {"city": {"type": "string"}}},
            ),
        ),
        options=RequestOptions(temperature=0.2),
    )
    try:
        events = await collect(provider.stream(request))
    finally:
        await provider.aclose()

    # The fake quotes the tool results it read: proof they arrived as tool messages.
    assert text_of(events) == "Tool results: get_weather=sunny; get_time=no clock;"
    (recorded,) = fake.requests()
    assert recorded["path"] == "/v1/chat/completions"
    assert recorded["headers"]["authorization"] == "<redacted>"
    body = recorded["body"]
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["temperature"] == 0.2
    assert body["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Weather and time in Paris?"},
        {
            # No reasoning goes back upstream (see build_messages).
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": "no clock"},
    ]
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]


async def test_list_models_reaches_the_server(provider):
    assert "fake-model" in await provider.list_models()


# --- Errors -------------------------------------------------------------------------------------


async def test_rejected_key_gives_a_readable_message_without_the_key(fake, config):
    fake.configure(required_api_key="sk-the-right-one")
    provider = OpenAIProvider(config(fake.base_url, api_key="sk-wrong-but-secret"))
    try:
        _, error = await collect_until_error(provider.stream(ask()))
        with pytest.raises(ProviderError) as listing:
            await provider.list_models()
    finally:
        await provider.aclose()

    assert (error.kind, error.status, error.retryable) == ("auth", 401, False)
    assert error.message == "The model server rejected the API key (HTTP 401)."
    assert listing.value.kind == "auth"
    for text in (error.message, str(error), repr(provider.config)):
        assert "sk-wrong-but-secret" not in text and "sk-the-right-one" not in text


async def test_unknown_model_is_not_found(provider):
    _, error = await collect_until_error(provider.stream(ask({"fail": {"status": 404}})))

    assert (error.kind, error.retryable) == ("not_found", False)
    assert error.message == "The model server does not know model 'fake-model' (HTTP 404)."


async def test_bad_request_carries_the_servers_message(provider):
    _, error = await collect_until_error(provider.stream(ask({"no_such_directive": 1})))

    assert (error.kind, error.status, error.retryable) == ("bad_request", 400, False)
    assert "unknown keys ['no_such_directive']" in error.message


@pytest.mark.parametrize(("status", "kind"), [(429, "rate_limited"), (529, "rate_limited"), (503, "server_error")])
async def test_overload_statuses_are_retryable_with_retry_after(provider, status, kind):
    directive = {"fail": {"status": status, "retry_after": 1.5}}
    _, error = await collect_until_error(provider.stream(ask(directive)))

    assert (error.kind, error.status, error.retryable, error.retry_after) == (kind, status, True, 1.5)


async def test_server_error_is_retryable(provider):
    _, error = await collect_until_error(provider.stream(ask({"fail": {"status": 500}})))

    assert (error.kind, error.status, error.retryable) == ("server_error", 500, True)


async def test_unreachable_server_is_a_retryable_connection_error(config):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = OpenAIProvider(config(f"http://user:pw@127.0.0.1:{port}/v1"))
    try:
        _, error = await collect_until_error(provider.stream(ask()))
    finally:
        await provider.aclose()

    assert (error.kind, error.retryable) == ("connection", True)
    # Credentials in the URL are not repeated to the user.
    assert error.message == f"Cannot reach the model server at http://127.0.0.1:{port}/v1."


async def test_connection_dropped_mid_stream_after_some_tokens(provider, fake):
    seen, error = await collect_until_error(provider.stream(ask({"tokens": 10, "drop_after": 3})))

    assert text_of(seen) == "tok0 tok1 tok2 "
    assert (error.kind, error.retryable) == ("connection", True)
    assert "dropped" in error.message
    assert fake.stats().streams_dropped == 1


# --- Timeouts and closing -----------------------------------------------------------------------


async def test_a_server_that_never_answers_hits_the_first_token_timeout(fake, config):
    timeouts = Timeouts(connect=1.0, first_token=0.3, gap=5.0, total=10.0)
    provider = OpenAIProvider(config(fake.base_url, timeouts=timeouts))
    started = time.monotonic()
    try:
        _, error = await collect_until_error(provider.stream(ask({"hang": True})))
    finally:
        await provider.aclose()

    assert 0.3 <= time.monotonic() - started < 1.5
    assert (error.kind, error.retryable) == ("timeout", True)
    assert error.message == "The model did not start answering within 0.3 s."
    await fake.await_for(lambda s: s.streams_abandoned == 1, timeout=1.0)


async def test_slow_first_token_within_the_limit_is_fine(fake, config):
    timeouts = Timeouts(connect=1.0, first_token=1.0, gap=0.2, total=10.0)
    provider = OpenAIProvider(config(fake.base_url, timeouts=timeouts))
    try:
        # 0.5 s to the first token is longer than the gap timeout, which must not apply yet.
        events = await collect(provider.stream(ask({"tokens": 3, "ttft_ms": 500})))
    finally:
        await provider.aclose()

    assert text_of(events) == "tok0 tok1 tok2 "


async def test_a_stream_that_stalls_hits_the_gap_timeout(fake, config):
    timeouts = Timeouts(connect=1.0, first_token=5.0, gap=0.3, total=10.0)
    provider = OpenAIProvider(config(fake.base_url, timeouts=timeouts))
    try:
        seen, error = await collect_until_error(provider.stream(ask({"tokens": 10, "hang_after": 2})))
    finally:
        await provider.aclose()

    assert text_of(seen) == "tok0 tok1 "
    assert (error.kind, error.retryable) == ("timeout", False)
    assert error.message == "The model stopped answering for more than 0.3 s."


async def test_time_the_consumer_spends_between_events_does_not_count_against_the_gap(fake, config):
    timeouts = Timeouts(connect=1.0, first_token=5.0, gap=0.2, total=10.0)
    provider = OpenAIProvider(config(fake.base_url, timeouts=timeouts))
    seen = []
    try:
        async for event in provider.stream(ask({"tokens": 4})):
            seen.append(event)
            await asyncio.sleep(0.3)  # e.g. a busy process: longer than the gap each time
    finally:
        await provider.aclose()

    assert text_of(seen) == "tok0 tok1 tok2 tok3 "


async def test_cancelling_a_stream_from_outside_is_a_cancellation_not_a_timeout(fake, config):
    timeouts = Timeouts(connect=1.0, first_token=5.0, gap=0.3, total=10.0)
    provider = OpenAIProvider(config(fake.base_url, timeouts=timeouts))
    task = asyncio.create_task(collect(provider.stream(ask({"tokens": 10, "hang_after": 2}))))
    try:
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The stream's own timer, armed for the gap, must not fire into anything afterwards.
        await asyncio.sleep(0.4)
    finally:
        await provider.aclose()
    await fake.await_for(lambda s: s.streams_abandoned == 1, timeout=1.0)


async def test_a_200_answer_that_is_not_an_event_stream_is_a_clear_error(config):
    async def json_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        body = b'{"choices": []}'
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(json_server, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    provider = OpenAIProvider(config(f"http://127.0.0.1:{port}/v1"))
    try:
        _, error = await collect_until_error(provider.stream(ask({"tokens": 1})))
    finally:
        await provider.aclose()
        server.close()
        await server.wait_closed()

    assert error.kind == "protocol"
    assert error.message == ("The model server sent something we cannot read: expected an event "
                             "stream, got application/json")


async def test_a_stream_that_takes_too_long_hits_the_total_timeout(fake, config):
    timeouts = Timeouts(connect=1.0, first_token=5.0, gap=5.0, total=0.4)
    provider = OpenAIProvider(config(fake.base_url, timeouts=timeouts))
    try:
        seen, error = await collect_until_error(provider.stream(ask({"tokens": 50, "gap_ms": 50})))
    finally:
        await provider.aclose()

    assert 0 < len(seen) < 50
    assert (error.kind, error.retryable) == ("timeout", False)
    assert error.message == "The answer took longer than 0.4 s."


async def test_closing_the_generator_closes_the_upstream_stream(provider, fake):
    stream = provider.stream(ask({"tokens": 100, "gap_ms": 50}))
    first = await anext(stream)
    second = await anext(stream)
    assert text_of([first, second]) == "tok0 tok1 "

    await stream.aclose()

    stats = await fake.await_for(lambda s: s.streams_abandoned == 1, timeout=1.0)
    assert stats.streams_completed == 0 and stats.active_streams == 0


async def test_cancelling_the_consumer_closes_the_upstream_stream(provider, fake):
    async def consume() -> None:
        async for _ in provider.stream(ask({"tokens": 100, "gap_ms": 50})):
            pass

    task = asyncio.create_task(consume())
    await fake.await_for(lambda s: s.tokens_sent >= 2, timeout=1.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    await fake.await_for(lambda s: s.streams_abandoned == 1, timeout=1.0)


async def test_one_pooled_client_serves_concurrent_streams(provider, fake):
    results = await asyncio.gather(*(collect(provider.stream(ask({"tokens": 5}, text=f"q{i}"))) for i in range(10)))

    assert all(text_of(events) == "tok0 tok1 tok2 tok3 tok4 " for events in results)
    assert fake.stats().streams_completed == 10


async def test_a_finished_stream_returns_its_connection_to_the_pool(provider, kept_connections):
    for question in ("one", "two", "three"):
        await collect(provider.stream(ask({"tokens": 3}, text=question)))

    # The pool is the only place this shows: one kept-alive connection served all three.
    assert kept_connections(provider._client) == [3]


async def test_get_provider_shares_one_provider_per_config_name(fake, config):
    first = get_provider(config(fake.base_url))
    assert get_provider(config(fake.base_url)) is first
    separate = make_provider(config(fake.base_url, kind="anthropic"))
    assert isinstance(separate, AnthropicProvider)
    await separate.aclose()
    changed = get_provider(config(fake.base_url, api_key="new-key"))
    assert changed is not first and changed.config.api_key == "new-key"

    await close_all()

    assert first._client.is_closed and changed._client.is_closed
    assert get_provider(config(fake.base_url)) is not changed


def test_retry_after_is_read_as_seconds_or_as_an_http_date():
    in_30_s = email.utils.formatdate(time.time() + 30, usegmt=True)

    assert parse_retry_after(httpx.Headers({"retry-after": "2.5"})) == 2.5
    assert parse_retry_after(httpx.Headers({"retry-after": in_30_s})) == pytest.approx(30, abs=2)
    assert parse_retry_after(httpx.Headers({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"})) == 0.0
    assert parse_retry_after(httpx.Headers({"retry-after-ms": "250", "retry-after": "1"})) == 0.25
    assert parse_retry_after(httpx.Headers({"retry-after": "soon"})) is None


# --- A whole answer (stream: false, for titles) -------------------------------------------------


async def test_a_whole_answer_gives_the_same_events_as_its_stream(provider, fake):
    directive = {"reasoning": "Let me think.", "reply": "Héllo ✓, \"quoted\".", "chunk": 3}
    streamed = await collect(provider.stream(ask(directive)))
    whole = await collect(provider.stream(ask(directive, stream=False)))
    assert fake.requests()[-1]["body"]["stream"] is False
    assert "stream_options" not in fake.requests()[-1]["body"]
    for events in (streamed, whole):
        assert text_of(events) == "Héllo ✓, \"quoted\"."
        assert "".join(e.text for e in events if isinstance(e, ReasoningDelta)) == "Let me think."
        assert events[-1] == Finished(reason="stop")
    assert [type(e) for e in whole] == [ReasoningDelta, TextDelta, Usage, Finished]
    (usage,) = [e for e in whole if isinstance(e, Usage)]
    assert usage.input_tokens > 0 and usage.output_tokens > 0


async def test_a_whole_answer_with_tool_calls_gives_them_whole(provider):
    events = await collect(provider.stream(ask(
        {"tool_calls": [{"name": "get_time", "arguments": {"tz": "UTC"}},
                        {"name": "broken", "arguments": '{"oops": '}]}, stream=False)))
    calls = [e.call for e in events if isinstance(e, ToolCallRequested)]
    assert [(c.name, c.arguments, c.arguments_raw) for c in calls] == [
        ("get_time", {"tz": "UTC"}, '{"tz": "UTC"}'), ("broken", {}, '{"oops": ')]
    assert events[-1] == Finished(reason="tool_calls")


async def test_a_whole_answer_fails_like_a_stream(fake, config):
    provider = OpenAIProvider(config(fake.base_url, timeouts=Timeouts(
        connect=1.0, first_token=0.3, gap=5.0, total=10.0)))
    try:
        _, limited = await collect_until_error(provider.stream(ask(
            {"fail": {"status": 429, "retry_after": 7}}, stream=False)))
        assert (limited.kind, limited.retryable, limited.retry_after) == ("rate_limited", True, 7)
        _, slow = await collect_until_error(provider.stream(ask({"hang": True}, stream=False)))
        assert (slow.kind, slow.retryable) == ("timeout", True)
        assert "did not answer in time" in slow.message
    finally:
        await provider.aclose()


def test_a_clients_sampling_values_go_into_the_body_as_they_came():
    from agents.providers.openai import build_body

    tool = ToolSpec(name="get_weather", description="Weather", input_schema={"type": "object"})
    schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}
    request = ChatRequest(model="m", messages=(ChatMessage(role="user", content="hi"),),
                          tools=(tool,), options=RequestOptions(
                              temperature=0.1, top_p=0.2, stop=("a", "b"), seed=9,
                              response_format=schema, tool_choice="required", max_tokens=7))
    body = build_body(request)
    assert {k: body[k] for k in ("temperature", "top_p", "stop", "seed", "response_format",
                                 "tool_choice", "max_tokens")} == {
        "temperature": 0.1, "top_p": 0.2, "stop": ["a", "b"], "seed": 9,
        "response_format": schema, "tool_choice": "required", "max_tokens": 7}
    # Unset values are left out; a tool_choice without tools would be refused upstream.
    bare = build_body(ChatRequest(model="m", messages=request.messages,
                                  options=RequestOptions(tool_choice="auto")))
    assert not {"temperature", "top_p", "stop", "seed", "response_format",
                "tool_choice"} & set(bare)


# Reaches neither the tests' database nor the channel layer (tests/conftest.py).
pytestmark = pytest.mark.backend_free
