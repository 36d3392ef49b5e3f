"""The MCP session pool: one long-lived session per server, shared by every turn and user.

    pool = get_pool()                       # the running event loop's pool
    outcome = await pool.call_tool(config, "echo", {"text": "hi"})
    listing = await pool.list_tools(config)
    pool.on_tools_changed(lambda server_name: ...)
    await close_pool()                      # at shutdown: closes sessions, reaps processes

Sessions open on the first need and stay open; a dead one is reopened on the next need (see
agents.mcp.session for the owner task and the state machine). A config whose `key()` differs
from the open session's (an admin edited the server) closes that session, in-flight calls
included, and opens a new one.

Errors never escape `call_tool`: they become `ToolOutcome(is_error=True)` with a one-line
message ("MCP server 'x' is not reachable: ...", "... timed out after 10 s", "... crashed (exit
code 1); it is restarted on the next call"). `list_tools` raises `McpServerError` with such a
line. Cancellation (Stop) is the one thing that propagates, after the call was cancelled.

Pure async code, no Django: the pool belongs to one event loop.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import IO, Any

import anyio
from mcp import Client, MCPError
from mcp_types import REQUEST_TIMEOUT
from pydantic import ValidationError

from agents.mcp.config import McpServerConfig
from agents.mcp.errors import McpServerError, scrub, seconds
from agents.mcp.listing import ListingCaps, ToolListing, collect_tools
from agents.mcp.results import DEFAULT_MAX_RESULT_CHARS, ToolOutcome, error_outcome, outcome_from_result
from agents.mcp.session import ServerSession, SessionHooks
from agents.mcp.state import Backoff, SessionState

__all__ = ["McpPool", "McpServerError", "SessionState", "ToolListing", "ToolOutcome", "close_pool",
           "get_pool"]

logger = logging.getLogger(__name__)

ToolsChangedCallback = Callable[[str], None | Awaitable[None]]
StateCallback = Callable[[SessionState], None]


class McpPool:
    """Sessions by server name, for the event loop that runs it (use `get_pool()`).

    Callbacks registered with `on_tools_changed` get the server's name when its tool list may
    have changed: on `notifications/tools/list_changed` (2025-11-25 servers), on a
    `subscriptions/listen` event (2026-07-28 servers), and after every reopen of a session
    but the first open of that name. A callback may be sync (it must not block) or async
    (it is run as its own task); exceptions are logged, never raised into the pool.
    """

    def __init__(self, *, backoff_first: float = 0.5, backoff_cap: float = 30.0,
                 stderr: IO[str] | None = None) -> None:
        self._backoff_first = backoff_first
        self._backoff_cap = backoff_cap
        self._stderr = stderr
        self._sessions: dict[str, ServerSession] = {}
        self._closing_sessions: set[asyncio.Task[None]] = set()
        self._opened_names: set[str] = set()
        self._tools_callbacks: list[ToolsChangedCallback] = []
        self._state_callbacks: list[StateCallback] = []
        self._callback_tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    # --- needs ----------------------------------------------------------------------------------

    async def call_tool(
        self, config: McpServerConfig, name: str, arguments: dict[str, Any] | None = None, *,
        timeout: float | None = None, max_result_chars: int = DEFAULT_MAX_RESULT_CHARS,
    ) -> ToolOutcome:
        """Call tool `name` on the server of `config`; never raises but CancelledError.

        `timeout` (default `config.call_timeout`) bounds the call once the session is open;
        opening is bounded by `config.connect_timeout`. On timeout the SDK tells the server
        (notifications/cancelled) and the session stays open for the next call."""
        limit = config.call_timeout if timeout is None else timeout

        async def run(client: Client) -> Any:
            return await client.call_tool(name, arguments or {}, read_timeout_seconds=limit)

        try:
            result = await self._session(config).submit(run)
        except McpServerError as exc:
            return error_outcome(str(exc))
        except MCPError as exc:
            if exc.code == REQUEST_TIMEOUT:
                return error_outcome(
                    f"MCP tool '{name}' on server '{config.name}' timed out after {seconds(limit)}")
            return error_outcome(scrub(
                f"MCP server '{config.name}' refused the call to '{name}': {exc.error.message}", config))
        except ValidationError:
            return error_outcome(
                f"MCP server '{config.name}' answered the call to '{name}' with an invalid result")
        except Exception as exc:
            logger.warning("MCP call %r on %r failed", name, config.name, exc_info=True)
            return error_outcome(
                f"MCP server '{config.name}' failed the call to '{name}' ({type(exc).__name__})")
        return outcome_from_result(result, max_chars=max_result_chars)

    async def list_tools(self, config: McpServerConfig, *, caps: ListingCaps | None = None) -> ToolListing:
        """Every tool the server lists (paged), within `caps` (truncated=True says a cap cut
        it). The whole listing is bounded by `config.list_timeout`. Raises McpServerError."""
        limits = caps or ListingCaps()

        async def run(client: Client) -> ToolListing:
            with anyio.fail_after(config.list_timeout):
                listing = await collect_tools(client, caps=limits)
            return replace(listing, protocol_version=client.protocol_version)

        try:
            return await self._session(config).submit(run)
        except McpServerError:
            raise
        except TimeoutError:
            raise self._list_timeout(config) from None
        except MCPError as exc:
            if exc.code == REQUEST_TIMEOUT:
                raise self._list_timeout(config) from None
            raise McpServerError(scrub(
                f"MCP server '{config.name}' refused to list its tools: {exc.error.message}", config),
                server=config.name) from None
        except ValidationError:
            raise McpServerError(f"MCP server '{config.name}' sent an invalid tool list",
                                 server=config.name) from None

    # --- state and callbacks --------------------------------------------------------------------

    def state(self, name: str) -> SessionState:
        """The visible state of server `name`'s session (idle if the pool never needed it)."""
        session = self._sessions.get(name)
        return session.state if session is not None else SessionState(server=name)

    def on_tools_changed(self, callback: ToolsChangedCallback) -> Callable[[], None]:
        """Register `callback(server_name)`; returns a function that unregisters it."""
        self._tools_callbacks.append(callback)
        return lambda: _discard(self._tools_callbacks, callback)

    def on_state_change(self, callback: StateCallback) -> Callable[[], None]:
        """Register a sync `callback(state)` called at every state change of any session."""
        self._state_callbacks.append(callback)
        return lambda: _discard(self._state_callbacks, callback)

    async def aclose(self) -> None:
        """Close every session (in-flight calls get an error) and reap every process."""
        self._closed = True
        sessions = list(self._sessions.values())
        await asyncio.gather(*(s.aclose(reason="was closed (shutdown)") for s in sessions),
                             *self._closing_sessions, return_exceptions=True)
        for task in list(self._callback_tasks):
            task.cancel()

    # --- internals ------------------------------------------------------------------------------

    def _session(self, config: McpServerConfig) -> ServerSession:
        if self._closed:
            raise McpServerError(f"MCP server '{config.name}' was closed (shutdown)", server=config.name)
        current = self._sessions.get(config.name)
        if current is not None and current.config.key() == config.key():
            return current
        if current is not None:
            # Closed in the background: the caller's need goes to the new session at once.
            task = asyncio.get_running_loop().create_task(
                current.aclose(reason="was closed (its configuration changed)"))
            self._closing_sessions.add(task)
            task.add_done_callback(self._closing_sessions.discard)
        session = ServerSession(
            config=config, hooks=SessionHooks(on_state=self._state_changed,
                                              on_tools_changed=self._tools_changed),
            backoff=Backoff(first=self._backoff_first, cap=self._backoff_cap),
            announce_first_open=config.name in self._opened_names, stderr=self._stderr)
        self._opened_names.add(config.name)
        self._sessions[config.name] = session
        return session

    def _list_timeout(self, config: McpServerConfig) -> McpServerError:
        return McpServerError(f"MCP server '{config.name}' did not answer within "
                              f"{seconds(config.list_timeout)} (listing its tools)", server=config.name)

    def _state_changed(self, state: SessionState) -> None:
        for callback in list(self._state_callbacks):
            try:
                callback(state)
            except Exception:
                logger.exception("MCP state callback failed")

    def _tools_changed(self, server_name: str) -> None:
        for callback in list(self._tools_callbacks):
            try:
                result = callback(server_name)
            except Exception:
                logger.exception("MCP tools-changed callback failed")
                continue
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._callback_tasks.add(task)
                task.add_done_callback(self._callback_done)

    def _callback_done(self, task: asyncio.Task[Any]) -> None:
        self._callback_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("MCP tools-changed callback failed", exc_info=task.exception())


def _discard(callbacks: list[Any], callback: Any) -> None:
    if callback in callbacks:
        callbacks.remove(callback)


# A pool's sessions belong to the loop they run on, so pools are kept per loop: a server process
# has one loop; tests have one per test, and a pool left from a closed loop must never be used.
_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, McpPool] = weakref.WeakKeyDictionary()


def get_pool() -> McpPool:
    """The running loop's pool (created on first use). Call from async code."""
    loop = asyncio.get_running_loop()
    pool = _by_loop.get(loop)
    if pool is None:
        pool = _by_loop[loop] = McpPool()
    return pool


async def close_pool() -> None:
    """Close the running loop's pool, if it has one (at shutdown, between tests)."""
    pool = _by_loop.pop(asyncio.get_running_loop(), None)
    if pool is not None:
        await pool.aclose()


def session_states(name: str) -> list[SessionState]:
    """The state of `name`'s session in each pool of this process whose loop is running (the
    server's one under Daphne). Safe to call from any thread: it only reads."""
    return [pool.state(name) for loop, pool in list(_by_loop.items()) if loop.is_running()]
