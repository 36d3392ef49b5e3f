"""The network layer under httpcore: TLS, certificate checks, timeouts and errors, over real
sockets. On both transports: ours must behave as httpx's own (AnyIO) backend does."""

from __future__ import annotations

import httpx
import pytest

from agents.providers._transport import make_transport
from tests.agents.providers.rawserver import CountingServer, self_signed


@pytest.fixture
async def tls(tmp_path):
    server_context, client_context = self_signed(tmp_path)
    server = CountingServer(ssl_context=server_context)
    server.url = await server.start()
    yield server, client_context
    await server.stop()


async def test_https_with_a_trusted_certificate_streams_and_keeps_the_connection(
        tls, transport, kept_connections):
    server, client_context = tls
    async with httpx.AsyncClient(transport=make_transport(
            transport, max_idle=4, ssl_context=client_context)) as http:
        async with http.stream("GET", server.url + "/slow") as response:
            chunks = [chunk async for chunk in response.aiter_raw()]
        assert b"".join(chunks) == b"hello" * 3
        assert (await http.get(server.url + "/ok")).text == "hello"
        (connection,) = kept_connections(http)
        assert connection.info().startswith("'https://localhost")
    assert server.accepted == 1


async def test_an_untrusted_certificate_is_refused(tls, transport):
    server, _ = tls
    # The machine's usual trust store: it does not know the test's certificate.
    async with httpx.AsyncClient(transport=make_transport(transport, max_idle=4)) as http:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await http.get(server.url + "/ok")


async def test_a_read_timeout_is_httpx_read_timeout(transport):
    server = CountingServer()
    url = await server.start()
    try:
        async with httpx.AsyncClient(transport=make_transport(transport, max_idle=4),
                                     timeout=httpx.Timeout(5.0, read=0.2)) as http:
            with pytest.raises(httpx.ReadTimeout):
                await http.get(url + "/never")
    finally:
        await server.stop()


async def test_a_server_that_closes_mid_answer_is_a_transport_error(transport):
    server = CountingServer()
    url = await server.start()
    try:
        async with httpx.AsyncClient(transport=make_transport(transport, max_idle=4)) as http:
            async with http.stream("GET", url + "/slow") as response:
                server.server.close()
                for writer in list(server.writers):
                    writer.transport.abort()
                with pytest.raises(httpx.TransportError):
                    async for _ in response.aiter_raw():
                        pass
    finally:
        await server.stop()
