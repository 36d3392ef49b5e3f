"""A browser's view of a real Daphne process (tests.conversations.processes.serve): one socket
with the session cookie and the page's own Origin, frames joined from their parts as the page
joins them, and the size of every WebSocket message kept."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import websockets


class Socket:
    def __init__(self, ws) -> None:
        self.ws = ws
        self.sizes: list[int] = []  # bytes of every message received
        self._joining: list[str] = []
        self._held: list[dict] = []

    @classmethod
    async def open(cls, port: int, session: str, **kw) -> Socket:
        # websockets' own limit on a received message is 1 MiB, as Daphne's on one it reads.
        ws = await websockets.connect(
            f"ws://127.0.0.1:{port}/ws/chat/", origin=f"http://127.0.0.1:{port}",
            additional_headers={"Cookie": f"sessionid={session}"}, **kw)
        socket = cls(ws)
        assert (await socket.receive())["type"] == "hello"
        return socket

    async def send(self, frame: dict) -> None:
        # As a browser sends it: UTF-8, not \u escapes.
        await self.ws.send(json.dumps(frame, ensure_ascii=False))

    async def receive(self) -> dict:
        """The next frame, joined from its parts if it came in parts."""
        if self._held:
            return self._held.pop(0)
        while True:
            raw = await self.ws.recv()
            self.sizes.append(len(raw.encode()))
            frame = json.loads(raw)
            if frame["type"] != "part":
                if self._joining:  # the page holds it until the frame being joined is whole
                    self._held.append(frame)
                    continue
                return frame
            self._joining.append(frame["data"])
            if frame["last"]:
                whole, self._joining = "".join(self._joining), []
                return json.loads(whole)

    async def until(self, predicate: Callable[[dict], bool], timeout: float = 30) -> dict:
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.receive()
                if predicate(frame):
                    return frame

    async def close(self) -> None:
        await self.ws.close()


def finished(frame: dict) -> bool:
    return frame["type"] == "turn" and frame["event"]["kind"] == "finished"
