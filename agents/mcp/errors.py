"""The one-line errors users see about MCP servers, and the scrubbing that keeps secrets out.

Every text here may reach a user, the model and the audit: no stack traces, and never a value
of the server's `env` or `headers` (tokens live there). `scrub` replaces any such value that
still slipped into an exception's text, and URLs are shown without userinfo or query string.
"""

from __future__ import annotations

import signal
from urllib.parse import urlsplit

import httpx2

from agents.mcp.addresses import AddressRefused
from agents.mcp.config import McpServerConfig

# Values shorter than this are not scrubbed: replacing "1" or "on" everywhere would garble text
# and such values are no secrets.
_MIN_SECRET_LEN = 4


class McpServerError(Exception):
    """A server could not serve a need; `str()` is the one-line message for users."""

    def __init__(self, message: str, *, server: str) -> None:
        super().__init__(message)
        self.server = server


def seconds(value: float) -> str:
    """10 -> "10 s", 0.5 -> "0.5 s"."""
    return f"{value:g} s"


def safe_url(url: str) -> str:
    """The URL without userinfo, query or fragment (where API keys tend to hide)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(invalid URL)"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def scrub(text: str, config: McpServerConfig) -> str:
    """`text` on one line, with every env and header value of `config` replaced by ***."""
    for value in (*config.env.values(), *config.headers.values()):
        if len(value) >= _MIN_SECRET_LEN:
            text = text.replace(value, "***")
    if config.url:
        text = text.replace(config.url, safe_url(config.url))
    return " ".join(text.split())


def exit_text(returncode: int | None) -> str:
    """How a stdio server ended: "crashed (exit code 1)", "crashed (killed by SIGKILL)"."""
    if returncode is None:
        return "closed its connection"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"crashed (killed by {name})"
    if returncode == 0:
        return "exited (exit code 0)"
    return f"crashed (exit code {returncode})"


def lost_text(server: str, transport: str, how: str) -> str:
    """A session that went away: "MCP server 'x' crashed (exit code 1); it is restarted on the
    next call" (stdio servers are restarted, HTTP sessions reopened)."""
    again = "restarted" if transport == "stdio" else "reopened"
    return f"MCP server '{server}' {how}; it is {again} on the next call"


def describe_drop(exc: BaseException, config: McpServerConfig) -> str:
    """Why an open session failed under us (an HTTP request that broke), in a few words."""
    return scrub(_text(root_cause(exc)), config)


def describe_open_failure(exc: BaseException, config: McpServerConfig) -> str:
    """Why opening a session failed, for "MCP server 'x' is not reachable: <this>"."""
    exc = root_cause(exc)
    if isinstance(exc, AddressRefused):
        return exc.message
    if isinstance(exc, FileNotFoundError):
        missing = exc.filename or config.command
        if config.cwd and missing == config.cwd:
            return scrub(f"working directory not found: {missing}", config)
        return scrub(f"command not found: {missing}", config)
    if isinstance(exc, PermissionError):
        return scrub(f"permission denied: {exc.filename or config.command}", config)
    if isinstance(exc, httpx2.HTTPStatusError):
        return f"HTTP {exc.response.status_code} from {safe_url(config.url)}"
    if isinstance(exc, httpx2.TimeoutException):
        return f"no answer from {safe_url(config.url)}"
    if isinstance(exc, httpx2.TransportError):
        return scrub(f"cannot connect to {safe_url(config.url)} ({_text(exc)})", config)
    if isinstance(exc, OSError):
        return scrub(f"{exc.strerror or _text(exc)}", config)
    return scrub(_text(exc), config)


def root_cause(exc: BaseException) -> BaseException:
    """The first leaf of nested exception groups (transports raise them from task groups)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _text(exc: BaseException) -> str:
    message = str(exc).strip().rstrip(".")
    return message or type(exc).__name__
