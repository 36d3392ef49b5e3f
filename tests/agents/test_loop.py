"""The agent loop against the fake model server, with a real (in-process) tool box."""

import asyncio
import json
import time

import pytest

from agents.events import (
    ChatMessage,
    TextDelta,
    ToolCall,
    ToolCallFinished,
    ToolCallStarted,
    ToolSpec,
)
from agents.loop import RoundLimitReached, Target, run_turn
from agents.providers import get_provider
from agents.providers.base import ProviderConfig
from agents.tools import ToolResult


class Clock:
    """Two tools; `wait` sleeps, so concurrency shows in the wall time."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def specs(self):
        return (ToolSpec(name="now", description="The time.", input_schema={"type": "object"}),
                ToolSpec(name="wait", description="Sleep.", input_schema={"type": "object"}),
                ToolSpec(name="explode", description="Fails.", input_schema={"type": "object"}))

    def server_of(self, name: str) -> str:
        return "clock"

    def definition_hash_of(self, name: str) -> str:
        return "h-" + name

    async def call(self, call: ToolCall) -> ToolResult:
        self.calls.append(call.name)
        if call.name == "wait":
            await asyncio.sleep(call.arguments.get("s", 0))
            return ToolResult(content="waited")
        if call.name == "now":
            return ToolResult(content="12:00")
        raise RuntimeError("no such tool")


def target(fake) -> list[Target]:
    config = ProviderConfig(name="t", kind="openai", base_url=fake.base_url)
    return [Target(provider=get_provider(config), model="fake-model")]


def user(**directive) -> list[ChatMessage]:
    return [ChatMessage(role="user", content="fake: " + json.dumps(directive))]


async def collect(**kw):
    return [e async for e in run_turn(**kw)]


async def test_tool_calls_run_concurrently_and_their_results_reach_the_model(fake_llm):
    tools = Clock()
    started = time.monotonic()
    events = await collect(
        targets=target(fake_llm), system="", tools=tools,
        history=user(tool_calls=[{"name": "wait", "arguments": {"s": 0.4}},
                                 {"name": "wait", "arguments": {"s": 0.4}},
                                 {"name": "now", "arguments": {}}]),
    )
    assert time.monotonic() - started < 1.0  # three calls, 0.8 s of sleeping, run at once
    assert [e.call.name for e in events if isinstance(e, ToolCallStarted)] == ["wait", "wait", "now"]
    assert all(e.server == "clock" for e in events if isinstance(e, ToolCallStarted))
    finished = [e for e in events if isinstance(e, ToolCallFinished)]
    assert [(f.result, f.is_error) for f in finished] == [("waited", False)] * 2 + [("12:00", False)]
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text.startswith("Tool results:") and "now=12:00" in text and "wait=waited" in text
    upstream = fake_llm.requests()[-1]["body"]["messages"]
    assert [m["role"] for m in upstream] == ["user", "assistant", "tool", "tool", "tool"]


async def test_a_failing_tool_becomes_an_error_result_not_a_failed_turn(fake_llm):
    events = await collect(targets=target(fake_llm), system="", tools=Clock(),
                           history=user(tool_calls=[{"name": "explode", "arguments": {}}]))
    (finished,) = [e for e in events if isinstance(e, ToolCallFinished)]
    assert finished.is_error and "no such tool" in finished.result
    assert "".join(e.text for e in events if isinstance(e, TextDelta)).startswith("Tool results:")


async def test_the_loop_is_bounded_and_the_last_round_has_no_tools(fake_llm):
    tools = Clock()
    events = []
    with pytest.raises(RoundLimitReached, match="after 3 model rounds"):
        async for event in run_turn(targets=target(fake_llm), system="", tools=tools,
                                    max_rounds=3,
                                    history=user(tool_calls=[{"name": "now", "arguments": {}}],
                                                 tool_rounds=10)):
            events.append(event)
    assert tools.calls == ["now", "now"]
    bodies = [r["body"] for r in fake_llm.requests()]
    assert len(bodies) == 3
    assert "tools" in bodies[0] and "tools" not in bodies[2]
    last = [e for e in events if isinstance(e, ToolCallFinished)][-1]
    assert last.is_error and last.result.startswith("Not run")


async def test_the_before_hook_can_deny_a_call(fake_llm):
    tools = Clock()

    async def deny(call: ToolCall) -> ToolResult | None:
        return ToolResult(content="denied by policy", is_error=True)

    events = await collect(targets=target(fake_llm), system="", tools=tools,
                           before_tool_call=deny,
                           history=user(tool_calls=[{"name": "now", "arguments": {}}]))
    assert tools.calls == []
    (finished,) = [e for e in events if isinstance(e, ToolCallFinished)]
    assert (finished.result, finished.is_error) == ("denied by policy", True)


async def test_arguments_that_are_not_a_json_object_are_sent_back_not_run(fake_llm):
    tools = Clock()
    events = await collect(targets=target(fake_llm), system="", tools=tools,
                           history=user(tool_calls=[{"name": "now", "arguments": '{"tz": "Eu'},
                                                    {"name": "now", "arguments": "[1, 2]"},
                                                    {"name": "now", "arguments": ""}]))
    assert tools.calls == ["now"]  # only the call with no arguments at all ran
    results = [(f.result, f.is_error) for f in events if isinstance(f, ToolCallFinished)]
    assert results == [("Not run: the arguments are not valid JSON: {\"tz\": \"Eu", True),
                       ("Not run: the arguments must be a JSON object.", True),
                       ("12:00", False)]
    # The model is told, in the next round's tool results.
    tool_messages = [m for m in fake_llm.requests()[-1]["body"]["messages"] if m["role"] == "tool"]
    assert "not valid JSON" in tool_messages[0]["content"]


async def test_a_clients_tool_ends_the_turn_and_server_tools_beside_it_are_not_run(fake_llm):
    from agents.events import ClientToolCalls, Finished

    tools = Clock()
    weather = ToolSpec(name="get_weather", description="Weather", input_schema={
        "type": "object", "properties": {"city": {"type": "string"}}})
    events = await collect(
        targets=target(fake_llm), system="", tools=tools, client_tools=(weather,),
        history=user(tool_calls=[{"name": "get_weather", "arguments": {"city": "Oslo"}},
                                 {"name": "now", "arguments": {}}]))
    assert tools.calls == []  # nothing ran here
    (started,) = [e for e in events if isinstance(e, ToolCallStarted)]
    (finished,) = [e for e in events if isinstance(e, ToolCallFinished)]
    assert started.call.name == "now" and finished.is_error and "client" in finished.result
    assert isinstance(events[-2], Finished) and events[-2].reason == "tool_calls"
    handed = events[-1]
    assert isinstance(handed, ClientToolCalls)
    assert [(c.name, c.arguments) for c in handed.calls] == [("get_weather", {"city": "Oslo"})]
    offered = {t["function"]["name"] for t in fake_llm.requests()[-1]["body"]["tools"]}
    assert offered == {"now", "wait", "explode", "get_weather"}


async def test_a_turn_ends_with_the_models_finish_reason(fake_llm):
    from agents.events import Finished

    events = await collect(targets=target(fake_llm), system="",
                           history=user(tokens=2, finish_reason="length"))
    assert events[-1] == Finished(reason="length")


# Reaches neither the tests' database nor the channel layer (tests/conftest.py).
pytestmark = pytest.mark.backend_free
