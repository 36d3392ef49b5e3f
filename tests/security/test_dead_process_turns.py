"""A dead process's turns end honestly without anyone asking: each process sweeps for turns no
process is writing any more, marks them interrupted with their text and tells the sockets
watching them; Stop on a turn no live process owns ends it at once."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from asgiref.sync import sync_to_async

from conversations.models import Message
from tests.conversations.processes import (
    free_port,
    serve,
    server_env,
    start_daphne,
    wait_listening,
)
from tests.conversations.ws import connect, receive, send, until
from tests.factories import make_conversation, make_message, make_user
from tests.security.live import Socket

# A turn writes at least every 0.5 s; one silent for 2 s is dead; each process looks every 0.3 s.
FAST = {"TURN_FLUSH_INTERVAL": "0.2", "TURN_FLUSH_MAX_INTERVAL": "0.5",
        "TURN_STALE_AFTER": "2", "TURN_SWEEP_INTERVAL": "0.3"}


@pytest.mark.backend_free  # its two processes share their own SQLite file
async def test_after_sigkill_another_process_ends_the_turn_and_tells_the_open_page(
        fake_llm_server, tmp_path):
    with serve(fake_base_url=fake_llm_server.base_url, tmp_path=tmp_path, **FAST) as running:
        port, session, proc, db = running
        # A second process on the same database, as after a restart or beside it.
        env = server_env(fake_base_url=fake_llm_server.base_url, tmp_path=tmp_path, **FAST)
        port2 = free_port()
        second = start_daphne(port2, env, tmp_path / "second.log")
        try:
            wait_listening(port2, second)
            socket = await Socket.open(port, session)
            await socket.send({"type": "send", "conversation": None,
                               "text": 'fake: {"tokens": 1000, "gap_ms": 20}'})
            conversation = (await socket.until(lambda f: f["type"] == "ack"))["conversation"]["id"]
            # Past the first writes, so the database holds part of the answer.
            await socket.until(lambda f: f["type"] == "turn" and f["seq"] >= 60)
            page = await Socket.open(port2, session)
            await page.send({"type": "watch", "conversation": conversation})
            first = await page.until(lambda f: f["type"] == "conversation")
            assert first["messages"][-1]["status"] == "streaming"  # the first process runs it

            proc.kill()
            await asyncio.to_thread(proc.wait, 10)
            # Nothing sent: the second process's sweep finds the silent turn, ends it and tells
            # the page.
            refreshed = await page.until(lambda f: f["type"] == "conversation", timeout=10)
            answer = refreshed["messages"][-1]
            assert answer["status"] == "interrupted"
            assert answer["content"].startswith("tok0 tok1 ")
            with sqlite3.connect(db) as conn:
                (status, content), = conn.execute(
                    "SELECT status, content FROM conversations_message WHERE role='assistant'")
            assert (status, content) == ("interrupted", answer["content"])
            # And the conversation takes a new message.
            await page.send({"type": "send", "conversation": conversation,
                             "text": 'fake: {"tokens": 1}'})
            assert (await page.until(lambda f: f["type"] in ("ack", "error")))["type"] == "ack"
            await page.close()
        finally:
            second.kill()
            second.wait(timeout=10)
            print((tmp_path / "second.log").read_text(errors="replace")[-3000:])


pytestmark_db = pytest.mark.django_db(transaction=True)


async def orphaned_answer(**kw):
    """A conversation whose answer is marked streaming but that no process runs."""
    user = await sync_to_async(make_user)()
    conversation = await sync_to_async(make_conversation)(owner=user)
    question = await sync_to_async(make_message)(conversation=conversation, content="Q")
    answer = await sync_to_async(make_message)(
        conversation=conversation, parent=question, role=Message.Role.ASSISTANT,
        status=Message.Status.STREAMING, content="half an ans", **kw)
    return user, conversation, answer


@pytestmark_db
async def test_stop_on_a_turn_no_process_runs_ends_it_at_once(fake_llm):
    user, conversation, answer = await orphaned_answer()
    comm = await connect(user)
    await send(comm, {"type": "watch", "conversation": str(conversation.pk)})
    state, _ = await until(comm, lambda f: f["type"] == "conversation")
    assert state["messages"][-1]["status"] == "streaming"
    await send(comm, {"type": "stop", "conversation": str(conversation.pk)})
    state, _ = await until(comm, lambda f: f["type"] == "conversation", timeout=5)
    assert (state["messages"][-1]["status"], state["messages"][-1]["content"]) == (
        "interrupted", "half an ans")
    await answer.arefresh_from_db()
    assert answer.status == Message.Status.INTERRUPTED
    await comm.disconnect()


@pytestmark_db
async def test_the_periodic_sweep_tells_a_watching_socket(fake_llm, settings):
    settings.TURN_STALE_AFTER = 3.0  # longer than the socket waits for a live view (1.5 s)
    settings.TURN_SWEEP_INTERVAL = 0.2
    user, conversation, answer = await orphaned_answer()
    comm = await connect(user)
    await send(comm, {"type": "watch", "conversation": str(conversation.pk)})
    state, _ = await until(comm, lambda f: f["type"] == "conversation")
    assert state["messages"][-1]["status"] == "streaming"
    # Nothing sent: the sweep finds the silent turn and the socket is sent the new state.
    state = await receive(comm, timeout=5)
    assert state["type"] == "conversation"
    assert state["messages"][-1]["status"] == "interrupted"
    await comm.disconnect()


