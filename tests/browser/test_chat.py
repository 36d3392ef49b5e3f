"""The chat page in a real browser: what a user sees while an answer streams."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from conversations.models import Conversation, Message
from tests.browser.conftest import (
    answers,
    directive,
    expect_connected,
    last_answer,
    send,
    shoot,
    tokens,
    watch,
)
from tests.factories import make_branch, make_user

CONVERSATION_URL = re.compile(r"/c/[0-9a-f-]{36}/$")

MARKDOWN_REPLY = (
    "## A plan\n\nHere is what to do:\n\n1. Read the **logs**\n2. Fix the `parser`\n\n"
    "| step | minutes |\n|------|--:|\n| read | 5 |\n| fix | 20 |\n\n"
    "See [the docs](https://docs.example.com/guide).\n\n"
    "```python\ndef parse(line: str) -> dict:\n    key, _, value = line.partition('=')\n"
    "    return {key.strip(): value.strip()}\n```\n"
)


# What the fake model answers to the title request (its default text).
GENERATED_TITLE = tokens(8).strip()


def retitle(page, title: str) -> None:
    """Rename the open conversation through the list's Rename button."""
    row = page.locator("#conversation-list li").filter(has=page.locator("[aria-current=page]"))
    row.get_by_role("button", name=re.compile("^Rename")).click()
    field = page.get_by_role("textbox", name="New title")
    field.fill(title)
    field.press("Enter")
    expect(page.locator("#conversation-title")).to_have_text(title)


def tidy_for_screenshot(page) -> None:
    """Screenshots only: hide the fake LLM's `fake: {...}` steering lines in user bubbles."""
    page.evaluate(
        "for (const b of document.querySelectorAll('.message.user .bubble'))"
        " b.textContent = b.textContent.split('\\nfake:')[0]"
    )


