"""What our pool (agents/providers/_pool.py) and network backend (_network.py) take from httpcore
and httpx, checked one by one against the pinned versions (httpx 0.28.1, httpcore 1.0.9).

Both lean on names and behaviour that are private, or public but undocumented as a contract: an
upgrade can change them in any release, and the first sign would otherwise be a pool that
silently leaks or drops connections, or an error no one maps. So each check here fails saying
what changed and which of our code depends on it. After an upgrade that fails here: adapt
_pool.py / _network.py (meanwhile LLM_HTTP_TRANSPORT=stock runs on httpx's own transport), then
update the expectation. docs/private-apis.md lists the same dependencies with why we take them.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import typing
from pathlib import Path

import httpcore
import httpx
import pytest

from agents.providers._network import AsyncioBackend, AsyncioStream
from agents.providers._pool import StackPool, StackPoolTransport, _ReleasingStream

HINT = "(see docs/private-apis.md; LLM_HTTP_TRANSPORT=stock avoids our pool and backend)"


def plain(func: typing.Callable) -> str:
    """A signature without annotations: names, kinds and defaults, what callers depend on."""
    signature = inspect.signature(func)
    return str(signature.replace(
        parameters=[p.replace(annotation=inspect.Parameter.empty)
                    for p in signature.parameters.values()],
        return_annotation=inspect.Signature.empty))


# --- The network backend interface: httpcore calls our overrides -------------------------------

# (httpcore's base method, its signature as of 1.0.9, our override)
OVERRIDES = [
    (httpcore.AsyncNetworkStream.read, "(self, max_bytes, timeout=None)", AsyncioStream.read),
    (httpcore.AsyncNetworkStream.write, "(self, buffer, timeout=None)", AsyncioStream.write),
    (httpcore.AsyncNetworkStream.aclose, "(self)", AsyncioStream.aclose),
    (httpcore.AsyncNetworkStream.start_tls,
     "(self, ssl_context, server_hostname=None, timeout=None)", AsyncioStream.start_tls),
    (httpcore.AsyncNetworkStream.get_extra_info, "(self, info)", AsyncioStream.get_extra_info),
    (httpcore.AsyncNetworkBackend.connect_tcp,
     "(self, host, port, timeout=None, local_address=None, socket_options=None)",
     AsyncioBackend.connect_tcp),
    (httpcore.AsyncNetworkBackend.connect_unix_socket,
     "(self, path, timeout=None, socket_options=None)", AsyncioBackend.connect_unix_socket),
    (httpcore.AsyncNetworkBackend.sleep, "(self, seconds)", AsyncioBackend.sleep),
]


@pytest.mark.parametrize(("base", "expected", "ours"), OVERRIDES,
                         ids=[base.__qualname__ for base, _, _ in OVERRIDES])
def test_the_network_backend_interface_is_what_our_backend_implements(base, expected, ours):
    where = f"agents/providers/_network.py {ours.__qualname__}"
    assert plain(base) == expected, (
        f"httpcore.{base.__qualname__} is now {plain(base)}, was {expected}: httpcore calls "
        f"{where} the new way, which it may not accept. {HINT}")
    assert plain(ours) == plain(base), (
        f"{where} is {plain(ours)}, but httpcore.{base.__qualname__} is {plain(base)}.")
    assert inspect.iscoroutinefunction(base) == inspect.iscoroutinefunction(ours), (
        f"httpcore.{base.__qualname__} changed between sync and async: {where} must follow.")


def test_httpcore_asks_the_stream_only_for_extra_info_we_answer():
    answered = {"is_readable", "ssl_object", "client_addr", "server_addr", "socket"}
    source = Path(httpcore.__file__).parent / "_async"
    asked = {key for path in source.glob("*.py")
             for key in re.findall(r'get_extra_info\(\s*"(\w+)"', path.read_text())}
    assert "is_readable" in asked, (
        "httpcore's async connections no longer ask get_extra_info('is_readable'): an idle "
        "kept-alive connection the server closed may not be noticed before reuse. "
        "agents/providers/_network.py AsyncioStream.get_extra_info answers it from the "
        f"StreamReader, and _pool.py StackPool._idle_connection relies on has_expired(). {HINT}")
    assert asked <= answered, (
        f"httpcore now asks network streams for {sorted(asked - answered)}, which "
        f"agents/providers/_network.py AsyncioStream.get_extra_info answers with None. {HINT}")


# --- The connection class our pool drives -------------------------------------------------------


def test_connections_are_made_and_driven_the_way_our_pool_does():
    where = "agents/providers/_pool.py StackPool"
    params = inspect.signature(httpcore.AsyncHTTPConnection).parameters
    for name in ("origin", "ssl_context", "keepalive_expiry", "network_backend"):
        assert name in params and params[name].kind in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY), (
            f"httpcore.AsyncHTTPConnection({name}=...) is gone: {where}._new_connection passes "
            f"it. The signature is now {plain(httpcore.AsyncHTTPConnection)}. {HINT}")
    assert issubclass(httpcore.AsyncHTTPConnection, httpcore.AsyncConnectionInterface)
    for name, is_async in [("handle_async_request", True), ("aclose", True),
                           ("is_idle", False), ("has_expired", False), ("info", False)]:
        method = getattr(httpcore.AsyncHTTPConnection, name, None)
        assert method is not None and inspect.iscoroutinefunction(method) == is_async, (
            f"httpcore.AsyncHTTPConnection.{name} is gone or changed between sync and async: "
            f"{where} calls it ({'awaited' if is_async else 'plain'}). {HINT}")
    assert plain(httpcore.AsyncHTTPConnection.handle_async_request) == "(self, request)", (
        f"httpcore.AsyncHTTPConnection.handle_async_request is now "
        f"{plain(httpcore.AsyncHTTPConnection.handle_async_request)}: {where} passes it the "
        f"request alone. {HINT}")
    assert issubclass(httpcore.ConnectionNotAvailable, Exception), (
        f"httpcore.ConnectionNotAvailable is gone: {where}.handle_async_request catches it to "
        f"replace a kept connection that turned unusable. {HINT}")
    origin = httpcore.URL("https://example.com/v1").origin
    assert (origin.scheme, origin.host, origin.port) == (b"https", b"example.com", 443), (
        f"httpcore.Origin no longer has scheme/host/port as bytes/bytes/int: {where} keys its "
        f"idle stacks by them (_key). {HINT}")
    body = _ReleasingStream(no_body(), pool=None, connection=None, origin=origin)
    response = httpcore.Response(200, headers=[], content=body, extensions={})
    assert (response.status, response.headers, response.extensions) == (200, [], {})
    assert response.stream is body, (
        f"httpcore.Response no longer keeps an async iterable content as its stream: {where} "
        f"wraps the body so that closing it releases the connection. {HINT}")


async def no_body():
    yield b""


def get(url: str) -> httpcore.Request:
    """A request as httpx's transport hands it to the pool (httpcore wants the Host header)."""
    parsed = httpcore.URL(url)
    return httpcore.Request("GET", parsed, headers=[(b"Host", parsed.host)])


