"""Joining a conversation without a socket: a JoinPort that records the frames it is given."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from conversations import broker, joining, sending
from conversations.broker import Delivery
from conversations.sinks import TurnEvents
from tests.factories import make_branch, make_conversation, make_message, make_user

pytestmark = pytest.mark.django_db(transaction=True)


class Port:
    def __init__(self) -> None:
        self.frames: list[dict] = []
        self.reply_channel = "port.reply"

    async def send_json(self, text: str) -> None:
        self.frames.append(json.loads(text))

    async def send_frame(self, frame: dict) -> None:
        self.frames.append(json.loads(json.dumps(frame)))

    def states(self) -> list[dict]:
        return [f for f in self.frames if f["type"] == "conversation"]

    def turn_text(self) -> str:
        return "".join(f["event"].get("text", "") for f in self.frames
                       if f["type"] == "turn" and f["event"]["kind"] == "text")


def delivery(conversation_id: str, message_id: int, seq: int, text: str = "x") -> Delivery:
    body = {"type": "turn", "conversation": conversation_id, "message": message_id, "seq": seq,
            "event": {"kind": "text", "text": text}}
    return Delivery(conversation_id, message_id, seq, json.dumps(body))


@pytest.fixture
def stored():
    """A finished exchange whose answer's last event was number 5."""
    def make():
        user = make_user()
        conversation = make_conversation(owner=user)
        question = make_message(conversation=conversation, content="Hi")
        answer = make_message(conversation=conversation, role="assistant", parent=question,
                              content="Hello.", last_seq=5)
        return user, str(conversation.pk), answer.pk
    return sync_to_async(make)


async def test_a_finished_conversation_sends_its_state_then_only_newer_events(stored):
    user, conversation_id, answer_id = await stored()
    port = Port()
    joiner = joining.Joiner(port)
    await joiner.watch(user=user, conversation_id=conversation_id)
    [state] = port.states()
    assert [m["content"] for m in state["messages"]] == ["Hi", "Hello."]
    await joiner.deliver(delivery(conversation_id, answer_id, 5, "old"))  # already in the state
    await joiner.deliver(delivery(conversation_id, answer_id, 6, "new"))
    assert port.turn_text() == "new"
    await joiner.close()


async def test_a_gap_in_the_numbers_reads_the_state_again(stored):
    user, conversation_id, answer_id = await stored()
    port = Port()
    joiner = joining.Joiner(port)
    await joiner.watch(user=user, conversation_id=conversation_id)
    await joiner.deliver(delivery(conversation_id, answer_id, 8, "after a hole"))
    async with asyncio.timeout(5):
        while len(port.states()) < 2:
            await asyncio.sleep(0.01)
    assert port.turn_text() == ""  # never shown across the hole
    await joiner.close()


async def test_another_users_conversation_is_not_found_and_nothing_is_watched(stored):
    _, conversation_id, _ = await stored()
    stranger = await sync_to_async(make_user)()
    joiner = joining.Joiner(Port())
    with pytest.raises(joining.ConversationNotFound):
        await joiner.watch(user=stranger, conversation_id=conversation_id)
    assert joiner.watching is None
    assert conversation_id not in (await broker.get_broker()).watchers


async def test_joining_mid_turn_shows_the_text_so_far_then_the_rest_once(fake_llm):
    user = await sync_to_async(make_user)()
    prepared = await sync_to_async(sending.do_send)(user_id=user.pk, request=sending.check_send(
        conversation=None, text='fake: {"tokens": 30, "gap_ms": 15}'))
    own = TurnEvents()
    await broker.start_turn(plan=prepared.plan, sinks=[own])
    async for envelope in own:  # wait until some text went out
        if envelope.event.kind == "text" and envelope.seq > 5:
            break
    port = Port()
    joiner = joining.Joiner(port)
    await joiner.watch(user=user, conversation_id=prepared.conversation_id)
    [state] = port.states()
    reply = state["messages"][-1]
    assert reply["status"] == "streaming" and reply["content"]
    await broker.wait_for_turns(timeout=10)
    seqs = [f["seq"] for f in port.frames if f["type"] == "turn"]
    assert seqs == list(range(reply["seq"] + 1, reply["seq"] + 1 + len(seqs)))
    assert reply["content"] + port.turn_text() == "".join(f"tok{i} " for i in range(30))
    own.abandon()
    await joiner.close()


