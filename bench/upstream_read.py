"""CPU per streamed token on the upstream side alone: our provider path beside a bare asyncio
protocol reading the same stream, against the fake model server, in one process and one run.

    .venv/bin/python bench/upstream_read.py                 # 200 tokens 4 ms apart, 5 streams
    .venv/bin/python bench/upstream_read.py --transport stock

Tokens a few milliseconds apart arrive one TCP read each, as from a real model server, so the
figure is what one token costs from the socket to a TextDelta (asyncio, httpx/httpcore/h11, SSE,
the OpenAI adapter, the resilience layer). The bare protocol does only epoll, recv and
data_received: the floor any Python reader pays here. CPU is the process's (user + kernel).
Only 127.0.0.1 is contacted; the fake is a child process, killed at the end.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")

from agents.events import ChatMessage, ChatRequest  # noqa: E402
from agents.loop import Target, complete_text  # noqa: E402
from agents.providers import close_all, get_provider  # noqa: E402
from agents.providers.base import ProviderConfig  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def ours(*, port: int, directive: str, streams: int, tokens: int, transport: str) -> float:
    provider = get_provider(ProviderConfig(name="bench", kind="openai", transport=transport,
                                           base_url=f"http://127.0.0.1:{port}/v1"))
    request = ChatRequest(model="m", messages=(ChatMessage(role="user", content=directive),))
    await complete_text(targets=[Target(provider, "m")], request=request)  # warm the pool
    started = time.process_time()
    for _ in range(streams):
        await complete_text(targets=[Target(provider, "m")], request=request)
    spent = time.process_time() - started
    await close_all()
    return spent / streams / tokens * 1e6


class _Counter(asyncio.Protocol):
    def __init__(self, done: asyncio.Future) -> None:
        self.done, self.tail = done, b""

    def data_received(self, data: bytes) -> None:
        self.tail = (self.tail + data)[-64:]
        if b"[DONE]" in self.tail and not self.done.done():
            self.done.set_result(None)


async def bare(*, port: int, directive: str, streams: int, tokens: int) -> float:
    loop = asyncio.get_running_loop()
    body = json.dumps({"model": "m", "stream": True,
                       "messages": [{"role": "user", "content": directive}]}).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    spent = 0.0
    for i in range(streams + 1):
        done = loop.create_future()
        transport, _ = await loop.create_connection(lambda: _Counter(done), "127.0.0.1", port)
        started = time.process_time()
        transport.write(head + body)
        await done
        if i:  # the first one warms up
            spent += time.process_time() - started
        transport.close()
    return spent / streams / tokens * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tokens", type=int, default=200)
    p.add_argument("--gap-ms", type=float, default=4.0)
    p.add_argument("--streams", type=int, default=5)
    p.add_argument("--transport", choices=("pooled", "stock"), default="pooled")
    args = p.parse_args()
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
        directive = "fake: " + json.dumps({"tokens": args.tokens, "ttft_ms": 0,
                                           "gap_ms": args.gap_ms})
        kw = {"port": port, "directive": directive, "streams": args.streams,
              "tokens": args.tokens}
        ours_us = asyncio.run(ours(transport=args.transport, **kw))
        bare_us = asyncio.run(bare(**kw))
        print(f"{args.streams} streams x {args.tokens} tokens, {args.gap_ms:g} ms apart")
        print(f"our provider path ({args.transport}): {ours_us:6.1f} us CPU per token")
        print(f"bare asyncio protocol:   {bare_us:6.1f} us CPU per token (the floor)")
        print(f"ratio: {ours_us / bare_us:.2f}")
    finally:
        fake.kill()
        fake.wait(timeout=10)


if __name__ == "__main__":
    main()
