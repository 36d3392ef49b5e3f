"""Which addresses an HTTP MCP server may live at: checked at save and at every connect.

(Longer than our usual module: the address policy, its two checks and the small transport they
need must change together; the transport is a copy of httpx2's, kept beside its reason.)

Our server fetches an HTTP MCP server's URL itself, so a URL is a way into our own network:
loopback services, the LAN, a cloud's metadata service (169.254.169.254). Such addresses are
refused unless an admin allows private addresses for that server. One policy (`is_forbidden`),
two checks:

- `check_url` at save (the admin form): the URL is parsed with httpx2's parser (the one the
  client uses, so there is no parser differential) and its host resolved with getaddrinfo, the
  resolver a connection uses; numeric spellings (2130706433, 0x7f.1, 127.1) therefore come
  back as the address a connect would reach. Refused if ANY address is forbidden.
- `guarded_http_client` at every connect: its network backend resolves the host itself,
  refuses forbidden addresses, connects to the checked IP literal (nothing resolves again after
  the check, so DNS rebinding between check and connect does not help), then checks the
  socket's peer once more. TLS still verifies the URL's host name: httpcore2 calls
  `start_tls(server_hostname=<origin host>)` on the stream `connect_tcp` returns.

The save check is a courtesy (an early, clear error); the connect check is the guarantee.
No Django here.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
import httpcore2
import httpx2

if TYPE_CHECKING:
    # Type only: the SDK exports the protocol from a private module (docs/private-apis.md).
    from mcp.shared._httpx_utils import McpHttpClientFactory

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# The SDK's defaults (create_mcp_http_client): a streamed answer (a long call, the standing GET
# stream) may stay quiet STREAM_READ_TIMEOUT; everything else is bounded by the caller's timeout.
STREAM_READ_TIMEOUT = 300.0
DEFAULT_TIMEOUT = 30.0

_ADMIN_HINT = "an admin must allow private addresses for this server"

_SPECIAL = "a special-purpose address (not publicly routable)"
_v4 = ipaddress.IPv4Network
_v6 = ipaddress.IPv6Network

# First match names the reason. Our own tables, not only the stdlib's `is_global`: Python 3.12.1
# (ours) calls ::7f00:1, fec0::/10 and every multicast address global. The stdlib's verdict is a
# second net below them, never the only one.
_IPV4_RANGES: tuple[tuple[ipaddress.IPv4Network, str], ...] = (
    # 0.0.0.0 reaches this host on Linux.
    (_v4("0.0.0.0/8"), "an unspecified address"),
    (_v4("127.0.0.0/8"), "a loopback address"),
    (_v4("169.254.0.0/16"), "a link-local address"),
    (_v4("10.0.0.0/8"), "a private address"),
    (_v4("172.16.0.0/12"), "a private address"),
    (_v4("192.168.0.0/16"), "a private address"),
    (_v4("100.64.0.0/10"), "a shared (carrier-grade NAT) address"),
    (_v4("224.0.0.0/4"), "a multicast address"),
    (_v4("255.255.255.255/32"), "a broadcast address"),
    (_v4("240.0.0.0/4"), "a reserved address"),
)
_IPV6_RANGES: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (_v6("::/128"), "an unspecified address"),
    (_v6("::1/128"), "a loopback address"),
    (_v6("fe80::/10"), "a link-local address"),
    (_v6("fc00::/7"), "a private (unique local) address"),
    (_v6("fec0::/10"), "a site-local address"),
    (_v6("ff00::/8"), "a multicast address"),
    (_v6("64:ff9b:1::/48"), "a private (local-use NAT64) address"),
    # Documentation (RFC 9637): too new for our Python's tables.
    (_v6("3fff::/20"), _SPECIAL),
)
# Everything public in IPv6 lives here (global unicast); the rest of the space is not routable.
_IPV6_GLOBAL_UNICAST = _v6("2000::/3")

_CLOUD_METADATA = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254",  # AWS, GCP, Azure, OpenStack...
    "169.254.170.2",  # AWS ECS task credentials
    "fd00:ec2::254",  # AWS over IPv6
    "100.100.100.200",  # Alibaba Cloud
))

# IPv6 forms that carry an IPv4 address, and whether a connection to them reaches that IPv4
# address (then a public one passes; otherwise the IPv6 address is judged on its own, too).
_MAPPED = _v6("::ffff:0:0/96")
_NAT64 = _v6("64:ff9b::/96")
_TRANSLATED = _v6("::ffff:0:0:0/96")
_COMPATIBLE = _v6("::/96")


class AddressRefused(Exception):
    """An MCP server URL we will not fetch, or a connection we refused.

    `message` (also `str()`) is safe to show users and admins: it names the host and why
    ("mcp.internal resolves to 10.0.0.5, a private address; an admin must allow private
    addresses for this server"), never the URL's path, query or userinfo."""

    def __init__(self, message: str, *, host: str) -> None:
        super().__init__(message)
        self.message = message
        self.host = host


def is_forbidden(ip: IPAddress) -> str | None:
    """Why a connection to `ip` is refused ("a loopback address"), or None for a public address.

    An IPv6 address carrying an IPv4 one is judged by that IPv4 address first: IPv4-mapped
    (::ffff:127.0.0.1), NAT64 (64:ff9b::/96, what DNS64 hands IPv6-only hosts), 6to4 (2002::/16),
    IPv4-compatible and IPv4-translated. Teredo (2001::/32) is refused with all of 2001::/23."""
    if isinstance(ip, ipaddress.IPv6Address):
        return _ipv6_reason(ipaddress.IPv6Address(int(ip)))  # without a scope id
    reason = _first_match(ip, _IPV4_RANGES)
    if reason is None and not ip.is_global:
        reason = _SPECIAL
    return _with_metadata_note(ip, reason)


def _ipv6_reason(ip: ipaddress.IPv6Address) -> str | None:
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        inner, form, reaches_inner = embedded
        inner_reason = is_forbidden(inner)
        if inner_reason is not None:
            return f"{form} of {inner}, {inner_reason}"
        if reaches_inner:
            return None
    reason = _first_match(ip, _IPV6_RANGES)
    if reason is None and (ip not in _IPV6_GLOBAL_UNICAST or not ip.is_global):
        reason = _SPECIAL if ip in _IPV6_GLOBAL_UNICAST else "a reserved address"
    return _with_metadata_note(ip, reason)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, str, bool] | None:
    """(the IPv4 address inside `ip`, the form's name, whether connecting reaches it) or None."""
    low32 = ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)
    if ip in _MAPPED:
        return low32, "an IPv4-mapped form", True
    if ip in _NAT64:
        return low32, "a NAT64 form", True
    if ip.sixtofour is not None:
        return ip.sixtofour, "a 6to4 form", False
    if ip in _TRANSLATED:
        return low32, "an IPv4-translated form", False
    if ip in _COMPATIBLE and int(ip) > 1:  # :: and ::1 are themselves
        return low32, "an IPv4-compatible form", False
    return None


