"""A login the provider's groups no longer allow ends the person's open sockets and running
turns at once, through the same path as an admin's deactivation (conversations/account_changes)."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.test import Client

from conversations import broker
from conversations.models import Message
from tests.accounts.idp import sso_login
from tests.security.test_account_changes import (
    closed_for_ended_session,
    open_socket,
    start_long_answer,
)

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_refused_login_closes_the_open_socket_and_stops_the_turn_keeping_its_text(
        idp, person, settings, fake_llm):
    settings.SSO_ALLOWED_GROUPS = ["chat-users"]
    key = person(groups=["chat-users"])
    browser = Client()
    assert (await sync_to_async(sso_login)(browser, key)).status_code == 302
    tab = await open_socket(browser.cookies["sessionid"].value)
    await start_long_answer(tab)

    # Moved out of the allowed groups at the provider, the person signs in again elsewhere.
    await sync_to_async(idp.add_person)(key, sub=f"sub-{key}", groups=["alumni"])
    refused = await sync_to_async(sso_login)(Client(), key)
    assert refused.status_code == 403

    await closed_for_ended_session(tab)
    await broker.wait_for_turns(timeout=5)
    answer = await Message.objects.aget(role="assistant")
    assert answer.status == Message.Status.STOPPED
    assert answer.content.startswith("tok0 tok1 ")
