"""The fake MCP server's tools behave as the pool tests rely on (through the SDK's own Client)."""

from __future__ import annotations

import asyncio
import os

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp_types import ImageContent, TextContent, ToolListChangedNotification

from fakemcp import PNG_1X1, build_server, spawn_http, stdio_command
from fakemcp.runner import ROOT


def text_of(result) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


async def test_basic_tools_in_process():
    async with Client(build_server(), cache=None) as client:
        assert text_of(await client.call_tool("echo", {"text": "héllo"})) == "héllo"
        assert (await client.call_tool("add", {"a": 2, "b": 40})).structured_content == {"result": 42}
        failed = await client.call_tool("fail", {"message": "boom"})
        assert failed.is_error and "boom" in text_of(failed)
        assert len(text_of(await client.call_tool("huge", {"size": 12_345}))) == 12_345
        assert (await client.call_tool("pid", {})).structured_content == {"result": os.getpid()}
        image = await client.call_tool("image", {})
        images = [block for block in image.content if isinstance(block, ImageContent)]
        assert images and images[0].mime_type == "image/png"
        assert text_of(image) == "a 1x1 red pixel"


async def test_listing_is_paged():
    async with Client(build_server(extra_tools=250, page_size=100), cache=None) as client:
        names, cursor, pages = [], None, 0
        while True:
            page = await client.list_tools(cursor=cursor)
            pages += 1
            names += [tool.name for tool in page.tools]
            if (cursor := page.next_cursor) is None:
                break
        assert pages == 3
        assert len(names) == len(set(names)) == 250 + 11
        assert "extra_0249" in names


async def test_sleep_is_cancellable_and_counted():
    async with Client(build_server(), cache=None) as client:
        with anyio.move_on_after(0.2):
            await client.call_tool("sleep", {"seconds": 10})
        await asyncio.sleep(0.05)
        stats = (await client.call_tool("stats", {})).structured_content
        assert stats["cancelled"] == 1 and stats["sleeping"] == 0
        assert text_of(await client.call_tool("sleep", {"seconds": 0.01})) == "slept 0.01"


async def test_add_tool_and_change_description_announce_on_legacy_sessions():
    notified = asyncio.Event()

    async def handler(message):
        if isinstance(message, ToolListChangedNotification):
            notified.set()

    async with Client(build_server(), mode="legacy", cache=None, message_handler=handler) as client:
        await client.call_tool("add_tool", {"name": "brand_new"})
        await asyncio.wait_for(notified.wait(), 2)
        notified.clear()
        await client.call_tool("change_description", {"text": "Changed."})
        await asyncio.wait_for(notified.wait(), 2)
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert "brand_new" in tools and tools["echo"].description == "Changed."


@pytest.mark.parametrize(("legacy_only", "version"), [(False, "2026-07-28"), (True, "2025-11-25")])
async def test_stdio_serves_the_generation_asked_for(legacy_only, version):
    command, args = stdio_command(legacy_only=legacy_only)
    async with Client(StdioServerParameters(command=command, args=args, cwd=str(ROOT)),
                      cache=None) as client:
        assert client.protocol_version == version
        assert text_of(await client.call_tool("echo", {"text": "x"})) == "x"


@pytest.mark.parametrize(("legacy_only", "version"), [(False, "2026-07-28"), (True, "2025-11-25")])
async def test_http_child_process_serves_the_generation_asked_for(legacy_only, version):
    server = await asyncio.to_thread(spawn_http, legacy_only=legacy_only)
    try:
        async with Client(server.url, cache=None) as client:
            assert client.protocol_version == version
            pid = (await client.call_tool("pid", {})).structured_content["result"]
            assert pid == server.pid
    finally:
        await asyncio.to_thread(server.stop)


def test_png_is_a_tiny_png():
    assert PNG_1X1.startswith(b"\x89PNG\r\n") and len(PNG_1X1) < 100


# Reaches neither the tests' database nor the channel layer (tests/conftest.py).
pytestmark = pytest.mark.backend_free
