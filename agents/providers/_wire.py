"""Our HTTP/1.1 client for model servers (`LLM_HTTP_TRANSPORT=own`), on an asyncio Protocol.

Why ours: a streamed token is one small HTTP chunk, and through httpx each one passed h11's
chunked reader, httpcore, httpx's stream wrappers and a StreamReader: about twice the CPU a bare
Protocol spends on the same read even with our own pool and backend under httpx, and each request
paid about 1.1 ms more than here for httpx's request model, cookies, auth flow and httpcore's
state machine (`bench/upstream_read.py`, "HTTP client alone"). Here `data_received` de-frames the
chunks of one read with `bytes.find` and `int(…, 16)` into a list, and the reader takes
everything buffered at each wake-up, in one piece.

It does what a model server needs, no more: HTTP/1.1 only (no HTTP/2, no proxies, no redirects,
no cookies), Content-Length, chunked and read-until-close bodies, gzip and deflate decoded if a
server compresses although we ask it not to. Every buffer is bounded: the response head, chunk
lines and trailers by size, the unread body by pausing the socket. Public asyncio APIs only
(`loop.create_connection`, `asyncio.Protocol`, `ssl=` with `server_hostname`).

Keep-alive: idle connections wait on a stack per origin (scheme, host, port); a request takes the
most recently used one (the warmest, the least likely to have been closed by the server) and
looks at that one only. A server's close of an idle connection arrives as `connection_lost`,
which marks it dead: nothing is polled. Private to `agents.providers`.

One module of nearly 800 lines, past our usual 400, on purpose: the pool, the connection's
parser and the response reader share one state machine (a connection is reusable only when its
parser says the body ended; the reader wakes on the parser's pieces), and split across modules
each would reach into the others' private state.
"""

from __future__ import annotations

import asyncio
import base64
import re
import ssl
import time
import zlib
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

from agents.providers._transport import (
    KEEPALIVE_EXPIRY,
    BadRequest,
    BadResponse,
    ConnectFailed,
    Dropped,
    read_at_most,
)

# A status line and headers beyond this are not a model server's: refused, not buffered.
MAX_HEAD = 64 * 1024
# A chunk-size line (hex digits and extensions), and chunked trailers.
MAX_CHUNK_LINE = 4 * 1024
MAX_TRAILERS = 64 * 1024
# Above this many body bytes unread, the socket stops being read until the reader catches up.
READ_HIGH_WATER = 256 * 1024
# At most this many decompressed bytes out of one piece of compressed input (a zip bomb is
# unpacked a slice per read, not in one go).
MAX_DECODED = 256 * 1024
# Parsed URLs kept per client: a provider uses two or three.
MAX_TARGETS = 64

USER_AGENT = "chatsite"
_DEFAULT_HEADERS = (("User-Agent", USER_AGENT), ("Accept", "*/*"),
                    # Compressing a stream of small chunks saves little and delays tokens.
                    ("Accept-Encoding", "identity"))

_HEAD_END = re.compile(rb"\r?\n\r?\n")
_LINE_END = re.compile(rb"\r?\n")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOKEN_STR = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_NOT_IN_A_VALUE = re.compile(r"[\x00\r\n]")

# What a connection is reading.
_IDLE, _HEAD, _CHUNKED, _LENGTH, _UNTIL_CLOSE, _DONE = range(6)


class Headers(Mapping[str, str]):
    """Response headers, looked up case-insensitively; a repeated header's values joined by
    ", " (RFC 9110 5.3)."""

    __slots__ = ("_values",)

    def __init__(self, values: dict[str, str]) -> None:
        self._values = values  # by lower-case name

    def __getitem__(self, name: str) -> str:
        return self._values[name.lower()]

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return self._values.get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Headers({sorted(self._values)})"  # names only


class _Stale(Dropped):
    """A kept connection closed before any byte of an answer: the server had closed it while it
    was idle, and we wrote before its close arrived."""


