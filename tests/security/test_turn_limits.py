"""One person cannot take everyone's capacity: at most USER_MAX_CONCURRENT_TURNS answers of
one user are written at once; more sends get a clear error and their text back, and nothing of
them is stored or sent upstream."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from conversations import broker
from conversations.models import Message
from tests.conversations.ws import connect, finished, receive, send, until
from tests.factories import make_user

pytestmark = pytest.mark.django_db(transaction=True)

SLOW = 'fake: {"tokens": 200, "gap_ms": 20}'


async def test_a_burst_of_sends_starts_three_turns_and_refuses_the_rest(fake_llm, settings):
    settings.USER_MAX_CONCURRENT_TURNS = 3
    settings.GENERATE_TITLES = False
    user = await sync_to_async(make_user)()
    comm = await connect(user)
    for i in range(6):
        await send(comm, {"type": "send", "conversation": None, "text": SLOW,
                          "client_key": f"k{i}", "ref": f"k{i}"})
    answers = {}
    while len(answers) < 6:
        frame = await receive(comm)
        if frame["type"] == "ack":
            answers[frame["client_key"]] = frame
        elif frame["type"] == "error":
            answers[frame["ref"]] = frame
    acks = [k for k, f in answers.items() if f["type"] == "ack"]
    refused = [f for f in answers.values() if f["type"] == "error"]
    assert len(acks) == 3
    assert {f["code"] for f in refused} == {"too_many_turns"}
    assert "3 answers being written" in refused[0]["message"]
    assert await Message.objects.filter(role="user").acount() == 3
    assert len(fake_llm.requests()) <= 3

    # Another user is not affected.
    other = await connect(await sync_to_async(make_user)())
    await send(other, {"type": "send", "conversation": None, "text": 'fake: {"tokens": 1}'})
    ack, _ = await until(other, lambda f: f["type"] in ("ack", "error"))
    assert ack["type"] == "ack"

    # Once one answer ends, the next send is taken.
    await broker.request_stop(conversation_id=answers[acks[0]]["conversation"]["id"])
    await until(comm, finished)
    await send(comm, {"type": "send", "conversation": None, "text": 'fake: {"tokens": 1}',
                      "client_key": "k-after", "ref": "k-after"})
    ack, _ = await until(comm, lambda f: f["type"] in ("ack", "error"))
    assert ack["type"] == "ack", ack
    for conversation_id in {f["conversation"]["id"] for f in answers.values() if "conversation" in f}:
        await broker.request_stop(conversation_id=conversation_id)
    await broker.wait_for_turns(timeout=5)
    await comm.disconnect()
    await other.disconnect()


async def test_answers_a_dead_process_left_hold_no_capacity(fake_llm, settings):
    from datetime import timedelta

    from django.utils import timezone

    from tests.factories import make_conversation, make_message

    settings.USER_MAX_CONCURRENT_TURNS = 1
    settings.GENERATE_TITLES = False
    user = await sync_to_async(make_user)()

    def leave_a_dead_answer():
        conversation = make_conversation(owner=user)
        question = make_message(conversation=conversation, content="Q")
        answer = make_message(conversation=conversation, parent=question, role="assistant",
                              status="streaming")
        old = timezone.now() - timedelta(seconds=settings.TURN_STALE_AFTER + 5)
        Message.objects.filter(pk=answer.pk).update(updated_at=old)

    comm = await connect(user)  # the process's start-up sweep has run: it does not see this one
    await sync_to_async(leave_a_dead_answer)()
    await send(comm, {"type": "send", "conversation": None, "text": 'fake: {"tokens": 1}'})
    ack, _ = await until(comm, lambda f: f["type"] in ("ack", "error"))
    assert ack["type"] == "ack", ack
    await until(comm, finished)
    await comm.disconnect()
