"""The account page in a real browser: a key made, shown once, working against the API, listed
by its prefix, revoked; the chat list's setting for API conversations."""

from __future__ import annotations

import httpx
from playwright.sync_api import expect

from tests.browser.conftest import expect_connected


def test_a_key_is_shown_once_works_and_stops_working_when_revoked(chat, server_url):
    chat.get_by_role("link", name="Account").click()
    expect(chat.get_by_role("heading", name="Your account")).to_be_visible()
    chat.get_by_label("Name").fill("laptop <script>")
    chat.get_by_label("Expires after").select_option(label="30 days")
    chat.get_by_role("button", name="Make key").click()
    key = chat.locator("#new-key").inner_text()
    assert key.startswith("sk-ch-")
    row = chat.locator("tr.key-row")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("laptop <script>")  # a name is text, never markup
    expect(row).to_contain_text(key[:14] + "…")
    models = httpx.get(f"{server_url}/v1/models", headers={"Authorization": f"Bearer {key}"})
    assert models.status_code == 200 and models.json()["data"]

    chat.reload()  # sends the form again: no second key, and the first is not shown again
    expect(chat.get_by_role("status")).to_contain_text("is not shown again")
    expect(chat.locator("#new-key")).to_have_count(0)
    expect(chat.locator("tr.key-row")).to_have_count(1)
    assert key not in chat.content()
    chat.goto(server_url + "/account/")
    assert key not in chat.content()

    chat.get_by_role("button", name="Revoke laptop <script>").click()
    expect(chat.locator("tr.key-row")).to_contain_text("Revoked")
    refused = httpx.get(f"{server_url}/v1/models", headers={"Authorization": f"Bearer {key}"})
    assert refused.status_code == 401
    assert chat.watcher.csp_violations() == []


def test_api_conversations_join_the_chat_list_when_asked(chat, server_url, user,
                                                          django_db_blocker):
    from tests.factories import make_conversation

    with django_db_blocker.unblock():
        make_conversation(owner=user, title="From my script", source="api")
    chat.reload()
    expect_connected(chat)
    expect(chat.locator("#conversation-list")).not_to_contain_text("From my script")
    chat.get_by_role("link", name="Account").click()
    chat.get_by_label("Show API conversations in my chat list").check()
    chat.get_by_role("button", name="Save").click()
    chat.get_by_role("link", name="Back to the chat").click()
    expect_connected(chat)
    expect(chat.locator("#conversation-list")).to_contain_text("From my script")
