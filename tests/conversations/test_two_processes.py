"""Two Daphne processes sharing PostgreSQL and Redis: a socket on process B watches, and stops,
a turn that runs on process A."""

import asyncio
import json
import os

import pytest
import websockets
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.test import AsyncClient

from conversations.models import Message
from tests.conversations.processes import free_port, start_daphne, wait_listening
from tests.factories import make_user


pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not (os.environ.get("DATABASE_URL", "").startswith("postgres")
             and os.environ.get("REDIS_URL")),
        reason="needs DATABASE_URL (PostgreSQL) and REDIS_URL: processes share them",
    ),
]


@pytest.fixture
def two_processes(fake_llm, tmp_path):
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "SECRET_KEY": settings.SECRET_KEY,
        "LLM_BASE_URL": fake_llm.base_url,
        "LLM_MODEL": "fake-model",
        "LOG_LEVEL": "info",  # gaps are logged at info,
    }
    ports = [free_port(), free_port()]
    logs = [tmp_path / f"daphne-{port}.log" for port in ports]
    procs = [start_daphne(port, env, log) for port, log in zip(ports, logs, strict=True)]
    try:
        for port, proc in zip(ports, procs, strict=True):
            wait_listening(port, proc)
        yield ports
    finally:
        for proc in procs:
            proc.kill()  # graceful shutdown is not what this test is about
        for proc in procs:
            proc.wait(timeout=10)
        for log in logs:  # shown by pytest when the test failed
            print(log.name, log.read_text(errors="replace")[-5000:])


async def open_socket(port: int, session: str):
    ws = await websockets.connect(
        f"ws://127.0.0.1:{port}/ws/chat/",
        additional_headers={"Cookie": f"sessionid={session}"},
        origin=f"http://127.0.0.1:{port}",
    )
    assert json.loads(await ws.recv())["type"] == "hello"
    return ws


async def frames_until(ws, predicate, timeout=15.0):
    seen = []
    try:
        async with asyncio.timeout(timeout):
            while True:
                frame = json.loads(await ws.recv())
                if predicate(frame):
                    return frame, seen
                seen.append(frame)
    except TimeoutError:
        print("frames before the timeout:",
              [(f["type"], f.get("seq"), f.get("event", {}).get("kind")) for f in seen][-20:])
        raise


def is_finished(frame):
    return frame["type"] == "turn" and frame["event"]["kind"] == "finished"


async def test_a_socket_on_b_watches_and_stops_a_turn_running_on_a(two_processes, fake_llm):
    port_a, port_b = two_processes
    user = await sync_to_async(make_user)()
    client = AsyncClient()
    await client.aforce_login(user)
    session = client.cookies["sessionid"].value
    on_a, on_b = await open_socket(port_a, session), await open_socket(port_b, session)
    text = 'fake: {"tokens": 300, "gap_ms": 20}'
    await on_a.send(json.dumps({"type": "send", "conversation": None, "text": text}))
    ack, _ = await frames_until(on_a, lambda f: f["type"] == "ack")
    conversation = ack["conversation"]["id"]
    await frames_until(on_a, lambda f: f["type"] == "turn" and f["event"]["kind"] == "text")
    await asyncio.sleep(0.3)

    await on_b.send(json.dumps({"type": "watch", "conversation": conversation}))
    state, _ = await frames_until(on_b, lambda f: f["type"] == "conversation")
    so_far = state["messages"][-1]["content"]
    assert so_far.startswith("tok0 tok1 ")
    tok30, live = await frames_until(on_b, lambda f: f["type"] == "turn"
                                     and f["event"]["kind"] == "text" and "tok30 " in f["event"]["text"])
    live.append(tok30)
    await on_b.send(json.dumps({"type": "stop", "conversation": conversation}))
    done_b, more_b = await frames_until(on_b, is_finished)
    done_a, frames_a = await frames_until(on_a, is_finished)
    assert done_a["event"]["message"]["status"] == done_b["event"]["message"]["status"] == "stopped"

    # Process A closed the upstream stream, and B saw the same answer, gap-free.
    await fake_llm.await_for(lambda s: s.streams_abandoned == 1, timeout=1.0)
    stored = await Message.objects.aget(pk=ack["assistant_message"]["id"])
    assert stored.status == "stopped"
    b_text = so_far + "".join(f["event"]["text"] for f in live + more_b
                              if f["type"] == "turn" and f["event"]["kind"] == "text")
    assert b_text == stored.content
    assert stored.content != "".join(f"tok{i} " for i in range(300))
    await on_a.close()
    await on_b.close()
