"""The fake LLM server, seen from a client: wire formats, directives, faults and counters."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fakellm import FakeConfig, FakeLLM, run_in_thread

REPO = Path(__file__).resolve().parents[2]
# /v1/messages requires it, as the real API does.
ANTHROPIC = {"anthropic-version": "2023-06-01"}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLM]:
    with run_in_thread(FakeConfig()) as handle:
        yield handle


@pytest.fixture
def fake(server: FakeLLM) -> FakeLLM:
    server.reset(config=True)
    return server


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as c:
        yield c


def user(text: str, directive: dict[str, Any] | None = None) -> dict[str, str]:
    if directive is not None:
        text += "\nfake: " + json.dumps(directive)
    return {"role": "user", "content": text}


def chat(messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-oss-120b", "messages": messages, **extra}


def sse_chunks(response: httpx.Response) -> list[Any]:
    """The parsed `data:` payloads of an OpenAI stream; "[DONE]" kept as a string."""
    out: list[Any] = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            payload = line[len("data: "):]
            out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def stream_chat(client: httpx.Client, fake: FakeLLM, body: dict[str, Any]) -> list[Any]:
    with client.stream("POST", f"{fake.base_url}/chat/completions", json={**body, "stream": True}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        return sse_chunks(r)


def content_of(chunks: list[Any], field: str = "content") -> str:
    deltas = (c["choices"][0]["delta"] for c in chunks if isinstance(c, dict) and c["choices"])
    return "".join(delta.get(field) or "" for delta in deltas)


def anthropic_events(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    events, name = [], None
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[len("event: "):]
        elif line.startswith("data: "):
            events.append((name, json.loads(line[len("data: "):])))
    return events


# --- OpenAI ----------------------------------------------------------------------------------


def test_models_list_in_both_formats(fake: FakeLLM, client: httpx.Client) -> None:
    openai = client.get(f"{fake.base_url}/models").json()
    assert openai["object"] == "list"
    assert {"fake-model", "gpt-oss-120b"} <= {m["id"] for m in openai["data"]}
    anthropic = client.get(f"{fake.base_url}/models", headers=ANTHROPIC).json()
    assert anthropic["data"][0]["type"] == "model" and anthropic["has_more"] is False


def test_stream_is_the_deterministic_text_then_done(fake: FakeLLM, client: httpx.Client) -> None:
    chunks = stream_chat(client, fake, chat([user("hello", {"tokens": 5})], model="any-name-works"))

    assert chunks[-1] == "[DONE]"
    assert content_of(chunks) == "tok0 tok1 tok2 tok3 tok4 "
    assert chunks[0]["object"] == "chat.completion.chunk" and chunks[0]["model"] == "any-name-works"
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert len({c["id"] for c in chunks[:-1]}) == 1
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]][-1] == "stop"
    # One SSE event per token, and no usage chunk unless asked.
    assert sum(1 for c in chunks[:-1] if c["choices"][0]["delta"].get("content")) == 5
    assert all("usage" not in c for c in chunks[:-1])
    stats = fake.stats()
    assert (stats.streams_started, stats.streams_completed, stats.tokens_sent) == (1, 1, 5)
    assert stats.by_status == {200: 1} and stats.active_streams == 0


def test_non_streaming_completion(fake: FakeLLM, client: httpx.Client) -> None:
    request = chat([user("hi", {"tokens": 3, "reasoning": 2})])
    body = client.post(f"{fake.base_url}/chat/completions", json=request).json()

    assert body["object"] == "chat.completion"
    message = body["choices"][0]["message"]
    assert message["content"] == "tok0 tok1 tok2 "
    assert message["reasoning_content"] == "think0 think1 "
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] == 5
    assert body["usage"]["completion_tokens_details"]["reasoning_tokens"] == 2


def test_exact_reply_survives_any_chunking(fake: FakeLLM, client: httpx.Client) -> None:
    reply = '<img src=x onerror="alert(1)">\n\\ é 😀 </script>'
    chunks = stream_chat(client, fake, chat([user("xss", {"reply": reply, "chunk": 3})]))
    assert content_of(chunks) == reply
    assert sum(1 for c in chunks[:-1] if c["choices"][0]["delta"].get("content")) == -(-len(reply) // 3)


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_streams_before_content_in_the_chosen_field(
    fake: FakeLLM, client: httpx.Client, field: str
) -> None:
    directive = {"reasoning": "Let me think.", "reply": "Answer.", "reasoning_field": field}
    chunks = stream_chat(client, fake, chat([user("q", directive)]))

    assert content_of(chunks, field) == "Let me think."
    assert content_of(chunks) == "Answer."
    deltas = [c["choices"][0]["delta"] for c in chunks[:-1]]
    first_content = next(i for i, d in enumerate(deltas) if d.get("content"))
    assert all(field not in d for d in deltas[first_content:])
    other = "reasoning" if field == "reasoning_content" else "reasoning_content"
    assert all(other not in d for d in deltas)


@pytest.mark.parametrize("interleave", [False, True])
def test_parallel_tool_calls_reassemble(fake: FakeLLM, client: httpx.Client, interleave: bool) -> None:
    calls = [
        {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}},
        {"name": "add", "arguments": {"a": 2, "b": 3}},
    ]
    directive = {"tool_calls": calls, "interleave_tools": interleave}
    chunks = stream_chat(client, fake, chat([user("go", directive)]))

    assembled: dict[int, dict[str, Any]] = {}
    pieces: dict[int, int] = {}
    for chunk in chunks[:-1]:
        for delta in chunk["choices"][0]["delta"].get("tool_calls") or ():
            index = delta["index"]
            if index not in assembled:
                # The first delta of a call names it; later ones carry only index and arguments.
                assert delta["type"] == "function" and delta["id"].startswith("call_")
                name = delta["function"]["name"]
                assembled[index] = {"id": delta["id"], "name": name, "arguments": ""}
            else:
                assert set(delta) == {"index", "function"} and set(delta["function"]) == {"arguments"}
            assembled[index]["arguments"] += delta["function"]["arguments"]
            pieces[index] = pieces.get(index, 0) + 1

    assert [assembled[i]["name"] for i in (0, 1)] == ["get_weather", "add"]
    assert [json.loads(assembled[i]["arguments"]) for i in (0, 1)] == [c["arguments"] for c in calls]
    assert assembled[0]["id"] != assembled[1]["id"]
    assert min(pieces.values()) >= 3
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    order = [d["index"] for c in chunks[:-1] for d in c["choices"][0]["delta"].get("tool_calls") or ()]
    assert (order != sorted(order)) is interleave


def test_answer_after_tool_results_quotes_them(fake: FakeLLM, client: httpx.Client) -> None:
    directive = {
        "tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "add"}]
    }
    first = client.post(f"{fake.base_url}/chat/completions", json=chat([user("go", directive)])).json()
    calls = first["choices"][0]["message"]["tool_calls"]
    assert first["choices"][0]["finish_reason"] == "tool_calls" and len(calls) == 2

    history = [
        user("go", directive),
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": "sunny"},
        {"role": "tool", "tool_call_id": calls[1]["id"], "content": [{"type": "text", "text": "5"}]},
    ]
    chunks = stream_chat(client, fake, chat(history))

    assert content_of(chunks) == "Tool results: get_weather=sunny; add=5;"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


def test_tool_rounds_asks_again_before_answering(fake: FakeLLM, client: httpx.Client) -> None:
    directive = {"tool_calls": [{"name": "step", "arguments": {}}], "tool_rounds": 2}
    history: list[dict[str, Any]] = [user("go", directive)]
    ids = []
    for n in range(2):
        answer = client.post(f"{fake.base_url}/chat/completions", json=chat(history)).json()
        message = answer["choices"][0]["message"]
        call = message["tool_calls"][0]
        ids.append(call["id"])
        history += [message, {"role": "tool", "tool_call_id": call["id"], "content": f"r{n}"}]
    final = client.post(f"{fake.base_url}/chat/completions", json=chat(history)).json()

    assert len(set(ids)) == 2
    assert final["choices"][0]["message"]["content"] == "Tool results: step=r0; step=r1;"


def test_usage_chunk_only_when_asked(fake: FakeLLM, client: httpx.Client) -> None:
    body = chat([user("u", {"tokens": 4, "reasoning": 1})], stream_options={"include_usage": True})
    chunks = stream_chat(client, fake, body)

    usage_chunk = chunks[-2]
    assert usage_chunk["choices"] == []
    usage = usage_chunk["usage"]
    assert usage["completion_tokens"] == 5
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 1}
    assert usage["total_tokens"] == usage["prompt_tokens"] + 5 > 5
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0}
    assert all(c["usage"] is None for c in chunks[:-2])


def test_max_tokens_cuts_the_answer_with_length(fake: FakeLLM, client: httpx.Client) -> None:
    chunks = stream_chat(client, fake, chat([user("long", {"tokens": 10})], max_tokens=3))
    assert content_of(chunks) == "tok0 tok1 tok2 "
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"


# --- Faults ----------------------------------------------------------------------------------


def test_429_with_retry_after_then_success(fake: FakeLLM, client: httpx.Client) -> None:
    fail = {"status": 429, "times": 2, "retry_after": 1}
    body = chat([user("retry me", {"fail": fail, "tokens": 2})])
    url = f"{fake.base_url}/chat/completions"
    answers = [client.post(url, json=body) for _ in range(3)]

    assert [a.status_code for a in answers] == [429, 429, 200]
    assert answers[0].headers["retry-after"] == "1"
    error = answers[0].json()["error"]
    assert {"message", "type", "code"} <= set(error)
    assert answers[2].json()["choices"][0]["message"]["content"] == "tok0 tok1 "
    # A different request is a different scenario: its attempts are counted separately.
    other = chat([user("another test", {"fail": {"status": 429, "times": 2}})])
    assert client.post(url, json=other).status_code == 429
    stats = fake.stats()
    assert stats.requests == 4 and stats.by_status == {429: 3, 200: 1}


def test_500_for_ever(fake: FakeLLM, client: httpx.Client) -> None:
    body = chat([user("broken", {"fail": {"status": 500}})], stream=True)
    url = f"{fake.base_url}/chat/completions"
    statuses = {client.post(url, json=body).status_code for _ in range(4)}
    assert statuses == {500}
    assert fake.stats().streams_started == 0


def test_server_wide_fail_via_config(fake: FakeLLM, client: httpx.Client) -> None:
    fake.configure(fail={"status": 503, "times": 2, "retry_after": 0.5})
    url = f"{fake.base_url}/chat/completions"
    answers = [client.post(url, json=chat([user(f"q{i}")])) for i in range(3)]
    assert [a.status_code for a in answers] == [503, 503, 200]
    assert answers[0].headers["retry-after"] == "0.5"


def test_auth_and_validation_errors(fake: FakeLLM, client: httpx.Client) -> None:
    fake.configure(required_api_key="sk-right")
    url = f"{fake.base_url}/chat/completions"
    body = chat([user("hi")])

    wrong = client.post(url, json=body, headers={"Authorization": "Bearer sk-wrong"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
    assert client.post(url, json=body).status_code == 401
    assert client.post(url, json=body, headers={"Authorization": "Bearer sk-right"}).status_code == 200
    anthropic = client.post(
        f"{fake.root_url}/v1/messages",
        json={**body, "max_tokens": 10},
        headers={**ANTHROPIC, "x-api-key": "nope"},
    )
    assert anthropic.status_code == 401
    assert anthropic.json() == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid x-api-key"},
    }

    fake.configure(required_api_key=None)
    missing_model = client.post(url, json={"messages": [user("x")]})
    assert missing_model.status_code == 400 and "model" in missing_model.json()["error"]["message"]
    assert client.post(url, json={"model": "m"}).status_code == 400
    bad_directive = client.post(url, json=chat([user("x", {"tokns": 3})]))
    assert bad_directive.status_code == 400 and "tokns" in bad_directive.json()["error"]["message"]


def test_drop_after_closes_mid_stream(fake: FakeLLM, client: httpx.Client) -> None:
    received = []
    body = chat([user("drop", {"tokens": 10, "drop_after": 3})], stream=True)
    with pytest.raises(httpx.RemoteProtocolError):
        with client.stream("POST", f"{fake.base_url}/chat/completions", json=body) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    received.append(line)

    assert content_of([json.loads(line[6:]) for line in received]) == "tok0 tok1 tok2 "
    assert not any("[DONE]" in line or '"finish_reason":"stop"' in line for line in received)
    stats = fake.wait_for(lambda s: s.streams_dropped == 1)
    assert stats.tokens_sent == 3 and stats.streams_completed == 0


def test_hang_makes_the_client_time_out(fake: FakeLLM, client: httpx.Client) -> None:
    url = f"{fake.base_url}/chat/completions"
    with pytest.raises(httpx.ReadTimeout):
        body = chat([user("hang", {"hang": True})], stream=True)
        client.post(url, json=body, timeout=httpx.Timeout(5, read=0.3))
    fake.wait_for(lambda s: s.streams_abandoned == 1 and s.active_streams == 0)

    received = []
    with pytest.raises(httpx.ReadTimeout):
        body = chat([user("hang later", {"tokens": 5, "hang_after": 2})], stream=True)
        with client.stream("POST", url, json=body, timeout=httpx.Timeout(5, read=0.3)) as r:
            received.extend(line for line in r.iter_lines() if line.startswith("data: "))
    assert content_of([json.loads(line[6:]) for line in received]) == "tok0 tok1 "
    fake.wait_for(lambda s: s.streams_abandoned == 2)


def test_client_disconnect_counts_as_abandoned_quickly(fake: FakeLLM, client: httpx.Client) -> None:
    body = chat([user("stop me", {"tokens": 200, "gap_ms": 20})], stream=True)
    with client.stream("POST", f"{fake.base_url}/chat/completions", json=body) as r:
        # Keep the iterator referenced: a discarded httpx line iterator closes the connection.
        lines = r.iter_lines()
        for line in lines:
            if '"content":"tok' in line:
                break
        assert fake.stats().active_streams == 1
    closed = time.monotonic()

    stats = fake.wait_for(lambda s: s.streams_abandoned == 1, timeout=1.0)
    assert time.monotonic() - closed < 1.0
    assert stats.active_streams == 0 and stats.streams_completed == 0
    assert 0 < stats.tokens_sent < 50


def test_ttft_and_gap_are_roughly_respected(fake: FakeLLM, client: httpx.Client) -> None:
    body = chat([user("slow", {"tokens": 5, "ttft_ms": 300, "gap_ms": 60})], stream=True)
    start = time.monotonic()
    arrivals = []
    with client.stream("POST", f"{fake.base_url}/chat/completions", json=body) as r:
        for line in r.iter_lines():
            if '"content":"tok' in line:
                arrivals.append(time.monotonic() - start)
    assert len(arrivals) == 5
    assert 0.25 <= arrivals[0] < 2.0
    assert 0.2 <= arrivals[-1] - arrivals[0] < 2.0


# --- Anthropic -------------------------------------------------------------------------------


def anthropic_body(content: Any, **extra: Any) -> dict[str, Any]:
    messages = content if isinstance(content, list) else [{"role": "user", "content": content}]
    return {"model": "claude-fake", "max_tokens": 1024, "messages": messages, **extra}


def test_anthropic_stream_event_sequence(fake: FakeLLM, client: httpx.Client) -> None:
    directive = {
        "reasoning": 2,
        "preamble": "Checking.",
        "tool_calls": [{"name": "lookup", "arguments": {"q": "x"}}],
    }
    body = anthropic_body("find x\nfake: " + json.dumps(directive), stream=True)
    with client.stream("POST", f"{fake.root_url}/v1/messages", json=body, headers=ANTHROPIC) as r:
        events = anthropic_events(r)

    names = [name for name, _ in events]
    assert names[:2] == ["message_start", "ping"] and names[-2:] == ["message_delta", "message_stop"]
    assert all(name == data["type"] for name, data in events)
    blocks = [(d["index"], d["content_block"]["type"]) for n, d in events if n == "content_block_start"]
    assert blocks == [(0, "thinking"), (1, "text"), (2, "tool_use")]
    assert [d["index"] for n, d in events if n == "content_block_stop"] == [0, 1, 2]

    deltas = [d["delta"] for n, d in events if n == "content_block_delta"]
    thinking = [d for d in deltas if d["type"] in ("thinking_delta", "signature_delta")]
    assert "".join(d.get("thinking", "") for d in thinking) == "think0 think1 "
    assert thinking[-1]["type"] == "signature_delta" and thinking[-1]["signature"]
    assert "".join(d["text"] for d in deltas if d["type"] == "text_delta") == "Checking."
    json_pieces = [d["partial_json"] for d in deltas if d["type"] == "input_json_delta"]
    assert len(json_pieces) >= 3 and json.loads("".join(json_pieces)) == {"q": "x"}
    tool = next(d["content_block"] for n, d in events if n == "content_block_start" and d["index"] == 2)
    assert tool["name"] == "lookup" and tool["id"].startswith("toolu_")

    start_usage = events[0][1]["message"]["usage"]
    assert start_usage["input_tokens"] > 0 and start_usage["cache_read_input_tokens"] == 0
    message_delta = events[-2][1]
    assert message_delta["delta"]["stop_reason"] == "tool_use"
    assert message_delta["usage"]["output_tokens"] > 0


def test_anthropic_cache_reads_when_a_marked_prefix_repeats(
    fake: FakeLLM, client: httpx.Client
) -> None:
    unmarked = [{"type": "text", "text": "You are helpful. " * 50}]
    system = [{**unmarked[0], "cache_control": {"type": "ephemeral"}}]

    def usage(text: str, system: list[dict[str, Any]]) -> dict[str, int]:
        body = anthropic_body(text, system=system)
        return client.post(f"{fake.root_url}/v1/messages", json=body, headers=ANTHROPIC).json()["usage"]

    first = usage("one", system)
    second = usage("two", system)
    third = usage("three", unmarked)

    assert first["cache_read_input_tokens"] == 0 and first["cache_creation_input_tokens"] > 0
    assert second["cache_read_input_tokens"] == first["cache_creation_input_tokens"]
    assert second["cache_creation_input_tokens"] == 0
    assert third["cache_read_input_tokens"] == 0 and third["cache_creation_input_tokens"] == 0


def test_anthropic_non_streaming_and_tool_results(fake: FakeLLM, client: httpx.Client) -> None:
    directive = {"tool_calls": [{"name": "lookup", "arguments": {"q": "x"}}]}
    ask = [{"role": "user", "content": [{"type": "text", "text": "go\nfake: " + json.dumps(directive)}]}]
    url = f"{fake.root_url}/v1/messages"
    first = client.post(url, json=anthropic_body(ask), headers=ANTHROPIC).json()
    assert first["type"] == "message" and first["stop_reason"] == "tool_use"
    tool_use = first["content"][-1]
    assert tool_use["input"] == {"q": "x"}

    history = [
        *ask,
        {"role": "assistant", "content": first["content"]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": tool_use["id"], "content": "found"}],
        },
    ]
    final = client.post(url, json=anthropic_body(history), headers=ANTHROPIC).json()
    assert final["stop_reason"] == "end_turn"
    assert final["content"] == [{"type": "text", "text": "Tool results: lookup=found;"}]
    no_max_tokens = client.post(url, json={"model": "m", "messages": ask}, headers=ANTHROPIC)
    assert no_max_tokens.status_code == 400
    assert no_max_tokens.json()["error"]["type"] == "invalid_request_error"
    no_version = client.post(url, json=anthropic_body(ask))
    assert no_version.status_code == 400 and "anthropic-version" in no_version.json()["error"]["message"]


# --- Control endpoints -----------------------------------------------------------------------


def test_config_endpoint_changes_defaults_and_reset_restores(
    fake: FakeLLM, client: httpx.Client
) -> None:
    changes = {"tokens": 2, "reasoning_field": "reasoning"}
    changed = client.post(f"{fake.root_url}/_fake/config", json=changes)
    assert changed.status_code == 200 and changed.json()["tokens"] == 2
    assert client.post(f"{fake.root_url}/_fake/config", json={"tokenz": 1}).status_code == 400

    chunks = stream_chat(client, fake, chat([user("defaults", {"reasoning": 1})]))
    assert content_of(chunks) == "tok0 tok1 " and content_of(chunks, "reasoning") == "think0 "

    stats = client.get(f"{fake.root_url}/_fake/stats").json()
    assert stats["streams_completed"] == 1 and stats["by_status"] == {"200": 1}
    client.post(f"{fake.root_url}/_fake/reset", json={"config": True})
    assert client.get(f"{fake.root_url}/_fake/stats").json()["requests"] == 0
    assert client.get(f"{fake.root_url}/_fake/config").json()["tokens"] == FakeConfig().tokens


def test_requests_endpoint_records_bodies(fake: FakeLLM, client: httpx.Client) -> None:
    tools = [{"type": "function", "function": {"name": "t", "parameters": {"type": "object"}}}]
    body = chat([{"role": "system", "content": "Be brief."}, user("first")], tools=tools)
    secret = {"Authorization": "Bearer sk-secret"}
    client.post(f"{fake.base_url}/chat/completions", json=body, headers=secret)
    client.post(f"{fake.root_url}/v1/messages", json=anthropic_body("second"), headers=ANTHROPIC)

    recorded = client.get(f"{fake.root_url}/_fake/requests").json()
    assert [r["path"] for r in recorded] == ["/v1/chat/completions", "/v1/messages"]
    assert recorded[0]["body"] == body
    assert recorded[0]["headers"]["authorization"] == "<redacted>"
    newest = client.get(f"{fake.root_url}/_fake/requests?limit=1").json()
    assert [r["body"]["model"] for r in newest] == ["claude-fake"]
    assert fake.requests()[1]["body"]["messages"][0]["content"] == "second"


@pytest.mark.asyncio
async def test_async_client_and_handle(fake: FakeLLM) -> None:
    async with httpx.AsyncClient(timeout=10) as ac:
        body = chat([user("async", {"tokens": 3})], stream=True)
        async with ac.stream("POST", f"{fake.base_url}/chat/completions", json=body) as r:
            text = "".join([line async for line in r.aiter_lines()])
    assert "tok2 " in text
    stats = await fake.await_for(lambda s: s.streams_completed == 1)
    assert stats.tokens_sent == 3


def test_cli_prints_base_url_and_serves() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "fakellm", "--port", "0", "--ttft-ms", "0", "--gap-ms", "0"]
        + ["--tokens", "3"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        base_url = line.split("base URL ")[1].split()[0]
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        for _ in range(100):
            try:
                answer = httpx.post(f"{base_url}/chat/completions", json=chat([user("cli")]))
                break
            except httpx.ConnectError:
                time.sleep(0.05)
        assert answer.json()["choices"][0]["message"]["content"] == "tok0 tok1 tok2 "
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# Reaches neither the tests' database nor the channel layer (tests/conftest.py).
pytestmark = pytest.mark.backend_free
