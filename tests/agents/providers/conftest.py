"""Provider behaviour (streaming, errors, timeouts, drops, TLS) must hold on either HTTP transport
(LLM_HTTP_TRANSPORT): a test that asks for `transport`, directly or through a fixture, runs once
on each. Tests of our own client's internals (test_wire.py) ask for none and run on ours only."""

from __future__ import annotations

import re
import typing

import pytest

from agents.providers._stock import StockClient
from agents.providers._transport import HttpClient
from agents.providers._wire import WireClient
from agents.providers.base import HttpTransport
from tests.agents.providers.rawserver import CountingServer


@pytest.fixture(params=typing.get_args(HttpTransport))
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
    """The requests each idle kept-alive connection of a client has served, whichever the
    transport."""

    def kept(client: HttpClient) -> list[int]:
        if isinstance(client, WireClient):
            return client.kept_connections()
        assert isinstance(client, StockClient)
        # httpx's transport, httpcore's pool and its connections' repr: private, tests only.
        connections = client.http._transport._pool.connections
        return [int(re.search(r"Request Count: (\d+)", repr(c)).group(1))
                for c in connections if c.is_idle()]

    return kept
