"""Whole turns with tools on real MCP servers (our fakemcp over stdio): streaming around a
call, parallel calls, approval granted, denied and pending across a reload, a changed
definition held, a result over the size limit, a crashed and a hung server, and the record."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from asgiref.sync import sync_to_async
from django.test import override_settings

from agents import tool_catalog, tool_refresh
from agents.models import McpServer, McpTool
from conversations import broker, sending, tool_records
from conversations.models import ToolCall
from conversations.sinks import TurnEvents
from fakemcp import stdio_command
from fakemcp.runner import ROOT
from tests.conversations import ws
from tests.factories import make_user

pytestmark = pytest.mark.django_db(transaction=True)


def directive(**kw) -> str:
    return "fake: " + json.dumps(kw)


@pytest.fixture
async def fake_server(fake_llm):
    """Our MCP test server registered as `fake`, its tools listed and set to run unasked."""
    command, args = stdio_command()
    server = await McpServer.objects.acreate(
        name="fake", transport="stdio", command=command, args=list(args), cwd=str(ROOT),
        call_timeout=5.0)
    report = await tool_refresh.refresh_server(server_id=server.pk)
    assert report.ok, report.error
    await McpTool.objects.filter(server=server).aupdate(approval="run")
    return server


async def send(user, text: str, conversation=None):
    prepared = await sync_to_async(sending.do_send)(
        user_id=user.pk, request=sending.check_send(conversation=conversation, text=text))
    events = TurnEvents()
    await broker.start_turn(plan=prepared.plan, sinks=[events])
    return prepared, events


async def read_until(events: TurnEvents, predicate, timeout: float = 15):
    seen = []
    async with asyncio.timeout(timeout):
        async for envelope in events:
            seen.append(envelope.event)
            if predicate(envelope.event):
                return seen
    return seen


def finished(event) -> bool:
    return event.kind == "finished"


def awaiting(event) -> bool:
    return event.kind == "tool_call_updated" and event.call.status == "awaiting_approval"


async def decide(user, prepared, row: ToolCall, decision: str) -> None:
    """What the page's Approve and Deny do (consumers.cmd_decide), without the socket."""
    await sync_to_async(tool_records.do_decide_for_owner)(
        user=user, conversation_id=prepared.conversation_id, call_id=row.call_id,
        decision=decision)
    await broker.request_decision(conversation_id=prepared.conversation_id,
                                  call_id=row.call_id, decision=decision)


async def rows(prepared) -> list[ToolCall]:
    return [c async for c in ToolCall.objects.filter(
        message_id=prepared.assistant_message.id).order_by("id")]


async def test_text_streams_before_and_after_a_tool_call_and_the_call_is_on_record(fake_server):
    user = await sync_to_async(make_user)()
    prepared, events = await send(user, directive(
        preamble="Let me ask the server. ",
        tool_calls=[{"name": "fake__echo", "arguments": {"text": "hello"}}]))
    seen = await read_until(events, finished)
    kinds = [e.kind for e in seen]
    # Text, then the card, then its result, then more text: in that order, on one stream.
    first_text = kinds.index("text")
    started, done = kinds.index("tool_call_started"), kinds.index("tool_call_finished")
    assert first_text < started < done < len(kinds) - 1 - kinds[::-1].index("text")
    final = seen[-1].message
    assert final.status == "complete"
    assert final.content.startswith("Let me ask the server. ")
    assert "fake__echo=hello" in final.content  # the fake model read the tool's result
    (call,) = final.tool_calls
    assert (call.name, call.server, call.status, call.result) == (
        "fake__echo", "fake", "complete", "hello")
    (row,) = await rows(prepared)
    tool = await McpTool.objects.aget(name="echo")
    assert (row.tool_name, row.server, row.arguments, row.result, row.status) == (
        "fake__echo", "fake", {"text": "hello"}, "hello", "complete")
    assert row.definition_hash == tool.definition_hash and row.approval == "policy"
    assert row.started_at <= row.finished_at


async def test_parallel_calls_run_at_once(fake_server):
    user = await sync_to_async(make_user)()
    began = time.monotonic()
    prepared, events = await send(user, directive(tool_calls=[
        {"name": "fake__sleep", "arguments": {"seconds": 1.0}},
        {"name": "fake__sleep", "arguments": {"seconds": 1.0}},
        {"name": "fake__sleep", "arguments": {"seconds": 1.0}}]))
    seen = await read_until(events, finished)
    assert time.monotonic() - began < 2.5  # three one-second calls, not one after another
    assert [c.status for c in seen[-1].message.tool_calls] == ["complete"] * 3


