"""Private, loopback and link-local MCP server addresses: refused at save and at every connect.

Refusals are proven against real servers on 127.0.0.1 and ::1 that would otherwise answer: the
same request with `allow_private=True` gets through. Names under .test are answered by a
patched getaddrinfo (they never reach a real resolver); nothing here needs the internet, and
no connection ever goes to a public address.
"""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpcore2
import httpx2
import pytest
from mcp.client import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from agents.mcp.addresses import (
    STREAM_READ_TIMEOUT,
    AddressRefused,
    check_url,
    guarded_client_factory,
    guarded_http_client,
    is_forbidden,
)

HINT = "an admin must allow private addresses for this server"


# --- a tiny HTTP server that records what reached it -------------------------------------------

@dataclass
class LocalServer:
    host: str
    port: int
    status: int = 200
    location: str = ""
    tls: ssl.SSLContext | None = None
    connections: list[str] = field(default_factory=list)
    # (method, path, Host header)
    requests: list[tuple[str, str, str]] = field(default_factory=list)

    def url(self, host: str | None = None, path: str = "/mcp", scheme: str = "http") -> str:
        host = host or (f"[{self.host}]" if ":" in self.host else self.host)
        return f"{scheme}://{host}:{self.port}{path}"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def setup(self) -> None:
        record = self.server.record
        record.connections.append(self.client_address[0])
        if record.tls is not None:
            # Wrapping takes the socket over, so the server's own close no longer closes it.
            self.request = record.tls.wrap_socket(self.request, server_side=True,
                                                  do_handshake_on_connect=False)
            try:
                self.request.do_handshake()
            except BaseException:
                self.request.close()
                raise
        super().setup()

    def finish(self) -> None:
        super().finish()
        if self.server.record.tls is not None:
            self.request.close()

    def _answer(self) -> None:
        record = self.server.record
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        record.requests.append((self.command, self.path, self.headers.get("Host", "")))
        body = b"ok"
        self.send_response(record.status)
        if record.location:
            self.send_header("Location", record.location)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, record: LocalServer) -> None:
        self.address_family = socket.AF_INET6 if ":" in record.host else socket.AF_INET
        self.record = record
        super().__init__((record.host, 0), _Handler)
        record.port = self.server_address[1]

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that refused our certificate, or hung up: the test asserts what it saw


@pytest.fixture
def serve() -> Iterator[Callable[..., LocalServer]]:
    running: list[_Server] = []

    def start(host: str = "127.0.0.1", **options: Any) -> LocalServer:
        server = _Server(LocalServer(host=host, port=0, **options))
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        running.append(server)
        return server.record

    yield start
    for server in running:
        server.shutdown()
        server.server_close()


@pytest.fixture
def server(serve: Callable[..., LocalServer]) -> LocalServer:
    return serve()


@pytest.fixture
def server6(serve: Callable[..., LocalServer]) -> LocalServer:
    return serve("::1")


# --- a resolver for names under .test ---------------------------------------------------------

