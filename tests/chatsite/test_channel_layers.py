import asyncio

from chatsite.channel_layers import SWEEP_INTERVAL, SweepingInMemoryChannelLayer


async def test_messages_pass_and_expired_ones_are_still_dropped():
    layer = SweepingInMemoryChannelLayer(expiry=0.05)
    await layer.send("first.x", {"type": "hello"})
    await asyncio.sleep(SWEEP_INTERVAL + 0.1)
    await layer.send("second.x", {"type": "hello"})

    # A receive sweeps (at most once a second).
    assert await layer.receive("second.x") == {"type": "hello"}
    assert "first.x" not in layer.channels
