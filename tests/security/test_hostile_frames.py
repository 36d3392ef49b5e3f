"""Hostile frames get an error frame and the socket stays usable: sizes are counted in bytes,
deep nesting is refused, and ids are ids."""

from __future__ import annotations

import pytest

from conversations.models import Message
from tests.conversations.ws import connect, receive, send
from tests.factories import make_user

pytestmark = pytest.mark.django_db(transaction=True)


async def still_answers(comm) -> None:
    await send(comm, {"type": "ping"})
    assert (await receive(comm))["type"] == "pong"


async def user():
    from asgiref.sync import sync_to_async
    return await sync_to_async(make_user)()


async def test_the_frame_limit_counts_bytes_not_characters(fake_llm, settings):
    settings.WS_MAX_FRAME_BYTES = 600_000
    comm = await connect(await user())
    # 200,009 characters, 600,027 bytes of UTF-8.
    await comm.send_to(text_data='{"type":"ping","x":"' + "€" * 200_000 + '"}')
    error = await receive(comm)
    assert (error["type"], error["code"]) == ("error", "frame_too_large")
    assert "600000 bytes" in error["message"]
    await still_answers(comm)
    await comm.disconnect()


async def test_deeply_nested_json_is_answered_with_an_error(fake_llm):
    comm = await connect(await user())
    await comm.send_to(text_data='{"type":"ping","x":' + "[" * 100_000 + "]" * 100_000 + "}")
    error = await receive(comm)
    assert (error["type"], error["code"]) == ("error", "bad_frame")
    assert "nest" in error["message"]
    await still_answers(comm)
    await comm.disconnect()


@pytest.mark.parametrize("frame", [
    {"type": "send", "conversation": None, "text": "hi", "parent": True},
    {"type": "send", "conversation": None, "text": "hi", "agent": False},
    {"type": "regenerate", "conversation": "c", "message": True},
    {"type": "watch", "conversation": "c", "leaf": True},
])
async def test_booleans_are_not_ids(fake_llm, frame):
    comm = await connect(await user())
    await send(comm, {**frame, "ref": 7})
    error = await receive(comm)
    assert (error["type"], error["code"], error["ref"]) == ("error", "bad_frame", 7)
    assert await Message.objects.acount() == 0
    await still_answers(comm)
    await comm.disconnect()


@pytest.mark.parametrize("escape", [
    "\\ud800",  # a lone surrogate, as a JSON escape can make one: UTF-8 cannot carry it
    "\\u0000",  # a NUL: PostgreSQL cannot store it
])
async def test_text_that_cannot_be_carried_or_stored_is_refused(fake_llm, escape):
    comm = await connect(await user())
    await comm.send_to(text_data='{"type":"send","conversation":null,"text":"a%sb"}' % escape)
    error = await receive(comm)
    assert (error["type"], error["code"]) == ("error", "invalid")
    assert await Message.objects.acount() == 0
    await still_answers(comm)
    await comm.disconnect()
