"""A conversation longer than its model's window is answered, with the history fitted by
agents.context_window's rule; a message too long for the model alone is refused at the send,
before anything is stored or sent."""

from __future__ import annotations


import pytest
from asgiref.sync import sync_to_async

from agents.models import LanguageModel
from conversations import broker, sending
from conversations.actions import InvalidInput
from conversations.models import Message
from conversations.sinks import TurnEvents
from tests.conversations.turns import read_all
from tests.factories import make_conversation, make_message, make_user

pytestmark = pytest.mark.django_db(transaction=True)


def long_conversation(user, exchanges: int):
    conversation = make_conversation(owner=user, title="Long")
    parent = None
    for n in range(exchanges):
        question = make_message(conversation=conversation, content=f"question {n} " + "q" * 300,
                                parent=parent)
        parent = make_message(conversation=conversation, role="assistant", parent=question,
                              content=f"answer {n} " + "a" * 300, status="complete")
    return conversation


async def test_a_conversation_longer_than_the_window_is_answered_with_its_oldest_turns_left_out(
        fake_llm):
    await LanguageModel.objects.acreate(server=None, name="fake-model", context_window=3000,
                                        max_output_tokens=200)
    user = await sync_to_async(make_user)()
    # 60 exchanges of about 210 tokens: four times the window.
    conversation = await sync_to_async(long_conversation)(user, 60)
    prepared = await sync_to_async(sending.do_send)(
        user_id=user.pk, request=sending.check_send(conversation=str(conversation.pk),
                                                    text='fake: {"tokens": 3}'))
    events = TurnEvents()
    await broker.start_turn(plan=prepared.plan, sinks=[events])
    await read_all(events)
    answer = await Message.objects.aget(pk=prepared.assistant_message.id)
    assert answer.status == "complete"
    sent = fake_llm.requests()[-1]["body"]
    messages = sent["messages"]
    assert messages[0]["role"] == "system"
    assert "were left out to fit the model's context window" in messages[0]["content"]
    # The newest exchanges are there, whole and in order; the oldest are not.
    assert messages[-1]["content"] == 'fake: {"tokens": 3}'
    assert messages[-3]["content"] == "question 59 " + "q" * 300
    assert messages[1]["role"] == "user"
    assert not any(m["content"].startswith("question 0 ") for m in messages)
    assert sent["max_tokens"] == 200
    # What the server counted fits the window with room for the answer.
    assert answer.input_tokens + 200 <= 3000


async def test_a_message_too_long_for_the_model_is_refused_before_it_is_stored(fake_llm):
    await LanguageModel.objects.acreate(server=None, name="fake-model", context_window=2000)
    user = await sync_to_async(make_user)()
    with pytest.raises(InvalidInput, match="This message is too long for the model: about"):
        await sync_to_async(sending.do_send)(
            user_id=user.pk, request=sending.check_send(conversation=None, text="x" * 20_000))
    assert await Message.objects.acount() == 0
    assert fake_llm.stats().requests == 0
