"""One server's long-lived session: an owner task, fed by a queue, that opens, serves, notices
the death of, and reopens the server's `Client`.

(Longer than our usual module: one state machine, whose transitions only make sense read
together.)

Why an owner task: a `Client` holds anyio cancel scopes, which must be exited by the task that
entered them, and it is single-use. So one task per server enters each `Client`, and every
call is handed to it through a queue and run as a CHILD task of it: cancelling one call
(a user pressed Stop) cancels just that child, and the SDK sends `notifications/cancelled`.

Lifecycle, driven by needs (a call or a listing), never by timers:

    idle --need--> connecting --ok--> ready --process died / stream ended / dropped--> failing
                        |                                         (next need reopens at once)
                        +--failed--> backing_off --need after retry_at--> connecting

A need that arrives while backing off fails fast with the last error and when the next try is.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import IO, Any, TypeVar

import anyio
from mcp import Client, MCPError
from mcp.client.subscriptions import ListenNotSupportedError, SubscriptionLost, ToolsListChanged
from mcp_types import CONNECTION_CLOSED, Implementation, ToolListChangedNotification
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from agents.mcp.config import McpServerConfig
from agents.mcp.errors import (
    McpServerError,
    describe_drop,
    describe_open_failure,
    exit_text,
    lost_text,
    root_cause,
    scrub,
    seconds,
)
from agents.mcp.state import Backoff, SessionState
from agents.mcp.transports import TransportWatch, open_transport

logger = logging.getLogger(__name__)

T = TypeVar("T")

CLIENT_INFO = Implementation(name="chatsite", version="1")
# How long a caller whose call was cut by a dead connection waits for the owner to learn how the
# server ended (its exit code), before answering with a vaguer line. A dead stdio child is
# reaped within milliseconds; HTTP connections do not end by themselves, so they wait less.
_LOSS_WAIT_STDIO = 3.0
_LOSS_WAIT_HTTP = 0.2
# How long a cancelled caller waits for its call to wind down (the SDK writes the server a
# notifications/cancelled), so that when the caller's cancellation completes the call is gone.
_CANCEL_GRACE = 2.0
_CLOSE_GRACE = 10.0
_LISTEN_ACK_WAIT = 2.0


@dataclass(frozen=True, slots=True)
class SessionHooks:
    """Called by the owner task, synchronously; they must not block (the pool schedules any
    real work). `on_tools_changed(server_name)`: the server's tool list may have changed."""

    on_state: Callable[[SessionState], None]
    on_tools_changed: Callable[[str], None]


class _Close:
    """Queue item: close the session (pool shutdown or a changed config)."""


@dataclass(frozen=True, slots=True)
class _Ended:
    """Queue item: connection `number`'s read stream ended (the server died or hung up)."""

    number: int


@dataclass(eq=False, slots=True)
class _Job:
    """One need (a call, a listing): `run(client)` runs as a child task of the owner."""

    run: Callable[[Client], Awaitable[Any]]
    future: asyncio.Future[Any]
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    scope: anyio.CancelScope | None = None
    cancelled: bool = False
    # A call refused because the HTTP session had expired is sent once more on a new session.
    retried: bool = False

    def cancel(self) -> None:
        self.cancelled = True
        self.future.cancel()
        if self.scope is not None:
            self.scope.cancel()

    def settle(self, *, value: Any = None, exc: BaseException | None = None) -> None:
        if self.future.done():
            return
        if exc is not None:
            self.future.set_exception(exc)
        else:
            self.future.set_result(value)


@dataclass(eq=False, slots=True)
class _Connection:
    """One opened `Client` (one process, or one HTTP session)."""

    number: int
    watch: TransportWatch = field(default_factory=TransportWatch)
    client: Client | None = None
    modern: bool = False
    # Set when the connection must be reopened at the next need (a transport error).
    unhealthy: str = ""
    # Why the owner ended it: "", "ended" (read stream ended), "reset" (unhealthy), "closed".
    end: str = ""
    # The user-facing line for calls this connection took down; set before `ended`.
    loss: str = ""
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    # 2026-07-28: set once the listen stream is acknowledged (or failed).
    listening: anyio.Event = field(default_factory=anyio.Event)


class _ConnectionLost(Exception):
    """A job's connection went away under it; the caller turns this into `conn.loss`."""

    def __init__(self, conn: _Connection) -> None:
        super().__init__(conn.number)
        self.conn = conn


