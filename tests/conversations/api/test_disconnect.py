"""A client that goes away mid-answer, against a real Daphne process: the turn is cancelled
upstream (the model server sees its stream closed) and the partial answer is stored as
stopped."""

from __future__ import annotations

import json
import sqlite3
import time

import httpx
import pytest


def _answer(db) -> tuple[str, str]:
    """The newest answer (the server is shared by this module's tests)."""
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT status, content FROM conversations_message "
                            "WHERE role = 'assistant' ORDER BY id DESC LIMIT 1").fetchone()


def _wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


@pytest.mark.parametrize("stream", [True, False])
def test_a_client_that_disconnects_stops_the_turn_upstream_and_keeps_the_text(
        fake_llm_server, shared_daphne_api, stream):
    fake_llm_server.reset(config=True)
    api = shared_daphne_api
    body = {"model": "default", "stream": stream, "messages": [{"role": "user", "content":
            'fake: {"tokens": 400, "gap_ms": 20}'}]}
    headers = {"Authorization": f"Bearer {api.key}"}
    if stream:
        with httpx.stream("POST", api.url, json=body, headers=headers, timeout=30) as response:
            assert response.status_code == 200
            seen = []
            for line in response.iter_lines():
                if line.startswith("data: {"):
                    seen.append(json.loads(line[6:]))
                if len(seen) >= 5:
                    break
        assert "tok" in "".join(c["choices"][0]["delta"].get("content", "") for c in seen)
    else:
        # A client that gives up waiting for the whole answer (its read timeout).
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(api.url, json=body, headers=headers, timeout=httpx.Timeout(30, read=1.5))
        assert fake_llm_server.stats().tokens_sent >= 10
    stats = _wait_for(lambda: (s := fake_llm_server.stats()).streams_abandoned and s)
    assert stats.streams_completed == 0
    status, content = _wait_for(lambda: (a := _answer(api.db)) and a[0] == "stopped" and a)
    assert content.startswith("tok0 tok1")
    assert len(content.split()) < 400


# Reaches neither the tests' database nor the channel layer (tests/conftest.py).
pytestmark = pytest.mark.backend_free
