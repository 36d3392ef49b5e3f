"""The MCP session pool against real servers: our fakemcp over stdio, streamable HTTP and SSE,
in both protocol generations, and the published mcp-server-time and server-everything."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from agents.mcp.config import McpServerConfig
from agents.mcp.listing import ListingCaps
from agents.mcp.pool import McpPool, McpServerError, close_pool, get_pool
from fakemcp import PNG_1X1, run_http_in_thread, spawn_http, stdio_command
from fakemcp.runner import ROOT

EVERYTHING = ROOT / "node_modules/@modelcontextprotocol/server-everything/dist/index.js"
TIME_SERVER = Path(sys.executable).parent / "mcp-server-time"


def fake_stdio(name: str = "fake", *, extra_tools: int = 0, legacy_only: bool = False,
               **changes) -> McpServerConfig:
    command, args = stdio_command(extra_tools=extra_tools, legacy_only=legacy_only)
    return McpServerConfig(name=name, transport="stdio", command=command, args=tuple(args),
                           cwd=str(ROOT), **changes)


def fake_http(url: str, *, name: str = "fake-http", transport: str = "http", **changes) -> McpServerConfig:
    # Our fake listens on 127.0.0.1, which production configs refuse unless allowed.
    return McpServerConfig(name=name, transport=transport, url=url, allow_private_addresses=True,
                           **changes)


@pytest.fixture
async def pool():
    pool = McpPool(backoff_first=0.3, backoff_cap=2.0)
    yield pool
    await pool.aclose()


async def server_pid(pool: McpPool, config: McpServerConfig) -> int:
    outcome = await pool.call_tool(config, "pid")
    assert not outcome.is_error, outcome.content
    return outcome.structured["result"]


async def stats(pool: McpPool, config: McpServerConfig) -> dict[str, int]:
    return (await pool.call_tool(config, "stats")).structured


def assert_reaped(pid: int) -> None:
    """The process is gone and was waited for: no zombie left in the process table."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                time.sleep(0.02)
                continue
        except psutil.NoSuchProcess:
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} is still there (or a zombie)")


# --- calls over stdio ---------------------------------------------------------------------------


async def test_a_call_works_and_the_next_reuses_the_session(pool):
    config = fake_stdio()
    outcome = await pool.call_tool(config, "echo", {"text": "hello"})
    assert (outcome.content, outcome.is_error, outcome.truncated) == ("hello", False, False)
    first = await server_pid(pool, config)
    assert await server_pid(pool, config) == first
    state = pool.state("fake")
    assert (state.status, state.pid, state.protocol_version) == ("ready", first, "2026-07-28")


async def test_parallel_calls_run_concurrently_on_one_session(pool):
    config = fake_stdio()
    pid = await server_pid(pool, config)
    started = time.monotonic()
    outcomes = await asyncio.gather(*(pool.call_tool(config, "sleep", {"seconds": 0.3}) for _ in range(20)))
    assert time.monotonic() - started < 2.0
    assert {outcome.content for outcome in outcomes} == {"slept 0.3"}
    assert await server_pid(pool, config) == pid


async def test_a_killed_server_fails_the_call_fast_and_is_restarted_and_reaped(pool):
    config = fake_stdio()
    old_pid = await server_pid(pool, config)
    call = asyncio.create_task(pool.call_tool(config, "sleep", {"seconds": 5}))
    await wait_until(lambda: stats(pool, config), lambda s: s["sleeping"] == 1)
    started = time.monotonic()
    os.kill(old_pid, signal.SIGKILL)
    outcome = await call
    assert time.monotonic() - started < 2.0
    assert outcome.is_error
    assert outcome.content == "MCP server 'fake' crashed (killed by SIGKILL); it is restarted on the next call"
    state = pool.state("fake")
    assert (state.status, state.error, state.pid) == ("failing", outcome.content, None)
    new_pid = await server_pid(pool, config)
    assert new_pid != old_pid and pool.state("fake").status == "ready"
    assert_reaped(old_pid)


async def test_a_crashing_tool_gives_an_error_outcome_with_the_exit_code(pool):
    config = fake_stdio()
    old_pid = await server_pid(pool, config)
    outcome = await pool.call_tool(config, "crash")
    assert outcome.is_error
    assert outcome.content == "MCP server 'fake' crashed (exit code 1); it is restarted on the next call"
    assert pool.state("fake").status == "failing"
    assert await server_pid(pool, config) != old_pid
    assert_reaped(old_pid)


