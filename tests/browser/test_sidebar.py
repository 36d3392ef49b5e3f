"""The conversation list: paging as you scroll, search, rename, delete, new chat with an agent."""

from __future__ import annotations

import re
from datetime import timedelta

from django.utils import timezone
from playwright.sync_api import expect

from agents.models import Agent
from conversations.models import Conversation, Message
from tests.browser.conftest import directive, expect_connected, last_answer, send
from tests.factories import make_conversation, make_message


def test_the_list_pages_as_you_scroll_and_search_finds_titles_and_text(chat, user, django_db_blocker):
    with django_db_blocker.unblock():
        now = timezone.now()
        for i in range(120):
            c = make_conversation(owner=user, title=f"Topic {i:03d}")
            Conversation.objects.filter(pk=c.pk).update(updated_at=now - timedelta(minutes=i))
        hidden = make_conversation(owner=user, title="Plain title")
        make_message(conversation=hidden, content="the word xylophone is in here")
        Conversation.objects.filter(pk=hidden.pk).update(updated_at=now - timedelta(days=30))
    chat.reload()
    expect_connected(chat)
    items = chat.locator("#conversation-list li")
    expect(items).to_have_count(50)
    expect(items.first).to_contain_text("Topic 000")
    # Scrolling to the end of the list loads the next pages, in order, without repeats.
    for expected in (100, 121):
        items.last.scroll_into_view_if_needed()
        expect(items).to_have_count(expected)
    titles = chat.locator("#conversation-list .title").all_inner_texts()
    assert titles[:120] == [f"Topic {i:03d}" for i in range(120)]
    assert titles[120] == "Plain title"
    # Search: message text and titles.
    search = chat.get_by_role("searchbox", name="Search conversations")
    search.fill("XYLOPHONE")
    expect(items).to_have_count(1)
    expect(items.first.locator(".title")).to_have_text("Plain title")
    expect(items.first.locator(".snippet")).to_contain_text("xylophone")
    search.fill("topic 11")
    expect(items).to_have_count(10)
    search.fill("nothing like this")
    expect(chat.locator("#list-status")).to_have_text("No conversation matches.")
    search.press("Escape")
    expect(items).to_have_count(50)


def test_rename_and_delete(chat, user, django_db_blocker):
    send(chat, directive(reply="Hello there."))
    expect(last_answer(chat)).to_contain_text("Hello there.")
    conversation_id = chat.url.rstrip("/").rsplit("/", 1)[1]
    other = chat.context.new_page()
    other.goto(chat.url.rsplit("/c/", 1)[0] + "/")
    expect_connected(other)
    row = chat.locator(f'#conversation-list li[data-id="{conversation_id}"]')
    row.get_by_role("button", name=re.compile("^Rename")).click()
    field = chat.get_by_role("textbox", name="New title")
    field.fill("Greetings")
    field.press("Enter")
    expect(row.locator(".title")).to_have_text("Greetings")
    expect(chat.locator("#conversation-title")).to_have_text("Greetings")
    expect(chat).to_have_title("Greetings · Chat")
    with django_db_blocker.unblock():
        assert Conversation.objects.get(pk=conversation_id).title == "Greetings"
    # The other tab's list follows.
    expect(other.locator("#conversation-list .title")).to_have_text(["Greetings"])
    # Delete asks first, then the conversation is gone from the list and the page.
    row.get_by_role("button", name=re.compile("^Delete")).click()
    chat.get_by_role("group", name="Delete this conversation?").get_by_role("button", name="Delete").click()
    expect(chat.locator("#conversation-list li")).to_have_count(0)
    expect(chat).to_have_url(re.compile(r"/$"))
    expect(chat.get_by_role("heading", name="How can I help?")).to_be_visible()
    expect(other.locator("#conversation-list li")).to_have_count(0)
    with django_db_blocker.unblock():
        assert Conversation.objects.get(pk=conversation_id).is_deleted
    # Its address is now a 404.
    response = chat.goto(chat.url + f"c/{conversation_id}/")
    assert response.status == 404


def test_new_chat_with_a_choice_of_agent(chat, django_db_blocker):
    with django_db_blocker.unblock():
        Agent.objects.create(name="General", slug="general", model="fake-model", is_default=True)
        coder = Agent.objects.create(name="Coder", slug="coder", model="fake-model",
                                     description="Writes code", system_prompt="You write code.")
        Agent.objects.create(name="Off", slug="off", model="fake-model", enabled=False)
    try:
        chat.reload()
        expect_connected(chat)
        agent = chat.get_by_role("combobox", name="Agent")
        expect(agent.locator("option")).to_have_text(["General", "Coder"])
        agent.select_option(label="Coder")
        expect(chat.locator("#empty-agent")).to_contain_text("Coder")
        send(chat, directive(reply="Coding."))
        expect(last_answer(chat)).to_contain_text("Coding.")
        conversation_id = chat.url.rstrip("/").rsplit("/", 1)[1]
        with django_db_blocker.unblock():
            assert Conversation.objects.get(pk=conversation_id).agent_id == coder.pk
            assert Message.objects.filter(conversation_id=conversation_id).count() == 2
        # New chat leaves the conversation and starts an empty one.
        chat.get_by_role("button", name="New chat").click()
        expect(chat).to_have_url(re.compile(r"/$"))
        expect(chat.locator("#transcript article")).to_have_count(0)
        send(chat, directive(reply="Another one."))
        expect(last_answer(chat)).to_contain_text("Another one.")
        expect(chat.locator("#conversation-list li")).to_have_count(2)
        # Back goes to the first conversation.
        chat.go_back()
        expect(last_answer(chat)).to_contain_text("Coding.")
    finally:
        with django_db_blocker.unblock():
            Conversation.objects.filter(agent__isnull=False).update(agent=None)
            Agent.objects.all().delete()
