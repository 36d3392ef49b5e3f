"""Keeping the stored tools in step with the servers: a listing is taken when an admin asks
("Test connection"), when a server announces that its list changed, and after every reconnect
(the pool reports both as a change), and stored by agents.tool_catalog.do_store_listing.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async

from agents import tool_catalog
from agents.mcp.pool import McpPool, close_pool, get_pool
from agents.models import McpServer
from agents.tool_catalog import ListingReport

logger = logging.getLogger(__name__)

# Pools whose change notices we listen to (one registration per pool).
_watched: weakref.WeakSet[McpPool] = weakref.WeakSet()
# Per pool: servers with a refresh running, and those changed again meanwhile.
_running: weakref.WeakKeyDictionary[McpPool, dict[str, bool]] = weakref.WeakKeyDictionary()


def pool() -> McpPool:
    """The running loop's session pool, with its change notices turned into refreshes."""
    current = get_pool()
    if current not in _watched:
        _watched.add(current)
        current.on_tools_changed(lambda name, p=current: _changed(p, name))
    return current


def _changed(current: McpPool, name: str) -> None:
    running = _running.setdefault(current, {})
    if name in running:
        running[name] = True  # listed again once the running refresh ends
        return
    running[name] = False
    asyncio.get_running_loop().create_task(_refresh_until_quiet(current, name))


async def _refresh_until_quiet(current: McpPool, name: str) -> None:
    running = _running[current]
    try:
        while True:
            try:
                server_id = await database_sync_to_async(_server_id)(name)
                if server_id is not None:
                    report = await refresh_server(server_id=server_id)
                    logger.info("MCP tools refreshed: %s", report.summary())
            except Exception:
                logger.exception("could not refresh the tools of MCP server %s", name)
            if not running.get(name):
                return
            running[name] = False
    finally:
        running.pop(name, None)


def _server_id(name: str) -> int | None:
    return McpServer.objects.filter(name=name, enabled=True).values_list("pk", flat=True).first()


async def refresh_server(*, server_id: int) -> ListingReport:
    """List the server's tools now and store them (or the error that prevented it)."""
    server = await McpServer.objects.aget(pk=server_id)
    try:
        config = tool_catalog.server_config(server)
        listing = await pool().list_tools(config)
    except Exception as exc:  # every failure is the admin's to read, in words, on the server
        return await database_sync_to_async(_store_failure)(server_id, exc)
    return await database_sync_to_async(_store)(server_id, listing)


def refresh_server_now(*, server_id: int) -> ListingReport:
    """refresh_server for synchronous callers (the admin, commands). The database work stays in
    the caller's thread (inside its transaction, if any); only the listing runs on an event
    loop. Under Daphne that is the server's loop, so the session it opens is the one turns use;
    anywhere else (a command, a test client) the loop is temporary, and its sessions are closed
    with it."""
    server = McpServer.objects.get(pk=server_id)
    try:
        config = tool_catalog.server_config(server)
        listing = async_to_sync(_list_from_sync)(config)
    except Exception as exc:
        return _store_failure(server_id, exc)
    return _store(server_id, listing)


async def _list_from_sync(config):
    try:
        return await pool().list_tools(config)
    finally:
        if threading.current_thread() is not threading.main_thread():
            await close_pool()


def _store(server_id: int, listing) -> ListingReport:
    return tool_catalog.do_store_listing(
        server_id=server_id, tools=listing.tools,
        truncated=listing.reason if listing.truncated else "",
        protocol_version=listing.protocol_version)


def _store_failure(server_id: int, exc: Exception) -> ListingReport:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return tool_catalog.do_store_listing(server_id=server_id, tools=None, error=message)
