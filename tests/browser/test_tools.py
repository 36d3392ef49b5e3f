"""Tool calls on the chat page, on a real MCP server (our fakemcp over stdio, named `fake`): a
call paused for approval, approved after a reload, or denied; and a tool's output shown as text,
never as markup."""

from __future__ import annotations

import json
import re
import threading

import pytest
from playwright.sync_api import expect

from agents import tool_refresh
from agents.models import McpServer, McpTool
from conversations.models import ToolCall
from fakemcp import stdio_command
from fakemcp.runner import ROOT
from tests.browser.conftest import directive, expect_connected, last_answer, send

CONVERSATION_URL = re.compile(r"/c/[0-9a-f-]{36}/$")


def _refresh(server_id: int) -> None:
    """List the server's tools. In a thread of its own: this thread runs Playwright's event
    loop, where async_to_sync refuses to run (and there refresh_server_now closes the sessions
    it opened, so the server process starts its own)."""
    reports = []
    worker = threading.Thread(
        target=lambda: reports.append(tool_refresh.refresh_server_now(server_id=server_id)))
    worker.start()
    worker.join(timeout=30)
    assert reports, "listing the fake MCP server's tools did not finish"
    assert reports[0].ok, reports[0].error


@pytest.fixture(scope="module")
def mcp_server(server_url, django_db_blocker):
    """Our MCP test server as `fake`, its tools listed; kept for the module (the name is unique
    and the database is shared by the whole session)."""
    command, args = stdio_command()
    with django_db_blocker.unblock():
        server, _ = McpServer.objects.update_or_create(name="fake", defaults=dict(
            transport="stdio", command=command, args=list(args), cwd=str(ROOT), call_timeout=5.0))
        _refresh(server.pk)
    yield server
    with django_db_blocker.unblock():
        # Later browser tests get no tools: disable the server (its rows stay, the calls
        # made here point at them by name only).
        McpServer.objects.filter(pk=server.pk).update(enabled=False)


@pytest.fixture
def tool_policy(mcp_server, django_db_blocker):
    """Set one tool's approval policy ("ask", "run", ...)."""
    def set_policy(name: str, approval: str) -> None:
        with django_db_blocker.unblock():
            assert McpTool.objects.filter(server=mcp_server, name=name).update(approval=approval) == 1
    return set_policy


def conversation_calls(page, django_db_blocker) -> list[ToolCall]:
    expect(page).to_have_url(CONVERSATION_URL)
    conversation_id = page.url.rstrip("/").rsplit("/", 1)[1]
    with django_db_blocker.unblock():
        return list(ToolCall.objects.filter(message__conversation_id=conversation_id)
                    .select_related("decided_by").order_by("id"))


def ask_to_echo(page, text: str) -> None:
    send(page, "Echo this, please.\n" + directive(
        preamble="Checking. ", tool_calls=[{"name": "fake__echo", "arguments": {"text": text}}]))


def expect_awaiting(card) -> None:
    """A call paused for approval: open, with the tool, its server, its arguments and the
    buttons, and no result yet."""
    expect(card).to_have_attribute("data-status", "awaiting_approval", timeout=10_000)
    expect(card).to_have_attribute("open", "")
    expect(card.locator(".tool-name")).to_have_text("fake__echo")
    expect(card.locator(".tool-server")).to_have_text("on fake")
    expect(card.locator(".tool-status")).to_have_text("awaiting approval")
    decision = card.locator(".tool-decision")
    expect(decision).to_be_visible()
    expect(decision).to_contain_text("Run this tool?")
    expect(decision.locator("button.approve")).to_be_enabled()
    expect(decision.locator("button.deny")).to_be_enabled()
    expect(card.locator("pre.tool-result")).to_be_hidden()