async def test_a_hung_call_times_out_and_the_session_still_works(pool):
    config = fake_stdio()
    pid = await server_pid(pool, config)
    started = time.monotonic()
    outcome = await pool.call_tool(config, "sleep", {"seconds": 30}, timeout=0.5)
    assert time.monotonic() - started < 2.0
    assert outcome.is_error and outcome.content == "MCP tool 'sleep' on server 'fake' timed out after 0.5 s"
    # The SDK sent notifications/cancelled: the server stopped the handler.
    counters = await wait_until(lambda: stats(pool, config), lambda s: s["cancelled"] == 1)
    assert counters["sleeping"] == 0
    assert await server_pid(pool, config) == pid


async def test_cancelling_the_caller_cancels_the_call_on_the_server(pool):
    config = fake_stdio()
    pid = await server_pid(pool, config)
    call = asyncio.create_task(pool.call_tool(config, "sleep", {"seconds": 30}))
    await wait_until(lambda: stats(pool, config), lambda s: s["sleeping"] == 1)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    counters = await wait_until(lambda: stats(pool, config), lambda s: s["cancelled"] == 1)
    assert counters["sleeping"] == 0
    assert await server_pid(pool, config) == pid and pool.state("fake").status == "ready"


async def test_a_huge_result_is_cut_and_says_so(pool):
    outcome = await pool.call_tool(fake_stdio(), "huge", {"size": 200_000}, max_result_chars=1_000)
    assert outcome.truncated and outcome.original_chars == 200_000
    assert outcome.content.startswith("0123456789") and len(outcome.content) < 1_200
    assert outcome.content.endswith("[cut: the result was 200,000 characters; only the first 1,000 are shown]")


async def test_an_image_is_described_not_pasted(pool):
    outcome = await pool.call_tool(fake_stdio(), "image")
    encoded = base64.b64encode(PNG_1X1).decode()
    assert encoded not in outcome.content and encoded[:20] not in outcome.content
    assert outcome.attachments == (f"image/png, {len(PNG_1X1)} bytes",)
    assert outcome.content == f"[image not shown: image/png, {len(PNG_1X1)} bytes]\na 1x1 red pixel"


async def test_tool_errors_and_refusals_are_error_outcomes(pool):
    config = fake_stdio()
    failed = await pool.call_tool(config, "fail", {"message": "boom"})
    assert failed.is_error and "boom" in failed.content
    unknown = await pool.call_tool(config, "no_such_tool")
    assert unknown.is_error and "no_such_tool" in unknown.content
    assert pool.state("fake").status == "ready"


# --- listing and change notifications -----------------------------------------------------------


async def test_listing_converts_the_tools(pool):
    listing = await pool.list_tools(fake_stdio())
    assert not listing.truncated and listing.reason == ""
    tools = {tool.name: tool for tool in listing.tools}
    assert {"echo", "add", "sleep", "crash", "pid"} <= set(tools)
    assert tools["echo"].description == "Return the text unchanged."
    assert tools["echo"].input_schema["properties"]["text"]["type"] == "string"
    # Annotations in the wire form (camelCase, absent hints left out), and none is {}.
    assert tools["pid"].annotations == {"readOnlyHint": True, "idempotentHint": True}
    assert tools["echo"].annotations == {}
    assert listing.protocol_version == "2026-07-28"


async def test_a_paged_listing_stops_at_the_tool_cap(pool):
    listing = await pool.list_tools(fake_stdio(extra_tools=1000))
    assert listing.truncated and len(listing.tools) == 500
    assert listing.reason == "the server lists more than 500 tools; the first 500 were kept"
    assert listing.pages == 5  # 100 tools a page, read until the cap


async def test_a_paged_listing_stops_at_the_page_and_byte_caps(pool):
    config = fake_stdio(extra_tools=1000)
    by_pages = await pool.list_tools(config, caps=ListingCaps(max_pages=3, max_tools=10_000))
    assert by_pages.truncated and len(by_pages.tools) == 300 and "3 pages" in by_pages.reason
    by_bytes = await pool.list_tools(config, caps=ListingCaps(max_bytes=20_000))
    assert by_bytes.truncated and 0 < len(by_bytes.tools) < 100 and "20,000 bytes" in by_bytes.reason


