"""The fake MCP server's tools: an `MCPServer` whose every behaviour a pool test needs is one call.

Everything is deterministic except `sleep` (wall time) and `pid` (the process). Tools that change
the server (`add_tool`, `change_description`) tell the client the way each protocol generation
expects it (see `_announce_tools_changed`).
"""

from __future__ import annotations

import base64
import os
import sys
from dataclasses import dataclass
from typing import Any

import anyio
from mcp.server.mcpserver import Context, Image, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ListToolsResult, PaginatedRequestParams, ToolAnnotations
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from fakemcp.paging import paged_list_tools

# A 1x1 red PNG (69 bytes): a real image, small enough to assert on.
PNG_1X1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAAC0lEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
)
ECHO_DESCRIPTION = "Return the text unchanged."


@dataclass(slots=True)
class FakeStats:
    """Counters a test can read back through the `stats` tool (the server is another process)."""

    calls: int = 0
    sleeping: int = 0
    cancelled: int = 0


def build_server(*, extra_tools: int = 0, page_size: int = 100) -> MCPServer:
    """A fresh fake server. `extra_tools` adds `extra_0000`... (for paged-listing tests);
    `tools/list` answers `page_size` tools a page with a cursor to the next."""
    # log_level WARNING: the SDK logs every request at INFO, which would flood test output.
    server: MCPServer = MCPServer("fakemcp", version="1.0", log_level="WARNING")
    stats = FakeStats()

    @server.tool(description=ECHO_DESCRIPTION)
    def echo(text: str) -> str:
        stats.calls += 1
        return text

    @server.tool(description="Add two integers.")
    def add(a: int, b: int) -> int:
        stats.calls += 1
        return a + b

    @server.tool(description="Answer an error result (isError) carrying the message.")
    def fail(message: str) -> str:
        stats.calls += 1
        raise ToolError(message)

    @server.tool(description="Sleep for the given seconds, then answer 'slept N'. Cancellable.")
    async def sleep(seconds: float) -> str:
        stats.calls += 1
        stats.sleeping += 1
        try:
            await anyio.sleep(seconds)
        except anyio.get_cancelled_exc_class():
            # The client's notifications/cancelled interrupts the handler (the SDK's default
            # "interrupt" peer-cancel mode): count it and say so, for tests to observe.
            stats.cancelled += 1
            print("cancelled", file=sys.stderr, flush=True)
            raise
        finally:
            stats.sleeping -= 1
        return f"slept {seconds:g}"

    @server.tool(description="Kill this server process at once (exit code 1), mid-call.")
    def crash() -> str:
        os._exit(1)

    @server.tool(description="Answer a text of exactly `size` characters.")
    def huge(size: int) -> str:
        stats.calls += 1
        pattern = "0123456789"
        return (pattern * (size // len(pattern) + 1))[:size]

    @server.tool(description="Answer a tiny PNG image and a short text.", structured_output=False)
    def image() -> list[Any]:
        stats.calls += 1
        return [Image(data=PNG_1X1, format="png"), "a 1x1 red pixel"]

    @server.tool(description="Add a tool named `name` (it echoes its text) and announce the change.")
    async def add_tool(name: str, ctx: Context) -> str:
        stats.calls += 1

        def added(text: str) -> str:
            return text

        server.add_tool(added, name=name, description=f"Added at run time: {name}.")
        await _announce_tools_changed(ctx)
        return f"added {name}"

    @server.tool(description="Change the description of `echo` and announce the change.")
    async def change_description(text: str, ctx: Context) -> str:
        stats.calls += 1
        server.remove_tool("echo")
        server.add_tool(echo, name="echo", description=text)
        await _announce_tools_changed(ctx)
        return "changed"

    @server.tool(description="Answer this server's process id.",
                 annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True))
    def pid() -> int:
        stats.calls += 1
        return os.getpid()

    @server.tool(description="Answer the counters: calls, sleeping (in flight) and cancelled.")
    def stats_tool() -> dict[str, int]:
        return {"calls": stats.calls, "sleeping": stats.sleeping, "cancelled": stats.cancelled}

    # Registered under a short name; the function name avoids shadowing `stats` above.
    server.remove_tool("stats_tool")
    server.add_tool(stats_tool, name="stats",
                    description="Answer the counters: calls, sleeping (in flight) and cancelled.")

    for index in range(extra_tools):
        server.add_tool(_extra_tool(index), name=f"extra_{index:04d}",
                        description=f"Extra tool number {index}, for listing tests.")

    async def list_tools(ctx: Any, params: PaginatedRequestParams | None) -> ListToolsResult:
        return paged_list_tools(await server.list_tools(), params, page_size=page_size)

    # MCPServer answers every tool on one page; real servers page, and so must the client.
    # `_lowlevel_server` is the SDK's own seam for this (Client reaches in the same way).
    server._lowlevel_server.add_request_handler("tools/list", PaginatedRequestParams, list_tools)
    return server


def _extra_tool(index: int) -> Any:
    def extra(text: str = "") -> str:
        return f"extra {index}: {text}"

    return extra


async def _announce_tools_changed(ctx: Context) -> None:
    """Tell the client(s) the tool list changed, the way each protocol generation expects.

    2026-07-28: change events are published on the server's subscription bus and delivered only
    on `subscriptions/listen` streams the client opened (there is no standing stream to push on).
    2025-11-25: `notifications/tools/list_changed` is pushed on the session's standalone channel
    (stdout on stdio, the GET stream on streamable HTTP). Only the session that asked hears it on
    that generation; other sessions of an HTTP server are not tracked here.
    """
    await ctx.notify_tools_changed()
    if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
        await ctx.session.send_tool_list_changed()
