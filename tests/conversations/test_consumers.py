"""The chat socket, end to end against the fake model server: what a user's browser sees."""

import asyncio
import json
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from chatsite.asgi import application
from conversations import broker
from conversations.models import Message
from tests.conversations.ws import connect, finished, receive, send, text_of, until
from tests.factories import make_branch, make_conversation, make_message, make_user

pytestmark = pytest.mark.django_db(transaction=True)


def directive(**kw) -> str:
    return "fake: " + json.dumps(kw)


def expected_tokens(n: int) -> str:
    return "".join(f"tok{i} " for i in range(n))


async def new_user(**kw):
    return await sync_to_async(make_user)(**kw)


async def start(comm, text: str, *, conversation=None, client_key=None) -> dict:
    frame = {"type": "send", "conversation": conversation, "text": text}
    if client_key:
        frame["client_key"] = client_key
    await send(comm, frame)
    ack, _ = await until(comm, lambda f: f["type"] in ("ack", "error"))
    assert ack["type"] == "ack", ack
    return ack


async def test_a_sent_message_streams_back_and_is_stored(fake_llm):
    comm = await connect(await new_user())
    ack = await start(comm, directive(tokens=5), client_key="k-1")
    assert ack["client_key"] == "k-1" and ack["duplicate"] is False
    assert ack["user_message"]["content"] == directive(tokens=5)
    done, frames = await until(comm, finished)
    assert text_of(frames) == expected_tokens(5)
    seqs = [f["seq"] for f in frames if f["type"] == "turn"] + [done["seq"]]
    assert seqs == list(range(1, len(seqs) + 1))
    assert done["event"]["message"]["status"] == "complete"
    reply = await Message.objects.aget(pk=ack["assistant_message"]["id"])
    assert (reply.status, reply.content, reply.model) == ("complete", expected_tokens(5), "fake-model")
    assert reply.first_token_at is not None and reply.finished_at >= reply.first_token_at
    assert reply.output_tokens == 5 and reply.input_tokens > 0
    await comm.disconnect()


async def test_the_model_gets_the_system_prompt_and_the_history(fake_llm, settings):
    settings.SYSTEM_PROMPT = "You are the test assistant."
    comm = await connect(await new_user())
    first = await start(comm, "Hello\n" + directive(tokens=2))
    await until(comm, finished)
    await start(comm, "Again\n" + directive(tokens=1), conversation=first["conversation"]["id"])
    await until(comm, finished)
    body = fake_llm.requests()[-1]["body"]
    roles = [(m["role"], m.get("content")) for m in body["messages"]]
    assert roles == [
        ("system", "You are the test assistant."),
        ("user", "Hello\n" + directive(tokens=2)),
        ("assistant", expected_tokens(2)),
        ("user", "Again\n" + directive(tokens=1)),
    ]
    await comm.disconnect()


async def test_a_resent_message_is_stored_once(fake_llm):
    user = await new_user()
    comm = await connect(user)
    first = await start(comm, directive(tokens=2), client_key="same")
    await until(comm, finished)
    again = await start(comm, directive(tokens=2), client_key="same")
    assert again["duplicate"] is True
    assert again["user_message"]["id"] == first["user_message"]["id"]
    assert await Message.objects.filter(conversation__owner=user).acount() == 2
    assert fake_llm.stats().requests == 1
    await comm.disconnect()


async def test_a_socket_joining_mid_turn_sees_every_token_exactly_once(fake_llm):
    user = await new_user()
    sender = await connect(user)
    ack = await start(sender, directive(tokens=40, gap_ms=25))
    conversation = ack["conversation"]["id"]
    await asyncio.sleep(0.4)  # about 15 tokens in
    watcher = await connect(user)
    await send(watcher, {"type": "watch", "conversation": conversation})
    state, _ = await until(watcher, lambda f: f["type"] == "conversation")
    reply = next(m for m in state["messages"] if m["id"] == ack["assistant_message"]["id"])
    so_far = reply["content"]
    assert 0 < len(so_far) < len(expected_tokens(40))
    done, frames = await until(watcher, finished)
    assert so_far + text_of(frames) == expected_tokens(40)
    seqs = [f["seq"] for f in frames if f["type"] == "turn"] + [done["seq"]]
    assert seqs == list(range(reply["seq"] + 1, reply["seq"] + 1 + len(seqs)))
    # The sender's socket saw the whole answer too: two tabs, one stream.
    _, sender_frames = await until(sender, finished)
    assert text_of(sender_frames) == expected_tokens(40)
    await sender.disconnect()
    await watcher.disconnect()