async def test_a_busy_connection_refuses_another_request_with_connection_not_available(server):
    pool = StackPool(ssl_context=httpx.create_ssl_context(), max_idle=4, keepalive_expiry=5.0)
    try:
        request = get(server.url + "/slow")
        response = await pool.handle_async_request(request)
        (busy,) = pool.connections()
        try:
            await busy.handle_async_request(get(server.url + "/ok"))
        except httpcore.ConnectionNotAvailable:
            pass
        except Exception as exc:
            pytest.fail(f"httpcore now raises {exc!r}, not ConnectionNotAvailable, for a request "
                        f"on a busy connection: agents/providers/_pool.py "
                        f"StackPool.handle_async_request catches the latter to try one new "
                        f"connection instead. {HINT}")
        else:
            pytest.fail("httpcore accepted a second request on a connection busy with a response: "
                        "agents/providers/_pool.py relies on ConnectionNotAvailable to notice a "
                        f"connection that cannot take a request. {HINT}")
        await response.stream.aclose()
    finally:
        await pool.aclose()


async def test_a_connection_is_idle_only_after_its_response_was_read_to_the_end(server):
    """_pool.StackPool._release keeps a connection if and only if it is idle."""
    pool = StackPool(ssl_context=httpx.create_ssl_context(), max_idle=4, keepalive_expiry=5.0)
    try:
        response = await pool.handle_async_request(get(server.url + "/slow"))
        (connection,) = pool.connections()
        async for _ in response.stream:
            break
        await response.stream.aclose()
        assert not connection.is_idle(), (
            "httpcore leaves a connection idle after a response closed half-read: "
            f"agents/providers/_pool.py would keep it and send the next request into the rest of "
            f"the old body. {HINT}")
        response = await pool.handle_async_request(get(server.url + "/slow"))
        (connection,) = pool.connections()
        async for _ in response.stream:
            pass
        await response.stream.aclose()
        assert connection.is_idle() and not connection.has_expired(), (
            "httpcore no longer makes a connection idle when its response was read to the end "
            f"and closed: agents/providers/_pool.py would never reuse a connection. {HINT}")
        assert pool.connections() == [connection]
    finally:
        await pool.aclose()


