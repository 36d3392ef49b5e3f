"""The SDK transport for a server config, watched so the pool learns when it ends.

Each open builds a new transport (a `Client` and its transport are single-use). The transport
is the SDK's own (`stdio_client`, `streamable_http_client`, `sse_client`), wrapped only to
observe two things it does not expose:

- the end of its read stream (a stdio server that died, an SSE stream that dropped): the
  session notices a dead server while idle instead of at the next call;
- the stdio child process, for its pid and its exit code ("crashed (exit code 1)").
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Any

import anyio
import httpx2
from mcp import StdioServerParameters
from mcp.client import Transport
from mcp.client.sse import sse_client
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.message import SessionMessage

from agents.mcp.addresses import guarded_http_client
from agents.mcp.config import McpServerConfig

# Read timeout of the HTTP clients: a streamed response (a long call, the standing GET stream)
# may stay quiet this long. The SDK's own default; calls are bounded by their own timeouts.
HTTP_STREAM_READ_TIMEOUT = 300.0


@dataclass(slots=True)
class TransportWatch:
    """What one transport has shown so far. `process` is the stdio child (None for HTTP, or
    when this SDK version hides it); `ended` is set once the read stream ended; `session_gone`
    once the server answered 404 to a request carrying our Mcp-Session-Id (the spec's way of
    saying it no longer has that session: a new one must be opened)."""

    process: Any = None
    ended: bool = False
    session_gone: bool = False

    @property
    def pid(self) -> int | None:
        return getattr(self.process, "pid", None)

    @property
    def returncode(self) -> int | None:
        return getattr(self.process, "returncode", None)


def open_transport(
    config: McpServerConfig, *, on_end: Callable[[], None], stderr: IO[str] | None = None,
) -> tuple[Transport, TransportWatch]:
    """A fresh, not yet entered transport for `config`, and the watch it reports to.
    `on_end` is called (synchronously, once) when the read stream ends."""
    watch = TransportWatch()
    return _watched(config, watch, on_end, stderr), watch


def _http_client(config: McpServerConfig, *, timeout: httpx2.Timeout | None = None) -> httpx2.AsyncClient:
    """The HTTP client for one session of an HTTP server: the config's headers on every
    request; connecting is bounded by `connect_timeout`, reads by HTTP_STREAM_READ_TIMEOUT
    (a streamed answer may pause that long); every connection's address checked against
    loopback, private and link-local ranges (agents.mcp.addresses) unless the config allows
    them. Closed by the transport wrapper with the session."""
    client = guarded_http_client(headers=config.headers, timeout=config.connect_timeout,
                                 allow_private=config.allow_private_addresses)
    client.timeout = timeout or httpx2.Timeout(config.connect_timeout,
                                               read=HTTP_STREAM_READ_TIMEOUT)
    return client


@asynccontextmanager
async def _watched(
    config: McpServerConfig, watch: TransportWatch, on_end: Callable[[], None],
    stderr: IO[str] | None,
) -> AsyncIterator[tuple[Any, Any]]:
    def ended() -> None:
        if not watch.ended:
            watch.ended = True
            on_end()

    if config.transport == "stdio":
        inner = stdio_client(_stdio_parameters(config), errlog=_errlog(stderr))
        async with inner as (read_stream, write_stream):
            watch.process = _stdio_process(inner)
            yield _WatchedReadStream(read_stream, ended), write_stream
    elif config.transport == "http":
        http = _http_client(config)
        http.event_hooks["response"].append(_session_watcher(watch))
        async with http, \
                streamable_http_client(config.url, http_client=http) as (read_stream, write_stream):
            yield _WatchedReadStream(read_stream, ended), write_stream
    elif config.transport == "sse":
        def factory(headers: Any = None, timeout: httpx2.Timeout | None = None,
                    auth: Any = None) -> httpx2.AsyncClient:
            # sse_client enters and closes the client it gets; headers come from the config.
            return _http_client(config, timeout=timeout)

        async with sse_client(config.url, timeout=config.connect_timeout,
                              sse_read_timeout=HTTP_STREAM_READ_TIMEOUT,
                              httpx_client_factory=factory) as (read_stream, write_stream):
            yield _WatchedReadStream(read_stream, ended), write_stream
    else:
        raise ValueError(f"unknown MCP transport {config.transport!r}")


def _session_watcher(watch: TransportWatch) -> Callable[[httpx2.Response], Awaitable[None]]:
    # The SDK turns that 404 into a JSON-RPC error whose code and text vary by server (Python
    # and TypeScript SDKs differ); the HTTP status is the one signal the spec defines.
    async def on_response(response: httpx2.Response) -> None:
        if response.status_code == 404 and "mcp-session-id" in response.request.headers:
            watch.session_gone = True

    return on_response


def _stdio_parameters(config: McpServerConfig) -> StdioServerParameters:
    # The SDK passes the child only an allow-list of our environment (HOME, PATH, ...) plus
    # `env`: our own secrets do not leak into servers by default.
    return StdioServerParameters(command=config.command, args=list(config.args),
                                 env=dict(config.env) or None, cwd=config.cwd or None)


def _errlog(stderr: IO[str] | None) -> Any:
    """Where a stdio child's stderr goes: `stderr`, else ours. The child needs a real file
    descriptor; when ours has none (a test runner's in-memory capture), stderr is dropped."""
    target = stderr if stderr is not None else sys.stderr
    try:
        target.fileno()
    except (AttributeError, OSError, ValueError):
        return subprocess.DEVNULL
    return target


def _stdio_process(transport: Any) -> Any:
    """The child process of an entered `stdio_client`, or None.

    The SDK keeps it in the context manager's (suspended) generator frame and offers no
    accessor. The pool needs its pid (state, tests) and exit code (crash messages); reading it
    from the frame degrades to None, never to an error, if a later SDK renames the variable."""
    frame = getattr(getattr(transport, "gen", None), "ag_frame", None)
    process = frame.f_locals.get("process") if frame is not None else None
    if hasattr(process, "pid") and hasattr(process, "returncode"):
        return process
    return None


class _WatchedReadStream:
    """The transport's read stream, calling `on_end` when it ends (EOF or closed under us).

    Duck-types the SDK's `ReadStream` protocol, and passes `last_context` through: the
    dispatcher reads it after each item to run handlers in the sender's contextvars."""

    __slots__ = ("_inner", "_on_end")

    def __init__(self, inner: Any, on_end: Callable[[], None]) -> None:
        self._inner = inner
        self._on_end = on_end

    @property
    def last_context(self) -> Any:
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> SessionMessage | Exception:
        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._on_end()
            raise

    def __aiter__(self) -> _WatchedReadStream:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self._inner.__anext__()
        except (StopAsyncIteration, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._on_end()
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> _WatchedReadStream:
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc_val: BaseException | None,
                        exc_tb: TracebackType | None) -> bool | None:
        return await self._inner.__aexit__(exc_type, exc_val, exc_tb)
