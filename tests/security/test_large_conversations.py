"""No conversation becomes unopenable: every frame the server sends fits in a WebSocket message
whatever the conversation holds (large states and messages go in parts), against a real Daphne
process and a client that, like Daphne, refuses messages over 1 MiB."""

from __future__ import annotations

import pytest

from tests.conversations.processes import serve
from tests.security.live import Socket, finished

SEND_LIMIT = 256 * 1024  # WS_MAX_SEND_BYTES's default


@pytest.fixture
def server(fake_llm_server, tmp_path):
    with serve(fake_base_url=fake_llm_server.base_url, tmp_path=tmp_path) as running:
        yield running


async def send_and_finish(socket: Socket, text: str, conversation: str | None) -> dict:
    await socket.send({"type": "send", "conversation": conversation, "text": text})
    ack = await socket.until(lambda f: f["type"] in ("ack", "error"))
    assert ack["type"] == "ack", ack
    done = await socket.until(finished)
    assert done["event"]["message"]["status"] == "complete"
    return ack


async def test_a_conversation_of_eleven_99_kb_messages_still_opens(server):
    port, session, _, _ = server
    text = "A" * 99_000 + '\nfake: {"tokens": 1}'
    socket = await Socket.open(port, session)
    conversation = None
    for _ in range(11):
        conversation = (await send_and_finish(socket, text, conversation))["conversation"]["id"]
    await socket.close()

    watcher = await Socket.open(port, session)
    await watcher.send({"type": "watch", "conversation": conversation})
    state = await watcher.until(lambda f: f["type"] in ("conversation", "error"))
    assert state["type"] == "conversation", state
    # The newest page first (bounded by bytes: here one exchange), the rest page by page.
    messages = state["messages"]
    older = state["older"]
    while older:
        await watcher.send({"type": "older", "conversation": conversation,
                            "before": messages[0]["id"]})
        page = await watcher.until(lambda f: f["type"] in ("older_messages", "error"))
        assert page["type"] == "older_messages", page
        messages = page["messages"] + messages
        older = page["older"]
    assert [m["content"] for m in messages if m["role"] == "user"] == [text] * 11
    assert len(messages) == 22
    assert max(watcher.sizes) <= SEND_LIMIT
    await watcher.send({"type": "ping"})
    await watcher.until(lambda f: f["type"] == "pong")
    await watcher.close()


async def test_a_message_of_90000_emoji_is_answered_and_its_conversation_opens(server):
    port, session, _, _ = server
    text = "\U0001F600" * 90_000 + '\nfake: {"tokens": 2}'
    socket = await Socket.open(port, session)
    ack = await send_and_finish(socket, text, None)
    assert ack["user_message"]["content"] == text
    assert max(socket.sizes) <= SEND_LIMIT
    await socket.close()

    watcher = await Socket.open(port, session)
    await watcher.send({"type": "watch", "conversation": ack["conversation"]["id"]})
    state = await watcher.until(lambda f: f["type"] in ("conversation", "error"))
    assert [m["content"] for m in state["messages"]][0] == text
    assert [m["status"] for m in state["messages"]] == ["complete", "complete"]
    assert max(watcher.sizes) <= SEND_LIMIT
    await watcher.close()


# Reaches neither the tests' database nor the channel layer (tests/conftest.py).
pytestmark = pytest.mark.backend_free