class ServerSession:
    """The session of one server config, for the pool's event loop.

    Contract: every method runs on that loop. `submit` may be awaited by any number of tasks
    at once; only the owner task (started by the first need) enters and exits `Client`s. A
    changed config is a new `ServerSession`; this one is closed with `aclose`.
    """

    def __init__(self, *, config: McpServerConfig, hooks: SessionHooks, backoff: Backoff,
                 announce_first_open: bool = False, stderr: IO[str] | None = None) -> None:
        self.config = config
        self._hooks = hooks
        self._backoff = backoff
        # Announce tool changes at every open but the very first one of this server name:
        # a reopened (or reconfigured) server may list other tools than before.
        self._announce_open = announce_first_open
        self._stderr = stderr
        self._queue: asyncio.Queue[_Job | _Close | _Ended] = asyncio.Queue()
        self._owner: asyncio.Task[None] | None = None
        self._conn: _Connection | None = None
        self._connect_scope: anyio.CancelScope | None = None
        self._number = 0
        self._closing = False
        self._close_reason = "was closed"
        self._state = SessionState(server=config.name, since=time.time())

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def state(self) -> SessionState:
        return self._state

    async def submit(self, run: Callable[[Client], Awaitable[T]]) -> T:
        """Run `run(client)` on the open session, opening it first if needed.

        Raises McpServerError (its text is the user-facing line) when the server cannot serve
        the need: closed, not reachable, backing off, crashed under the call. What `run` raises
        otherwise (MCPError for timeouts and refusals, validation errors) propagates unchanged.
        Cancelling the awaiting task cancels the call and waits briefly for it to wind down.
        """
        if self._closing:
            raise McpServerError(f"MCP server '{self.name}' {self._close_reason}", server=self.name)
        if self._conn is None and (wait := self._backoff.remaining(now=time.monotonic())) > 0:
            raise McpServerError(self._fast_fail_text(wait), server=self.name)
        self._ensure_owner()
        job = _Job(run=run, future=asyncio.get_running_loop().create_future())
        self._queue.put_nowait(job)
        try:
            return await asyncio.shield(job.future)
        except _ConnectionLost as lost:
            raise McpServerError(await self._loss_text(lost.conn), server=self.name) from None
        except asyncio.CancelledError:
            started = job.scope is not None
            job.cancel()
            if started:
                try:
                    async with asyncio.timeout(_CANCEL_GRACE):
                        await job.finished.wait()
                except TimeoutError:
                    logger.warning("MCP server %r: a cancelled call did not wind down", self.name)
            raise

    async def aclose(self, *, reason: str = "was closed") -> None:
        """Close the session: in-flight calls end with an error naming `reason`, the process
        is stopped and reaped (the SDK: stdin closed, SIGTERM, SIGKILL). Idempotent."""
        if not self._closing:
            self._closing = True
            self._close_reason = reason
            self._queue.put_nowait(_Close())
            if self._connect_scope is not None:
                self._connect_scope.cancel()
        owner = self._owner
        if owner is not None and not owner.done():
            try:
                async with asyncio.timeout(_CLOSE_GRACE):
                    await asyncio.shield(owner)
            except TimeoutError:
                logger.warning("MCP server %r: its session did not close in time", self.name)
                owner.cancel()
        self._set_state(status="closed", pid=None)

    # --- the owner task -------------------------------------------------------------------------

    def _ensure_owner(self) -> None:
        if self._owner is None or self._owner.done():
            self._owner = asyncio.get_running_loop().create_task(
                self._own(), name=f"mcp-session:{self.name}")

    async def _own(self) -> None:
        job: _Job | None = None
        try:
            while not self._closing:
                if job is None:
                    item = await self._queue.get()
                    if isinstance(item, _Close):
                        break
                    if isinstance(item, _Ended):
                        continue  # from a connection already gone
                    job = item
                if job.future.done():  # its caller gave up while it waited
                    job.finished.set()
                    job = None
                    continue
                if (wait := self._backoff.remaining(now=time.monotonic())) > 0:
                    job.settle(exc=McpServerError(self._fast_fail_text(wait), server=self.name))
                    job = None
                    continue
                job = await self._connect_and_serve(job)
        except Exception:
            logger.exception("MCP server %r: session owner failed", self.name)
        finally:
            self._fail_queued(McpServerError(f"MCP server '{self.name}' {self._close_reason}",
                                             server=self.name), job)

    async def _connect_and_serve(self, first: _Job) -> _Job | None:
        """Open a connection, serve needs on it until it ends; returns a need that arrived for
        a reopen (the connection was unhealthy), else None."""
        self._number += 1
        conn = _Connection(number=self._number)
        number = conn.number
        transport, conn.watch = open_transport(
            self.config, on_end=lambda: self._queue.put_nowait(_Ended(number)), stderr=self._stderr)
        client = Client(transport, message_handler=self._message_handler(conn),
                        client_info=CLIENT_INFO,
                        # Every listing must reach the server: a listing is our refresh.
                        cache=None)
        self._set_state(status="connecting", error="", retry_at=None, pid=None)
        leftover: _Job | None = None
        opened = False
        scope = self._connect_scope = anyio.CancelScope(
            deadline=anyio.current_time() + self.config.connect_timeout)
        try:
            # The deadline bounds spawn + handshake; it is lifted once open. It wraps the whole
            # `async with` because a cancel scope cannot end while the Client's scopes live on.
            with scope:
                async with client:
                    scope.deadline = math.inf
                    self._connect_scope = None
                    opened = True
                    conn.client = client
                    conn.modern = client.protocol_version in MODERN_PROTOCOL_VERSIONS
                    self._conn = conn
                    leftover = await self._serve(conn, first)
            if not opened:
                raise TimeoutError
        except Exception as exc:
            if not opened:
                self._open_failed(first, exc, conn, timed_out=scope.cancel_called)
                conn.ended.set()
                return None
            if not conn.end:
                conn.end = "dropped"
                conn.loss = self._dropped_text(exc)
        finally:
            self._conn = None
            self._connect_scope = None
        if not conn.loss:
            conn.loss = self._ended_text(conn)
        conn.ended.set()
        if not self._closing:
            self._set_state(status="failing", error=conn.loss, pid=None)
        return leftover

    async def _serve(self, conn: _Connection, first: _Job) -> _Job | None:
        leftover: _Job | None = None
        async with anyio.create_task_group() as children:
            if conn.modern:
                children.start_soon(self._listen, conn)
                # Serve once subscribed, so no change after "ready" can go unheard; a server
                # slow to acknowledge only delays the first need, by at most this long.
                with anyio.move_on_after(_LISTEN_ACK_WAIT):
                    await conn.listening.wait()
            self._on_open(conn)
            item: _Job | _Close | _Ended = first
            while True:
                if isinstance(item, _Job):
                    if item.future.done():
                        item.finished.set()
                    elif conn.unhealthy or conn.watch.session_gone:
                        conn.unhealthy = conn.unhealthy or "forgot the HTTP session"
                        conn.end = "reset"
                        leftover = item
                        break
                    else:
                        children.start_soon(self._run_job, conn, item)
                elif isinstance(item, _Close):
                    conn.end = "closed"
                    break
                elif item.number == conn.number:
                    conn.end = "ended"
                    break
                item = await self._queue.get()
            # Calls still running end with _ConnectionLost; set what they will be told first.
            conn.loss = self._planned_loss_text(conn)
            children.cancel_scope.cancel()
        return leftover

    async def _run_job(self, conn: _Connection, job: _Job) -> None:
        requeued = False
        try:
            if job.cancelled:
                return
            with anyio.CancelScope() as scope:
                job.scope = scope
                assert conn.client is not None
                try:
                    job.settle(value=await job.run(conn.client))
                except MCPError as exc:
                    if exc.code == CONNECTION_CLOSED:
                        self._mark_unhealthy(conn, "closed the connection")
                        job.settle(exc=_ConnectionLost(conn))
                    elif conn.watch.session_gone and not job.retried:
                        # The server no longer knows our HTTP session (it restarted): the call
                        # was not run, so it is safe to send once more on a new session.
                        self._mark_unhealthy(conn, "forgot the HTTP session")
                        job.retried = True
                        job.scope = None
                        requeued = True
                        self._queue.put_nowait(job)
                    else:
                        job.settle(exc=exc)
                except Exception as exc:
                    job.settle(exc=exc)
        finally:
            if not requeued:
                # Cancelled by the connection's end, not by its caller (who cancels the future).
                job.settle(exc=_ConnectionLost(conn))
                job.finished.set()

    async def _listen(self, conn: _Connection) -> None:
        """2026-07-28 servers announce tool changes only on a listen stream we open."""
        assert conn.client is not None
        try:
            async with conn.client.listen(tools_list_changed=True) as subscription:
                conn.listening.set()
                async for event in subscription:
                    if isinstance(event, ToolsListChanged):
                        self._hooks.on_tools_changed(self.name)
        except ListenNotSupportedError:
            return
        except (MCPError, SubscriptionLost, TimeoutError) as exc:
            # No change events on this connection; listings still work.
            logger.info("MCP server %r: no tool-change subscription (%s)", self.name,
                        scrub(str(exc), self.config))
        finally:
            conn.listening.set()

    def _message_handler(self, conn: _Connection) -> Callable[[Any], Awaitable[None]]:
        async def handle(message: Any) -> None:
            # Called on the session's reader: must not block, so it only records and schedules.
            if isinstance(message, Exception):
                self._mark_unhealthy(conn, f"had a transport error ({type(message).__name__})")
            elif isinstance(message, ToolListChangedNotification) and not conn.modern:
                # On 2026-07-28 the listen stream's events are teed here too; _listen has them.
                self._hooks.on_tools_changed(self.name)

        return handle

    # --- state and messages ---------------------------------------------------------------------

    def _on_open(self, conn: _Connection) -> None:
        self._backoff.succeeded()
        assert conn.client is not None
        self._set_state(status="ready", error="", retry_at=None, failures=0,
                        protocol_version=conn.client.protocol_version, pid=conn.watch.pid)
        if self._announce_open:
            self._hooks.on_tools_changed(self.name)
        self._announce_open = True

    def _open_failed(self, first: _Job, exc: BaseException, conn: _Connection, *,
                     timed_out: bool) -> None:
        if self._closing:
            message = f"MCP server '{self.name}' {self._close_reason}"
        elif timed_out:
            message = f"MCP server '{self.name}' did not answer within {seconds(self.config.connect_timeout)}"
        elif isinstance(root_cause(exc), MCPError) and conn.watch.process is not None:
            # The child exited during the handshake (a bad argument, a missing module...).
            message = (f"MCP server '{self.name}' is not reachable: it "
                       f"{exit_text(conn.watch.returncode)} while starting")
        else:
            message = f"MCP server '{self.name}' is not reachable: {describe_open_failure(exc, self.config)}"
        error = McpServerError(message, server=self.name)
        first.settle(exc=error)
        first.finished.set()
        self._fail_queued(error)
        if self._closing:
            return
        delay = self._backoff.failed(now=time.monotonic())
        self._set_state(status="backing_off", error=message, retry_at=time.time() + delay,
                        failures=self._backoff.failures, pid=None)

    def _fail_queued(self, error: McpServerError, job: _Job | None = None) -> None:
        """Fail every queued need (and `job`) with `error`; a queued close is kept."""
        if job is not None:
            job.settle(exc=error)
            job.finished.set()
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if isinstance(item, _Job):
                item.settle(exc=error)
                item.finished.set()
            elif isinstance(item, _Close):
                self._closing = True

    def _mark_unhealthy(self, conn: _Connection, reason: str) -> None:
        if conn.unhealthy or conn is not self._conn:
            return
        conn.unhealthy = reason
        self._set_state(status="failing", error=lost_text(self.name, self.config.transport, reason))

    def _planned_loss_text(self, conn: _Connection) -> str:
        if conn.end == "closed":
            return f"MCP server '{self.name}' {self._close_reason}"
        if conn.end == "reset":
            return f"MCP server '{self.name}' {conn.unhealthy}; the call was cut by reopening the session"
        return ""  # "ended": known only once the process is reaped (_ended_text)

    def _ended_text(self, conn: _Connection) -> str:
        how = exit_text(conn.watch.returncode) if conn.watch.process is not None else "closed the connection"
        return lost_text(self.name, self.config.transport, how)

    def _dropped_text(self, exc: BaseException) -> str:
        return lost_text(self.name, self.config.transport,
                         f"dropped the connection ({describe_drop(exc, self.config)})")

    def _fast_fail_text(self, wait: float) -> str:
        last = self._state.error or f"MCP server '{self.name}' is not reachable"
        return f"{last} (next try in {seconds(round(max(wait, 0.1), 1))})"

    async def _loss_text(self, conn: _Connection) -> str:
        if not conn.ended.is_set():
            wait = _LOSS_WAIT_STDIO if conn.watch.process is not None else _LOSS_WAIT_HTTP
            try:
                async with asyncio.timeout(wait):
                    await conn.ended.wait()
            except TimeoutError:
                pass
        return conn.loss or lost_text(self.name, self.config.transport,
                                      "closed the connection during the call")

    def _set_state(self, **changes: Any) -> None:
        if changes.get("status", self._state.status) != "backing_off":
            changes.setdefault("retry_at", None)
        self._state = replace(self._state, since=time.time(), **changes)
        try:
            self._hooks.on_state(self._state)
        except Exception:
            logger.exception("MCP server %r: state hook failed", self.name)
