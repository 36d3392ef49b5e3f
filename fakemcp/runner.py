"""Running the fake for tests: over HTTP on a thread of this process, or as a child process.

Like `fakellm.run_in_thread`, the in-thread server has its own event loop, so a test's loop can
neither stall it nor share its timing. A child process is what a test needs to kill a server
(SIGKILL from outside) or to restart one on the same port.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import uvicorn

from fakemcp.serving import MCP_PATH, SSE_PATH, advertise_tools_changed, http_app
from fakemcp.server import build_server

ROOT = Path(__file__).resolve().parent.parent


def stdio_command(*, extra_tools: int = 0, legacy_only: bool = False) -> tuple[str, list[str]]:
    """(command, args) that start the fake on stdio with this Python, for a stdio MCP config."""
    args = ["-m", "fakemcp"]
    if extra_tools:
        args += ["--extra-tools", str(extra_tools)]
    if legacy_only:
        args.append("--legacy-only")
    return sys.executable, args


class FakeMCPThread:
    """Handle on a fake HTTP server running on a background thread. Create it with
    `run_http_in_thread`; stop it with `stop()` or use it as a context manager."""

    def __init__(self, *, server: uvicorn.Server, host: str, port: int, path: str) -> None:
        self.host = host
        self.port = port
        self.url = f"http://{host}:{port}{path}"
        self._server = server
        self._thread: threading.Thread | None = None

    def stop(self) -> None:
        """Stop serving (open streams are closed by uvicorn's shutdown); idempotent."""
        if self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._thread = None

    def __enter__(self) -> FakeMCPThread:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _start(self, sock: socket.socket) -> None:
        def serve() -> None:
            loop = asyncio.new_event_loop()
            try:
                loop.run_until_complete(self._server.serve(sockets=[sock]))
            finally:
                # Streams uvicorn left behind (an SSE stream's watcher) end here, not as
                # "Task was destroyed but it is pending" noise when the loop closes.
                loop.run_until_complete(_cancel_leftover_tasks())
                loop.close()

        self._thread = threading.Thread(target=serve, name=f"fakemcp:{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("fakemcp server failed to start")
            time.sleep(0.005)


async def _cancel_leftover_tasks() -> None:
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def run_http_in_thread(
    *, transport: str = "streamable-http", legacy_only: bool = False, extra_tools: int = 0,
    host: str = "127.0.0.1", port: int = 0,
) -> FakeMCPThread:
    """Start the fake over `transport` ("streamable-http" or "sse") on a background thread and
    return its handle once it accepts connections; `.url` is the MCP endpoint."""
    server = build_server(extra_tools=extra_tools)
    advertise_tools_changed(server)
    app = http_app(server, transport=transport, legacy_only=legacy_only)
    sock = bind_socket(host, port)
    config = uvicorn.Config(app, log_config=None, log_level="warning", access_log=False,
                            lifespan="on", loop="asyncio", http="h11", ws="none",
                            timeout_graceful_shutdown=1)
    handle = FakeMCPThread(server=uvicorn.Server(config), host=host, port=sock.getsockname()[1],
                           path=SSE_PATH if transport == "sse" else MCP_PATH)
    handle._start(sock)
    return handle


class FakeMCPProcess:
    """A fake HTTP server in a child process (its own session, so a kill reaches only it)."""

    def __init__(self, *, proc: subprocess.Popen[bytes], url: str, port: int) -> None:
        self.proc = proc
        self.url = url
        self.port = port

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL, then reap (no zombie left behind)."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> FakeMCPProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def spawn_http(
    *, transport: str = "streamable-http", legacy_only: bool = False, extra_tools: int = 0,
    host: str = "127.0.0.1", port: int = 0, timeout: float = 10.0,
) -> FakeMCPProcess:
    """Start `python -m fakemcp` over HTTP in a child process and return once it listens.
    `port=0` picks a free port; pass a previous `.port` to restart a server in its place."""
    args = [sys.executable, "-m", "fakemcp", "--transport", transport, "--host", host,
            "--port", str(port), "--extra-tools", str(extra_tools)]
    if legacy_only:
        args.append("--legacy-only")
    proc = subprocess.Popen(args, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            start_new_session=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    # The first stdout line is the URL, printed once the socket is bound and listening.
    line = proc.stdout.readline().decode().strip()
    if not line.startswith("http") or time.monotonic() > deadline:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"fakemcp did not start: {line!r}")
    proc.stdout.close()
    return FakeMCPProcess(proc=proc, url=line, port=int(line.split(":")[2].split("/")[0]))


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind before starting uvicorn, so port 0 yields a known free port and no race for it."""
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted sockets only when the protocol
    # says TCP (the fake LLM's small answers waited ~40 ms for a delayed ACK without it; here
    # the option set below on the listening socket already covers Linux).
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM,
                         socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock
