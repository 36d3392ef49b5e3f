"""Stopping the server (SIGTERM, as systemd or a deploy does) in the middle of an answer: the
answer is stored with every token the user saw, marked interrupted. Daphne runs in a child
process on its own SQLite database, as a user runs it."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3

import pytest
import websockets

from tests.conversations.processes import serve

def expected_tokens(n: int) -> str:
    return "".join(f"tok{i} " for i in range(n))


@pytest.fixture
def server(fake_llm_server, tmp_path):
    with serve(fake_base_url=fake_llm_server.base_url, tmp_path=tmp_path) as running:
        yield running


async def test_sigterm_mid_answer_keeps_every_token_the_user_saw(server):
    port, session, proc, db = server
    ws = await websockets.connect(f"ws://127.0.0.1:{port}/ws/chat/",
                                  origin=f"http://127.0.0.1:{port}",
                                  additional_headers={"Cookie": f"sessionid={session}"})
    assert json.loads(await ws.recv())["type"] == "hello"
    prompt = 'fake: {"tokens": 400, "gap_ms": 10}'
    await ws.send(json.dumps({"type": "send", "text": prompt, "client_key": "k1"}))
    seen = ""
    # Past the first periodic write (1 s), so what came after it exists only in memory.
    async with asyncio.timeout(20):
        while len(seen) < len(expected_tokens(150)):
            frame = json.loads(await ws.recv())
            if frame["type"] == "turn" and frame["event"]["kind"] == "text":
                seen += frame["event"]["text"]

    proc.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(10):
            async for raw in ws:
                frame = json.loads(raw)
                if frame["type"] == "turn" and frame["event"]["kind"] == "text":
                    seen += frame["event"]["text"]
    except websockets.ConnectionClosed:
        pass
    assert await asyncio.to_thread(proc.wait, 15) == 0

    with sqlite3.connect(db) as conn:
        (user_text,), = conn.execute(
            "SELECT content FROM conversations_message WHERE role = 'user'").fetchall()
        (status, content, error), = conn.execute(
            "SELECT status, content, error FROM conversations_message WHERE role = 'assistant'"
        ).fetchall()
    assert user_text == prompt
    assert status == "interrupted"
    assert "server stopped" in error
    # Everything the socket was sent is stored, and the stored text is the model's own prefix.
    assert content.startswith(seen)
    assert expected_tokens(400).startswith(content)
    assert len(content) < len(expected_tokens(400))


# Reaches neither the tests' database nor the channel layer (tests/conftest.py).
pytestmark = pytest.mark.backend_free
