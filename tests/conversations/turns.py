"""Running a turn in-process, without a socket: a real tool box and the iterator sink."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

from asgiref.sync import sync_to_async

from agents.events import ToolCall, ToolSpec
from agents.tools import ToolResult
from conversations import broker, sending
from conversations.sinks import TurnEvents
from tests.factories import make_user


class Lookup:
    """A real (in-process) tool box with one tool."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def specs(self):
        return (ToolSpec(name="lookup", description="Look a word up.",
                         input_schema={"type": "object"}),)

    def server_of(self, name: str) -> str:
        return "dictionary"

    def definition_hash_of(self, name: str) -> str:
        return "lookup-v1"

    async def call(self, call: ToolCall) -> ToolResult:
        self.calls.append(call.arguments)
        return ToolResult(content=f"found {call.arguments.get('q')}")


def directive(**kw) -> str:
    return "fake: " + json.dumps(kw)


TOOL_TURN = directive(preamble="Let me look. ", tool_calls=[
    {"name": "lookup", "arguments": {"q": "cat"}}])


async def start(text: str, *, tools=None) -> tuple[sending.PreparedTurn, TurnEvents]:
    user = await sync_to_async(make_user)()
    prepared = await sync_to_async(sending.do_send)(
        user_id=user.pk, request=sending.check_send(conversation=None, text=text))
    events = TurnEvents()
    await broker.start_turn(plan=replace(prepared.plan, tools=tools), sinks=[events])
    return prepared, events


async def read_all(events: TurnEvents, timeout: float = 15) -> list:
    async with asyncio.timeout(timeout):
        return [envelope async for envelope in events]


