"""A fake MCP server for tests and benchmarks, built on the SDK's own `MCPServer` (mcp 2.3).

    python -m fakemcp                                   # stdio, both protocol generations
    python -m fakemcp --legacy-only                     # stdio, 2025-11-25 only
    python -m fakemcp --transport streamable-http --port 0   # prints its URL (.../mcp) first
    python -m fakemcp --transport sse                   # the older HTTP+SSE transport (/sse)
    python -m fakemcp --extra-tools 1000                # also extra_0000..extra_0999

Tools (deterministic; see fakemcp.server): echo(text), add(a, b), fail(message) -> isError
result, sleep(seconds) (cancellable: a cancelled call is counted and "cancelled" is printed on
stderr), crash() -> os._exit(1) mid-call, huge(size), image() -> a 69-byte PNG plus a text,
add_tool(name), change_description(text) (of `echo`; both announce the change), pid(), and
stats() -> {"calls", "sleeping", "cancelled"} so a test can see what reached the server.
`tools/list` is paged, 100 tools a page (--page-size).

For tests: `stdio_command()` gives (command, args) for a stdio config; `run_http_in_thread()`
serves HTTP on a thread with its own loop (like fakellm.run_in_thread); `spawn_http()` starts a
child process (to SIGKILL it, or restart it on the same port).

What the SDK does, read from its source (details in fakemcp.serving):

- Protocol generation. One `MCPServer` serves both 2025-11-25 (initialize handshake,
  Mcp-Session-Id sessions) and 2026-07-28 (stateless; the client opens with `server/discover`).
  On stdio and SSE the client's first request decides (`serve_dual_era_loop`); on streamable
  HTTP each POST is routed by its MCP-Protocol-Version header. `Client(mode="auto")` probes
  discover and falls back to `initialize` on any error but -32022. There is no server flag to
  serve 2025-11-25 only: `--legacy-only` drives the handshake-only loop (`serve_loop`) on stdio
  and refuses modern-header requests with HTTP 400 on streamable HTTP, and a default client then
  negotiates 2025-11-25, which lets tests prove the pool works with both generations.
- Tool list changes. 2025-11-25: the server pushes `notifications/tools/list_changed` on the
  session (`ctx.session.send_tool_list_changed()`); the client gets it in `message_handler`.
  MCPServer advertises `tools.listChanged: false` in its handshake whatever it does; the fake
  advertises true (`advertise_tools_changed`). 2026-07-28: nothing is pushed; the server
  publishes on its subscription bus (`ctx.notify_tools_changed()`) and only clients holding a
  `subscriptions/listen` stream (`Client.listen(tools_list_changed=True)`) hear it; the client
  SDK also tees those events to `message_handler`.
- Cancellation. The client SDK sends `notifications/cancelled` when the task awaiting a call is
  cancelled and when a call times out; the server interrupts the handler (its default peer
  cancel mode), which the fake's `sleep` counts.
"""

from fakemcp.runner import (
    FakeMCPProcess,
    FakeMCPThread,
    run_http_in_thread,
    spawn_http,
    stdio_command,
)
from fakemcp.server import PNG_1X1, build_server

__all__ = ["PNG_1X1", "FakeMCPProcess", "FakeMCPThread", "build_server", "run_http_in_thread",
           "spawn_http", "stdio_command"]