async def test_bad_arguments_go_back_to_the_model_without_running(fake_server):
    user = await sync_to_async(make_user)()
    prepared, events = await send(user, directive(tool_calls=[
        {"name": "fake__add", "arguments": {"a": "one", "b": 2}}]))
    seen = await read_until(events, finished)
    (call,) = seen[-1].message.tool_calls
    assert call.status == "failed" and "schema" in call.result and "a" in call.result
    assert seen[-1].message.status == "complete"  # the model was told and answered


async def test_approval_granted_runs_the_call_and_records_who_decided(fake_server):
    await McpTool.objects.filter(name="echo").aupdate(approval="ask")
    user = await sync_to_async(make_user)()
    prepared, events = await send(user, directive(tool_calls=[
        {"name": "fake__echo", "arguments": {"text": "approved"}}]))
    seen = await read_until(events, awaiting)
    assert seen[-1].call.arguments == {"text": "approved"} and seen[-1].call.server == "fake"
    (row,) = await rows(prepared)
    assert row.status == "awaiting_approval"
    await decide(user, prepared, row, "approve")
    seen = await read_until(events, finished)
    (call,) = seen[-1].message.tool_calls
    assert (call.status, call.result, call.approval) == ("complete", "approved", "approved")
    (row,) = await rows(prepared)
    assert (row.approval, row.decided_by_id) == ("approved", user.pk)
    assert row.decided_at is not None


async def test_a_denial_goes_back_to_the_model_as_a_tool_error(fake_server):
    await McpTool.objects.filter(name="echo").aupdate(approval="ask")
    user = await sync_to_async(make_user)()
    prepared, events = await send(user, directive(tool_calls=[
        {"name": "fake__echo", "arguments": {"text": "no"}}]))
    await read_until(events, awaiting)
    (row,) = await rows(prepared)
    await decide(user, prepared, row, "deny")
    seen = await read_until(events, finished)
    (call,) = seen[-1].message.tool_calls
    assert call.status == "denied" and call.is_error and "denied" in call.result
    assert "denied" in seen[-1].message.content  # the model saw the error and said so
    (row,) = await rows(prepared)
    assert (row.status, row.approval, row.decided_by_id) == ("denied", "denied", user.pk)
    # A second decision (another tab) is refused: the first one stands.
    with pytest.raises(tool_records.NotWaiting):
        await sync_to_async(tool_records.do_decide_for_owner)(
            user=user, conversation_id=prepared.conversation_id, call_id=row.call_id,
            decision="approve")


@override_settings(TOOL_APPROVAL_TIMEOUT=1.0)
async def test_no_decision_in_time_counts_as_a_denial(fake_server):
    await McpTool.objects.filter(name="echo").aupdate(approval="ask")
    user = await sync_to_async(make_user)()
    prepared, events = await send(user, directive(tool_calls=[
        {"name": "fake__echo", "arguments": {"text": "late"}}]))
    seen = await read_until(events, finished)
    (call,) = seen[-1].message.tool_calls
    assert call.status == "denied" and "no one approved" in call.result.lower()
    (row,) = await rows(prepared)
    assert row.approval == "timed_out" and row.decided_by_id is None


async def test_a_paused_call_survives_a_reload_and_a_second_tab_can_decide(fake_server):
    await McpTool.objects.filter(name="echo").aupdate(approval="ask")
    user = await sync_to_async(make_user)()
    first = await ws.connect(user)
    await ws.send(first, {"type": "send", "text": directive(
        tool_calls=[{"name": "fake__echo", "arguments": {"text": "tab"}}]),
        "client_key": "k1"})
    ack, _ = await ws.until(first, lambda f: f["type"] == "ack")
    conversation = ack["conversation"]["id"]
    await ws.until(first, lambda f: f["type"] == "turn"
                   and f["event"]["kind"] == "tool_call_updated")
    await first.disconnect()  # the tab reloads
    second = await ws.connect(user)
    await ws.send(second, {"type": "watch", "conversation": conversation})
    state, _ = await ws.until(second, lambda f: f["type"] == "conversation")
    (call,) = state["messages"][-1]["tool_calls"]
    assert (call["status"], call["arguments"], call["server"]) == (
        "awaiting_approval", {"text": "tab"}, "fake")
    third = await ws.connect(user)  # and a second tab watches too
    await ws.send(third, {"type": "watch", "conversation": conversation})
    await ws.until(third, lambda f: f["type"] == "conversation")
    await ws.send(second, {"type": "decide", "conversation": conversation,
                           "call_id": call["id"], "decision": "approve"})
    done, _ = await ws.until(second, ws.finished)
    assert done["event"]["message"]["tool_calls"][0]["result"] == "tab"
    other, _ = await ws.until(third, ws.finished)  # the other tab saw it end too
    assert other["event"]["message"]["tool_calls"][0]["status"] == "complete"
    # Deciding again is a clear error, not a second run.
    await ws.send(third, {"type": "decide", "conversation": conversation,
                          "call_id": call["id"], "decision": "deny"})
    error, _ = await ws.until(third, lambda f: f["type"] == "error")
    assert error["code"] == "not_waiting"
    for comm in (second, third):
        await comm.disconnect()


