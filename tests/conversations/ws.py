"""Drive the chat socket the way a browser does: session cookie, Origin header, JSON frames."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from channels.testing import WebsocketCommunicator
from django.test import AsyncClient

from chatsite.asgi import application

HOST = b"127.0.0.1"
ORIGIN = b"http://127.0.0.1"


async def connect(user, *, origin: bytes = ORIGIN, host: bytes = HOST) -> WebsocketCommunicator:
    client = AsyncClient()
    await client.aforce_login(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    comm = WebsocketCommunicator(
        application, "/ws/chat/", headers=[(b"cookie", cookie), (b"origin", origin), (b"host", host)]
    )
    connected, _ = await comm.connect()
    assert connected
    hello = await receive(comm)
    assert hello["type"] == "hello"
    return comm


async def receive(comm: WebsocketCommunicator, timeout: float = 5.0) -> dict:
    return json.loads(await comm.receive_from(timeout=timeout))


async def send(comm: WebsocketCommunicator, frame: dict) -> None:
    await comm.send_to(text_data=json.dumps(frame))


async def until(comm: WebsocketCommunicator, predicate: Callable[[dict], bool],
                timeout: float = 10.0) -> tuple[dict, list[dict]]:
    """Receive frames until one matches; return it and every frame seen before it."""
    seen: list[dict] = []
    async with asyncio.timeout(timeout):
        while True:
            frame = await receive(comm, timeout=timeout)
            if predicate(frame):
                return frame, seen
            seen.append(frame)


def finished(frame: dict) -> bool:
    return frame["type"] == "turn" and frame["event"]["kind"] == "finished"


def text_of(frames: list[dict]) -> str:
    return "".join(f["event"]["text"] for f in frames
                   if f["type"] == "turn" and f["event"]["kind"] == "text")