async def test_closing_the_tab_does_not_stop_or_repeat_the_turn(fake_llm):
    user = await new_user()
    comm = await connect(user)
    ack = await start(comm, directive(tokens=20, gap_ms=20))
    await comm.disconnect()
    await asyncio.wait_for(broker.wait_for_turns(), 10)
    reply = await Message.objects.aget(pk=ack["assistant_message"]["id"])
    assert (reply.status, reply.content) == ("complete", expected_tokens(20))
    stats = fake_llm.stats()
    assert (stats.requests, stats.streams_completed, stats.streams_abandoned) == (1, 1, 0)


async def test_stop_closes_the_upstream_stream_and_keeps_the_partial_text(fake_llm):
    comm = await connect(await new_user())
    ack = await start(comm, directive(tokens=200, gap_ms=20))
    await until(comm, lambda f: f["type"] == "turn" and f["event"]["kind"] == "text")
    await send(comm, {"type": "stop", "conversation": ack["conversation"]["id"]})
    done, _ = await until(comm, finished)
    assert done["event"]["message"]["status"] == "stopped"
    # The fake saw the client leave within a second.
    await fake_llm.await_for(lambda s: s.streams_abandoned == 1, timeout=1.0)
    reply = await Message.objects.aget(pk=ack["assistant_message"]["id"])
    assert reply.status == "stopped"
    assert reply.content and expected_tokens(200).startswith(reply.content)
    assert reply.content != expected_tokens(200)
    await comm.disconnect()


async def test_another_users_conversation_behaves_like_a_missing_one(fake_llm):
    owner, stranger = await new_user(), await new_user()
    conversation = await sync_to_async(make_conversation)(owner=owner)
    comm = await connect(stranger)
    answers = []
    for conversation_id in (str(conversation.pk), "00000000-0000-0000-0000-000000000000"):
        for frame in (
            {"type": "watch", "conversation": conversation_id},
            {"type": "send", "conversation": conversation_id, "text": "hi"},
            {"type": "stop", "conversation": conversation_id},
        ):
            await send(comm, frame)
            answer = await receive(comm)
            answers.append((answer["type"], answer["code"], answer["message"]))
    assert set(answers) == {("error", "not_found", "That conversation does not exist.")}
    assert await Message.objects.filter(conversation=conversation).acount() == 0
    await comm.disconnect()


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("not json", "bad_frame"),
        ("[1, 2]", "bad_frame"),
        ('{"type": "explode"}', "unknown_type"),
        ('{"type": "send", "conversation": 5, "text": "x"}', "bad_frame"),
        ('{"type": "send", "conversation": null, "text": "   "}', "invalid"),
        ('{"type": "send", "conversation": null, "text": "x", "parent": "a"}', "bad_frame"),
        ('{"type": "watch"}', "bad_frame"),
    ],
)
async def test_bad_frames_get_clear_errors(raw, code, fake_llm):
    comm = await connect(await new_user())
    await comm.send_to(text_data=raw)
    answer = await receive(comm)
    assert (answer["type"], answer["code"]) == ("error", code)
    assert answer["message"]
    # The socket stays usable.
    await send(comm, {"type": "ping"})
    assert (await receive(comm))["type"] == "pong"
    await comm.disconnect()


async def test_oversized_frames_are_refused(fake_llm, settings):
    settings.WS_MAX_FRAME_BYTES = 2048
    comm = await connect(await new_user())
    await send(comm, {"type": "send", "conversation": None, "text": "x" * 5000})
    answer = await receive(comm)
    assert (answer["type"], answer["code"]) == ("error", "frame_too_large")
    assert await Message.objects.acount() == 0
    await comm.disconnect()


async def test_a_deactivated_user_is_cut_off_at_the_next_command(fake_llm):
    user = await new_user()
    comm = await connect(user)
    user.is_active = False
    await user.asave()
    await send(comm, {"type": "send", "conversation": None, "text": "hello"})
    answer = await receive(comm)
    assert (answer["type"], answer["code"]) == ("error", "unauthorized")
    assert (await comm.receive_output(timeout=2))["type"] == "websocket.close"
    assert await Message.objects.acount() == 0


async def test_anonymous_and_foreign_origin_sockets_are_refused(fake_llm):
    anonymous = WebsocketCommunicator(application, "/ws/chat/",
                                      headers=[(b"origin", b"http://127.0.0.1")])
    connected, _ = await anonymous.connect()
    assert not connected
    user = await new_user()
    with pytest.raises(AssertionError):
        await connect(user, origin=b"http://evil.example")