async def test_another_users_decision_is_refused(fake_server):
    await McpTool.objects.filter(name="echo").aupdate(approval="ask")
    owner, stranger = await sync_to_async(make_user)(), await sync_to_async(make_user)()
    prepared, events = await send(owner, directive(tool_calls=[
        {"name": "fake__echo", "arguments": {"text": "mine"}}]))
    await read_until(events, awaiting)
    (row,) = await rows(prepared)
    comm = await ws.connect(stranger)
    await ws.send(comm, {"type": "decide", "conversation": prepared.conversation_id,
                         "call_id": row.call_id, "decision": "approve"})
    error, _ = await ws.until(comm, lambda f: f["type"] == "error")
    assert error["code"] == "not_found"
    await comm.disconnect()
    await row.arefresh_from_db()
    assert row.status == "awaiting_approval" and row.approval == ""
    await broker.request_stop(conversation_id=prepared.conversation_id)
    await read_until(events, finished)


async def test_stop_while_a_call_waits_for_approval_cancels_it(fake_server):
    await McpTool.objects.filter(name="echo").aupdate(approval="ask")
    user = await sync_to_async(make_user)()
    prepared, events = await send(user, directive(tool_calls=[
        {"name": "fake__echo", "arguments": {"text": "x"}}]))
    await read_until(events, awaiting)
    await broker.request_stop(conversation_id=prepared.conversation_id)
    seen = await read_until(events, finished)
    assert seen[-1].message.status == "stopped"
    (row,) = await rows(prepared)
    assert row.status == "cancelled"


async def test_stop_during_a_tool_call_cancels_it_on_the_server(fake_server):
    user = await sync_to_async(make_user)()
    prepared, events = await send(user, directive(tool_calls=[
        {"name": "fake__sleep", "arguments": {"seconds": 30}}]))
    await read_until(events, lambda e: e.kind == "tool_call_started")
    await asyncio.sleep(0.3)
    began = time.monotonic()
    await broker.request_stop(conversation_id=prepared.conversation_id)
    seen = await read_until(events, finished)
    assert time.monotonic() - began < 3
    assert seen[-1].message.status == "stopped"
    config = tool_catalog.server_config(await McpServer.objects.aget(name="fake"))
    stats = await tool_refresh.pool().call_tool(config, "stats", {})
    assert stats.structured["cancelled"] >= 1  # the server was told, and stopped the call


async def test_a_changed_definition_is_held_and_not_offered_to_the_next_turn(fake_server,
                                                                             fake_llm):
    user = await sync_to_async(make_user)()
    prepared, events = await send(user, directive(tool_calls=[
        {"name": "fake__change_description", "arguments": {"text": "Echo, and more."}}]))
    await read_until(events, finished)
    # The server announced the change; the refresh it caused holds the tool.
    async with asyncio.timeout(10):
        while not (await McpTool.objects.aget(name="echo")).pending_hash:
            await asyncio.sleep(0.05)
    echo = await McpTool.objects.aget(name="echo")
    assert echo.pending_description == "Echo, and more." and echo.description != echo.pending_description
    prepared, events = await send(user, directive(tool_calls=[
        {"name": "fake__echo", "arguments": {"text": "held?"}}]), prepared.conversation_id)
    seen = await read_until(events, finished)
    (call,) = seen[-1].message.tool_calls
    assert call.status == "failed" and "no tool named" in call.result  # not offered, not run
    offered = [t["function"]["name"] for t in fake_llm.requests()[-1]["body"]["tools"]]
    assert "fake__echo" not in offered and "fake__add" in offered