class WireClient:
    """One provider's client: `send()` and the keep-alive pool. Belongs to the event loop it is
    first used on.

    No cap on connections (the caller limits concurrency, as agents.resilience does per
    provider); at most `max_idle` idle ones per origin, each kept `keepalive_expiry` seconds.
    Connecting (TCP and TLS) and writing the request are bounded by `connect_timeout`; waiting for
    the answer is the caller's to bound.
    """

    def __init__(self, *, max_idle: int, connect_timeout: float,
                 keepalive_expiry: float = KEEPALIVE_EXPIRY,
                 ssl_context: ssl.SSLContext) -> None:
        self._max_idle = max_idle
        self._connect_timeout = connect_timeout
        self._keepalive_expiry = keepalive_expiry
        ssl_context.set_alpn_protocols(["http/1.1"])
        self._ssl_context = ssl_context
        self._idle: dict[tuple[str, str, int], deque[_Connection]] = {}
        # Every connection not yet closed, idle or busy: closing the client closes them all.
        self.open: set[_Connection] = set()
        self._targets: dict[str, _Target] = {}
        self._closed = False

    @property
    def is_closed(self) -> bool:
        return self._closed

    async def send(self, method: str, url: str, *, headers: Mapping[str, str],
                   body: bytes | None = None) -> Response:
        """See `_transport.HttpClient.send`."""
        if self._closed:
            raise RuntimeError("send() on a closed client")
        target = self._target(url)
        request = target.request(method, headers, body)
        connection = self._take_idle(target.key)
        if connection is not None:
            try:
                return await self._exchange(connection, method, request)
            except _Stale:
                # The keep-alive race: the server closed the connection as we wrote to it.
                # Nothing of an answer came, so asking once more on a new connection repeats
                # nothing the user saw.
                pass
        connection = await self._connect(target)
        try:
            return await self._exchange(connection, method, request)
        except _Stale:
            raise Dropped("the server closed the connection without answering") from None

    async def aclose(self) -> None:
        self._closed = True
        connections = list(self.open)
        self.open.clear()
        self._idle.clear()
        for connection in connections:
            connection.close()
        await asyncio.sleep(0)  # let the transports finish closing their sockets

    def kept_connections(self) -> list[int]:
        """For tests and diagnostics: the requests each live idle connection has served."""
        return [c.requests for stack in self._idle.values() for c in stack if not c.closed]

    def _target(self, url: str) -> _Target:
        target = self._targets.get(url)
        if target is None:
            target = _Target.parse(url)
            if len(self._targets) >= MAX_TARGETS:
                self._targets.clear()
            self._targets[url] = target
        return target

    def _take_idle(self, key: tuple[str, str, int]) -> _Connection | None:
        stack = self._idle.get(key)
        if not stack:
            return None
        now = time.monotonic()
        while stack:
            connection = stack.pop()
            if connection.closed:
                continue  # closed by the server while idle
            if now - connection.idle_since > self._keepalive_expiry:
                # The stack is ordered by last use: everything under an expired one is older.
                connection.close()
                while stack:
                    stack.pop().close()
                return None
            return connection
        return None

    def release(self, connection: _Connection) -> None:
        """Back on its stack if its response was read to the end and it may be reused; closed
        otherwise (the surplus beyond `max_idle` too: the least recently used goes)."""
        if (self._closed or connection.closed or not connection.reusable
                or connection.state != _DONE
                # Answered before the request was all out: the server reads the rest as a
                # request of its own.
                or connection.transport.get_write_buffer_size()):
            connection.close()
            return
        connection.idle()
        stack = self._idle.get(connection.key)
        if stack is None:
            stack = self._idle[connection.key] = deque()
        stack.append(connection)
        if len(stack) > self._max_idle:
            stack.popleft().close()

    async def _connect(self, target: _Target) -> _Connection:
        loop = asyncio.get_running_loop()
        connection = _Connection(client=self, key=target.key, loop=loop)
        tls = self._ssl_context if target.tls else None
        try:
            async with asyncio.timeout(self._connect_timeout):
                await loop.create_connection(
                    lambda: connection, target.host, target.port, ssl=tls,
                    server_hostname=target.host if tls else None,
                    ssl_handshake_timeout=self._connect_timeout if tls else None)
        except TimeoutError:
            raise ConnectFailed(
                f"no connection to {target.host}:{target.port} within "
                f"{self._connect_timeout:g} s") from None
        except OSError as exc:  # refused, unresolvable, TLS refused (ssl.SSLError)
            raise ConnectFailed(str(exc) or type(exc).__name__) from None
        if self._closed:  # closed while we connected
            connection.close()
            raise RuntimeError("send() on a closed client")
        return connection

    async def _exchange(self, connection: _Connection, method: str,
                        request: bytes) -> Response:
        """Write the request, wait for the response head. Closes the connection on any failure
        or cancellation (a timeout of the caller's included)."""
        try:
            if connection.closed:
                raise _Stale("closed before the request")
            connection.begin(method)
            # write(), not writelines(): in CPython 3.12 only write() pauses the protocol when
            # the buffer grows (pause_writing), which the write timeout below relies on.
            connection.transport.write(request)
            if connection.write_paused:
                try:
                    async with asyncio.timeout(self._connect_timeout):
                        # An answer before the request is all out (413, say) ends the wait.
                        while (connection.write_paused and not connection.closed
                               and connection.state == _HEAD):
                            await connection.wait()
                except TimeoutError:
                    raise Dropped(f"the request was not taken within "
                                  f"{self._connect_timeout:g} s") from None
            while connection.state == _HEAD and connection.error is None:
                await connection.wait()
            if connection.state == _HEAD:
                raise connection.error  # type: ignore[misc]
        except BaseException:
            connection.close()
            raise
        return Response(connection)


