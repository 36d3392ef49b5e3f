"""Request bodies over MAX_REQUEST_BODY_BYTES are refused with 413 before anything buffers them,
so that no one, logged in or not, can make a process hold a big body in memory (issue 8: an
anonymous 50 MB POST to the login page cost Daphne about 600 MB at peak, and 50 MB for good).

Most of these run against a real Daphne process over raw sockets, since what they show is what
the server does with bytes it has not read yet."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from chatsite.request_limits import BoundedWebRequest
from tests.conversations.processes import ROOT, serve

MB = 1024 * 1024
LIMIT = 4 * MB  # the test server's MAX_REQUEST_BODY_BYTES
BIG = 50 * MB  # the body of the probe
PASSWORD = "correct horse battery staple"
BOUNDARY = "----probe7MA4YWxkTrZu0gW"


@dataclasses.dataclass(frozen=True)
class Daphne:
    port: int
    pid: int
    username: str


@pytest.fixture(scope="module")
def daphne(tmp_path_factory) -> Iterator[Daphne]:
    tmp = tmp_path_factory.mktemp("daphne")
    # No model is called here: the base URL only has to be valid.
    with serve(fake_base_url="http://127.0.0.1:9/v1", tmp_path=tmp,
               MAX_REQUEST_BODY_BYTES=str(LIMIT)) as (port, _session, proc, db):
        _set_password(db, username="bench0", password=PASSWORD)
        yield Daphne(port=port, pid=proc.pid, username="bench0")


def _set_password(db: Path, *, username: str, password: str) -> None:
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    # A hasher the server knows (the tests' own is MD5), cheap enough for a test.
    encoded = PBKDF2PasswordHasher().encode(password, "probesalt", iterations=1000)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE accounts_user SET password = ? WHERE username = ?",
                     (encoded, username))


# --- raw HTTP --------------------------------------------------------------------------------


def _head(port: int, *, length: int | None = None, expect: bool = False) -> bytes:
    """A POST to the login page: a multipart body of `length` bytes, or chunked if None."""
    lines = ["POST /login/ HTTP/1.1", f"Host: 127.0.0.1:{port}",
             f"Content-Type: multipart/form-data; boundary={BOUNDARY}"]
    lines.append("Transfer-Encoding: chunked" if length is None else f"Content-Length: {length}")
    if expect:
        lines.append("Expect: 100-continue")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _multipart(*, size: int, fields: dict[str, str] | None = None) -> tuple[bytes, bytes, int]:
    """The start and end of a multipart body of `size` bytes in all, and how many bytes of
    file content go between them: a form (the fields) with one big file in it."""
    start = "".join(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                    f"{value}\r\n" for name, value in (fields or {}).items())
    start += (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
              f'filename="big.bin"\r\nContent-Type: application/octet-stream\r\n\r\n')
    end = f"\r\n--{BOUNDARY}--\r\n".encode()
    return start.encode(), end, size - len(start) - len(end)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


@dataclasses.dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=15)


def _read_response(sock: socket.socket) -> Response:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"the server closed without an answer (got {data!r})")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip()
               for name, value in (line.split(":", 1) for line in header_lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return Response(int(status_line.split()[1]), headers, body[:length])


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def _assert_too_large(response: Response) -> None:
    assert response.status == 413, response
    assert response.headers["content-type"].startswith("text/plain")
    assert response.headers["connection"] == "close"
    assert b"too large" in response.body


# --- what a client sees ------------------------------------------------------------------------


@pytest.mark.parametrize("length", [BIG, LIMIT + 1])
def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_sent(daphne, length):
    with _connect(daphne.port) as sock:
        # A client that waits for "100 Continue" gets the refusal instead and sends nothing.
        sock.sendall(_head(daphne.port, length=length, expect=True))
        _assert_too_large(_read_response(sock))
        assert _closed(sock)


def test_the_api_gets_its_413_in_openais_error_shape(daphne):
    with _connect(daphne.port) as sock:
        sock.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{daphne.port}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {LIMIT + 1}\r\n"
                     "\r\n".encode())
        response = _read_response(sock)
    assert response.status == 413 and response.headers["content-type"] == "application/json"
    assert json.loads(response.body)["error"]["code"] == "request_too_large"


def test_a_declared_length_over_the_limit_is_refused_while_the_body_comes(daphne):
    start, _end, _ = _multipart(size=BIG)
    with _connect(daphne.port) as sock:
        sock.sendall(_head(daphne.port, length=BIG) + start + b"x" * 1024)
        _assert_too_large(_read_response(sock))
        assert _closed(sock)


def test_a_chunked_body_is_cut_off_where_it_passes_the_limit(daphne):
    start, _end, _ = _multipart(size=BIG)
    with _connect(daphne.port) as sock:
        sock.sendall(_head(daphne.port) + _chunk(start))
        sent = len(start)
        block = b"x" * (256 * 1024)
        while sent + len(block) <= LIMIT:
            sock.sendall(_chunk(block))
            sent += len(block)
        # Let the server read everything so far, so that the chunk that passes the limit is the
        # last thing it reads: what it leaves unread turns its close into a reset, and a client
        # may then see the reset instead of the answer.
        time.sleep(0.3)
        sock.sendall(_chunk(b"x" * (LIMIT - sent + 1)))
        # No last chunk: the answer comes without the end of the body.
        _assert_too_large(_read_response(sock))
        assert _closed(sock)


def _login(port: int, *, username: str, password: str, size: int | None = None) -> httpx.Response:
    """Log in through the login page, as a browser does; with `size`, as a multipart form of
    exactly that many bytes (a big file beside the fields)."""
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        page = client.get("/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        fields = {"csrfmiddlewaretoken": token, "username": username, "password": password}
        if size is None:
            return client.post("/login/", data=fields)
        start, end, filler = _multipart(size=size, fields=fields)
        body = start + b"x" * filler + end
        assert len(body) == size
        return client.post("/login/", content=body, headers={
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})


def test_a_normal_login_works(daphne):
    response = _login(daphne.port, username=daphne.username, password=PASSWORD)
    assert response.status_code == 302 and response.headers["location"] == "/"
    assert "sessionid" in response.cookies


def test_a_body_of_exactly_the_limit_reaches_the_app(daphne):
    response = _login(daphne.port, username=daphne.username, password=PASSWORD, size=LIMIT)
    assert response.status_code == 302 and response.headers["location"] == "/"


def test_a_chunked_body_under_the_limit_reaches_the_app(daphne):
    start, end, _ = _multipart(size=BIG)
    with _connect(daphne.port) as sock:
        sock.sendall(_head(daphne.port) + _chunk(start + b"x" * MB + end) + b"0\r\n\r\n")
        # Django's own refusal (no CSRF cookie), not ours.
        assert _read_response(sock).status == 403


# --- memory ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Memory:
    resident: int  # VmRSS, bytes
    peak: int  # VmHWM, bytes

    @classmethod
    def of(cls, pid: int) -> Memory:
        status = Path(f"/proc/{pid}/status").read_text()
        kb = {key: int(re.search(rf"^{key}:\s+(\d+) kB", status, re.M).group(1))
              for key in ("VmRSS", "VmHWM")}
        return cls(resident=kb["VmRSS"] * 1024, peak=kb["VmHWM"] * 1024)


def _probe(port: int, *, chunked: bool) -> None:
    """The probe: a 50 MB multipart POST to the login page, sent as fast as the socket takes
    it until the server closes; a server that reads it all answers at the end."""
    start, end, filler = _multipart(size=BIG)
    block = b"x" * (256 * 1024)
    with _connect(port) as sock:
        try:
            sock.sendall(_head(port, length=None if chunked else BIG))
            sock.sendall(_chunk(start) if chunked else start)
            sent = 0
            while sent < filler:
                part = block[:filler - sent]
                sock.sendall(_chunk(part) if chunked else part)
                sent += len(part)
            sock.sendall(_chunk(end) + b"0\r\n\r\n" if chunked else end)
            _read_response(sock)
        except OSError:
            pass  # the server closed while we were still sending


def test_repeated_big_bodies_leave_the_servers_memory_flat(daphne):
    # Warm up what a first request loads (the login page, the form parser), as a running server
    # has.
    _login(daphne.port, username=daphne.username, password=PASSWORD, size=MB)
    before = Memory.of(daphne.pid)
    for _ in range(10):
        _probe(daphne.port, chunked=False)
        _probe(daphne.port, chunked=True)
    time.sleep(1)
    after = Memory.of(daphne.pid)
    print(f"\nDaphne memory over 10 + 10 probes of {BIG // MB} MB: "
          f"peak (VmHWM) {before.peak / MB:.1f} -> {after.peak / MB:.1f} MB, "
          f"settled (VmRSS) {before.resident / MB:.1f} -> {after.resident / MB:.1f} MB")
    assert after.peak - before.peak < 20 * MB
    assert after.resident - before.resident < 20 * MB
    # And the server still answers.
    assert _login(daphne.port, username=daphne.username, password=PASSWORD).status_code == 302


# --- other ASGI servers ------------------------------------------------------------------------


def _http_scope(headers: list[tuple[bytes, bytes]]) -> dict:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
            "scheme": "http", "path": "/login/", "raw_path": b"/login/", "query_string": b"",
            "root_path": "", "headers": [(b"host", b"127.0.0.1"), *headers],
            "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000)}


@pytest.fixture
def app():
    """The application as any ASGI server runs it."""
    from chatsite.asgi import application

    return application


async def _answer(communicator) -> tuple[int, bytes]:
    start = await communicator.receive_output(5)
    body = await communicator.receive_output(5)
    return start["status"], body["body"]


async def test_at_the_asgi_level_a_declared_length_over_the_limit_is_refused_unread(app, settings):
    from asgiref.testing import ApplicationCommunicator

    length = settings.MAX_REQUEST_BODY_BYTES + 1
    communicator = ApplicationCommunicator(
        app, _http_scope([(b"content-length", str(length).encode())]))
    # Not one byte of the body is sent: the answer comes without it.
    status, body = await _answer(communicator)
    assert status == 413 and b"too large" in body


async def test_at_the_asgi_level_a_chunked_body_is_refused_where_it_passes_the_limit(app, settings):
    from asgiref.testing import ApplicationCommunicator

    communicator = ApplicationCommunicator(app, _http_scope([]))
    for _ in range(settings.MAX_REQUEST_BODY_BYTES // MB + 1):
        await communicator.send_input({"type": "http.request", "body": b"x" * MB, "more_body": True})
    status, body = await _answer(communicator)
    assert status == 413 and b"too large" in body


@pytest.mark.parametrize("declared", [True, False])
async def test_at_the_asgi_level_a_body_of_the_limit_reaches_the_app(app, settings, declared):
    from asgiref.testing import ApplicationCommunicator

    limit = settings.MAX_REQUEST_BODY_BYTES
    headers = [(b"content-length", str(limit).encode())] if declared else []
    communicator = ApplicationCommunicator(app, _http_scope(headers))
    await communicator.send_input({"type": "http.request", "body": b"x" * limit, "more_body": False})
    status, _body = await _answer(communicator)
    assert status == 403  # Django's CSRF refusal: the app got the request


def test_a_limit_too_small_for_a_login_form_stops_the_start(tmp_path):
    code = "import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'chatsite.settings'; django.setup()"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "DATA_DIR": str(tmp_path),
                                 "MAX_REQUEST_BODY_BYTES": "1000"}, timeout=60)
    assert result.returncode != 0
    assert "MAX_REQUEST_BODY_BYTES must be at least" in result.stderr


# --- what the limit relies on in Twisted and Daphne (docs/private-apis.md) ---------------------


@pytest.fixture
def connection(monkeypatch):
    """Daphne's HTTP protocol for one connection, on a transport that records what is written,
    with a limit of 1,000 bytes: yields the protocol and the transport."""
    import chatsite.asgi  # noqa: F401  (installs the limit, as in every Daphne process)
    from daphne.http_protocol import HTTPFactory
    from daphne.server import Server
    from twisted.internet.address import IPv4Address
    from twisted.internet.error import ConnectionDone
    from twisted.internet.testing import StringTransport
    from twisted.python.failure import Failure

    monkeypatch.setattr(BoundedWebRequest, "max_body_bytes", 1000)
    server = Server(application=None, endpoints=["tcp:0"])
    server.connections = {}  # made by Server.run, which is not called here
    protocol = HTTPFactory(server).buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    transport = StringTransport()
    protocol.makeConnection(transport)
    yield protocol, transport
    protocol.connectionLost(Failure(ConnectionDone()))  # cancels its idle timer


RELIES = ("chatsite/request_limits.py relies on it (docs/private-apis.md, \"Bounding request "
          "bodies inside Daphne's HTTP parser\")")


def test_daphne_builds_our_request_for_each_connection(connection):
    from twisted.web import http

    protocol, transport = connection

    assert not http.H2_ENABLED, (
        "h2 is installed, so Daphne may now speak HTTP/2, whose requests BoundedWebRequest "
        "does not bound: " + RELIES)
    protocol.dataReceived(b"POST /login/ HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
    assert isinstance(protocol._channel.requests[-1], BoundedWebRequest), (
        "Daphne's HTTPFactory.buildProtocol no longer makes its requests from "
        "daphne.http_protocol.WebRequest, so install_daphne_body_limit changes nothing: " + RELIES)


def test_twisted_asks_about_the_length_before_it_says_continue(connection):
    protocol, transport = connection
    protocol.dataReceived(b"POST /login/ HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n"
                         b"Expect: 100-continue\r\n\r\n")
    written = transport.value()
    assert b"100 Continue" not in written, (
        "Twisted's HTTPChannel.allHeadersReceived sent 100 Continue although gotLength refused "
        "the body: it no longer calls Request.gotLength first, or reads Expect elsewhere: "
        + RELIES)
    assert written.startswith(b"HTTP/1.1 413 "), (
        f"Twisted no longer calls Request.gotLength with the declared length ({written[:60]!r}): "
        + RELIES)
    assert transport.disconnecting


def test_twisted_hands_a_chunked_body_over_as_it_reads_it(connection):
    protocol, transport = connection
    protocol.dataReceived(b"POST /login/ HTTP/1.1\r\nHost: x\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")
    protocol.dataReceived(b"200\r\n" + b"x" * 512 + b"\r\n")
    assert transport.value() == b"", "refused under the limit"
    # The read that passes the limit also ends the body: the request must not run after all.
    protocol.dataReceived(b"200\r\n" + b"x" * 512 + b"\r\n0\r\n\r\n")
    written = transport.value()
    assert written.startswith(b"HTTP/1.1 413 "), (
        "Twisted no longer passes a chunked body to Request.handleContentChunk as it reads it "
        f"({written[:60]!r}): " + RELIES)
    assert written.count(b"HTTP/1.1 ") == 1, (
        "a refused request still ran (Daphne answered it too): Twisted no longer ends a "
        "request through Request.requestReceived: " + RELIES)
    assert transport.disconnecting


# Reaches neither the tests' database nor the channel layer (tests/conftest.py).
pytestmark = pytest.mark.backend_free
