"""Run the fake in-process: a uvicorn server on its own thread and event loop.

Usable from sync and async tests alike, because the server never shares the test's loop: a test
that blocks its own loop cannot stall the fake, and the fake's timing is its own.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import uvicorn

from fakellm.config import FakeConfig
from fakellm.server import create_app
from fakellm.state import FakeState, Stats

T = TypeVar("T")


class FakeLLM:
    """Handle on a running fake server. Create it with `run_in_thread`.

    Contract: every method may be called from any thread except the server's own; they hop onto
    the server loop, so they see and change state consistently with requests in flight. The
    `a*` variants do the same without blocking the caller's event loop.
    """

    def __init__(self, *, host: str, port: int, server: uvicorn.Server, state: FakeState) -> None:
        self.host = host
        self.port = port
        self._server = server
        self._state = state
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def root_url(self) -> str:
        """http://host:port: an Anthropic-style base URL (clients append /v1/messages)."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """http://host:port/v1: an OpenAI-style base URL (clients append /chat/completions)."""
        return f"{self.root_url}/v1"

    def stats(self) -> Stats:
        return self._call(self._state.stats)

    async def astats(self) -> Stats:
        return await self._acall(self._state.stats)

    def wait_for(self, predicate: Callable[[Stats], bool], timeout: float = 2.0) -> Stats:
        """Poll the stats until `predicate` holds; return them, or raise TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if predicate(stats):
                return stats
            if time.monotonic() > deadline:
                raise TimeoutError(f"fakellm stats never matched: {stats}")
            time.sleep(0.02)

    async def await_for(self, predicate: Callable[[Stats], bool], timeout: float = 2.0) -> Stats:
        """`wait_for` for async tests: yields to the caller's loop while polling."""
        deadline = time.monotonic() + timeout
        while True:
            stats = await self.astats()
            if predicate(stats):
                return stats
            if time.monotonic() > deadline:
                raise TimeoutError(f"fakellm stats never matched: {stats}")
            await asyncio.sleep(0.02)

    def reset(self, *, config: bool = False) -> None:
        """Zero counters and forget requests, attempts and cache prefixes (and config if asked)."""
        self._call(lambda: self._state.reset(config=config))

    def configure(self, **changes: Any) -> FakeConfig:
        """Partially update the server defaults, like POST /_fake/config."""

        def apply() -> FakeConfig:
            self._state.set_config(self._state.config.updated(changes))
            return self._state.config

        return self._call(apply)

    def requests(self) -> list[dict[str, Any]]:
        """The recorded completion requests, oldest first (path, headers, body, at)."""
        return self._call(lambda: list(self._state.recent))

    def stop(self) -> None:
        """Close open streams (counted as dropped) and stop the server; idempotent."""
        if self._thread is None or self._loop is None:
            return
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._state.abort_all)
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._thread = None

    def __enter__(self) -> FakeLLM:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _call(self, fn: Callable[[], T]) -> T:
        loop = self._require_loop()
        if threading.current_thread() is self._thread:
            return fn()
        return asyncio.run_coroutine_threadsafe(_as_coroutine(fn), loop).result(timeout=10)

    async def _acall(self, fn: Callable[[], T]) -> T:
        loop = self._require_loop()
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(_as_coroutine(fn), loop))

    def _require_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None or self._thread is None:
            raise RuntimeError("fakellm server is not running")
        return self._loop

    def _start(self, sock: socket.socket) -> None:
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            ready.set()
            try:
                loop.run_until_complete(self._server.serve(sockets=[sock]))
            finally:
                loop.close()

        self._thread = threading.Thread(target=serve, name=f"fakellm:{self.port}", daemon=True)
        self._thread.start()
        ready.wait(5)
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("fakellm server failed to start")
            time.sleep(0.005)


async def _as_coroutine(fn: Callable[[], T]) -> T:
    return fn()


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind before starting uvicorn, so port 0 yields a known free port and no race for it."""
    # IPPROTO_TCP given, not 0: asyncio sets TCP_NODELAY on accepted sockets only when the
    # protocol says TCP, and without it a kept-alive connection's whole (non-streamed) answer
    # waited ~40 ms for the client's delayed ACK (Nagle).
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM,
                         socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def run_in_thread(
    config: FakeConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> FakeLLM:
    """Start a fake server on a background thread and return its handle once it accepts requests.

    `port=0` picks a free port. Stop it with `handle.stop()` or use the handle as a context
    manager.
    """
    app = create_app(config)
    sock = bind_socket(host, port)
    uv_config = uvicorn.Config(
        app,
        log_config=None,
        log_level="warning",
        access_log=False,
        lifespan="off",
        loop="asyncio",
        http="h11",
        ws="none",
        # Backstop only: stop() already closes every open stream before shutting down.
        timeout_graceful_shutdown=2,
    )
    handle = FakeLLM(
        host=host, port=sock.getsockname()[1], server=uvicorn.Server(uv_config), state=app.state.fake
    )
    handle._start(sock)
    return handle