def _first_match(ip: IPAddress,
                 ranges: Iterable[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]]) -> str | None:
    for network, reason in ranges:
        if ip in network:
            return reason
    return None


def _with_metadata_note(ip: IPAddress, reason: str | None) -> str | None:
    if reason is not None and ip in _CLOUD_METADATA:
        return f"{reason} (a cloud metadata service)"
    return reason


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to, in the resolver's order, without repeats.

    getaddrinfo is what a connection uses: /etc/hosts is honoured, and numeric spellings come
    back as the address the C library reads in them (2130706433 and 0x7f.1 are 127.0.0.1).
    Blocks for DNS. Raises OSError (socket.gaierror) when `host` does not resolve."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except UnicodeError as exc:  # a label the IDNA codec rejects
        raise socket.gaierror(socket.EAI_NONAME, f"invalid host name ({exc})") from exc
    found: list[IPAddress] = []
    for family, _type, _proto, _name, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        text = str(sockaddr[0])
        if family == socket.AF_INET6 and len(sockaddr) >= 4 and sockaddr[3]:
            # A link-local address needs its interface to be connected to at all.
            text = f"{text.split('%')[0]}%{sockaddr[3]}"
        address = ipaddress.ip_address(text)
        if address not in found:
            found.append(address)
    if not found:
        raise socket.gaierror(socket.EAI_NONAME, "no IPv4 or IPv6 address")
    return found


def check_url(url: str, *, allow_private: bool) -> None:
    """Raise AddressRefused unless `url` is an http(s) URL whose host resolves, and (unless
    `allow_private`) only to public addresses. For the admin form at save; blocks for DNS.

    The connect-time check (`guarded_http_client`) does not rely on this one having run."""
    try:
        parsed = httpx2.URL(url)
    except httpx2.InvalidURL as exc:
        raise AddressRefused(f"not a valid URL: {exc}", host="") from exc
    if parsed.scheme not in ("http", "https"):
        raise AddressRefused(
            f"MCP server URLs start with http:// or https:// (not {parsed.scheme or 'nothing'})",
            host=parsed.host)
    shown = parsed.host
    if not shown:
        raise AddressRefused("the URL has no host", host="")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        addresses = resolve(parsed.raw_host.decode("ascii"), port)
    except OSError as exc:
        raise AddressRefused(f"{shown} cannot be resolved ({exc.strerror or exc})", host=shown) from exc
    if not allow_private:
        _refuse_forbidden(shown, addresses)


