"""What both adapters share on the wire: the provider's client, opening the timed SSE stream
(its clock and reader are in `_timing`), whole JSON exchanges, error mapping.

Private to `agents.providers`. Everything that turns an HTTP failure into a `ProviderError` lives
here, so the messages users see are the same whichever provider failed, and whichever transport
carried it (`_transport`); the one place that could leak the API key into a message is the one
place that redacts it.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import ssl
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from agents.events import ProviderError
from agents.providers._sse import Event
from agents.providers._stock import StockClient
from agents.providers._timing import StreamClock, TimedEvents
from agents.providers._transport import (
    KEEPALIVE_EXPIRY,
    BadRequest,
    BadResponse,
    ConnectFailed,
    HttpClient,
    TransportError,
)
from agents.providers._wire import WireClient
from agents.providers.base import HttpTransport, ProviderConfig, Timeouts

# Server error texts are shown to users; long HTML error pages from proxies are not useful.
MAX_SERVER_MESSAGE = 300
# How much of an error response is read: its message is in the first few hundred bytes.
MAX_ERROR_BODY = 64 * 1024
# A whole JSON answer (a model list, a non-streamed answer) larger than this is refused.
MAX_JSON_BODY = 32 * 1024 * 1024


def make_client(config: ProviderConfig) -> HttpClient:
    """One client per provider, of the kind `config.transport` names: connections are reused
    across turns, as many kept idle as the provider may have streams.

    Only connecting and writing are bounded by the client; first-token, gap and total are
    enforced around the reads (a socket read timeout cannot tell "thinking before the first
    token" from "stalled mid-answer").
    """
    return make_transport(config.transport, max_idle=config.max_concurrency,
                          connect_timeout=config.timeouts.connect)


def make_transport(kind: HttpTransport, *, max_idle: int, connect_timeout: float,
                   keepalive_expiry: float = KEEPALIVE_EXPIRY,
                   ssl_context: ssl.SSLContext | None = None) -> HttpClient:
    """A client with the same limits whichever kind (see `_transport`): no cap on connections
    (the caller limits concurrency, as agents.resilience does per provider, so a second cap here
    would only queue turns invisibly), at most `max_idle` idle ones kept for `keepalive_expiry`
    seconds, and httpx's trust store (certifi, or SSL_CERT_FILE / SSL_CERT_DIR) unless
    `ssl_context` is given."""
    ssl_context = ssl_context or httpx.create_ssl_context()
    if kind == "own":
        return WireClient(max_idle=max_idle, connect_timeout=connect_timeout,
                          keepalive_expiry=keepalive_expiry, ssl_context=ssl_context)
    if kind == "stock":
        return StockClient(max_idle=max_idle, connect_timeout=connect_timeout,
                           keepalive_expiry=keepalive_expiry, ssl_context=ssl_context)
    raise ValueError(f"unknown HTTP transport {kind!r}")


def public_url(url: str) -> str:
    """The URL without user:password or query, fit for messages shown to users."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return "<invalid URL>"
    # Query strings can carry keys too (?api-key=...).
    return str(parsed.copy_with(userinfo=b"", query=None))


def redact(text: str, *, secret: str) -> str:
    # Below 4 characters it is a placeholder ("x" for a local server), and replacing every "x"
    # in a message would only garble it.
    return text.replace(secret, "***") if len(secret) >= 4 else text


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait, from `retry-after-ms` (OpenAI), or `Retry-After` in seconds or HTTP date."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            value = float(ms) / 1000
            if math.isfinite(value):
                return max(value, 0.0)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        value = float(raw)
        return max(value, 0.0) if math.isfinite(value) else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def server_message(body: bytes | str) -> str:
    """The human part of an error body, whatever the server's dialect.

    OpenAI and most compatible servers: {"error": {"message": ...}}; Anthropic: {"type": "error",
    "error": {"type", "message"}}; some servers: {"error": "..."}, FastAPI: {"detail": ...}.
    """
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        data = json.loads(text)
    except ValueError:
        return text.strip()
    return _message_from(data) or text.strip()


def _message_from(data: Any) -> str:
    if isinstance(data, str):
        return data
    if isinstance(data, dict):
        for key in ("error", "message", "detail"):
            if key in data:
                found = _message_from(data[key])
                if found:
                    return found
        return ""
    if isinstance(data, list) and data:
        return "; ".join(filter(None, (_message_from(item) for item in data)))
    return ""


def _truncate(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_SERVER_MESSAGE else text[: MAX_SERVER_MESSAGE - 1] + "…"


# Anthropic's error types (also used by some OpenAI-compatible proxies) as the HTTP status
# they stand for, so an error reported mid-stream is classified like the same error up front.
_STATUS_OF_ERROR_TYPE: dict[str, int] = {
    "overloaded_error": 529,
    "rate_limit_error": 429,
    "api_error": 500,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "invalid_request_error": 400,
    "request_too_large": 413,
    "timeout_error": 504,
}


@dataclass(frozen=True, slots=True)
class ErrorContext:
    """What error messages may mention: the public base URL and the model; never the key."""

    base_url: str
    model: str
    api_key: str

    def _clean(self, text: str) -> str:
        return _truncate(redact(text, secret=self.api_key))

    def from_status(
        self, *, status: int, body: bytes | str, headers: Mapping[str, str]
    ) -> ProviderError:
        detail = self._clean(server_message(body))
        where = public_url(self.base_url)
        if status in (401, 403):
            # The server's own text is dropped: some servers echo (part of) the key back.
            return ProviderError(
                f"The model server rejected the API key (HTTP {status}).", kind="auth", status=status
            )
        if status == 404:
            # A wrong URL gets the web server's generic "Not Found"; an unknown model gets an
            # answer that names it (OpenAI's code "model_not_found", vLLM's "The model ...").
            raw = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
            if "model" in raw.lower():
                message = f"The model server does not know model '{self.model}' (HTTP 404)."
            else:
                message = (
                    f"The model server at {where} answered 'not found' (HTTP 404): "
                    f"is the URL right, and does it serve model '{self.model}'?"
                )
            return ProviderError(message, kind="not_found", status=status)
        if status in (429, 529):
            what = "is overloaded" if status == 529 else "is rate limiting us"
            return ProviderError(
                f"The model server {what} (HTTP {status})."
                + (f" {detail}" if detail else ""),
                kind="rate_limited",
                status=status,
                retryable=True,
                retry_after=parse_retry_after(headers),
            )
        if status == 408:
            return ProviderError(
                "The model server timed out (HTTP 408).",
                kind="timeout",
                status=status,
                retryable=True,
            )
        if status >= 500:
            return ProviderError(
                f"The model server failed (HTTP {status})." + (f" {detail}" if detail else ""),
                kind="server_error",
                status=status,
                # 501 "not implemented" will not get better by asking again.
                retryable=status != 501,
                retry_after=parse_retry_after(headers),
            )
        return ProviderError(
            f"The model server refused the request (HTTP {status}): {detail or 'no details'}",
            kind="bad_request",
            status=status,
        )

    def cannot_connect(self) -> ProviderError:
        return ProviderError(
            f"Cannot reach the model server at {public_url(self.base_url)}.",
            kind="connection",
            retryable=True,
        )

    def dropped(self) -> ProviderError:
        return ProviderError(
            f"The connection to the model server at {public_url(self.base_url)} "
            "dropped before the answer was complete.",
            kind="connection",
            retryable=True,
        )

    def unsendable(self, what: str) -> ProviderError:
        return ProviderError(
            f"The request to the model server at {public_url(self.base_url)} cannot be sent: "
            f"{self._clean(what)}",
            kind="bad_request",
        )

    def protocol(self, what: str) -> ProviderError:
        return ProviderError(
            f"The model server sent something we cannot read: {self._clean(what)}",
            kind="protocol",
        )

    def in_stream(self, *, status: int | None, error_type: str, message: str) -> ProviderError:
        """An error the server reported inside a 200 stream (Anthropic `error` events, and the
        `{"error": ...}` chunks some OpenAI-compatible servers send)."""
        detail = self._clean(message)
        status = status or _STATUS_OF_ERROR_TYPE.get(error_type)
        if status is None:
            # Unknown mid-stream failures are almost always upstream trouble, worth a retry.
            return ProviderError(
                f"The model server reported an error: {detail or error_type or 'no details'}",
                kind="server_error",
                retryable=True,
            )
        return self.from_status(status=status, body=message, headers={})


def parse_json(sse: Event, *, errors: ErrorContext) -> dict[str, Any]:
    try:
        data = json.loads(sse.data)
    except ValueError:
        raise errors.protocol(f"invalid JSON in a stream event: {sse.data[:100]!r}") from None
    if not isinstance(data, dict):
        raise errors.protocol(f"unexpected stream event: {sse.data[:100]!r}")
    return data


@contextmanager
def _transport_errors(errors: ErrorContext) -> Iterator[None]:
    """A transport's failures as the ProviderErrors users see."""
    try:
        yield
    except ConnectFailed:
        raise errors.cannot_connect() from None
    except BadRequest as exc:
        raise errors.unsendable(str(exc)) from None
    except BadResponse as exc:
        raise errors.protocol(str(exc)) from None
    except TransportError:
        # Connected, then lost before the answer arrived: same remedy as a failed connect.
        raise errors.dropped() from None


def encode_json(body: Any) -> bytes:
    # As httpx encodes json=: compact, UTF-8, and no NaN (which is not JSON).
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"),
                      allow_nan=False).encode()


@asynccontextmanager
async def open_sse(
    *,
    client: HttpClient,
    url: str,
    body: dict[str, Any],
    headers: dict[str, str],
    timeouts: Timeouts,
    errors: ErrorContext,
) -> AsyncIterator[TimedEvents]:
    """POST `body` and yield its SSE events; the response is closed on exit, however it exits.

    Closing a response whose body was not read to the end drops its connection instead of
    keeping it for reuse, so the server sees the client go away at once (and stops generating).
    Raises `ProviderError` for HTTP errors, connection failures and the first-token or total
    timeout while waiting for the response headers.
    """
    clock = StreamClock(timeouts)
    payload = encode_json(body)
    headers = {**headers, "Content-Type": "application/json", "Accept": "text/event-stream",
               "Cache-Control": "no-store"}
    response = None
    events: TimedEvents | None = None
    try:
        deadline, phase = clock.next_deadline()
        try:
            with _transport_errors(errors):
                async with asyncio.timeout_at(deadline):
                    response = await client.send("POST", url, headers=headers, body=payload)
                    if response.status >= 400:
                        error_body = await response.read(MAX_ERROR_BODY)
        except TimeoutError:
            raise clock.timeout_error(phase) from None
        if response.status >= 400:
            raise errors.from_status(status=response.status, body=error_body,
                                     headers=response.headers)
        content_type = response.headers.get("content-type", "")
        if "text/event-stream" not in content_type:
            raise errors.protocol(
                f"expected an event stream, got {content_type or 'no content type'}")
        events = TimedEvents(chunks=aiter(response), clock=clock, errors=errors)
        yield events
    finally:
        if events is not None:
            await events.aclose()
        if response is not None:
            await response.aclose()


async def request_json(*, client: HttpClient, method: str, url: str,
                       headers: dict[str, str], timeouts: Timeouts, errors: ErrorContext,
                       body: dict[str, Any] | None = None) -> Any:
    """A small JSON exchange (a model list; a whole, non-streamed answer), with the same error
    mapping as streams. The answer must arrive within the connect and first-token timeouts
    together: nothing of it reaches anyone before it is whole, so it is its first token."""
    payload = None
    if body is not None:
        payload = encode_json(body)
        headers = {**headers, "Content-Type": "application/json"}
    try:
        with _transport_errors(errors):
            async with asyncio.timeout(timeouts.connect + timeouts.first_token):
                response = await client.send(method, url, headers=headers, body=payload)
                try:
                    limit = MAX_ERROR_BODY if response.status >= 400 else MAX_JSON_BODY + 1
                    content = await response.read(limit)
                finally:
                    await response.aclose()
    except TimeoutError:
        raise ProviderError(
            f"The model server at {public_url(errors.base_url)} did not answer in time.",
            kind="timeout",
            retryable=True,
        ) from None
    if response.status >= 400:
        raise errors.from_status(status=response.status, body=content, headers=response.headers)
    if len(content) > MAX_JSON_BODY:
        raise errors.protocol(f"the answer is larger than {MAX_JSON_BODY >> 20} MiB")
    try:
        return json.loads(content)
    except ValueError:
        raise errors.protocol("the answer is not JSON") from None


def join_url(base_url: str, path: str) -> str:
    return base_url.rstrip("/") + "/" + path.lstrip("/")


def parse_arguments(raw: str) -> dict[str, Any]:
    """Tool-call arguments as a dict; {} when the model produced invalid JSON or not an object
    (the raw text is kept next to it, in ToolCall.arguments_raw, so the loop can tell the model
    what went wrong)."""
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}

