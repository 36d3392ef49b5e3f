"""Account changes reach open sockets at once: deactivation closes every socket of the user and
stops her running turn with its text kept; a logout or a password change closes the sockets of
the sessions it ended, and no other."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import AsyncClient

from chatsite.asgi import application
from conversations import broker
from conversations.models import Message
from tests.factories import make_user

pytestmark = pytest.mark.django_db(transaction=True)


async def open_socket(session_key: str) -> WebsocketCommunicator:
    """The chat socket of the browser holding this session, greeted."""
    comm = WebsocketCommunicator(application, "/ws/chat/", headers=[
        (b"cookie", f"sessionid={session_key}".encode()),
        (b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")])
    connected, _ = await comm.connect()
    assert connected
    assert json.loads(await comm.receive_from())["type"] == "hello"
    return comm


async def start_long_answer(comm: WebsocketCommunicator) -> None:
    """Send a message whose answer takes seconds, and return once it is streaming."""
    await comm.send_to(text_data=json.dumps({
        "type": "send", "conversation": None, "text": 'fake: {"tokens": 300, "gap_ms": 20}'}))
    seen = 0
    while seen < 20:
        frame = json.loads(await comm.receive_from(timeout=5))
        seen += frame["type"] == "turn" and frame["event"]["kind"] == "text"


async def open_tab(user) -> tuple[WebsocketCommunicator, AsyncClient]:
    """A signed-in browser (its own session) with the chat socket open."""
    client = AsyncClient()
    await client.aforce_login(user)
    return await open_socket(client.cookies["sessionid"].value), client


async def closed_for_ended_session(comm, timeout: float = 5) -> None:
    """The socket is told its session ended, then closed, without having sent anything."""
    async with asyncio.timeout(timeout):
        while True:
            out = await comm.receive_output(timeout=timeout)
            if out["type"] == "websocket.close":
                assert out["code"] == 4401
                return
            frame = json.loads(out["text"])
            if frame["type"] == "error":
                assert frame["code"] == "unauthorized"


async def still_open(comm) -> None:
    await comm.send_to(text_data='{"type":"ping"}')
    while True:
        frame = json.loads(await comm.receive_from(timeout=5))
        if frame["type"] == "pong":
            return


async def test_deactivation_closes_every_socket_and_stops_the_running_turn(fake_llm, settings):
    settings.GENERATE_TITLES = False
    alice, bob = await sync_to_async(make_user)(), await sync_to_async(make_user)()
    tab1, _ = await open_tab(alice)
    tab2, _ = await open_tab(alice)
    bobs, _ = await open_tab(bob)
    await start_long_answer(tab1)

    alice.is_active = False
    await sync_to_async(alice.save)()  # as the admin's change form does

    await closed_for_ended_session(tab1)
    await closed_for_ended_session(tab2)
    await still_open(bobs)
    await broker.wait_for_turns(timeout=5)
    answer = await Message.objects.aget(role="assistant")
    assert answer.status == Message.Status.STOPPED
    assert answer.content.startswith("tok0 tok1 ")
    assert answer.output_tokens < 300 or len(answer.content) < len("tok0 " * 300)
    await bobs.disconnect()


async def test_logging_out_in_one_tab_closes_that_session_s_socket_only(fake_llm):
    alice = await sync_to_async(make_user)()
    tab1, client1 = await open_tab(alice)
    tab2, _ = await open_tab(alice)
    response = await client1.post("/logout/")
    assert response.status_code == 302
    await closed_for_ended_session(tab1)
    await still_open(tab2)
    await tab2.disconnect()


async def test_a_password_change_closes_the_sockets_of_the_sessions_it_ended(fake_llm):
    alice, bob = await sync_to_async(make_user)(), await sync_to_async(make_user)()
    tab1, _ = await open_tab(alice)
    tab2, _ = await open_tab(alice)
    bobs, _ = await open_tab(bob)

    def change_password():
        alice.set_password("a new, long passphrase")
        alice.save()

    await sync_to_async(change_password)()
    await closed_for_ended_session(tab1)
    await closed_for_ended_session(tab2)
    await still_open(bobs)
    await bobs.disconnect()