def _refuse_forbidden(host: str, addresses: Iterable[IPAddress]) -> None:
    for address in addresses:
        reason = is_forbidden(address)
        if reason is not None:
            raise AddressRefused(_refusal_text(host, address, reason), host=host)


def _refusal_text(host: str, address: IPAddress, reason: str) -> str:
    try:
        literal = ipaddress.ip_address(host) == address
    except ValueError:
        literal = False
    if literal:
        return f"{host} is {reason}; {_ADMIN_HINT}"
    # "2130706433 resolves to 127.0.0.1" shows the trick for what it is.
    return f"{host} resolves to {address}, {reason}; {_ADMIN_HINT}"


class GuardedNetworkBackend(httpcore2.AsyncNetworkBackend):
    """httpcore2's anyio backend, connecting only to addresses the policy allows.

    `connect_tcp` resolves the host itself (within the connect timeout), refuses the host if
    any address is forbidden (unless `allow_private`), connects to the checked IP literals in
    the resolver's order until one answers, and refuses the socket if its peer is forbidden.
    Refusals raise AddressRefused; httpx2 passes it through unchanged (it maps only httpcore2's
    own errors). Unix sockets are refused: no MCP server config names one."""

    def __init__(self, *, allow_private: bool) -> None:
        self._allow_private = allow_private
        self._inner = httpcore2.AnyIOBackend()

    async def connect_tcp(
        self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        try:
            with anyio.fail_after(timeout):
                addresses = await self._resolve(host, port)
                if not self._allow_private:
                    _refuse_forbidden(host, addresses)
                return await self._connect_first(host, port, addresses, local_address=local_address,
                                                 socket_options=socket_options)
        except TimeoutError as exc:  # only our deadline: the inner backend maps its own OSErrors
            raise httpcore2.ConnectTimeout(f"connecting to {host} timed out") from exc

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        raise AddressRefused("MCP servers are not reached over Unix sockets", host=path)

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)

    async def _resolve(self, host: str, port: int) -> list[IPAddress]:
        try:
            # A getaddrinfo thread cannot be interrupted: on timeout it is left to finish alone.
            return await anyio.to_thread.run_sync(resolve, host, port, abandon_on_cancel=True)
        except OSError as exc:
            raise httpcore2.ConnectError(f"{host} cannot be resolved ({exc.strerror or exc})") from exc

    async def _connect_first(
        self, host: str, port: int, addresses: list[IPAddress], *, local_address: str | None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None,
    ) -> httpcore2.AsyncNetworkStream:
        # One after another under the caller's one deadline: no Happy Eyeballs, so a
        # black-holed first address costs the whole connect timeout.
        failures: list[httpcore2.ConnectError] = []
        for address in addresses:
            try:
                # An IP literal: anyio connects to it as is, without resolving anything again.
                stream = await self._inner.connect_tcp(str(address), port, local_address=local_address,
                                                       socket_options=socket_options)
            except httpcore2.ConnectError as exc:
                failures.append(exc)
                continue
            try:
                self._check_peer(host, stream)
            except BaseException:
                await stream.aclose()
                raise
            return stream
        if len(failures) == 1:
            raise failures[0]
        raise httpcore2.ConnectError(
            f"no address of {host} answered ({', '.join(map(str, addresses))})") from failures[0]

    def _check_peer(self, host: str, stream: httpcore2.AsyncNetworkStream) -> None:
        """The address the socket is connected to, judged once more: the guarantee does not
        rest on our reading of getaddrinfo alone. Fails closed if the peer cannot be read."""
        if self._allow_private:
            return
        peer = stream.get_extra_info("server_addr")
        try:
            address = ipaddress.ip_address(peer[0])
        except (TypeError, IndexError, ValueError):
            raise AddressRefused(f"{host}: the address connected to cannot be read, so it is refused",
                                 host=host) from None
        reason = is_forbidden(address)
        if reason is not None:
            raise AddressRefused(f"{host} connected to {address}, {reason}; {_ADMIN_HINT}", host=host)