@override_settings(TOOL_RESULT_MAX_CHARS=1000)
async def test_a_result_over_the_size_limit_is_cut_and_the_cut_recorded(fake_server):
    user = await sync_to_async(make_user)()
    prepared, events = await send(user, directive(tool_calls=[
        {"name": "fake__huge", "arguments": {"size": 200_000}}]))
    seen = await read_until(events, finished)
    (call,) = seen[-1].message.tool_calls
    assert call.truncated and len(call.result) < 1200
    (row,) = await rows(prepared)
    assert row.result_truncated and row.result_chars == 200_000 and len(row.result) < 1200


async def test_a_crashed_server_is_a_failed_card_and_the_next_call_works(fake_server):
    user = await sync_to_async(make_user)()
    prepared, events = await send(user, directive(tool_calls=[
        {"name": "fake__crash", "arguments": {}}]))
    seen = await read_until(events, finished)
    (call,) = seen[-1].message.tool_calls
    assert call.status == "failed" and "crashed" in call.result
    assert "Traceback" not in call.result
    assert seen[-1].message.status == "complete"
    prepared, events = await send(user, directive(tool_calls=[
        {"name": "fake__echo", "arguments": {"text": "again"}}]), prepared.conversation_id)
    seen = await read_until(events, finished)
    assert seen[-1].message.tool_calls[0].result == "again"


async def test_a_hung_call_times_out(fake_server):
    await McpServer.objects.filter(pk=fake_server.pk).aupdate(call_timeout=0.5)
    user = await sync_to_async(make_user)()
    prepared, events = await send(user, directive(tool_calls=[
        {"name": "fake__sleep", "arguments": {"seconds": 30}}]))
    seen = await read_until(events, finished)
    (call,) = seen[-1].message.tool_calls
    assert call.status == "failed" and "timed out after 0.5 s" in call.result


# --- tools limited to groups (agents.access) ---------------------------------------------------


def offered(fake_llm) -> list[str]:
    """The tools the fake model was given in the last request."""
    return [t["function"]["name"] for t in fake_llm.requests()[-1]["body"].get("tools", [])]


async def test_a_model_outside_a_servers_groups_never_gets_its_tools_nor_runs_one(
        fake_server, fake_llm):
    from django.contrib.auth.models import Group

    finance = await Group.objects.acreate(name="finance")
    await fake_server.allowed_groups.aadd(finance)
    outsider, member = await sync_to_async(make_user)(), await sync_to_async(make_user)()
    await member.groups.aadd(finance)
    # The model asks for the tool by name anyway (it knows it from elsewhere, or makes it up).
    ask = directive(tool_calls=[{"name": "fake__echo", "arguments": {"text": "leak?"}}])
    prepared, events = await send(outsider, ask)
    seen = await read_until(events, finished)
    assert not [name for name in offered(fake_llm) if name.startswith("fake__")]
    (call,) = seen[-1].message.tool_calls
    assert call.status == "failed" and "no tool named 'fake__echo'" in call.result
    prepared, events = await send(member, ask)
    seen = await read_until(events, finished)
    assert "fake__echo" in offered(fake_llm)
    assert seen[-1].message.tool_calls[0].result == "leak?"


async def test_a_single_tool_can_be_limited_on_top_of_its_server(fake_server, fake_llm):
    from django.contrib.auth.models import Group

    echo = await McpTool.objects.aget(name="echo")
    await echo.allowed_groups.aadd(await Group.objects.acreate(name="hr"))
    prepared, events = await send(await sync_to_async(make_user)(), directive(tokens=2))
    await read_until(events, finished)
    names = offered(fake_llm)
    assert "fake__echo" not in names and "fake__add" in names


async def test_a_limit_set_while_a_call_waits_for_approval_keeps_it_from_running(fake_server):
    from django.contrib.auth.models import Group

    await McpTool.objects.filter(name="echo").aupdate(approval="ask")
    user = await sync_to_async(make_user)()
    prepared, events = await send(user, directive(tool_calls=[
        {"name": "fake__echo", "arguments": {"text": "late limit"}}]))
    await read_until(events, awaiting)
    await fake_server.allowed_groups.aadd(await Group.objects.acreate(name="finance"))
    (row,) = await rows(prepared)
    await decide(user, prepared, row, "approve")
    seen = await read_until(events, finished)
    (call,) = seen[-1].message.tool_calls
    assert call.status == "failed" and "limited to other groups" in call.result