def test_log_in_send_and_watch_a_markdown_answer_stream(page, server_url, fake, django_db_blocker):
    with django_db_blocker.unblock():
        user = make_user(username="ada", password="a long browser password")
    seen = watch(page)
    page.goto(server_url + "/")
    expect(page).to_have_url(re.compile(r"/login/"))
    page.get_by_label("Username").fill("ada")
    page.get_by_label("Password").fill("a long browser password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("navigation", name="Conversations")).to_be_visible()
    expect_connected(page)
    expect(page.get_by_role("heading", name="How can I help?")).to_be_visible()
    shoot(page, "empty.png")

    send(page, "How do I fix the parser?\n" + directive(reply=MARKDOWN_REPLY, chunk=4, gap_ms=15))
    answer = last_answer(page)
    # Mid-stream: the heading is there, the Stop button too, the end is not yet.
    expect(answer.get_by_role("heading", name="A plan")).to_be_visible()
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    assert answer.locator(".code-block").count() == 0
    # The whole answer, rendered.
    expect(answer.locator(".code-block")).to_be_visible()
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    expect(answer.locator("ol > li")).to_have_count(2)
    expect(answer.locator("strong")).to_have_text("logs")
    expect(answer.locator("td.align-right").first).to_have_text("5")
    link = answer.get_by_role("link", name="the docs")
    expect(link).to_have_attribute("href", "https://docs.example.com/guide")
    expect(link).to_have_attribute("rel", "noopener noreferrer nofollow")
    expect(link).to_have_attribute("target", "_blank")
    expect(answer.locator("code.hljs .hljs-keyword").first).to_have_text("def")
    # The conversation has its own address, and the list shows it.
    expect(page).to_have_url(CONVERSATION_URL)
    conversation_id = page.url.rstrip("/").rsplit("/", 1)[1]
    expect(page.locator(f'#conversation-list a[href="/c/{conversation_id}/"]')).to_have_attribute(
        "aria-current", "page")
    with django_db_blocker.unblock():
        reply = Message.objects.get(conversation_id=conversation_id, role="assistant")
        assert reply.status == "complete" and reply.content == MARKDOWN_REPLY
        assert Conversation.objects.get(pk=conversation_id).owner == user
    # After the first exchange the model names the conversation; the page follows.
    expect(page.locator("#conversation-title")).to_have_text(GENERATED_TITLE)
    expect(page.locator("#conversation-list .title")).to_have_text([GENERATED_TITLE])
    expect(page).to_have_title(f"{GENERATED_TITLE} · Chat")
    retitle(page, "Fixing the parser")
    tidy_for_screenshot(page)
    shoot(page, "answer.png")
    assert not seen.errors and not seen.dialogs
    assert not seen.foreign_requests()


def test_stop_keeps_the_partial_answer(chat):
    send(chat, directive(tokens=400, gap_ms=20))
    answer = last_answer(chat)
    expect(answer).to_contain_text("tok5 ")
    chat.get_by_role("button", name="Stop").click()
    expect(answer.locator(".turn-status")).to_have_text("Stopped.")
    expect(chat.get_by_role("button", name="Stop")).to_be_hidden()
    expect(chat.get_by_role("button", name="Send")).to_be_visible()
    text = answer.locator(".parts").inner_text()
    assert "tok5" in text and "tok399" not in text
    # Stopped is stopped: nothing more arrives.
    chat.wait_for_timeout(300)
    assert answer.locator(".parts").inner_text() == text


def test_a_reload_mid_answer_shows_the_text_so_far_then_continues(chat):
    send(chat, directive(tokens=120, gap_ms=25))
    expect(chat).to_have_url(CONVERSATION_URL)
    expect(last_answer(chat)).to_contain_text("tok20 ")
    chat.reload()
    answer = last_answer(chat)
    # The text so far comes with the page's state, before the turn has moved far on...
    expect(answer).to_contain_text("tok20 ", timeout=3000)
    expect(chat.get_by_role("button", name="Stop")).to_be_visible()
    # ...then the rest live, every token once, in order.
    expect(answer.locator(".parts")).to_have_text(tokens(120).strip(), timeout=15000)
    expect(chat.get_by_role("button", name="Stop")).to_be_hidden()


def test_two_tabs_show_the_same_stream(chat):
    send(chat, directive(reply="First answer."))
    expect(last_answer(chat)).to_have_text(re.compile("First answer."))
    other = chat.context.new_page()
    other.goto(chat.url)
    expect_connected(other)
    expect(last_answer(other)).to_contain_text("First answer.")
    send(chat, "second\n" + directive(tokens=60, gap_ms=20))
    # The other tab sees the new question and the answer as it streams, to its end.
    expect(other.locator("article.message.user").last).to_contain_text("second")
    expect(last_answer(other)).to_contain_text("tok10 ")
    expect(other.get_by_role("button", name="Stop")).to_be_visible()
    expect(last_answer(other).locator(".parts")).to_have_text(tokens(60).strip(), timeout=15000)
    expect(last_answer(chat).locator(".parts")).to_have_text(tokens(60).strip())
    expect(other.get_by_role("button", name="Stop")).to_be_hidden()
    # The list of the other tab has the conversation too.
    expect(other.locator("#conversation-list li")).to_have_count(1)


def test_reasoning_is_collapsed_with_its_duration_and_tool_calls_are_cards(chat):
    send(chat, "What time is it in Paris?\n" + directive(
        reasoning="The user wants the time. I should call the clock tool.", chunk=6, gap_ms=40,
        tool_calls=[{"name": "get_time", "arguments": {"city": "Paris"}}],
        preamble="Let me check the clock.",
    ))
    answer = last_answer(chat)
    reasoning = answer.locator("details.reasoning")
    expect(reasoning.locator("summary")).to_have_text(re.compile(r"^Thought for \d+ s$"), timeout=10000)
    expect(reasoning).not_to_have_attribute("open", "")
    card = answer.locator("details.tool-call")
    expect(card).to_have_count(1)
    expect(card.locator(".tool-name")).to_have_text("get_time")
    expect(card).to_have_attribute("data-status", "failed")  # no tool of that name is configured
    expect(chat.get_by_role("button", name="Send")).to_be_visible(timeout=10000)
    expect(card.locator(".tool-duration")).to_have_text(re.compile(r"\d+(\.\d)? m?s"))
    # The text before the call sits above its card, the answer after the result below it.
    parts = answer.locator(".parts > *")
    expect(parts.first).to_have_text("Let me check the clock.")
    expect(parts.nth(1)).to_have_class(re.compile("tool-call"))
    expect(parts.nth(2)).to_contain_text("Tool results:")
    # Both expand.
    card.locator("summary").click()
    expect(card.locator(".tool-args")).to_contain_text('"city": "Paris"')
    expect(card.locator("h4", has_text="Error")).to_be_visible()
    expect(card.locator(".tool-result")).to_contain_text("there is no tool named 'get_time'")
    reasoning.locator("summary").click()
    # (The fake reasons again in the round after the tool result.)
    expect(reasoning.locator(".reasoning-body")).to_contain_text(
        "The user wants the time. I should call the clock tool.")
    expect(chat.locator("#conversation-title")).to_have_text(GENERATED_TITLE)
    retitle(chat, "Time in Paris")
    tidy_for_screenshot(chat)
    shoot(chat, "tools.png")


def test_an_error_shows_in_place_and_retry_answers_again(chat):
    send(chat, directive(fail={"status": 401}, reply="never"))
    answer = last_answer(chat)
    error = answer.get_by_role("alert")
    expect(error).to_contain_text("API key")
    expect(chat.get_by_role("button", name="Send")).to_be_visible()
    error.get_by_role("button", name="Retry").click()
    # A second attempt, as a new version of the answer.
    expect(last_answer(chat).locator(".branch-count")).to_have_text("2 / 2")
    expect(last_answer(chat).get_by_role("alert")).to_contain_text("API key")


def test_regenerate_edit_and_move_between_branches(chat):
    send(chat, "first question\n" + directive(reply="Answer one."))
    expect(last_answer(chat)).to_contain_text("Answer one.")
    chat.get_by_role("button", name="Regenerate").click()
    expect(last_answer(chat).locator(".branch-count")).to_have_text("2 / 2")
    expect(chat.get_by_role("button", name="Send")).to_be_visible()
    expect(answers(chat)).to_have_count(1)
    chat.get_by_role("button", name="Previous version").click()
    expect(last_answer(chat).locator(".branch-count")).to_have_text("1 / 2")
    # Edit the question: a new branch with its own answer; the old one stays reachable.
    question = chat.locator("article.message.user").first
    question.get_by_role("button", name="Edit").click()
    box = chat.get_by_role("textbox", name="Edit message")
    box.fill("edited question\n" + directive(reply="Answer two."))
    chat.get_by_role("button", name="Save and send").click()
    expect(last_answer(chat)).to_contain_text("Answer two.")
    expect(question).to_contain_text("edited question")
    expect(question.locator(".branch-count")).to_have_text("2 / 2")
    expect(chat.get_by_role("button", name="Send")).to_be_visible()
    question.get_by_role("button", name="Previous version").click()
    expect(chat.locator("article.message.user").first).to_contain_text("first question")
    expect(last_answer(chat)).to_contain_text("Answer one.")
    chat.locator("article.message.user").first.get_by_role("button", name="Next version").click()
    expect(last_answer(chat)).to_contain_text("Answer two.")
    assert len(answers(chat).all()) == 1


def test_a_message_typed_while_the_server_is_unreachable_is_sent_later(chat):
    # The socket opens but reaches nothing: the message waits, saved in the browser.
    reachable = False

    def socket(ws):
        if reachable:
            ws.connect_to_server()

    chat.route_web_socket(re.compile(r"/ws/chat/"), socket)
    chat.reload()
    expect_connected(chat)
    send(chat, "are you there?\n" + directive(reply="Still here."))
    pending = chat.locator("article.message.pending")
    expect(pending).to_contain_text("are you there?")
    expect(pending.locator(".pending-status")).to_have_text("Sending…")
    expect(chat.get_by_role("textbox", name="Message")).to_have_value("")
    # A new page load that reaches the server: the saved message is sent and answered, once.
    reachable = True
    chat.reload()
    expect(last_answer(chat)).to_contain_text("Still here.")
    expect(chat).to_have_url(CONVERSATION_URL)
    expect(chat.locator("article.message.pending")).to_have_count(0)
    assert chat.evaluate("Object.keys(localStorage).filter(k => k.startsWith('chat.outbox')).length") == 0
    chat.reload()
    expect(last_answer(chat)).to_contain_text("Still here.")
    expect(chat.locator("article.message.user")).to_have_count(1)


def test_the_connection_state_is_visible_and_the_page_reconnects(chat):
    reachable = False

    def socket(ws):
        if reachable:
            ws.connect_to_server()
        else:
            ws.close()

    chat.route_web_socket(re.compile(r"/ws/chat/"), socket)
    chat.reload()
    expect(chat.locator("#connection")).to_have_attribute("data-state", "closed")
    expect(chat.locator("#connection")).to_contain_text("Reconnecting in")
    reachable = True
    expect(chat.locator("#connection")).to_have_attribute("data-state", "open", timeout=20000)
    send(chat, directive(reply="Back online."))
    expect(last_answer(chat)).to_contain_text("Back online.")


def test_reconnecting_backs_off_when_the_server_drops_every_socket(chat, user, server_url,
                                                                  django_db_blocker):
    """A server that accepts sockets and drops them on the first frame (the loop of issue 13:
    every open reset the delay, so every tab came back every 0.25 to 0.5 s for ever)."""
    with django_db_blocker.unblock():
        conversation = Conversation.objects.create(owner=user, title="Dropped")
    opened: list[float] = []

    def socket(ws):
        opened.append(time.monotonic())
        ws.on_message(lambda message: ws.close())  # the page's "watch", once it is open

    chat.route_web_socket(re.compile(r"/ws/chat/"), socket)
    chat.goto(f"{server_url}/c/{conversation.pk}/")
    connection = chat.locator("#connection")
    deadline = time.monotonic() + 15
    while len(opened) < 4 and time.monotonic() < deadline:
        chat.wait_for_timeout(100)  # the route's handler runs while the page is waited on
    chat.wait_for_timeout(200)
    gaps = [b - a for a, b in zip(opened, opened[1:])]
    # Each wait at least as long as the one before (jitter within the lower and upper half of
    # a doubling ceiling), the fourth at least a second: no tight loop.
    assert len(gaps) >= 3, opened
    assert all(later >= earlier - 0.15 for earlier, later in zip(gaps, gaps[1:])), gaps
    assert gaps[2] >= 0.9, gaps
    assert len(opened) <= 5, f"{len(opened)} connections in {opened[-1] - opened[0]:.1f} s"
    expect(connection).to_have_attribute("data-state", "closed")
    expect(connection).to_contain_text(re.compile(r"Reconnecting in \d+ s"))
    # "Retry now" does not wait for the delay.
    before = len(opened)
    connection.get_by_role("button", name="Retry now").click()
    chat.wait_for_function("n => Number(document.querySelector('#connection').dataset.attempt) >= n",
                           arg=before + 1)
    assert len(opened) == before + 1


def test_the_reconnect_delay_grows_to_its_cap_with_jitter(chat, server_url):
    delays = chat.evaluate("""async () => {
        const { reconnectDelay, MAX_DELAY_MS } = await import('/static/chat/backoff.js');
        const low = [], high = [];
        for (let n = 0; n < 12; n++) {
            low.push(reconnectDelay(n, () => 0));
            high.push(reconnectDelay(n, () => 0.999999));
        }
        return { low, high, cap: MAX_DELAY_MS, far: reconnectDelay(1e6) };
    }""")
    low, high = delays["low"], delays["high"]
    assert low[:5] == [250, 500, 1000, 2000, 4000]
    assert high[:5] == [500, 1000, 2000, 4000, 8000]
    # The worst dice never shorten the next wait, until the cap.
    assert all(high[n] <= low[n + 1] for n in range(5))
    assert max(high) == delays["cap"] == 30_000 and low[-1] == 15_000
    assert 15_000 <= delays["far"] <= 30_000


def press_until(page, key: str, target, limit: int = 40) -> None:
    """Press `key` until `target` has the focus (keyboard-only navigation)."""
    for _ in range(limit):
        if target.evaluate("el => el === document.activeElement"):
            return
        page.keyboard.press(key)
    raise AssertionError(f"{key} never reached {target}")


def test_keyboard_only(chat):
    box = chat.get_by_role("textbox", name="Message")
    # On a wide screen the page opens with the focus in the message box.
    expect(box).to_be_focused()
    chat.keyboard.type("line one")
    chat.keyboard.press("Shift+Enter")
    chat.keyboard.type("line two")
    expect(box).to_have_value("line one\nline two")
    chat.keyboard.press("Shift+Enter")
    chat.keyboard.type(directive(reply="Typed and sent."))
    chat.keyboard.press("Enter")
    expect(last_answer(chat)).to_contain_text("Typed and sent.")
    expect(chat.locator("article.message.user .bubble")).to_contain_text("line one\nline two")
    expect(chat.get_by_role("button", name="Send")).to_be_visible()
    # Tab moves on to Send, and the focus is visible.
    chat.keyboard.press("Tab")
    expect(chat.get_by_role("button", name="Send")).to_be_focused()
    assert chat.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"
    # Back through the page to "New chat", and a new conversation.
    new_chat = chat.get_by_role("button", name="New chat")
    press_until(chat, "Shift+Tab", new_chat)
    chat.keyboard.press("Enter")
    expect(chat).to_have_url(re.compile(r"/$"))
    expect(box).to_be_focused()
    # From "New chat" on to the earlier conversation in the list, and open it.
    link = chat.locator("#conversation-list a").first
    new_chat.focus()
    press_until(chat, "Tab", link)
    chat.keyboard.press("Enter")
    expect(chat).to_have_url(CONVERSATION_URL)
    expect(last_answer(chat)).to_contain_text("Typed and sent.")
    # The skip link, first in the page, leads to the message box.
    press_until(chat, "Shift+Tab", chat.locator(".skip-link"))
    chat.keyboard.press("Enter")
    expect(box).to_be_focused()


@pytest.mark.browser_context_args(viewport={"width": 375, "height": 740})
def test_phone_width(chat, django_db_blocker):
    page = chat
    nav = page.get_by_role("navigation", name="Conversations")
    expect(nav).to_be_hidden()
    send(page, "short question\n" + directive(reply=MARKDOWN_REPLY, chunk=20))
    expect(last_answer(page).locator(".code-block")).to_be_visible()
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    # Nothing is wider than the screen (wide code and tables scroll inside themselves).
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    expect(page.locator("#conversation-title")).to_have_text(GENERATED_TITLE)
    box = page.get_by_role("textbox", name="Message").bounding_box()
    assert box and box["x"] >= 0 and box["x"] + box["width"] <= 375
    with django_db_blocker.unblock():
        Conversation.objects.filter(pk=page.url.rstrip("/").rsplit("/", 1)[1]).update(
            title="Fixing the parser")
    page.reload()
    expect(last_answer(page).locator(".code-block")).to_be_visible()
    tidy_for_screenshot(page)
    shoot(page, "phone.png")
    toggle = page.get_by_role("button", name="Show conversations")
    toggle.click()
    expect(nav).to_be_visible()
    expect(page.get_by_role("button", name="Hide conversations")).to_have_attribute("aria-expanded", "true")
    expect(nav.get_by_role("button", name="New chat")).to_be_focused()
    shoot(page, "phone-sidebar.png")
    page.keyboard.press("Escape")
    expect(nav).to_be_hidden()
    toggle.click()
    nav.get_by_role("button", name="New chat").click()
    expect(nav).to_be_hidden()
    expect(page.get_by_role("heading", name="How can I help?")).to_be_visible()


def test_csp_header_with_a_nonce_and_no_violations(chat, server_url):
    response = chat.goto(server_url + "/")
    header = response.headers["content-security-policy"]
    nonce = re.search(r"'nonce-([^']+)'", header).group(1)
    assert "script-src 'self' 'nonce-" in header
    assert "unsafe-inline" not in header and "unsafe-eval" not in header
    assert chat.locator("script[type=module]").get_attribute("nonce") is not None
    assert nonce and chat.evaluate("document.querySelector('script[type=module]').nonce") == nonce
    expect_connected(chat)
    send(chat, directive(reply=MARKDOWN_REPLY, reasoning="thinking hard", chunk=8))
    expect(last_answer(chat).locator(".code-block")).to_be_visible()
    last_answer(chat).locator("details.reasoning summary").click()
    assert chat.evaluate("window.__csp") == []
    assert not chat.watcher.csp_violations()
    assert not chat.watcher.errors


def test_a_conversation_too_large_for_one_frame_opens_whole(chat, user, server_url,
                                                            django_db_blocker):
    # Eleven questions of 99 KB (a pasted log) and their answers: the state goes in parts, the
    # page joins them.
    big = "".join(f"12:00:{i % 60:02d} worker {i} handled request {i * 7}\n" for i in range(2_300))
    with django_db_blocker.unblock():
        conversation = Conversation.objects.create(owner=user, title="Large")
        parent = None
        for i in range(11):
            question = Message.objects.create(conversation=conversation, role="user",
                                              content=f"Q{i} {big}", parent=parent)
            parent = Message.objects.create(conversation=conversation, role="assistant",
                                            content=f"Answer number {i}.", parent=question,
                                            status="complete")
    chat.goto(f"{server_url}/c/{conversation.pk}/")
    expect(last_answer(chat)).to_contain_text("Answer number 10.", timeout=30_000)
    # The newest part first (a page is half a frame); the rest as the reader scrolls up.
    assert answers(chat).count() < 11
    scroll_to_the_first_message(chat)
    expect(answers(chat)).to_have_count(11)
    expect(chat.locator("main article.message.user").first).to_contain_text("Q0 12:00:00 worker 0")
    assert not chat.watcher.errors


def scroll_to_the_first_message(page, limit: int = 100) -> None:
    """Scroll the transcript up until the branch's first message is loaded."""
    older = page.locator("#older")
    for _ in range(limit):
        if older.count() == 0:
            return
        page.locator("#transcript").evaluate("t => { t.scrollTop = 0; }")
        page.wait_for_function(
            "() => !document.querySelector('#older') || document.querySelector('#older')"
            ".dataset.state === 'idle'")
    raise AssertionError("the first message never came")


def test_scrolling_up_a_long_conversation_loads_older_messages_in_place(
        chat, user, server_url, django_db_blocker):
    with django_db_blocker.unblock():
        conversation = Conversation.objects.create(owner=user, title="A long one")
        made = make_branch(conversation=conversation, messages=300,
                           text="message {n}: " + "a few words to fill a line " * 6)
    chat.goto(f"{server_url}/c/{conversation.pk}/")
    expect(last_answer(chat)).to_contain_text("message 299:")
    messages = chat.locator("main article.message")
    expect(messages).to_have_count(40)
    older = chat.locator("#older")
    expect(older).to_be_attached()
    # Scrolled to the top: the page before comes, and what was first stays where it was.
    first = chat.locator(f'article.message[data-id="{made[260].pk}"]')
    chat.locator("#transcript").evaluate("t => { t.scrollTop = 0; }")
    top = first.evaluate("el => el.getBoundingClientRect().top")
    expect(messages).to_have_count(80)
    chat.wait_for_timeout(100)
    assert abs(first.evaluate("el => el.getBoundingClientRect().top") - top) < 2
    assert chat.locator("#transcript").evaluate("t => t.scrollTop") > 0
    scroll_to_the_first_message(chat)
    expect(messages).to_have_count(300)
    ids = [int(i) for i in messages.evaluate_all("els => els.map(e => e.dataset.id)")]
    assert ids == [m.pk for m in made]
    expect(messages.first).to_contain_text("message 0:")
    # Nothing was lost on the way: sending still continues the branch at its end.
    send(chat, directive(reply="After three hundred."))
    expect(last_answer(chat)).to_contain_text("After three hundred.")
    expect(messages).to_have_count(302)
    assert not chat.watcher.errors


def test_stop_ends_an_answer_a_dead_process_left_streaming(chat, user, server_url,
                                                          django_db_blocker):
    with django_db_blocker.unblock():
        conversation = Conversation.objects.create(owner=user, title="Orphan")
        question = Message.objects.create(conversation=conversation, role="user", content="Q")
        Message.objects.create(conversation=conversation, role="assistant", parent=question,
                               content="Half an answ", status="streaming")
    chat.goto(f"{server_url}/c/{conversation.pk}/")
    expect_connected(chat)
    stop = chat.get_by_role("button", name="Stop")
    expect(stop).to_be_visible()
    stop.click()
    # No process runs it: it ends at once, its text kept, and the conversation takes a message.
    expect(last_answer(chat)).to_contain_text("Half an answ")
    expect(stop).to_be_hidden(timeout=5000)
    send(chat, directive(tokens=3))
    expect(last_answer(chat)).to_contain_text(tokens(3).strip())
