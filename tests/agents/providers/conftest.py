"""Provider behaviour (streaming, errors, timeouts, drops, TLS) must hold on either HTTP transport
(LLM_HTTP_TRANSPORT): a test that asks for `transport`, directly or through a fixture, runs once
on each. Tests of our own pool's and backend's internals ask for none and run on ours only."""

from __future__ import annotations

import httpcore
import httpx
import pytest

from agents.providers.base import HttpTransport
from tests.agents.providers.rawserver import CountingServer


@pytest.fixture(params=["pooled", "stock"])
def transport(request: pytest.FixtureRequest) -> HttpTransport:
    return request.param


@pytest.fixture
async def server():
    """A raw keep-alive HTTP server that counts connections (see rawserver)."""
    s = CountingServer()
    s.url = await s.start()
    yield s
    await s.stop()



@pytest.fixture
def kept_connections():
    """The connections a client's pool holds, whichever the transport."""

    def connections(client: httpx.AsyncClient) -> list[httpcore.AsyncConnectionInterface]:
        pool = client._transport._pool
        # Ours has a method; httpcore's pool a property.
        return pool.connections() if callable(pool.connections) else pool.connections

    return connections
