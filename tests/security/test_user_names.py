"""Names and emails come from people and, with SSO, from identity providers: wherever they are
shown (the chat page, the admin's audit lists) they are text, never markup."""

from __future__ import annotations

import pytest
from django.test import Client

from conversations.models import Message
from tests.factories import make_conversation, make_message, make_tool_call, make_user

pytestmark = pytest.mark.django_db

PAYLOAD = "<img src=x onerror=alert(1)>"


def test_a_hostile_name_is_escaped_on_the_chat_page_and_in_the_admin_lists():
    person = make_user(username=f"u{PAYLOAD}", first_name=PAYLOAD, last_name=PAYLOAD,
                       email=f"x{PAYLOAD}@example.com")
    conversation = make_conversation(owner=person, title="Hello")
    reply = make_message(conversation=conversation, role=Message.Role.ASSISTANT)
    make_tool_call(message=reply)
    chat = Client()
    chat.force_login(person)
    page = chat.get(f"/c/{conversation.pk}/").text
    assert PAYLOAD not in page and "<img" not in page
    admin = Client()
    admin.force_login(make_user(is_staff=True, is_superuser=True))
    for model in ("conversation", "message", "toolcall"):
        page = admin.get(f"/admin/conversations/{model}/").text
        assert PAYLOAD not in page and "onerror=alert(1)>" not in page, model
        assert "&lt;img src=x onerror=alert(1)&gt;" in page, model  # shown, as text