async def test_an_idle_connection_the_server_closed_has_expired(server):
    """What StackPool._idle_connection checks before reusing one: httpcore's has_expired() asks
    our stream's is_readable, which sees the server's close."""
    pool = StackPool(ssl_context=httpx.create_ssl_context(), max_idle=4, keepalive_expiry=5.0)
    try:
        response = await pool.handle_async_request(get(server.url + "/bye"))
        async for _ in response.stream:
            pass
        await response.stream.aclose()
        (connection,) = pool.connections()
        async with asyncio.timeout(2):
            while server.closed < 1:  # /bye closes 50 ms after answering
                await asyncio.sleep(0.01)
        assert connection.is_idle() and connection.has_expired(), (
            "httpcore's has_expired() no longer reports an idle connection the server closed "
            "(it asks the stream's get_extra_info('is_readable')): agents/providers/_pool.py "
            f"would send the next request into a dead connection. {HINT}")
    finally:
        await pool.aclose()


async def test_an_idle_connection_past_its_keepalive_expiry_has_expired(server):
    """StackPool passes keepalive_expiry to each connection and leaves the clock to httpcore."""
    pool = StackPool(ssl_context=httpx.create_ssl_context(), max_idle=4, keepalive_expiry=0.05)
    try:
        response = await pool.handle_async_request(get(server.url + "/ok"))
        async for _ in response.stream:
            pass
        await response.stream.aclose()
        (connection,) = pool.connections()
        await asyncio.sleep(0.1)
        assert connection.is_idle() and connection.has_expired(), (
            "httpcore's has_expired() no longer reports an idle connection past the "
            "keepalive_expiry it was made with: agents/providers/_pool.py would reuse "
            f"connections servers have long closed. {HINT}")
    finally:
        await pool.aclose()


# --- httpx's transport over our pool ------------------------------------------------------------


async def test_httpx_sends_through_the_pool_it_holds_and_wraps_its_responses(server):
    """StackPoolTransport subclasses httpx.AsyncHTTPTransport and swaps the private `_pool` it
    builds for ours: httpx must send, close and enter through that attribute."""
    transport = StackPoolTransport(max_idle=4)
    pool = transport._pool
    seen: list[httpcore.Request] = []
    handle = pool.handle_async_request

    async def recording(request):
        seen.append(request)
        return await handle(request)

    pool.handle_async_request = recording
    timeout = httpx.Timeout(5.0, connect=1.0)
    async with transport, httpx.AsyncClient(transport=transport, timeout=timeout) as http:
        response = await http.get(server.url + "/ok")
        assert seen, ("httpx.AsyncHTTPTransport no longer sends through its `_pool` attribute: "
                      "agents/providers/_pool.py StackPoolTransport replaces it with our pool, "
                      f"which is now bypassed. {HINT}")
        (request,) = seen
        assert isinstance(request, httpcore.Request)
        assert request.extensions["timeout"] == {
            "connect": 1.0, "read": 5.0, "write": 5.0, "pool": 5.0}, (
            "httpx no longer passes its timeouts to the pool in the request's extensions as "
            "httpcore reads them: our backend (_network.py) would get no connect timeout.")
        assert response.text == "hello"
        assert isinstance(response.extensions["network_stream"], AsyncioStream), (
            "httpcore.AsyncHTTPConnection no longer reaches the network through the backend "
            "agents/providers/_pool.py passes as network_backend=.")
        assert len(pool.connections()) == 1 and pool.connections()[0].is_idle(), (
            "Closing an httpx response no longer closes the pool's response stream "
            "(_pool._ReleasingStream.aclose): connections are never handed back.")
    assert pool.connections() == [], (
        "Closing httpx's transport no longer closes its `_pool`: StackPool.aclose is not called "
        "and kept connections leak.")


# The httpcore errors our backend and pool raise, and what httpx must turn them into:
# agents/providers/_http.py maps httpx.ConnectError / ConnectTimeout to "cannot reach" and every
# other httpx.TransportError to "dropped".
ERRORS = [
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
]


@pytest.mark.parametrize(("raised", "mapped"), ERRORS, ids=[r.__name__ for r, _ in ERRORS])
async def test_httpx_maps_the_errors_our_pool_and_backend_raise(raised, mapped):
    class FailingPool:
        async def handle_async_request(self, request):
            raise raised("from the pool")

        async def aclose(self) -> None:
            pass

    transport = StackPoolTransport(max_idle=1)
    await transport._pool.aclose()
    transport._pool = FailingPool()
    http = httpx.AsyncClient(transport=transport)
    try:
        with pytest.raises(httpx.HTTPError) as caught:
            await http.get("http://127.0.0.1:9/")
    finally:
        await http.aclose()
    assert type(caught.value) is mapped and issubclass(mapped, httpx.TransportError), (
        f"httpx now turns httpcore.{raised.__name__} into {type(caught.value).__name__}, not "
        f"httpx.{mapped.__name__} (a TransportError): agents/providers/_network.py and _pool.py "
        f"raise it, and agents/providers/_http.py classifies the httpx error. {HINT}")
