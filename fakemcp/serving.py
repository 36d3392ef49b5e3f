"""Serving the fake over stdio, streamable HTTP or the older HTTP+SSE, in either protocol
generation or (with `legacy_only`) in 2025-11-25 only.

How the SDK (mcp 2.3) picks the generation, read from its source:

- stdio (and any stream pair): `Server.run` drives `mcp.server.runner.serve_dual_era_loop`,
  where the client's FIRST request decides, once: a request carrying the 2026-07-28 `_meta`
  envelope (the client's `server/discover` probe) opens a stateless 2026-07-28 connection;
  anything else (`initialize`) opens a 2025-11-25 one. `serve_loop` is the handshake-only
  driver: there the probe is refused (METHOD_NOT_FOUND / INVALID_PARAMS before `initialize`),
  and a `Client(mode="auto")` falls back to `initialize`.
- streamable HTTP: `StreamableHTTPSessionManager` routes on the `MCP-Protocol-Version` header of
  each POST: a handshake-era version (or none) goes to the stateful `Mcp-Session-Id` path, any
  other value to the 2026-07-28 per-request entry. Forcing 2025-11-25 therefore takes a small
  ASGI wrapper that refuses modern-header requests with a JSON-RPC error, which the client's
  probe treats as "legacy server" (`mcp.client._probe`: every MCPError but -32022 falls back).
- HTTP+SSE (`sse_app`) runs `Server.run` per connection, so it follows the stdio rule.

Change notifications: 2025-11-25 sessions get `notifications/tools/list_changed` pushed
(`ServerSession.send_tool_list_changed`); 2026-07-28 clients get events only on a
`subscriptions/listen` stream, fed from `MCPServer`'s subscription bus
(`Context.notify_tools_changed`). See `fakemcp.server._announce_tools_changed`.
"""

from __future__ import annotations

import json
from typing import Any

from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.mcpserver import MCPServer
from mcp.server.runner import serve_loop
from mcp.server.stdio import stdio_server
from mcp_types import INVALID_REQUEST
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.types import ASGIApp, Receive, Scope, Send

MCP_PATH = "/mcp"
SSE_PATH = "/sse"


def advertise_tools_changed(server: MCPServer) -> None:
    """Make 2025-11-25 handshakes advertise `tools.listChanged: true` (the fake does send it).

    MCPServer always builds its initialize result from default NotificationOptions (all false)
    on every transport; 2026-07-28 derives the flag from `subscriptions/listen` being served."""
    lowlevel = server._lowlevel_server
    build = lowlevel.create_initialization_options

    def with_tools_changed(notification_options: Any = None, *args: Any, **kwargs: Any) -> Any:
        return build(notification_options or NotificationOptions(tools_changed=True), *args, **kwargs)

    lowlevel.create_initialization_options = with_tools_changed  # type: ignore[method-assign]


async def serve_stdio(server: MCPServer, *, legacy_only: bool) -> None:
    """Serve one client on this process's stdin/stdout until stdin closes."""
    lowlevel = server._lowlevel_server
    options = lowlevel.create_initialization_options()
    async with stdio_server() as (read_stream, write_stream):
        if not legacy_only:
            await lowlevel.run(read_stream, write_stream, options)
            return
        async with lowlevel.lifespan(lowlevel) as lifespan_state:
            await serve_loop(lowlevel, read_stream, write_stream,
                             lifespan_state=lifespan_state, init_options=options)


def http_app(server: MCPServer, *, transport: str, legacy_only: bool) -> ASGIApp:
    """The ASGI app for `transport` ("streamable-http" at /mcp or "sse" at /sse)."""
    if transport == "sse":
        # sse_app serves each connection with Server.run: the first request decides the
        # generation, as on stdio. Legacy-only is not offered there (the transport is legacy).
        return server.sse_app(sse_path=SSE_PATH)
    app = server.streamable_http_app(streamable_http_path=MCP_PATH)
    return LegacyOnly(app) if legacy_only else app


class LegacyOnly:
    """ASGI wrapper refusing 2026-07-28 requests (by their MCP-Protocol-Version header) the way a
    2025-era server does: HTTP 400 with a JSON-RPC error. Lifespan and other traffic pass."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            version = next((value.decode("latin-1") for key, value in scope["headers"]
                            if key == b"mcp-protocol-version"), None)
            if version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS:
                await _refuse(send, version)
                return
        await self.app(scope, receive, send)


async def _refuse(send: Send, version: str) -> None:
    body = json.dumps({"jsonrpc": "2.0", "id": None, "error": {
        "code": INVALID_REQUEST, "message": f"Bad Request: unsupported protocol version {version}"}}).encode()
    await send({"type": "http.response.start", "status": 400,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