# httpcore2's errors as httpx2's, most specific first: what httpx2's own transport does
# (callers, the SDK included, catch httpx2.TransportError and its kinds).
_HTTPX_ERRORS: tuple[tuple[type[Exception], type[httpx2.TransportError]], ...] = (
    (httpcore2.ConnectTimeout, httpx2.ConnectTimeout),
    (httpcore2.ReadTimeout, httpx2.ReadTimeout),
    (httpcore2.WriteTimeout, httpx2.WriteTimeout),
    (httpcore2.PoolTimeout, httpx2.PoolTimeout),
    (httpcore2.TimeoutException, httpx2.TimeoutException),
    (httpcore2.ConnectError, httpx2.ConnectError),
    (httpcore2.ReadError, httpx2.ReadError),
    (httpcore2.WriteError, httpx2.WriteError),
    (httpcore2.NetworkError, httpx2.NetworkError),
    (httpcore2.ProxyError, httpx2.ProxyError),
    (httpcore2.UnsupportedProtocol, httpx2.UnsupportedProtocol),
    (httpcore2.LocalProtocolError, httpx2.LocalProtocolError),
    (httpcore2.RemoteProtocolError, httpx2.RemoteProtocolError),
    (httpcore2.ProtocolError, httpx2.ProtocolError),
)


@contextmanager
def _httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for source, target in _HTTPX_ERRORS:
            if isinstance(exc, source):
                raise target(str(exc)) from exc
        raise


class _GuardedTransport(httpx2.AsyncBaseTransport):
    """httpx2's transport over an httpcore2 pool that connects through GuardedNetworkBackend.

    httpx2.AsyncHTTPTransport takes no network backend. Rather than swap its private `_pool`
    (a rename upstream would silently bring back the unguarded pool: fail open), this is the
    same thin translation on public API only; its one pool is ours, so it fails closed. No
    proxy: a proxy would connect for us, to an address we never checked."""

    def __init__(self, *, allow_private: bool) -> None:
        limits = httpx2.Limits()
        self._pool = httpcore2.AsyncConnectionPool(
            # trust_env: SSL_CERT_FILE / SSL_CERT_DIR still choose the CAs (they decide whom we
            # trust, not where we connect), as for every other client of ours.
            ssl_context=httpx2.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedNetworkBackend(allow_private=allow_private),
        )

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        core_request = httpcore2.Request(
            method=request.method,
            url=httpcore2.URL(scheme=request.url.raw_scheme, host=request.url.raw_host,
                              port=request.url.port, target=request.url.raw_path),
            headers=request.headers.raw,
            content=request.stream,  # type: ignore[arg-type]  # async in an AsyncClient
            extensions=request.extensions,
        )
        with _httpx_errors():
            response = await self._pool.handle_async_request(core_request)
        return httpx2.Response(status_code=response.status, headers=response.headers,
                               stream=_ResponseStream(response.stream),  # type: ignore[arg-type]
                               extensions=response.extensions)

    async def aclose(self) -> None:
        await self._pool.aclose()


class _ResponseStream(httpx2.AsyncByteStream):
    def __init__(self, inner: AsyncIterable[bytes]) -> None:
        self._inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for part in self._inner:
                yield part

    async def aclose(self) -> None:
        close = getattr(self._inner, "aclose", None)
        if close is not None:
            await close()


def guarded_http_client(*, headers: Mapping[str, str], timeout: float,
                        allow_private: bool) -> httpx2.AsyncClient:
    """The client for one session of an HTTP MCP server (`streamable_http_client(url,
    http_client=...)`); the caller enters and closes it.

    `timeout` bounds connect (resolution included), write and pool waits; reads get the SDK's
    STREAM_READ_TIMEOUT. Every new connection goes through GuardedNetworkBackend. Redirects are
    not followed by the client (the SDK follows same-origin ones itself, and each new connection
    they need is checked again); the environment is not trusted (no HTTP_PROXY, no .netrc)."""
    return _client(headers=headers, timeout=httpx2.Timeout(timeout, read=STREAM_READ_TIMEOUT),
                   auth=None, allow_private=allow_private)


def guarded_client_factory(*, allow_private: bool) -> McpHttpClientFactory:
    """`guarded_http_client` in the shape of the SDK's `create_mcp_http_client`, for
    `sse_client(..., httpx_client_factory=...)`, which passes its own timeout (connect `timeout`,
    read `sse_read_timeout`) and enters and closes the client."""

    def factory(headers: dict[str, str] | None = None, timeout: httpx2.Timeout | None = None,
                auth: httpx2.Auth | None = None) -> httpx2.AsyncClient:
        return _client(headers=headers or {}, auth=auth, allow_private=allow_private,
                       timeout=timeout or httpx2.Timeout(DEFAULT_TIMEOUT, read=STREAM_READ_TIMEOUT))

    return factory


def _client(*, headers: Mapping[str, str], timeout: httpx2.Timeout, auth: httpx2.Auth | None,
            allow_private: bool) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(
        headers=dict(headers), timeout=timeout, auth=auth,
        transport=_GuardedTransport(allow_private=allow_private),
        follow_redirects=False,
        # Proxies from the environment would connect for us, past the connected-address check
        # (httpx2 already skips them when given a transport: this makes it not depend on that).
        trust_env=False,
    )
