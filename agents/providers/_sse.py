"""Server-sent events from bytes, incrementally (the WHATWG event-stream format).

Ours rather than httpx-sse's because a streamed token passes through here: httpx-sse reads the
body as text, then as lines, then as events (three generators and two decoders per token), where
this splits each network chunk into whole events in one call. Only what a model stream needs is
kept: `event` and `data`. `id` and `retry` serve reconnection, and an answer is never resumed on a
new connection (it would be generated anew). Private to `agents.providers`.
"""

from __future__ import annotations

from dataclasses import dataclass

_BOM = b"\xef\xbb\xbf"


@dataclass(slots=True)
class Event:
    event: str
    data: str


class SSEParser:
    def __init__(self) -> None:
        self._tail = b""  # the start of an event not yet ended by a blank line
        self._at_start = True

    def feed(self, chunk: bytes) -> list[Event]:
        """The events that `chunk` completes, in order."""
        buf = self._tail + chunk if self._tail else chunk
        if self._at_start:
            if len(buf) < len(_BOM) and _BOM.startswith(buf):
                self._tail = buf  # maybe a byte-order mark split across chunks
                return []
            self._at_start = False
            if buf.startswith(_BOM):
                buf = buf[len(_BOM):]
        held = b""
        if b"\r" in buf:
            # Lines may end in CRLF, LF or CR. A CR at the end may be the first half of a CRLF
            # split across chunks: it waits for the next chunk.
            if buf.endswith(b"\r"):
                buf, held = buf[:-1], b"\r"
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        end = buf.rfind(b"\n\n")
        if end < 0:
            self._tail = buf + held
            return []
        self._tail = buf[end + 2:] + held
        events = []
        for block in buf[:end].split(b"\n\n"):
            event = _parse_block(block)
            if event is not None:
                events.append(event)
        return events


def _parse_block(block: bytes) -> Event | None:
    if block.startswith(b"data: ") and b"\n" not in block:
        # Nearly every event of a model stream: one data line.
        return Event(event="message", data=block[6:].decode("utf-8", "replace"))
    data: list[bytes] = []
    kind = b""
    for line in block.split(b"\n"):
        if not line or line[0] == 0x3A:  # blank, or a ":" comment (keep-alives)
            continue
        name, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            data.append(value)
        elif name == b"event":
            kind = value
    if not data:
        return None  # an event with no data is not dispatched
    return Event(event=kind.decode("utf-8", "replace") or "message",
                 data=b"\n".join(data).decode("utf-8", "replace"))