@pytest.mark.parametrize("legacy_only", [False, True], ids=["2026-07-28", "2025-11-25"])
async def test_list_changed_over_stdio_calls_back_and_relisting_shows_it(pool, legacy_only):
    config = fake_stdio(legacy_only=legacy_only)
    changed = asyncio.Event()
    pool.on_tools_changed(lambda name: changed.set() if name == "fake" else None)
    before = await pool.list_tools(config)
    assert "brand_new" not in {tool.name for tool in before.tools}
    assert before.protocol_version == ("2025-11-25" if legacy_only else "2026-07-28")
    assert not (await pool.call_tool(config, "add_tool", {"name": "brand_new"})).is_error
    await asyncio.wait_for(changed.wait(), 3)
    changed.clear()
    await pool.call_tool(config, "change_description", {"text": "A new description."})
    await asyncio.wait_for(changed.wait(), 3)
    tools = {tool.name: tool for tool in (await pool.list_tools(config)).tools}
    assert "brand_new" in tools and tools["echo"].description == "A new description."


@pytest.mark.parametrize("legacy_only", [False, True], ids=["2026-07-28", "2025-11-25"])
async def test_list_changed_over_streamable_http(pool, legacy_only):
    with await asyncio.to_thread(run_http_in_thread, legacy_only=legacy_only) as server:
        config = fake_http(server.url)
        calls: list[str] = []
        changed = asyncio.Event()

        async def callback(name: str) -> None:  # an async callback is run as its own task
            calls.append(name)
            changed.set()

        pool.on_tools_changed(callback)
        listing = await pool.list_tools(config)
        assert listing.protocol_version == ("2025-11-25" if legacy_only else "2026-07-28")
        await pool.call_tool(config, "add_tool", {"name": "over_http"})
        await asyncio.wait_for(changed.wait(), 3)
        assert calls[0] == "fake-http"
        assert "over_http" in {tool.name for tool in (await pool.list_tools(config)).tools}
        await pool.aclose()


async def test_a_reopened_session_announces_a_possible_tool_change(pool):
    config = fake_stdio()
    changes: list[str] = []
    pool.on_tools_changed(changes.append)
    await pool.call_tool(config, "echo", {"text": "x"})
    assert changes == []  # the first open is no change
    await pool.call_tool(config, "crash")
    await pool.call_tool(config, "echo", {"text": "x"})
    assert changes == ["fake"]


# --- failures, backoff, config changes ----------------------------------------------------------


async def test_a_missing_command_backs_off_and_fails_fast_meanwhile(pool):
    config = McpServerConfig(name="ghost", transport="stdio", command="/nonexistent/mcp-server")
    first = await pool.call_tool(config, "anything")
    assert first.is_error
    assert first.content == "MCP server 'ghost' is not reachable: command not found: /nonexistent/mcp-server"
    state = pool.state("ghost")
    assert (state.status, state.failures, state.error) == ("backing_off", 1, first.content)
    assert 0 < state.retry_in() <= 0.3
    started = time.monotonic()
    second = await pool.call_tool(config, "anything")
    assert time.monotonic() - started < 0.05
    assert second.content.startswith(first.content + " (next try in ")
    await asyncio.sleep(state.retry_in() + 0.05)
    await pool.call_tool(config, "anything")  # tried again: failed again, waits twice as long
    assert pool.state("ghost").failures == 2 and 0.3 < pool.state("ghost").retry_in() <= 0.6
    with pytest.raises(McpServerError, match="next try in"):
        await pool.list_tools(config)


async def test_a_server_that_exits_at_start_is_not_reachable_with_its_exit_code(pool):
    config = McpServerConfig(name="quitter", transport="stdio", command=sys.executable,
                             args=("-c", "import sys; sys.exit(3)"))
    outcome = await pool.call_tool(config, "anything")
    assert outcome.content == "MCP server 'quitter' is not reachable: it crashed (exit code 3) while starting"


async def test_a_server_that_never_answers_times_out_at_connect(pool):
    # Reads stdin until it closes, never answers: the handshake waits for nothing.
    config = McpServerConfig(name="mute", transport="stdio", command=sys.executable,
                             args=("-c", "import sys; sys.stdin.read()"), connect_timeout=0.5)
    started = time.monotonic()
    outcome = await pool.call_tool(config, "anything")
    assert time.monotonic() - started < 3
    assert outcome.content == "MCP server 'mute' did not answer within 0.5 s"
    assert pool.state("mute").status == "backing_off"


async def test_a_changed_config_reopens_the_session(pool):
    config = fake_stdio()
    old_pid = await server_pid(pool, config)
    assert await server_pid(pool, replace(config, call_timeout=30.0)) != old_pid
    assert_reaped(old_pid)