def test_a_call_waits_for_approval_across_a_reload_then_runs(chat, user, tool_policy,
                                                               django_db_blocker):
    tool_policy("echo", "ask")
    ask_to_echo(chat, "from the browser")
    answer = last_answer(chat)
    card = answer.locator("details.tool-call")
    expect_awaiting(card)
    args = card.locator("pre.tool-args")
    expect(args).to_be_visible()
    assert json.loads(args.text_content()) == {"text": "from the browser"}
    expect(answer.locator(".parts > .md").first).to_have_text("Checking.")
    expect(chat.get_by_role("button", name="Stop")).to_be_visible()
    # Nothing has run: the call waits on record.
    (row,) = conversation_calls(chat, django_db_blocker)
    assert (row.status, row.approval, row.result, row.decided_by) == (
        "awaiting_approval", "", "", None)

    # The pause survives a reload: the card comes back from the server, buttons and all.
    chat.reload()
    expect_connected(chat)
    card = last_answer(chat).locator("details.tool-call")
    expect_awaiting(card)
    assert json.loads(card.locator("pre.tool-args").text_content()) == {"text": "from the browser"}

    card.locator(".tool-decision button.approve").click()
    expect(card).to_have_attribute("data-status", "complete", timeout=10_000)
    expect(card.locator(".tool-decision")).to_be_hidden()
    expect(card.locator(".tool-status")).to_have_text("done")
    expect(card.locator("pre.tool-result")).to_be_visible()
    expect(card.locator("pre.tool-result")).to_have_text("from the browser")
    expect(card.locator(".tool-note")).to_have_text("Approved.")
    # The model read the result and went on after the card.
    answer = last_answer(chat)
    parts = answer.locator(".parts > *")
    expect(parts.nth(2)).to_have_text("Tool results: fake__echo=from the browser;", timeout=10_000)
    expect(parts.first).to_have_text("Checking.")
    expect(parts.nth(1)).to_have_class(re.compile("tool-call"))
    expect(chat.get_by_role("button", name="Send")).to_be_visible()
    (row,) = conversation_calls(chat, django_db_blocker)
    assert (row.status, row.approval, row.result) == ("complete", "approved", "from the browser")
    assert row.decided_by == user and row.decided_at is not None
    assert not chat.watcher.errors, chat.watcher.errors


def test_a_denied_call_does_not_run_and_the_turn_completes(chat, user, tool_policy,
                                                         django_db_blocker):
    tool_policy("echo", "ask")
    ask_to_echo(chat, "never run")
    card = last_answer(chat).locator("details.tool-call")
    expect_awaiting(card)
    card.locator(".tool-decision button.deny").click()
    expect(card).to_have_attribute("data-status", "denied", timeout=10_000)
    expect(card.locator(".tool-decision")).to_be_hidden()
    expect(card.locator(".tool-status")).to_have_text("denied")
    result = card.locator("pre.tool-result")
    expect(result).to_be_visible()
    expect(result).to_have_text("Not run: the user denied this call.")
    expect(result).to_have_class(re.compile("is-error"))
    expect(card.locator("h4", has_text="Error")).to_be_visible()
    # The model was told, and the answer ended.
    expect(last_answer(chat).locator(".parts > *").nth(2)).to_have_text(
        "Tool results: fake__echo=Not run: the user denied this call.;", timeout=10_000)
    expect(chat.get_by_role("button", name="Send")).to_be_visible()
    expect(chat.get_by_role("button", name="Stop")).to_be_hidden()
    (row,) = conversation_calls(chat, django_db_blocker)
    assert (row.status, row.approval, row.decided_by) == ("denied", "denied", user)
    assert "never run" not in row.result
    assert not chat.watcher.errors, chat.watcher.errors


HOSTILE = '<img src=x onerror="window.__pwned=1"><b>bold</b>'


def test_a_tools_output_is_shown_as_text_not_markup(chat, tool_policy, django_db_blocker):
    tool_policy("echo", "run")
    ask_to_echo(chat, HOSTILE)
    answer = last_answer(chat)
    card = answer.locator("details.tool-call")
    expect(card).to_have_attribute("data-status", "complete", timeout=10_000)
    expect(chat.get_by_role("button", name="Send")).to_be_visible()
    card.locator("summary").click()
    result = card.locator("pre.tool-result")
    expect(result).to_be_visible()
    assert result.text_content() == HOSTILE
    assert "<img" in result.text_content()
    # Neither the card's result nor its arguments (the same text) became elements.
    assert card.locator("img").count() == 0 and card.locator("b").count() == 0
    assert result.evaluate("el => el.children.length") == 0
    assert json.loads(card.locator("pre.tool-args").text_content()) == {"text": HOSTILE}
    # The model's answer after the call quotes the result: Markdown without raw HTML, text too.
    expect(answer.locator(".parts > .md").last).to_contain_text(HOSTILE)
    assert answer.locator("img").count() == 0
    chat.wait_for_timeout(200)  # give an onerror handler, had one been made, time to run
    assert chat.evaluate("typeof window.__pwned") == "undefined"
    assert not [url for url in chat.watcher.requests if url.rstrip("/").endswith("/x")]
    (row,) = conversation_calls(chat, django_db_blocker)
    assert (row.status, row.approval, row.result) == ("complete", "policy", HOSTILE)
    assert not chat.watcher.errors, chat.watcher.errors
