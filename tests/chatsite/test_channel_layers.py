import asyncio

from channels.layers import InMemoryChannelLayer

from chatsite.channel_layers import SWEEP_INTERVAL, SweepingInMemoryChannelLayer


async def test_messages_pass_and_expired_ones_are_still_dropped():
    layer = SweepingInMemoryChannelLayer(expiry=0.05)
    await layer.send("first.x", {"type": "hello"})
    await asyncio.sleep(SWEEP_INTERVAL + 0.1)
    await layer.send("second.x", {"type": "hello"})

    # A receive sweeps (at most once a second).
    assert await layer.receive("second.x") == {"type": "hello"}
    assert "first.x" not in layer.channels


async def test_the_sweep_channels_runs_per_message_is_the_one_we_rate_limit(monkeypatch):
    # Our layer overrides a private method (docs/private-apis.md): if Channels renamed it or
    # stopped calling it, the override would be dead code and the per-message sweep back.
    sweeps = []
    monkeypatch.setattr(InMemoryChannelLayer, "_clean_expired", lambda self: sweeps.append(1))
    layer = SweepingInMemoryChannelLayer()
    await layer.group_add("g", "a.x")
    for _ in range(3):
        await layer.group_send("g", {"type": "hello"})
        assert await layer.receive("a.x") == {"type": "hello"}
    assert sweeps == [1], (
        "channels.layers.InMemoryChannelLayer no longer sweeps through _clean_expired on each "
        "receive and group_send: chatsite/channel_layers.py's rate limit no longer applies.")