async def test_errors_never_show_header_env_or_url_secrets(pool):
    config = McpServerConfig(
        name="secretive", transport="http", url="http://user:pw-secret@127.0.0.1:9/mcp?key=url-secret",
        headers={"Authorization": "Bearer header-secret"}, env={"TOKEN": "env-secret"},
        allow_private_addresses=True)
    outcome = await pool.call_tool(config, "anything")
    assert outcome.is_error and outcome.content.startswith("MCP server 'secretive' is not reachable:")
    for secret in ("pw-secret", "url-secret", "header-secret", "env-secret", "Traceback"):
        assert secret not in outcome.content and secret not in pool.state("secretive").error


async def test_close_pool_closes_sessions_and_reaps_processes():
    config = fake_stdio()
    pool = get_pool()
    assert get_pool() is pool
    pid = await server_pid(pool, config)
    await close_pool()
    assert pool.state("fake").status == "closed"
    assert_reaped(pid)
    assert get_pool() is not pool
    await close_pool()


# --- HTTP transports ----------------------------------------------------------------------------


async def test_streamable_http_and_sse_calls_reuse_their_session(pool):
    with await asyncio.to_thread(run_http_in_thread) as http, \
            await asyncio.to_thread(run_http_in_thread, transport="sse") as sse:
        for config in (fake_http(http.url), fake_http(sse.url, name="fake-sse", transport="sse")):
            assert (await pool.call_tool(config, "echo", {"text": "over http"})).content == "over http"
            outcome = await pool.call_tool(config, "add", {"a": 1, "b": 2})
            assert outcome.structured == {"result": 3}
            assert pool.state(config.name).status == "ready"
        await pool.aclose()


async def test_a_restarted_http_server_gets_a_new_session_on_the_next_call(pool):
    server = await asyncio.to_thread(spawn_http, legacy_only=True)
    try:
        config = fake_http(server.url)
        assert await server_pid(pool, config) == server.pid
        await asyncio.to_thread(server.kill)
        # The same port, a new process that has never heard of our Mcp-Session-Id: the refused
        # call was not run, so the pool sends it once more on a new session.
        server = await asyncio.to_thread(spawn_http, legacy_only=True, port=server.port)
        assert await server_pid(pool, config) == server.pid
    finally:
        await asyncio.to_thread(server.stop)


async def test_a_dead_http_server_is_an_error_then_reachable_again(pool):
    server = await asyncio.to_thread(spawn_http)
    try:
        config = fake_http(server.url)
        assert await server_pid(pool, config) == server.pid
        await asyncio.to_thread(server.kill)
        down = await pool.call_tool(config, "pid")
        assert down.is_error and down.content.startswith("MCP server 'fake-http' ")
        assert pool.state("fake-http").status in ("failing", "backing_off")
        server = await asyncio.to_thread(spawn_http, port=server.port)
        await asyncio.sleep(pool.state("fake-http").retry_in() + 0.05)
        assert await server_pid(pool, config) == server.pid
    finally:
        await asyncio.to_thread(server.stop)


# --- published servers --------------------------------------------------------------------------


@pytest.mark.skipif(not TIME_SERVER.exists(), reason="mcp-server-time is not installed (uv sync)")
async def test_mcp_server_time(pool):
    config = McpServerConfig(name="time", transport="stdio", command=str(TIME_SERVER))
    outcome = await pool.call_tool(config, "get_current_time", {"timezone": "UTC"})
    assert not outcome.is_error, outcome.content
    assert outcome.structured["timezone"] == "UTC" and "UTC" in outcome.content
    assert "get_current_time" in {tool.name for tool in (await pool.list_tools(config)).tools}


@pytest.mark.skipif(not EVERYTHING.exists() or shutil.which("node") is None,
                    reason="@modelcontextprotocol/server-everything is not installed (npm ci)")
async def test_server_everything(pool):
    config = McpServerConfig(name="everything", transport="stdio", command=shutil.which("node"),
                             args=(str(EVERYTHING),))
    echoed = await pool.call_tool(config, "echo", {"message": "hi there"})
    assert not echoed.is_error and "hi there" in echoed.content
    total = await pool.call_tool(config, "get-sum", {"a": 2, "b": 3})
    assert not total.is_error and "5" in total.content
    listing = await pool.list_tools(config)
    assert {"echo", "get-sum"} <= {tool.name for tool in listing.tools}


async def wait_until(fetch, predicate, timeout: float = 3.0):
    """Poll `await fetch()` until `predicate(value)`; returns the value."""
    deadline = time.monotonic() + timeout
    while True:
        value = await fetch()
        if predicate(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"never matched: {value}")
        await asyncio.sleep(0.02)


# Reaches neither the tests' database nor the channel layer (tests/conftest.py).
pytestmark = pytest.mark.backend_free