async def test_a_turn_left_by_a_dead_process_is_marked_interrupted_when_read(fake_llm):
    user = await new_user()
    conversation = await sync_to_async(make_conversation)(owner=user)
    question = await sync_to_async(make_message)(conversation=conversation, content="Q")
    orphan = await sync_to_async(make_message)(
        conversation=conversation, role="assistant", parent=question, status="streaming",
        content="half an ans")
    await Message.objects.filter(pk=orphan.pk).aupdate(
        updated_at=timezone.now() - timedelta(minutes=5))
    comm = await connect(user)
    await send(comm, {"type": "watch", "conversation": str(conversation.pk)})
    state, _ = await until(comm, lambda f: f["type"] == "conversation")
    shown = state["messages"][-1]
    assert (shown["status"], shown["content"]) == ("interrupted", "half an ans")
    assert "stopped while writing" in shown["error"]
    await comm.disconnect()


async def test_a_second_message_while_one_streams_is_refused(fake_llm):
    comm = await connect(await new_user())
    ack = await start(comm, directive(tokens=50, gap_ms=20))
    await send(comm, {"type": "send", "conversation": ack["conversation"]["id"], "text": "more"})
    answer, _ = await until(comm, lambda f: f["type"] == "error")
    assert answer["code"] == "busy"
    await send(comm, {"type": "stop", "conversation": ack["conversation"]["id"]})
    await until(comm, finished)
    await comm.disconnect()


async def test_at_start_up_turns_of_dead_processes_are_interrupted(fake_llm):
    """A process's first socket sweeps every conversation, not only the one being read."""
    user = await new_user()
    conversation = await sync_to_async(make_conversation)(owner=user)
    orphan = await sync_to_async(make_message)(
        conversation=conversation, role="assistant", status="streaming", content="partial")
    recent = await sync_to_async(make_message)(
        conversation=conversation, role="assistant", status="streaming", content="alive")
    await Message.objects.filter(pk=orphan.pk).aupdate(
        updated_at=timezone.now() - timedelta(minutes=5))
    comm = await connect(await new_user())  # someone else's socket, another conversation
    await orphan.arefresh_from_db()
    await recent.arefresh_from_db()
    assert (orphan.status, orphan.content) == ("interrupted", "partial")
    # A turn written to within TURN_STALE_AFTER may belong to a live process: left alone.
    assert recent.status == "streaming"
    await comm.disconnect()


async def test_a_burst_of_tokens_is_coalesced_into_fewer_frames_in_order(fake_llm):
    """Deltas that arrive faster than the coalescing window go out together, in order, with
    consecutive numbers; spaced-out ones (the other tests) go out one by one."""
    comm = await connect(await new_user())
    await start(comm, directive(tokens=400, gap_ms=0))
    done, frames = await until(comm, finished)
    texts = [f for f in frames if f["type"] == "turn" and f["event"]["kind"] == "text"]
    assert text_of(frames) == expected_tokens(400)
    assert len(texts) < 400
    # The first token is never held back to be merged (right after the "model" event).
    assert texts[0]["event"]["text"] == "tok0 "
    seqs = [f["seq"] for f in frames if f["type"] == "turn"] + [done["seq"]]
    assert seqs == list(range(1, len(seqs) + 1))
    await comm.disconnect()


async def test_sending_into_a_conversation_from_a_fresh_socket_shows_its_history(fake_llm):
    user = await new_user()
    first = await connect(user)
    ack = await start(first, directive(tokens=2))
    await until(first, finished)
    await first.disconnect()
    # A new tab (watching nothing) answers in that conversation.
    other = await connect(user)
    await start(other, directive(tokens=3), conversation=ack["conversation"]["id"])
    state, _ = await until(other, lambda f: f["type"] == "conversation")
    assert [m["content"] for m in state["messages"][:2]] == [directive(tokens=2),
                                                             expected_tokens(2)]
    answer = state["messages"][-1]
    if answer["status"] == "complete":
        # The turn can end before the new socket's read: the state then holds all of it.
        assert answer["content"] == expected_tokens(3)
    else:
        done, frames = await until(other, finished)
        assert answer["content"] + text_of(frames) == expected_tokens(3)
    await other.disconnect()