@dataclass(frozen=True, slots=True)
class _Target:
    """A URL as we send it, parsed once per client."""

    key: tuple[str, str, int]
    host: str
    port: int
    tls: bool
    # " /path?query HTTP/1.1\r\nHost: host[:port]\r\n": what follows the method.
    start: str
    # From user:password in the URL, as httpx does (replacing any Authorization header).
    basic_auth: str | None

    @staticmethod
    def parse(url: str) -> _Target:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise BadRequest(f"invalid URL ({exc})") from None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise BadRequest(f"unsupported URL scheme {scheme!r}")
        host = parts.hostname or ""
        if not host:
            raise BadRequest("the URL has no host")
        if not host.isascii():
            host = host.encode("idna").decode("ascii")
        default_port = 443 if scheme == "https" else 80
        port = port or default_port
        authority = f"[{host}]" if ":" in host else host
        if port != default_port:
            authority += f":{port}"
        # Characters a request line may not carry are escaped; existing escapes are kept.
        target = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
        if parts.query:
            target += "?" + quote(parts.query, safe="/?%:@!$&'()*+,;=-._~")
        basic_auth = None
        if parts.username or parts.password:
            pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
            basic_auth = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        return _Target(key=(scheme, host, port), host=host, port=port, tls=scheme == "https",
                       start=f" {target} HTTP/1.1\r\nHost: {authority}\r\n",
                       basic_auth=basic_auth)

    def request(self, method: str, headers: Mapping[str, str], body: bytes | None) -> bytes:
        """The request's bytes, head and body, to be written in one go (one send, where two
        writes would cost two). Raises `BadRequest` for a header HTTP cannot carry, without
        quoting its value: it may be the API key."""
        lines = [method, self.start]
        given = set()
        for name, value in headers.items():
            if not _TOKEN_STR.fullmatch(name) or _NOT_IN_A_VALUE.search(value):
                raise BadRequest(f"the {name[:40]!r} header has a character HTTP does not allow "
                                 "(a line break?)")
            lower = name.lower()
            if lower == "authorization" and self.basic_auth:
                continue
            given.add(lower)
            lines.append(f"{name}: {value}\r\n")
        for name, value in _DEFAULT_HEADERS:
            if name.lower() not in given:
                lines.append(f"{name}: {value}\r\n")
        if self.basic_auth:
            lines.append(f"Authorization: {self.basic_auth}\r\n")
        if body is not None:
            lines.append(f"Content-Length: {len(body)}\r\n")
        elif method not in ("GET", "HEAD"):
            lines.append("Content-Length: 0\r\n")
        lines.append("\r\n")
        try:
            head = "".join(lines).encode("ascii")
        except UnicodeEncodeError:
            raise BadRequest("a header has a character that is not ASCII") from None
        return head + body if body else head


