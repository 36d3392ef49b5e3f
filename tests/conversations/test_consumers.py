import json

import pytest

from conversations.models import Message
from tests.conversations.ws import connect, finished, send, text_of, until
from tests.factories import make_user

pytestmark = pytest.mark.django_db(transaction=True)


def directive(**kw) -> str:
    return "fake: " + json.dumps(kw)


async def test_a_sent_message_streams_back_and_is_stored(fake_llm):
    user = await make_user_async()
    comm = await connect(user)
    await send(comm, {"type": "send", "conversation": None, "text": directive(tokens=5),
                      "client_key": "k-1"})
    ack, _ = await until(comm, lambda f: f["type"] == "ack")
    assert ack["client_key"] == "k-1" and ack["duplicate"] is False
    done, frames = await until(comm, finished)
    assert text_of(frames) == "tok0 tok1 tok2 tok3 tok4 "
    seqs = [f["seq"] for f in frames if f["type"] == "turn"] + [done["seq"]]
    assert seqs == list(range(1, len(seqs) + 1))
    reply = await Message.objects.aget(pk=ack["assistant_message"]["id"])
    assert reply.status == "complete"
    assert reply.content == "tok0 tok1 tok2 tok3 tok4 "
    assert reply.model == "fake-model"
    await comm.disconnect()


async def make_user_async():
    from asgiref.sync import sync_to_async
    return await sync_to_async(make_user)()
