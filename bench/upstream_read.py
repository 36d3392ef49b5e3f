"""CPU on the upstream side alone: our provider path, on each HTTP transport, beside a bare asyncio
protocol reading the same stream, against the fake model server, in one process and one run.

    .venv/bin/python bench/upstream_read.py            # every transport, then the bare protocol
    .venv/bin/python bench/upstream_read.py --transport stock

Readers: the provider path on each transport, the HTTP client alone on each (the body's bytes,
no SSE or adapter), and the bare protocol. Two figures for each:

- per token: streams of 200 tokens 4 ms apart. Tokens a few milliseconds apart arrive one TCP
  read each, as from a real model server, so the figure is what one token costs from the socket
  to a TextDelta (asyncio, the HTTP client, SSE, the OpenAI adapter, the resilience layer);
- per request: short streams of one token, one after another on a kept-alive connection, so the
  figure is what starting and ending a request costs (building it, the pool, the response head,
  the clock, the adapter's set-up).

The bare protocol does only epoll, recv and data_received (and, per request, one write): the
floor any Python reader pays here. CPU is the process's (user + kernel). Only 127.0.0.1 is
contacted; the fake is a child process, killed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import typing
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")

from agents.events import ChatMessage, ChatRequest  # noqa: E402
from agents.loop import Target, complete_text  # noqa: E402
from agents.providers import close_all, get_provider  # noqa: E402
from agents.providers._http import make_client  # noqa: E402
from agents.providers.base import HttpTransport, ProviderConfig  # noqa: E402

TRANSPORTS: tuple[str, ...] = typing.get_args(HttpTransport)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def directive(*, tokens: int, gap_ms: float) -> str:
    return "fake: " + json.dumps({"tokens": tokens, "ttft_ms": 0, "gap_ms": gap_ms})


async def ours(*, port: int, text: str, streams: int, transport: str) -> float:
    """CPU seconds per stream through the provider path (the pool warmed first)."""
    provider = get_provider(ProviderConfig(name="bench", kind="openai", transport=transport,
                                           base_url=f"http://127.0.0.1:{port}/v1"))
    request = ChatRequest(model="m", messages=(ChatMessage(role="user", content=text),))
    await complete_text(targets=[Target(provider, "m")], request=request)  # warm the pool
    started = time.process_time()
    for _ in range(streams):
        await complete_text(targets=[Target(provider, "m")], request=request)
    spent = time.process_time() - started
    await close_all()
    return spent / streams


async def client_alone(*, port: int, text: str, streams: int, transport: str) -> float:
    """CPU seconds per stream through the HTTP client only: the body's bytes, no SSE, no
    adapter (what the client itself costs, against the bare protocol)."""
    client = make_client(ProviderConfig(name="bench", kind="openai", transport=transport,
                                        base_url=f"http://127.0.0.1:{port}/v1"))
    body = json.dumps({"model": "m", "stream": True,
                       "messages": [{"role": "user", "content": text}]}).encode()
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    spent = 0.0
    try:
        for i in range(streams + 1):
            started = time.process_time()
            response = await client.send("POST", url, headers=headers, body=body)
            try:
                async for _ in response:
                    pass
            finally:
                await response.aclose()
            if i:  # the first one warms up
                spent += time.process_time() - started
    finally:
        await client.aclose()
    return spent / streams


class _Counter(asyncio.Protocol):
    """Waits for the end of each answer: [DONE], then the chunked terminator after it."""

    def __init__(self) -> None:
        self.done: asyncio.Future | None = None
        self.tail = b""
        self.seen_done = False

    def data_received(self, data: bytes) -> None:
        self.tail = (self.tail + data)[-64:]
        if not self.seen_done and b"[DONE]" in self.tail:
            self.seen_done = True
        if self.seen_done and self.tail.endswith(b"0\r\n\r\n") and not self.done.done():
            self.done.set_result(None)


async def bare(*, port: int, text: str, streams: int) -> float:
    """CPU seconds per stream for the floor: one kept connection, one write per request."""
    loop = asyncio.get_running_loop()
    body = json.dumps({"model": "m", "stream": True,
                       "messages": [{"role": "user", "content": text}]}).encode()
    request = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
               ).encode() + body
    transport, counter = await loop.create_connection(_Counter, "127.0.0.1", port)
    spent = 0.0
    try:
        for i in range(streams + 1):
            counter.done, counter.seen_done, counter.tail = loop.create_future(), False, b""
            started = time.process_time()
            transport.write(request)
            await counter.done
            if i:  # the first one warms up
                spent += time.process_time() - started
    finally:
        transport.close()
    return spent / streams


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tokens", type=int, default=200)
    p.add_argument("--gap-ms", type=float, default=4.0)
    p.add_argument("--streams", type=int, default=5)
    p.add_argument("--requests", type=int, default=200,
                   help="one-token streams for the per-request figure (0 skips it)")
    p.add_argument("--transport", choices=TRANSPORTS, action="append",
                   help="repeat to measure several; default: all")
    args = p.parse_args()
    transports = args.transport or list(TRANSPORTS)
    port = free_port()
    fake = subprocess.Popen([sys.executable, "-m", "fakellm", "--port", str(port)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        long_text = directive(tokens=args.tokens, gap_ms=args.gap_ms)
        short_text = directive(tokens=1, gap_ms=0)
        readers = ([(f"provider path ({t})", ours, t) for t in transports]
                   + [(f"HTTP client alone ({t})", client_alone, t) for t in transports]
                   + [("bare protocol", bare, None)])
        print(f"per token: {args.streams} streams x {args.tokens} tokens, {args.gap_ms:g} ms "
              f"apart; per request: {args.requests} one-token streams in a row")
        floor = None
        for name, reader, transport in readers:
            kw = {} if transport is None else {"transport": transport}
            per_stream = asyncio.run(reader(port=port, text=long_text, streams=args.streams,
                                            **kw))
            per_request = (asyncio.run(reader(port=port, text=short_text,
                                              streams=args.requests, **kw))
                           if args.requests else float("nan"))
            per_token = per_stream / args.tokens * 1e6
            if transport is None:
                floor = per_token
            print(f"{name:<26} {per_token:7.1f} us CPU per token   "
                  f"{per_request * 1e6:8.1f} us CPU per request")
        if floor:
            print(f"(the bare protocol is the floor: {floor:.1f} us per token)")
    finally:
        fake.kill()
        fake.wait(timeout=10)


if __name__ == "__main__":
    main()