class _Connection(asyncio.Protocol):
    """One socket and the response being read on it: the parsing runs in `data_received`, into
    `pieces`, which the `Response` takes; `waiter` wakes it. One request at a time."""

    def __init__(self, *, client: WireClient, key: tuple[str, str, int],
                 loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.key = key
        self.loop = loop
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.closed = False
        self.requests = 0
        self.idle_since = 0.0
        self.waiter: asyncio.Future[None] | None = None
        self.write_paused = False
        self.read_paused = False
        self.state = _IDLE
        self._reset("GET")

    def _reset(self, method: str) -> None:
        self.method = method
        self.got_bytes = False
        self.reusable = True
        self.error: Exception | None = None
        self.status = 0
        self.headers: Headers = Headers({})
        self.decoder: _Decoder | None = None
        # De-framed body bytes not yet taken by the reader, and how many.
        self.pieces: list[bytes] = []
        self.buffered = 0
        # Framing: bytes of a line not complete yet, body bytes still due (of the whole body,
        # or of the current chunk), the CRLF due after a chunk's data, reading trailers.
        self.partial = b""
        self.remaining = 0
        self.crlf_due = False
        self.in_trailers = False

    def __repr__(self) -> str:
        scheme, host, port = self.key
        return f"<connection {scheme}://{host}:{port}, {self.requests} requests>"

    # --- What the client and the response do ---------------------------------------------------

    def begin(self, method: str) -> None:
        self._reset(method)
        self.state = _HEAD
        self.requests += 1

    def idle(self) -> None:
        self.state = _IDLE
        self.pieces = []
        self.buffered = 0
        self.idle_since = time.monotonic()
        if self.read_paused:
            self.resume_reading()  # a paused socket would not see the server close it

    def wait(self) -> asyncio.Future[None]:
        """A future the next event on the connection resolves: bytes, its loss, drained."""
        self.waiter = waiter = self.loop.create_future()
        return waiter

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():  # cancelled: its reader was cancelled, or timed out
                waiter.set_result(None)

    def resume_reading(self) -> None:
        self.read_paused = False
        if not self.closed:
            self.transport.resume_reading()

    def close(self) -> None:
        """At once, without a TLS goodbye: a server that went away never answers one, and one
        still streaming must see us leave now (it stops generating)."""
        if not self.closed:
            self.closed = True
            self.reusable = False
            self.client.open.discard(self)
            if self.transport is not None:
                self.transport.abort()

    # --- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.client.open.add(self)

    def data_received(self, data: bytes) -> None:
        if self.state == _CHUNKED:
            self._chunked(data)  # the streamed token
        else:
            self._other(data)
        self._wake()

    def eof_received(self) -> None:
        if self.state == _UNTIL_CLOSE:
            self.state = _DONE
        # Returning None closes the transport; connection_lost follows.

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.client.open.discard(self)
        state = self.state
        if state == _UNTIL_CLOSE and exc is None:
            self.state = _DONE
        elif state not in (_IDLE, _DONE) and self.error is None:
            why = f" ({exc})" if exc else ""
            if state == _HEAD and not self.got_bytes:
                self.error = _Stale(f"the server closed the connection without answering{why}")
            else:
                self.error = Dropped(
                    f"the server closed the connection before the response was complete{why}")
        self.write_paused = False
        self._wake()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake()

    # --- Parsing ---------------------------------------------------------------------------------

    def _emit(self, piece: bytes) -> None:
        self.pieces.append(piece)
        self.buffered += len(piece)
        if self.buffered > READ_HIGH_WATER and not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def _fail(self, error: Exception) -> None:
        if self.error is None:
            self.error = error
        self.close()

    def _other(self, data: bytes) -> None:
        state = self.state
        if state == _HEAD:
            self._head(data)
        elif state == _LENGTH:
            remaining = self.remaining
            if len(data) < remaining:
                self._emit(data)
                self.remaining = remaining - len(data)
            else:
                self._emit(data if len(data) == remaining else data[:remaining])
                self._done(extra=len(data) > remaining)
        elif state == _UNTIL_CLOSE:
            self._emit(data)
        elif state == _CHUNKED:
            self._chunked(data)
        else:
            # Bytes no request asked for (after a response, or while idle: a server's "408"
            # before closing, say): this connection's framing cannot be trusted again.
            self.reusable = False
            if state == _IDLE:
                self.close()

    def _done(self, *, extra: bool) -> None:
        self.state = _DONE
        if extra:
            self.reusable = False  # more than the response: framing lost

    def _head(self, data: bytes) -> None:
        self.got_bytes = True
        buf = self.partial + data if self.partial else data
        self.partial = b""
        while True:
            end = _HEAD_END.search(buf)
            if end is None or end.start() > MAX_HEAD:
                if len(buf) > MAX_HEAD:
                    self._fail(BadResponse(f"response head larger than {MAX_HEAD} bytes"))
                else:
                    self.partial = buf
                return
            try:
                version, status, headers = _parse_head(buf[:end.start()])
            except BadResponse as exc:
                self._fail(exc)
                return
            buf = buf[end.end():]
            if status >= 200:
                break
            if status == 101:
                self._fail(BadResponse("the server switched protocols"))
                return
            # 1xx (100 Continue, 103 Early Hints): the response itself follows.
        try:
            self._start_body(version, status, headers)
        except BadResponse as exc:
            self._fail(exc)
            return
        if buf:
            self._other(buf)

    def _start_body(self, version: bytes, status: int, headers: dict[str, str]) -> None:
        """Framing (RFC 9112 6.3) and whether the connection may serve another request."""
        self.status = status
        self.headers = Headers(headers)
        connection = headers.get("connection", "").lower()
        reusable = version == b"HTTP/1.1" and "close" not in connection.replace(" ", "").split(",")
        encoding = headers.get("transfer-encoding")
        length = headers.get("content-length")
        if self.method == "HEAD" or status in (204, 304):
            self.state = _DONE
        elif encoding is not None:
            if encoding.strip().lower() != "chunked":
                raise BadResponse(f"unsupported Transfer-Encoding {encoding[:40]!r}")
            # With both, Transfer-Encoding wins and the connection must not be reused.
            reusable = reusable and length is None
            self.state = _CHUNKED
        elif length is not None:
            values = {v.strip() for v in length.split(",")}
            value = values.pop()
            if values or not (value.isascii() and value.isdigit()):
                raise BadResponse(f"invalid Content-Length {length[:40]!r}")
            self.remaining = int(value)
            self.state = _LENGTH if self.remaining else _DONE
        else:
            self.state = _UNTIL_CLOSE  # the body ends when the server closes
            reusable = False
        self.reusable = reusable
        coding = headers.get("content-encoding", "").strip().lower()
        if coding not in ("", "identity"):
            self.decoder = _Decoder(coding)

    def _chunked(self, data: bytes) -> None:
        """De-frame chunked bytes; any split of the stream across reads gives the same pieces."""
        if self.partial:
            data = self.partial + data
            self.partial = b""
        pos = 0
        size = len(data)
        while pos < size:
            remaining = self.remaining
            if remaining:  # inside a chunk's data
                end = pos + remaining
                if end > size:
                    self._emit(data[pos:] if pos else data)
                    self.remaining = end - size
                    return
                self._emit(data[pos:end])
                self.remaining = 0
                self.crlf_due = True
                pos = end
                continue
            if self.crlf_due:
                if size - pos < 2:
                    self.partial = data[pos:]
                    return
                if data[pos] != 13 or data[pos + 1] != 10:
                    self._fail(BadResponse("a chunk is longer than its size line says"))
                    return
                self.crlf_due = False
                pos += 2
                continue
            if self.in_trailers:
                self._trailers(data, pos)
                return
            eol = data.find(b"\r\n", pos)
            if eol < 0 or eol - pos > MAX_CHUNK_LINE:
                if size - pos > MAX_CHUNK_LINE:
                    self._fail(BadResponse("a chunk-size line is too long"))
                else:
                    self.partial = data[pos:]
                return
            line = data[pos:eol]
            semicolon = line.find(b";")  # chunk extensions: ignored
            if semicolon >= 0:
                line = line[:semicolon]
            try:
                length = int(line, 16)
            except ValueError:
                length = -1
            if length < 0:
                self._fail(BadResponse(f"invalid chunk size {line[:20]!r}"))
                return
            pos = eol + 2
            if length:
                self.remaining = length
            else:
                self.in_trailers = True

    def _trailers(self, data: bytes, pos: int) -> None:
        """After the last chunk: trailer lines (ignored), then an empty line."""
        if data.startswith(b"\r\n", pos):  # no trailers, as nearly always
            self._done(extra=len(data) > pos + 2)
            return
        end = data.find(b"\r\n\r\n", pos)
        if end < 0:
            if len(data) - pos > MAX_TRAILERS:
                self._fail(BadResponse("chunked trailers too long"))
            else:
                self.partial = data[pos:]
            return
        self._done(extra=len(data) > end + 4)


def _parse_head(head: bytes) -> tuple[bytes, int, dict[str, str]]:
    """(version, status, headers by lower-case name) from a status line and header lines."""
    lines = _LINE_END.split(head)
    version, _, rest = lines[0].partition(b" ")
    code = rest[:3]
    if (len(version) != 8 or not version.startswith(b"HTTP/1.") or len(code) != 3
            or not code.isdigit() or rest[3:4] not in (b"", b" ")):
        raise BadResponse(f"not an HTTP/1.1 status line: {lines[0][:40]!r}")
    headers: dict[str, str] = {}
    name = ""
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):  # an obsolete folded continuation
            if not name:
                raise BadResponse("a malformed header line")
            headers[name] += " " + line.strip(b" \t").decode("latin-1")
            continue
        raw_name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(raw_name):
            raise BadResponse("a malformed header line")
        name = raw_name.decode("ascii").lower()
        text = value.strip(b" \t").decode("latin-1")
        headers[name] = f"{headers[name]}, {text}" if name in headers else text
    return version, int(code), headers


