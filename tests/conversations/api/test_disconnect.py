"""A client that goes away mid-answer, against a real Daphne process: the turn is cancelled
upstream (the model server sees its stream closed) and the partial answer is stored as
stopped."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time

import httpx
import pytest

from tests.conversations.processes import ROOT, serve, server_env


def _key(tmp_path, fake_base_url) -> str:
    env = server_env(fake_base_url=fake_base_url, tmp_path=tmp_path)
    done = subprocess.run([sys.executable, "manage.py", "create_api_key", "bench0"], cwd=ROOT,
                          env=env, check=True, capture_output=True, text=True, timeout=60)
    return done.stdout.strip()


def _answer(db) -> tuple[str, str]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT status, content FROM conversations_message "
                            "WHERE role = 'assistant'").fetchone()


def _wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


@pytest.mark.parametrize("stream", [True, False])
def test_a_client_that_disconnects_stops_the_turn_upstream_and_keeps_the_text(
        fake_llm_server, tmp_path, stream):
    fake_llm_server.reset(config=True)
    with serve(fake_base_url=fake_llm_server.base_url, tmp_path=tmp_path) as (port, _, _, db):
        key = _key(tmp_path, fake_llm_server.base_url)
        body = {"model": "default", "stream": stream, "messages": [{"role": "user", "content":
                'fake: {"tokens": 400, "gap_ms": 20}'}]}
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        headers = {"Authorization": f"Bearer {key}"}
        if stream:
            with httpx.stream("POST", url, json=body, headers=headers, timeout=30) as response:
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
                httpx.post(url, json=body, headers=headers, timeout=httpx.Timeout(30, read=1.5))
            assert fake_llm_server.stats().tokens_sent >= 10
        stats = _wait_for(lambda: (s := fake_llm_server.stats()).streams_abandoned and s)
        assert stats.streams_completed == 0
        status, content = _wait_for(lambda: (a := _answer(db)) and a[0] == "stopped" and a)
        assert content.startswith("tok0 tok1")
        assert len(content.split()) < 400
