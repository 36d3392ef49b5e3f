import pytest
from asgiref.sync import sync_to_async
from channels.layers import channel_layers
from django.db import connections

from agents.mcp.pool import close_pool
from agents.providers import close_all
from conversations import broker


@pytest.fixture(autouse=True)
async def _fresh_loop_resources():
    """Each async test has its own event loop: channel layers and pooled HTTP clients made on
    an earlier loop must not be reused. Worker-thread connections are closed afterwards, or
    PostgreSQL teardown hangs on them (STACK.md)."""
    channel_layers.backends.clear()
    yield
    # A turn a test did not wait for must not outlive the test's loop half-way.
    await broker.wait_for_turns(timeout=5)
    await close_all()
    await close_pool()  # MCP sessions (and their processes) made on this loop
    for layer in list(channel_layers.backends.values()):
        flush = getattr(layer, "flush", None)
        if flush is not None and layer.__class__.__name__ == "RedisChannelLayer":
            await flush()
    channel_layers.backends.clear()
    await sync_to_async(connections.close_all)()