class _Decoder:
    """gzip or deflate, for a server that compresses although we asked for `identity`."""

    __slots__ = ("_coding", "_zlib", "_fresh")

    def __init__(self, coding: str) -> None:
        if coding in ("gzip", "x-gzip"):
            wbits = 16 + zlib.MAX_WBITS
        elif coding == "deflate":
            wbits = zlib.MAX_WBITS
        else:
            raise BadResponse(f"unsupported Content-Encoding {coding[:40]!r}")
        self._coding = coding
        self._zlib = zlib.decompressobj(wbits)
        self._fresh = True

    @property
    def pending(self) -> bool:
        """Input left over from the last call because its output reached MAX_DECODED."""
        return bool(self._zlib.unconsumed_tail)

    def feed(self, data: bytes) -> bytes:
        z = self._zlib
        if z.unconsumed_tail:
            data = z.unconsumed_tail + data
        try:
            out = z.decompress(data, MAX_DECODED)
        except zlib.error as exc:
            if self._fresh and self._coding == "deflate":
                # "deflate" should be zlib-wrapped; some servers send the raw stream.
                self._fresh = False
                self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
                return self.feed(data)
            raise BadResponse(f"cannot decode the {self._coding} body ({exc})") from None
        if data:
            self._fresh = False
        return out

    def end(self) -> bytes:
        return self._zlib.flush()


