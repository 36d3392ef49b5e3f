"""Server frames: any frame's JSON, however large and whatever its characters, goes as parts
that each fit the limit and join back into exactly that frame."""

from __future__ import annotations

import json

import pytest

from conversations import frames


@pytest.mark.parametrize("text", [
    "plain ascii " * 5000,
    '"quotes" and \\backslashes\\ ' * 3000,
    "\U0001F600 emoji and é and 中文 " * 4000,
    "control \n\t\x01 characters " * 4000,
])
def test_parts_fit_the_limit_and_join_back_into_the_frame(text):
    whole = frames.dumps({"type": "conversation", "messages": [{"content": text}]})
    limit = 16_384
    parts = frames.parts(whole, limit=limit, part_id=3)
    assert len(parts) > 1
    decoded = [json.loads(p) for p in parts]
    assert all(len(p.encode()) <= limit for p in parts)
    assert [d["id"] for d in decoded] == [3] * len(parts)
    assert [d["last"] for d in decoded] == [False] * (len(parts) - 1) + [True]
    assert json.loads("".join(d["data"] for d in decoded)) == json.loads(whole)


def test_frames_are_utf8_not_ascii_escapes():
    assert frames.dumps({"t": "\U0001F600é"}) == '{"t":"\U0001F600é"}'


def test_lone_surrogates_become_replacement_characters():
    assert frames.well_formed("a\ud800b") == "a\ufffdb"
    assert frames.well_formed("\ud83d\ude00") == "\U0001F600"


# Reaches neither the tests' database nor the channel layer (tests/conftest.py).
pytestmark = pytest.mark.backend_free