async def test_an_agent_outside_the_users_groups_cannot_start_or_continue_a_turn(fake_llm):
    from django.contrib.auth.models import Group

    from agents.models import Agent

    finance = await Group.objects.acreate(name="finance")
    books = await Agent.objects.acreate(name="Books", slug="books", model="fake-model")
    user = await new_user()
    comm = await connect(user)
    # Begun while the agent was open to everyone...
    await send(comm, {"type": "send", "conversation": None, "text": directive(tokens=1),
                      "agent": books.pk})
    ack, _ = await until(comm, lambda f: f["type"] == "ack")
    await until(comm, finished)
    conversation = ack["conversation"]["id"]
    stored = await Message.objects.filter(conversation__owner=user).acount()
    requests = fake_llm.stats().requests
    # ...then limited to a group the user is not in: no new conversation with it...
    await books.allowed_groups.aadd(finance)
    await send(comm, {"type": "send", "conversation": None, "text": "hi", "agent": books.pk,
                      "ref": "r1"})
    error, _ = await until(comm, lambda f: f["type"] == "error")
    assert (error["code"], error["ref"]) == ("agent_unavailable", "r1")
    assert error["message"] == "That agent does not exist or is not available to you."
    # ...and no next turn in the old one.
    await send(comm, {"type": "send", "conversation": conversation, "text": "again"})
    error, _ = await until(comm, lambda f: f["type"] == "error")
    assert error["code"] == "agent_unavailable" and "start a new conversation" in error["message"]
    assert await Message.objects.filter(conversation__owner=user).acount() == stored
    assert fake_llm.stats().requests == requests
    await comm.disconnect()


async def test_a_2000_message_conversation_opens_at_once_and_pages_back_to_its_first_message(
        fake_llm, settings):
    user = await new_user()
    conversation = await sync_to_async(make_conversation)(owner=user, title="Long")
    made = await sync_to_async(make_branch)(conversation=conversation, messages=2000,
                                            text="message {n} " + "lorem ipsum " * 30)
    comm = await connect(user)
    await send(comm, {"type": "watch", "conversation": str(conversation.pk)})
    raw = await comm.receive_from(timeout=10)
    # One frame, not parts: the newest page, well inside the bound.
    assert len(raw.encode()) <= settings.WS_MAX_SEND_BYTES // 2 + 2048
    state = json.loads(raw)
    assert state["type"] == "conversation" and state["older"] is True
    assert state["messages"][-1]["id"] == made[-1].pk
    seen, older, pages = [m["id"] for m in state["messages"]], state["older"], 1
    while older:
        await send(comm, {"type": "older", "conversation": str(conversation.pk),
                          "before": seen[0]})
        raw = await comm.receive_from(timeout=10)
        assert len(raw.encode()) <= settings.WS_MAX_SEND_BYTES
        page = json.loads(raw)
        assert (page["type"], page["before"]) == ("older_messages", seen[0])
        assert set(page["siblings"]) == {str(m["id"]) for m in page["messages"]}
        seen = [m["id"] for m in page["messages"]] + seen
        older, pages = page["older"], pages + 1
    assert seen == [m.pk for m in made]
    assert pages == 2000 // 40
    await comm.disconnect()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"type": "older"}, "bad_frame"),
        ({"type": "older", "conversation": "C"}, "bad_frame"),
        ({"type": "older", "conversation": "C", "before": "12"}, "bad_frame"),
        ({"type": "older", "conversation": "C", "before": True}, "bad_frame"),
        ({"type": "older", "conversation": "C", "before": -3}, "bad_frame"),
        ({"type": "older", "conversation": "C", "before": 2**70}, "bad_frame"),
        ({"type": "older", "conversation": "C", "before": 1.5}, "bad_frame"),
        ({"type": "older", "conversation": "C", "before": "OTHER"}, "not_found"),
        ({"type": "older", "conversation": "C", "before": 2**40}, "not_found"),
        ({"type": "older", "conversation": "00000000-0000-0000-0000-000000000000",
          "before": "FIRST"}, "not_found"),
    ],
)
async def test_bad_older_frames_get_clear_errors(frame, code, fake_llm):
    user = await new_user()
    conversation = await sync_to_async(make_conversation)(owner=user)
    [first, _] = await sync_to_async(make_branch)(conversation=conversation, messages=2)
    [other] = await sync_to_async(make_branch)(
        conversation=await sync_to_async(make_conversation)(owner=user), messages=1)
    names = {"C": str(conversation.pk), "OTHER": other.pk, "FIRST": first.pk}
    frame = {k: names.get(v, v) if isinstance(v, str) else v for k, v in frame.items()}
    comm = await connect(user)
    await send(comm, {**frame, "ref": "r-1"})
    answer = await receive(comm)
    assert (answer["type"], answer["code"], answer["ref"]) == ("error", code, "r-1")
    assert answer["message"]
    # The first message has nothing before it: an empty page, and no more.
    await send(comm, {"type": "older", "conversation": str(conversation.pk), "before": first.pk})
    page = await receive(comm)
    assert (page["type"], page["messages"], page["older"]) == ("older_messages", [], False)
    await comm.disconnect()