class Response:
    """A response whose head has arrived; see `_transport.HttpResponse`. Iterating it gives the
    body as it arrives: everything buffered at each wake-up, in one piece."""

    __slots__ = ("status", "headers", "_connection")

    def __init__(self, connection: _Connection) -> None:
        self.status = connection.status
        self.headers = connection.headers
        self._connection: _Connection | None = connection

    def __aiter__(self) -> Response:
        return self

    async def __anext__(self) -> bytes:
        connection = self._connection
        if connection is None:
            raise StopAsyncIteration
        while True:
            pieces = connection.pieces
            if pieces:
                chunk = pieces[0] if len(pieces) == 1 else b"".join(pieces)
                pieces.clear()
                connection.buffered = 0
                if connection.read_paused:
                    connection.resume_reading()
                if connection.decoder is None:
                    return chunk
                chunk = self._decode(connection, chunk)
                if chunk:
                    return chunk
                continue
            decoder = connection.decoder
            if decoder is not None and decoder.pending:
                chunk = self._decode(connection, b"")
                if chunk:
                    return chunk
                continue
            if connection.error is not None:
                self._connection = None
                connection.close()
                raise connection.error
            if connection.state == _DONE:
                tail = decoder.end() if decoder is not None else b""
                self._connection = None
                connection.client.release(connection)
                if tail:
                    return tail
                raise StopAsyncIteration
            await connection.wait()

    def _decode(self, connection: _Connection, chunk: bytes) -> bytes:
        try:
            return connection.decoder.feed(chunk)  # type: ignore[union-attr]
        except BadResponse:
            self._connection = None
            connection.close()
            raise

    async def read(self, limit: int) -> bytes:
        return await read_at_most(self, limit)

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if connection.state == _DONE and connection.error is None:
            # All of it arrived, even if not all was read: the connection is clean.
            connection.client.release(connection)
        else:
            connection.close()
