"""The event-stream parser: whatever way the network cuts the bytes, the same events come out."""

from __future__ import annotations

import pytest

from agents.providers._sse import Event, SSEParser

STREAM = (
    "\ufeff: keep-alive comment\r\n\r\n"
    "event: message_start\r\ndata: {\"a\": 1}\r\n\r\n"
    "data: first line\ndata: second line\n\n"
    "data:no space\rdata:  two spaces\r\r"
    "id: 7\nretry: 100\n\n"  # no data: not an event
    "data: héllo → 世界\n\n"
    "data\n\n"
    "event: ping\ndata: {}\n\n\n\n"
    "data: [DONE]\n\n"
    "data: cut off before its blank line\n"
).encode()

EXPECTED = [
    Event("message_start", '{"a": 1}'),
    Event("message", "first line\nsecond line"),
    Event("message", "no space\n two spaces"),
    Event("message", "héllo → 世界"),
    Event("message", ""),
    Event("ping", "{}"),
    Event("message", "[DONE]"),
]


def parse(chunks: list[bytes]) -> list[Event]:
    parser = SSEParser()
    return [event for chunk in chunks for event in parser.feed(chunk)]


def test_a_stream_in_one_chunk():
    assert parse([STREAM]) == EXPECTED


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 64])
def test_a_stream_cut_anywhere_gives_the_same_events(size):
    # Cuts fall inside CRLF pairs, inside UTF-8 characters and inside the byte-order mark.
    chunks = [STREAM[i:i + size] for i in range(0, len(STREAM), size)]
    assert parse(chunks) == EXPECTED


def test_every_two_way_cut_gives_the_same_events():
    for cut in range(len(STREAM)):
        assert parse([STREAM[:cut], STREAM[cut:]]) == EXPECTED, cut


def test_invalid_utf8_is_replaced_not_fatal():
    assert parse([b"data: \xff\xfe ok\n\n"]) == [Event("message", "\ufffd\ufffd ok")]


# Reaches neither the tests' database nor the channel layer (tests/conftest.py).
pytestmark = pytest.mark.backend_free