async def test_joining_a_long_conversation_mid_turn_shows_its_newest_page_and_the_running_answer(
        fake_llm):
    """The running answer is the branch's newest message: always on the first page, where its
    live view replaces the stored text."""
    def make():
        user = make_user()
        conversation = make_conversation(owner=user, title="Long")
        make_branch(conversation=conversation, messages=300)
        return user, str(conversation.pk)
    user, conversation_id = await sync_to_async(make)()
    prepared = await sync_to_async(sending.do_send)(user_id=user.pk, request=sending.check_send(
        conversation=conversation_id, text='fake: {"tokens": 30, "gap_ms": 15}'))
    own = TurnEvents()
    await broker.start_turn(plan=prepared.plan, sinks=[own])
    async for envelope in own:
        if envelope.event.kind == "text" and envelope.seq > 5:
            break
    port = Port()
    joiner = joining.Joiner(port)
    await joiner.watch(user=user, conversation_id=conversation_id)
    [state] = port.states()
    assert state["older"] is True and len(state["messages"]) == 40
    reply = state["messages"][-1]
    assert reply["id"] == prepared.assistant_message.id
    assert reply["status"] == "streaming" and reply["content"]
    await broker.wait_for_turns(timeout=10)
    assert reply["content"] + port.turn_text() == "".join(f"tok{i} " for i in range(30))
    own.abandon()
    await joiner.close()


async def test_a_turn_of_another_process_is_joined_through_its_view_or_the_database(
        monkeypatch):
    """No runner here: the joiner asks the owning process (the control group) for the view;
    its answer wins, and without one the database's last flush is sent after a timeout."""
    def make():
        user = make_user()
        conversation = make_conversation(owner=user)
        question = make_message(conversation=conversation, content="Hi")
        answer = make_message(conversation=conversation, role="assistant", parent=question,
                              status="streaming", content="Hel", last_seq=3)
        return user, str(conversation.pk), answer.pk
    user, conversation_id, answer_id = await sync_to_async(make)()
    layer = get_channel_layer()
    port = Port()
    port.reply_channel = await layer.new_channel()
    joiner = joining.Joiner(port)
    # Stand in for the owning process: its control channel joined the control group.
    owner = await layer.new_channel()
    await layer.group_add(f"turnctl.{conversation_id}", owner)
    await joiner.watch(user=user, conversation_id=conversation_id)
    assert port.states() == []  # waiting for the owner's view
    request = await asyncio.wait_for(layer.receive(owner), 5)
    assert (request["type"], request["reply_to"]) == ("turn.state", port.reply_channel)
    await joiner.deliver(delivery(conversation_id, answer_id, 5, "lo"))  # buffered meanwhile
    view = {**port_state_message(answer_id), "content": "Hel", "seq": 4}
    await joiner.on_view(conversation_id=conversation_id, view=view)
    [state] = port.states()
    assert state["messages"][-1]["seq"] == 4
    assert port.turn_text() == "lo"

    # No owner answers: after the timeout the stored text is sent as it is.
    monkeypatch.setattr(joining, "SNAPSHOT_TIMEOUT", 0.05)
    port.frames.clear()
    other = joining.Joiner(port)
    await other.watch(user=user, conversation_id=conversation_id)
    async with asyncio.timeout(5):
        while not port.states():
            await asyncio.sleep(0.01)
    assert port.states()[0]["messages"][-1]["content"] == "Hel"
    await joiner.close()
    await other.close()


def port_state_message(message_id: int) -> dict:
    return {"id": message_id, "role": "assistant", "parent": None, "status": "streaming",
            "model": "", "content": "", "reasoning": "", "reasoning_ms": None, "error": "",
            "client_key": None, "created_at": None, "finished_at": None,
            "usage": {"input_tokens": 0, "output_tokens": 0, "reasoning_tokens": 0,
                      "cached_tokens": 0, "cost": "0"},
            "tool_calls": [], "seq": 0}