class FakeDns:
    """getaddrinfo for the names given to `answer`; every other name goes to the real one.
    Each lookup of a name takes its next answer (the last one repeats)."""

    def __init__(self, real: Callable[..., Any]) -> None:
        self._real = real
        self._answers: dict[str, list[list[str] | OSError]] = {}
        self.asked: list[str] = []

    def answer(self, name: str, *answers: list[str] | OSError) -> None:
        self._answers[name] = list(answers)

    def getaddrinfo(self, host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0,
                    flags: int = 0) -> list[Any]:
        if host not in self._answers:
            return self._real(host, port, family, type, proto, flags)
        self.asked.append(host)
        queue = self._answers[host]
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, OSError):
            raise answer
        port = int(port or 0)
        return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", (ip, port, 0, 0)) if ":" in ip
                else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in answer]


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> FakeDns:
    fake = FakeDns(socket.getaddrinfo)
    monkeypatch.setattr(socket, "getaddrinfo", fake.getaddrinfo)
    return fake


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The hosts the guarded backend really opened sockets to."""
    opened: list[str] = []
    original = httpcore2.AnyIOBackend.connect_tcp

    async def recording(self: Any, host: str, port: int, **options: Any) -> Any:
        opened.append(host)
        return await original(self, host, port, **options)

    monkeypatch.setattr(httpcore2.AnyIOBackend, "connect_tcp", recording)
    return opened


async def get(url: str, *, allow_private: bool) -> httpx2.Response:
    async with guarded_http_client(headers={}, timeout=5, allow_private=allow_private) as client:
        return await client.get(url)


# --- the policy ---------------------------------------------------------------------------------

@pytest.mark.parametrize("address", [
    "93.184.215.14", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2001:4860:4860::8888",
    # Forms that reach a public IPv4 address: DNS64 on an IPv6-only host hands out 64:ff9b::/96.
    "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1",
])
def test_public_addresses_pass(address: str) -> None:
    assert is_forbidden(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(("address", "reason"), [
    ("127.0.0.1", "a loopback address"),
    ("127.255.0.9", "a loopback address"),
    ("::1", "a loopback address"),
    ("10.0.0.5", "a private address"),
    ("172.16.3.4", "a private address"),
    ("192.168.1.1", "a private address"),
    ("169.254.169.254", "a link-local address (a cloud metadata service)"),
    ("169.254.1.1", "a link-local address"),
    ("fe80::1", "a link-local address"),
    ("fe80::1%1", "a link-local address"),
    ("fc00::1", "a private (unique local) address"),
    ("fd12:3456::1", "a private (unique local) address"),
    ("fd00:ec2::254", "a private (unique local) address (a cloud metadata service)"),
    ("fec0::1", "a site-local address"),
    ("100.64.0.1", "a shared (carrier-grade NAT) address"),
    ("100.100.100.200", "a shared (carrier-grade NAT) address (a cloud metadata service)"),
    ("0.0.0.0", "an unspecified address"),
    ("::", "an unspecified address"),
    ("224.0.0.1", "a multicast address"),
    ("239.255.255.250", "a multicast address"),
    ("ff02::1", "a multicast address"),
    ("ff0e::1", "a multicast address"),
    ("240.0.0.1", "a reserved address"),
    ("255.255.255.255", "a broadcast address"),
    ("192.0.2.1", "a special-purpose address"),
    ("198.18.0.1", "a special-purpose address"),
    ("2001:db8::1", "a special-purpose address"),
    ("2001::1", "a special-purpose address"),  # Teredo, with the rest of 2001::/23
    ("100::1", "a reserved address"),
    ("::808:808", "a reserved address"),
    ("::ffff:127.0.0.1", "an IPv4-mapped form of 127.0.0.1, a loopback address"),
    ("::ffff:169.254.169.254", "an IPv4-mapped form of 169.254.169.254, a link-local address"),
    ("::ffff:10.0.0.5", "an IPv4-mapped form of 10.0.0.5, a private address"),
    ("::127.0.0.1", "an IPv4-compatible form of 127.0.0.1, a loopback address"),
    ("::ffff:0:127.0.0.1", "an IPv4-translated form of 127.0.0.1, a loopback address"),
    ("64:ff9b::10.0.0.5", "a NAT64 form of 10.0.0.5, a private address"),
    ("64:ff9b::127.0.0.1", "a NAT64 form of 127.0.0.1, a loopback address"),
    ("64:ff9b:1::a00:5", "a private (local-use NAT64) address"),
    ("2002:a00:5::1", "a 6to4 form of 10.0.0.5, a private address"),
    ("2002:7f00:1::1", "a 6to4 form of 127.0.0.1, a loopback address"),
])
def test_forbidden_addresses_say_why(address: str, reason: str) -> None:
    assert (is_forbidden(ipaddress.ip_address(address)) or "").startswith(reason)


# --- check_url, at save -------------------------------------------------------------------------

LOOPBACK_URLS = [
    "http://127.0.0.1/mcp", "http://127.0.0.2:8080/", "http://localhost/mcp", "http://LOCALHOST/",
    "http://2130706433/", "http://0x7f000001/", "http://0x7f.1/", "http://127.1/",
    "http://017700000001/", "http://[::1]/mcp", "http://[::ffff:127.0.0.1]/", "http://[::127.0.0.1]/",
    "https://[64:ff9b::7f00:1]/", "http://0/", "http://0.0.0.0:8000/", "http://[::]/",
]


@pytest.mark.parametrize("url", LOOPBACK_URLS)
def test_check_url_refuses_every_spelling_of_this_host(url: str) -> None:
    with pytest.raises(AddressRefused) as refused:
        check_url(url, allow_private=False)
    assert refused.value.message.endswith(HINT)
    assert "loopback" in refused.value.message or "unspecified" in refused.value.message
    check_url(url, allow_private=True)


def test_a_numeric_spelling_is_shown_with_the_address_it_means() -> None:
    with pytest.raises(AddressRefused, match=f"^2130706433 resolves to 127.0.0.1, a loopback address; {HINT}$"):
        check_url("http://2130706433/", allow_private=False)
    with pytest.raises(AddressRefused, match=f"^127.0.0.1 is a loopback address; {HINT}$"):
        check_url("http://user:secret@127.0.0.1/mcp?token=abc", allow_private=False)


@pytest.mark.parametrize(("url", "reason"), [
    ("http://10.0.0.5/mcp", "10.0.0.5 is a private address"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address (a cloud metadata service)"),
    ("http://100.64.0.1/", "100.64.0.1 is a shared (carrier-grade NAT) address"),
    ("http://224.0.0.1/", "224.0.0.1 is a multicast address"),
    ("http://240.0.0.1/", "240.0.0.1 is a reserved address"),
    ("http://[fe80::1]/", "fe80::1 is a link-local address"),
    ("http://[fc00::1]/", "fc00::1 is a private (unique local) address"),
    ("http://[fd00:ec2::254]/", "fd00:ec2::254 is a private (unique local) address (a cloud metadata service)"),
    ("http://[::ffff:10.0.0.5]/", "is an IPv4-mapped form of 10.0.0.5, a private address"),
    ("http://[64:ff9b::a00:5]/", "64:ff9b::a00:5 is a NAT64 form of 10.0.0.5, a private address"),
    ("http://[2002:a00:5::1]/", "2002:a00:5::1 is a 6to4 form of 10.0.0.5, a private address"),
    ("http://0xa000005/", "0xa000005 resolves to 10.0.0.5, a private address"),
    ("http://169.254.43518/", "169.254.43518 resolves to 169.254.169.254, a link-local address"),
])
def test_check_url_refuses_private_and_special_addresses(url: str, reason: str) -> None:
    with pytest.raises(AddressRefused, match=reason.replace("(", r"\(").replace(")", r"\)")):
        check_url(url, allow_private=False)


def test_a_name_that_resolves_to_a_private_address_is_refused(dns: FakeDns) -> None:
    dns.answer("mcp.internal", ["10.0.0.5"])
    with pytest.raises(AddressRefused) as refused:
        check_url("https://mcp.internal/mcp", allow_private=False)
    assert refused.value.message == (
        "mcp.internal resolves to 10.0.0.5, a private address; "
        "an admin must allow private addresses for this server")
    assert str(refused.value) == refused.value.message
    assert refused.value.host == "mcp.internal"
    check_url("https://mcp.internal/mcp", allow_private=True)


def test_a_name_is_refused_if_any_of_its_addresses_is_forbidden(dns: FakeDns) -> None:
    dns.answer("mixed.test", ["93.184.215.14", "2606:4700:4700::1111", "127.0.0.1"])
    with pytest.raises(AddressRefused, match="mixed.test resolves to 127.0.0.1, a loopback address"):
        check_url("https://mixed.test/mcp", allow_private=False)


def test_a_name_with_only_public_addresses_passes(dns: FakeDns) -> None:
    dns.answer("tools.test", ["93.184.215.14", "2606:4700:4700::1111"])
    check_url("https://tools.test/mcp", allow_private=False)
    check_url("http://tools.test:8080/mcp", allow_private=False)
    assert dns.asked == ["tools.test", "tools.test"]


def test_a_name_that_does_not_resolve_is_refused(dns: FakeDns) -> None:
    dns.answer("nowhere.test", socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    for allow_private in (False, True):
        with pytest.raises(AddressRefused, match=r"^nowhere.test cannot be resolved \(Name or service not known\)$"):
            check_url("https://nowhere.test/mcp", allow_private=allow_private)


@pytest.mark.parametrize(("url", "message"), [
    ("ftp://tools.test/mcp", "start with http:// or https://"),
    ("file:///etc/passwd", "start with http:// or https://"),
    ("tools.test/mcp", "start with http:// or https://"),
    ("http:///mcp", "the URL has no host"),
    # httpx2 will not parse it (curl would, as 127.0.0.1): refused either way.
    ("http://0177.0.0.1/", "not a valid URL"),
    ("http://[::1/", "not a valid URL"),
])
def test_only_http_urls_with_a_host(url: str, message: str) -> None:
    for allow_private in (False, True):
        with pytest.raises(AddressRefused, match=message):
            check_url(url, allow_private=allow_private)


def test_the_host_is_read_the_way_the_client_reads_it(dns: FakeDns) -> None:
    # urllib would see the host "public.test\"; httpx2, which connects, sees 127.0.0.1.
    dns.answer("public.test", ["93.184.215.14"])
    with pytest.raises(AddressRefused, match="^127.0.0.1 is a loopback address"):
        check_url("http://public.test\\@127.0.0.1/mcp", allow_private=False)


# --- guarded_http_client, at every connect ------------------------------------------------------

@pytest.mark.parametrize("host", [
    "127.0.0.1", "localhost", "LocalHost", "2130706433", "0x7f000001", "0x7f.1", "127.1",
    "017700000001", "0", "0.0.0.0", "[::ffff:127.0.0.1]",
])
async def test_every_spelling_of_loopback_is_refused_at_connect(
    server: LocalServer, host: str, connects: list[str],
) -> None:
    url = server.url(host)
    with pytest.raises(AddressRefused, match=HINT):
        await get(url, allow_private=False)
    assert connects == []

    response = await get(url, allow_private=True)
    assert (response.status_code, response.text) == (200, "ok")
    assert len(connects) == 1 and len(server.requests) == 1


@pytest.mark.parametrize("host", ["[::1]", "[::]"])
async def test_ipv6_loopback_is_refused_at_connect(server6: LocalServer, host: str, connects: list[str]) -> None:
    url = server6.url(host)
    with pytest.raises(AddressRefused, match=HINT):
        await get(url, allow_private=False)
    assert connects == []
    assert (await get(url, allow_private=True)).status_code == 200


async def test_a_spelling_httpx2_cannot_parse_never_connects(server: LocalServer, connects: list[str]) -> None:
    for allow_private in (False, True):
        with pytest.raises((AddressRefused, httpx2.InvalidURL)):
            await get(server.url("0177.0.0.1"), allow_private=allow_private)
    assert connects == []


@pytest.mark.parametrize("host", [
    "10.0.0.5", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "224.0.0.1",
    "240.0.0.1", "[fe80::1]", "[fc00::1]", "[::ffff:10.0.0.5]", "[64:ff9b::a00:5]", "[2002:a00:5::1]",
])
async def test_private_addresses_are_refused_before_any_socket_opens(host: str, connects: list[str]) -> None:
    with pytest.raises(AddressRefused, match=HINT):
        await get(f"http://{host}:8080/mcp", allow_private=False)
    assert connects == []


async def test_a_name_resolving_to_loopback_is_refused_at_connect(
    server: LocalServer, dns: FakeDns, connects: list[str],
) -> None:
    dns.answer("mcp.test", ["127.0.0.1"])
    with pytest.raises(AddressRefused, match=f"^mcp.test resolves to 127.0.0.1, a loopback address; {HINT}$"):
        await get(server.url("mcp.test"), allow_private=False)
    assert connects == []


async def test_dns_rebinding_after_the_save_check_is_refused_at_connect(
    server: LocalServer, dns: FakeDns, connects: list[str],
) -> None:
    # The first answer (at save) is public, every later one (at connect) is loopback.
    dns.answer("rebind.test", ["93.184.215.14"], ["127.0.0.1"])
    url = server.url("rebind.test")
    check_url(url, allow_private=False)

    with pytest.raises(AddressRefused, match="rebind.test resolves to 127.0.0.1, a loopback address"):
        await get(url, allow_private=False)
    assert connects == []
    assert dns.asked == ["rebind.test", "rebind.test"]

    # The address it was refused for is the one a connection would have reached.
    assert (await get(url, allow_private=True)).status_code == 200
    assert connects == ["127.0.0.1"]
    assert server.requests == [("GET", "/mcp", f"rebind.test:{server.port}")]
    assert dns.asked == ["rebind.test"] * 3


async def test_the_connected_peer_is_checked_after_connecting(
    server: LocalServer, dns: FakeDns, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Resolution says public, but the socket ends up on loopback (a NAT, a hijacked route...):
    # the check of the peer refuses it before a byte is sent. No packet goes to the public IP.
    dns.answer("public.test", ["93.184.215.14"])
    original = httpcore2.AnyIOBackend.connect_tcp

    async def detour(self: Any, host: str, port: int, **options: Any) -> Any:
        assert host == "93.184.215.14"
        return await original(self, "127.0.0.1", server.port, **options)

    monkeypatch.setattr(httpcore2.AnyIOBackend, "connect_tcp", detour)
    with pytest.raises(AddressRefused, match=f"^public.test connected to 127.0.0.1, a loopback address; {HINT}$"):
        await get(f"http://public.test:{server.port}/mcp", allow_private=False)
    _wait_for(lambda: server.connections)
    time.sleep(0.1)
    assert server.requests == []


async def test_the_next_address_is_tried_when_one_does_not_answer(server: LocalServer, dns: FakeDns) -> None:
    # Nothing listens on ::1 at this port; 127.0.0.1 answers.
    dns.answer("both.test", ["::1", "127.0.0.1"])
    assert (await get(server.url("both.test"), allow_private=True)).status_code == 200


async def test_a_name_that_does_not_resolve_at_connect_is_a_connect_error(dns: FakeDns) -> None:
    dns.answer("gone.test", socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    with pytest.raises(httpx2.ConnectError, match="gone.test cannot be resolved"):
        await get("http://gone.test/mcp", allow_private=False)


async def test_resolution_counts_against_the_connect_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.getaddrinfo

    def slow(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "slow.test":
            return real(host, *args, **kwargs)
        time.sleep(1)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", slow)
    started = time.monotonic()
    async with guarded_http_client(headers={}, timeout=0.2, allow_private=False) as client:
        with pytest.raises(httpx2.ConnectTimeout):
            await client.get("http://slow.test/mcp")
    assert time.monotonic() - started < 0.9


async def test_tls_checks_the_url_host_name_while_connecting_to_the_checked_ip(
    serve: Callable[..., LocalServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, connects: list[str],
) -> None:
    certfile, keyfile = _self_signed_certificate(tmp_path, "localhost")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certfile, keyfile)
    names: list[str | None] = []
    context.sni_callback = lambda ssl_socket, name, ctx: names.append(name)  # type: ignore[assignment,misc,return-value]
    server = serve(tls=context)
    monkeypatch.setenv("SSL_CERT_FILE", str(certfile))

    response = await get(server.url("localhost", scheme="https"), allow_private=True)
    assert (response.status_code, response.text) == (200, "ok")
    assert connects == ["127.0.0.1"]  # the socket went to the IP we checked...
    assert names == ["localhost"]  # ...and TLS asked for, and verified, the name in the URL

    # The certificate names localhost, not 127.0.0.1: verification is against the URL's host.
    with pytest.raises(httpx2.ConnectError, match="certificate"):
        await get(server.url("127.0.0.1", scheme="https"), allow_private=True)
    assert len(server.requests) == 1


async def test_an_mcp_session_to_a_refused_address_fails_with_the_refusal(
    server: LocalServer, connects: list[str],
) -> None:
    async with guarded_http_client(headers={}, timeout=5, allow_private=False) as http:
        with anyio.fail_after(20), pytest.raises(Exception) as failed:
            async with Client(streamable_http_client(server.url(), http_client=http),
                              mode="legacy", cache=None):
                pass
    refused = _leaf(failed.value)
    assert isinstance(refused, AddressRefused)
    assert refused.message == f"127.0.0.1 is a loopback address; {HINT}"
    assert connects == []


async def test_a_redirect_to_another_origin_is_not_followed(serve: Callable[..., LocalServer]) -> None:
    other = serve()
    redirecting = serve(status=307, location=other.url())
    async with guarded_http_client(headers={}, timeout=5, allow_private=True) as http:
        assert http.follow_redirects is False
        with anyio.fail_after(20), pytest.raises(Exception) as failed:
            async with Client(streamable_http_client(redirecting.url(), http_client=http),
                              mode="legacy", cache=None):
                pass
    assert "not followed" in _text(failed.value)
    assert [method for method, _path, _host in redirecting.requests] == ["POST"]
    assert other.connections == [] and other.requests == []


async def test_proxies_from_the_environment_are_not_used(
    serve: Callable[..., LocalServer], monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy, origin = serve(), serve()
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.port}")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    # A stock client does go through the proxy here: the setting is live.
    async with httpx2.AsyncClient() as stock:
        await stock.get(origin.url())
    assert len(proxy.requests) == 1 and origin.requests == []

    async with guarded_http_client(headers={}, timeout=5, allow_private=True) as client:
        assert client.trust_env is False
        assert (await client.get(origin.url())).status_code == 200
    assert len(proxy.requests) == 1 and len(origin.requests) == 1


async def test_timeouts_bound_the_connect_and_leave_reads_to_the_stream_timeout() -> None:
    async with guarded_http_client(headers={"Authorization": "Bearer t0ken"}, timeout=7,
                                   allow_private=False) as client:
        assert client.timeout == httpx2.Timeout(7, read=STREAM_READ_TIMEOUT)
        assert client.headers["Authorization"] == "Bearer t0ken"
    assert STREAM_READ_TIMEOUT == 300.0  # the SDK's own read default

    factory = guarded_client_factory(allow_private=False)
    async with factory(timeout=httpx2.Timeout(5, read=60)) as client:
        assert client.timeout == httpx2.Timeout(5, read=60)
    async with factory() as client:
        assert client.timeout == httpx2.Timeout(30, read=300)
        assert client.follow_redirects is False and client.trust_env is False


async def test_the_factory_client_is_guarded_too(server: LocalServer, connects: list[str]) -> None:
    refusing = guarded_client_factory(allow_private=False)
    with anyio.fail_after(20), pytest.raises(Exception) as failed:
        async with sse_client(server.url(path="/sse"), timeout=5, httpx_client_factory=refusing):
            pass
    assert isinstance(_leaf(failed.value), AddressRefused)
    assert connects == []

    allowing = guarded_client_factory(allow_private=True)
    async with allowing(headers={"X-Server": "one"}, timeout=httpx2.Timeout(5, read=60)) as client:
        assert (await client.get(server.url())).status_code == 200
    assert server.requests == [("GET", "/mcp", f"127.0.0.1:{server.port}")]


# --- helpers ------------------------------------------------------------------------------------

def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _text(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return " | ".join(_text(inner) for inner in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"


def _wait_for(condition: Callable[[], object], seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _self_signed_certificate(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA certificate for DNS name `name` (and nothing else), and its key."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    certfile.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return certfile, keyfile


# Reaches neither the tests' database nor the channel layer (tests/conftest.py).
pytestmark = pytest.mark.backend_free
