"""The turn runner's hooks, with no socket anywhere: turns run in-process and are read through
the iterator sink. Hooks are registered by each test and removed after it."""

from __future__ import annotations

import asyncio

import pytest

from agents.events import ToolCall
from agents.tools import ToolResult
from conversations import broker, hooks
from conversations.models import Message
from conversations.models import ToolCall as ToolCallRow
from conversations.payloads import ToolCallChanged
from tests.conversations.turns import TOOL_TURN, Lookup, directive, read_all, start

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def register():
    undo = []

    def add(point, hook):
        undo.append(hooks.register(point, hook))

    yield add
    for unregister in undo:
        unregister()


async def test_a_before_model_hook_refuses_the_turn_and_the_model_is_never_called(
        fake_llm, register):
    seen = []

    async def budget(ctx: hooks.TurnContext) -> None:
        seen.append((ctx.user_id, ctx.message_id))
        raise hooks.TurnRefused("Your monthly budget is spent.")

    register("before_model", budget)
    prepared, events = await start(directive(tokens=3))
    got = await read_all(events)
    finished = got[-1].event
    assert (finished.message.status, finished.message.error) == (
        "failed", "Your monthly budget is spent.")
    assert seen == [(prepared.plan.user_id, prepared.assistant_message.id)]
    assert fake_llm.stats().requests == 0
    stored = await Message.objects.aget(pk=prepared.assistant_message.id)
    assert (stored.status, stored.error) == ("failed", "Your monthly budget is spent.")


async def approval(ctx: hooks.TurnContext, call: ToolCall) -> ToolResult | None:
    """Ask first: every call waits for a person's decision."""
    if await ctx.wait_for_decision(call_id=call.id) == "deny":
        return ToolResult(content="Denied by the user.", is_error=True)
    return None


async def test_a_tool_call_paused_by_a_hook_resumes_on_a_control_message(fake_llm, register):
    register("before_tool_call", approval)
    tools = Lookup()
    prepared, events = await start(TOOL_TURN, tools=tools)
    seen = []
    async with asyncio.timeout(15):
        async for envelope in events:
            seen.append(envelope)
            if (isinstance(envelope.event, ToolCallChanged)
                    and envelope.event.call.status == "awaiting_approval"):
                break
    call = seen[-1].event.call
    row = await ToolCallRow.objects.aget(message_id=prepared.assistant_message.id)
    assert row.status == "awaiting_approval"
    await asyncio.sleep(0.2)
    assert tools.calls == []  # paused: the tool has not run
    # The decision travels like a stop: through the channel layer to the owning process.
    await broker.request_decision(conversation_id=prepared.conversation_id, call_id=call.id,
                                  decision="approve")
    rest = await read_all(events)
    updates = [e.event.call.status for e in rest if e.event.kind == "tool_call_updated"]
    assert updates == ["running"]
    assert tools.calls == [{"q": "cat"}]
    finished = rest[-1].event
    assert finished.message.status == "complete"
    assert finished.message.tool_calls[0].status == "complete"
    row = await ToolCallRow.objects.aget(message_id=prepared.assistant_message.id)
    assert (row.status, row.result) == ("complete", "found cat")


async def test_a_denied_tool_call_is_answered_by_the_hook_and_never_runs(fake_llm, register):
    register("before_tool_call", approval)
    tools = Lookup()
    prepared, events = await start(TOOL_TURN, tools=tools)
    async with asyncio.timeout(15):
        async for envelope in events:
            if envelope.event.kind == "tool_call_updated":
                break
    await broker.request_decision(conversation_id=prepared.conversation_id,
                                  call_id=envelope.event.call.id, decision="deny")
    finished = (await read_all(events))[-1].event
    assert tools.calls == []
    assert [(c.status, c.result) for c in finished.message.tool_calls] == [
        ("failed", "Denied by the user.")]
    assert "Denied by the user." in finished.message.content  # the model saw the refusal


async def test_stop_ends_a_paused_tool_call_as_cancelled(fake_llm, register):
    register("before_tool_call", approval)
    prepared, events = await start(TOOL_TURN, tools=Lookup())
    async with asyncio.timeout(15):
        async for envelope in events:
            if envelope.event.kind == "tool_call_updated":
                break
    await broker.request_stop(conversation_id=prepared.conversation_id)
    finished = (await read_all(events))[-1].event
    assert finished.message.status == "stopped"
    assert finished.message.tool_calls[0].status == "cancelled"
    row = await ToolCallRow.objects.aget(message_id=prepared.assistant_message.id)
    assert row.status == "cancelled"


async def test_after_tool_call_and_turn_finished_hooks_see_the_final_values(fake_llm, register):
    ledger, ends = [], []

    async def record(ctx, call):
        ledger.append((ctx.conversation_id, call.name, call.status, call.result))

    async def broken(ctx, value):
        raise RuntimeError("a metrics backend is down")

    async def finished(ctx, message):
        ends.append((message.id, message.status, message.content))

    register("after_tool_call", broken)
    register("after_tool_call", record)
    register("turn_finished", broken)
    register("turn_finished", finished)
    prepared, events = await start(TOOL_TURN, tools=Lookup())
    got = await read_all(events)
    await broker.wait_for_turns(timeout=5)
    assert ledger == [(prepared.conversation_id, "lookup", "complete", "found cat")]
    assert ends == [(prepared.assistant_message.id, "complete", got[-1].event.message.content)]
    stored = await Message.objects.aget(pk=prepared.assistant_message.id)
    assert stored.status == "complete"  # failing observers take nothing away
