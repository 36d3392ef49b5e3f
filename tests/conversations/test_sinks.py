"""The in-process iterator sink: a whole turn read without any socket."""

from __future__ import annotations

import pytest

from conversations import broker
from conversations.models import Message
from conversations.payloads import TextAdded, TurnFinished
from tests.conversations.turns import TOOL_TURN, Lookup, read_all, start

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_whole_turn_with_a_tool_call_through_the_iterator_sink(fake_llm):
    tools = Lookup()
    prepared, events = await start(TOOL_TURN, tools=tools)
    got = await read_all(events)
    kinds = [e.event.kind for e in got]
    assert kinds[0] == "started" and kinds[-1] == "finished"
    assert kinds.index("tool_call_started") < kinds.index("tool_call_finished")
    assert [e.seq for e in got] == list(range(1, len(got) + 1))
    assert {e.message_id for e in got} == {prepared.assistant_message.id}
    text = "".join(e.event.text for e in got if isinstance(e.event, TextAdded))
    assert text == "Let me look. Tool results: lookup=found cat;"
    finished = got[-1].event
    assert isinstance(finished, TurnFinished)
    assert (finished.message.status, finished.message.content) == ("complete", text)
    assert [(c.name, c.server, c.status, c.result) for c in finished.message.tool_calls] == [
        ("lookup", "dictionary", "complete", "found cat")]
    assert tools.calls == [{"q": "cat"}]
    stored = await Message.objects.aget(pk=prepared.assistant_message.id)
    assert (stored.status, stored.content, stored.last_seq) == ("complete", text, got[-1].seq)


async def test_a_reader_that_goes_away_leaves_the_turn_to_finish(fake_llm):
    prepared, events = await start('fake: {"tokens": 20, "gap_ms": 5}')
    async for envelope in events:
        if envelope.event.kind == "text":
            break
    events.abandon()
    assert [e async for e in events] == []
    await broker.wait_for_turns(timeout=10)
    stored = await Message.objects.aget(pk=prepared.assistant_message.id)
    assert (stored.status, stored.content) == ("complete", "".join(f"tok{i} " for i in range(20)))
