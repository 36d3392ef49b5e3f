"""`python -m fakemcp`: run the fake MCP server (stdio by default) for tests and benchmarks."""

from __future__ import annotations

import argparse
import sys

import anyio
import uvicorn

from fakemcp.runner import bind_socket
from fakemcp.server import build_server
from fakemcp.serving import MCP_PATH, SSE_PATH, advertise_tools_changed, http_app, serve_stdio


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fakemcp", description=__doc__)
    parser.add_argument("--transport", choices=["stdio", "streamable-http", "sse"], default="stdio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="HTTP port; 0 picks a free one")
    parser.add_argument("--legacy-only", action="store_true",
                        help="serve only the 2025-11-25 initialize handshake, not 2026-07-28")
    parser.add_argument("--extra-tools", type=int, default=0,
                        help="also list N tools extra_0000... (for paged-listing tests)")
    parser.add_argument("--page-size", type=int, default=100, help="tools per tools/list page")
    args = parser.parse_args(argv)

    server = build_server(extra_tools=args.extra_tools, page_size=args.page_size)
    advertise_tools_changed(server)
    if args.transport == "stdio":
        anyio.run(lambda: serve_stdio(server, legacy_only=args.legacy_only))
        return
    if args.transport == "sse" and args.legacy_only:
        parser.error("--legacy-only applies to stdio and streamable-http")
    sock = bind_socket(args.host, args.port)
    host = f"[{args.host}]" if ":" in args.host else args.host
    path = SSE_PATH if args.transport == "sse" else MCP_PATH
    # Listening now (uvicorn would only later) lets the kernel queue connections from the
    # moment the endpoint is printed: its first stdout line, which fakemcp.spawn_http waits for.
    sock.listen(128)
    print(f"http://{host}:{sock.getsockname()[1]}{path}", flush=True)
    app = http_app(server, transport=args.transport, legacy_only=args.legacy_only)
    uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                                  ws="none", timeout_graceful_shutdown=1)).run(sockets=[sock])
    sys.exit(0)


if __name__ == "__main__":
    main()
