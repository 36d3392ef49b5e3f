"""Isolation: one user's conversations, messages, tool calls and approvals are "not found" to
everyone else, over every URL and every socket command, and nothing of theirs changes.

Both walks are generic: the URL walk goes over the whole URLconf, and the socket walk over the
consumer's commands (its cmd_* handlers). A new URL that takes an id, or a new command, fails
here until it is covered: give the id a value below (OWNED_IDS) or the command its attempts
(socket_attempts). API keys are user-owned rows too: their ids are in OWNED_IDS, and a key's
name is the secret title, so that a page listing another user's keys fails the walk.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass

import pytest
from asgiref.sync import sync_to_async
from django.test import Client
from django.urls import URLResolver, get_resolver
from django.urls.converters import get_converters
from django.urls.resolvers import RegexPattern
from django.utils import timezone

from accounts.api_keys import do_create_api_key
from accounts.models import ApiKey
from conversations.consumers import ChatConsumer
from conversations.models import Conversation, Message, ToolCall
from tests.conversations.ws import connect, receive, send, until
from tests.factories import make_conversation, make_message, make_tool_call, make_user

# No characters HTML would escape: a leak must not hide behind &#x27;.
SECRET_TITLE = "Nightingale merger plans"
SECRET_TEXT = "the acquisition closes on Friday"

# Prefixes not walked here, and why.
SKIPPED = {
    # Staff only: a user who is not staff is sent to the admin's login (checked below); what
    # staff may see there is the audit, tested with the admin (tests/conversations/test_admin.py).
    "admin/": "staff only",
    # allauth's provider login and callback URLs: the ids in them name configured identity
    # providers, not anyone's rows.
    "accounts/": "identity providers, not user-owned rows",
}


@dataclass
class World:
    """One user's rows: an idle conversation and one whose answer waits on an approval, and an
    API key."""

    user: object
    conversation: Conversation
    question: Message
    answer: Message
    busy: Conversation
    waiting: Message
    call: ToolCall
    key: ApiKey


def make_world(user=None, *, title: str = SECRET_TITLE, text: str = SECRET_TEXT) -> World:
    user = user or make_user()
    conversation = make_conversation(owner=user, title=title)
    question = make_message(conversation=conversation, content=text)
    answer = make_message(conversation=conversation, role=Message.Role.ASSISTANT,
                          parent=question, status=Message.Status.COMPLETE, content="Noted.")
    busy = make_conversation(owner=user, title=title + " (2)")
    asked = make_message(conversation=busy, content=text)
    waiting = make_message(conversation=busy, role=Message.Role.ASSISTANT, parent=asked,
                           status=Message.Status.STREAMING, content="Let me check. ")
    call = make_tool_call(message=waiting, status=ToolCall.Status.AWAITING_APPROVAL,
                          started_at=timezone.now())
    key, _ = do_create_api_key(user=user, name=title)
    return World(user, conversation, question, answer, busy, waiting, call, key)


def snapshot(user) -> tuple:
    """Every row of the user's, every field (approvals are fields of the tool calls)."""
    return (
        list(ApiKey.objects.filter(user=user).order_by("pk").values()),
        list(Conversation.objects.filter(owner=user).order_by("pk").values()),
        list(Message.objects.filter(conversation__owner=user).order_by("pk").values()),
        list(ToolCall.objects.filter(message__conversation__owner=user).order_by("pk").values()),
    )


# --- every URL ---------------------------------------------------------------------------------

# A URL's path converter names -> the value from a world's rows.
OWNED_IDS = {
    "conversation_id": lambda w: w.conversation.pk,
    "message_id": lambda w: w.question.pk,
    "call_id": lambda w: w.call.pk,
    "key_id": lambda w: w.key.pk,
}
_PART = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>[^>]+)>")


def routes(patterns=None, prefix: str = "") -> list[str]:
    """Every route of the URLconf as one string ("c/<uuid:conversation_id>/"), the skipped
    prefixes left out."""
    found = []
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        pattern = entry.pattern
        if isinstance(pattern, RegexPattern):
            assert not pattern.regex.groups, (
                f"{prefix}{pattern}: a regex route with groups; write it with path() or cover "
                "it here")
            text = str(pattern).lstrip("^").rstrip("$").replace("\\Z", "")
        else:
            text = str(pattern)
        route = prefix + text
        if any(route.startswith(skipped) for skipped in SKIPPED):
            continue
        if isinstance(entry, URLResolver):
            found += routes(entry.url_patterns, route)
        else:
            found.append(route)
    return found


def fill(route: str, world: World) -> str:
    def value(match: re.Match) -> str:
        name = match["name"]
        assert name in OWNED_IDS, (
            f"/{route} takes <{name}>: add the owned row it names to OWNED_IDS so that this "
            "test tries another user's (or, if it names nobody's row, its prefix to SKIPPED, "
            "saying why)")
        converter = get_converters()[match["converter"] or "str"]
        return converter.to_url(OWNED_IDS[name](world))
    return "/" + _PART.sub(value, route)


def as_user(user) -> Client:
    client = Client()  # CSRF checks off: a forged request is what is being tried
    client.force_login(user)
    return client


def get_and_post(client: Client, url: str) -> list:
    body = json.dumps({"title": "Renamed by Bob", "text": "Bob was here"})
    return [client.get(url), client.post(url, body, content_type="application/json")]


@pytest.mark.django_db
def test_every_url_with_an_id_is_not_found_with_another_users_ids_and_changes_nothing():
    alice, bob = make_world(), make_user()
    before = snapshot(alice.user)
    with_ids = [r for r in routes() if _PART.search(r)]
    assert "c/<uuid:conversation_id>/" in with_ids  # the walk sees the URLconf
    for route in with_ids:
        url = fill(route, alice)
        for response in get_and_post(as_user(bob), url):
            assert response.status_code in (404, 405), (url, response.status_code)
            assert SECRET_TITLE not in response.text and SECRET_TEXT not in response.text
        # The same URL with Bob's own ids reaches its view: the 404s above are the check's.
        bobs = make_world(bob, title="Bob", text="Bob asks")
        own = [r.status_code for r in get_and_post(as_user(bob), fill(route, bobs))]
        assert any(status not in (404, 405) for status in own), (route, own)
    assert snapshot(alice.user) == before


@pytest.mark.django_db
def test_no_url_without_an_id_shows_another_users_conversations():
    alice, bob = make_world(), make_user()
    make_world(bob, title="Bob merger notes", text="Bob asks")
    before = snapshot(alice.user)
    plain = [r for r in routes() if not _PART.search(r)]
    assert "" in plain and "api/conversations/" in plain
    for route in plain:
        # With a search for words of both users' titles, too (the sidebar's list).
        for url in (f"/{route}", f"/{route}?q=merger"):
            for response in get_and_post(as_user(bob), url):
                assert response.status_code < 500, (url, response.status_code)
                assert SECRET_TITLE not in response.text, url
                assert SECRET_TEXT not in response.text, url
                for conversation in (alice.conversation, alice.busy):
                    assert str(conversation.pk) not in response.text, url
                assert alice.key.prefix not in response.text, url
    # And the list does show Bob's own: the search is not simply empty.
    assert "Bob merger notes" in as_user(bob).get("/api/conversations/?q=merger").text
    assert snapshot(alice.user) == before


@pytest.mark.django_db
def test_the_admin_sends_a_user_who_is_not_staff_to_its_login():
    alice, bob = make_world(), make_user()
    for url in ("/admin/", f"/admin/conversations/conversation/{alice.conversation.pk}/change/",
                f"/admin/conversations/toolcall/{alice.call.pk}/change/"):
        response = as_user(bob).get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"], url


# --- every socket command ----------------------------------------------------------------------

MISSING_CONVERSATION = str(uuid.UUID(int=1))
MISSING_ID = 2**40


def socket_attempts(a: World, b: World) -> dict[str, list[tuple[dict, dict]]]:
    """For each command: (a frame with Alice's ids, the same frame with ids that do not
    exist). Bob must get the same error for both: nothing tells him Alice's rows exist."""
    conv, busy = str(a.conversation.pk), str(a.busy.pk)
    own = str(b.conversation.pk)
    missing = MISSING_CONVERSATION
    return {
        "ping": [],  # carries no id
        "watch": [
            ({"conversation": conv}, {"conversation": missing}),
            ({"conversation": busy, "leaf": a.waiting.pk},
             {"conversation": missing, "leaf": MISSING_ID}),
        ],
        "send": [
            ({"conversation": conv, "text": "hi", "client_key": "bob-1"},
             {"conversation": missing, "text": "hi", "client_key": "bob-1"}),
            # Bob's own conversation, answering Alice's message.
            ({"conversation": own, "text": "hi", "parent": a.question.pk},
             {"conversation": own, "text": "hi", "parent": MISSING_ID}),
        ],
        "regenerate": [
            ({"conversation": conv, "message": a.answer.pk},
             {"conversation": missing, "message": a.answer.pk}),
            ({"conversation": own, "message": a.answer.pk},
             {"conversation": own, "message": MISSING_ID}),
        ],
        "stop": [({"conversation": busy}, {"conversation": missing})],
        "older": [
            ({"conversation": conv, "before": a.answer.pk},
             {"conversation": missing, "before": a.answer.pk}),
            # Bob's own conversation, paging back from Alice's message.
            ({"conversation": own, "before": a.answer.pk},
             {"conversation": own, "before": MISSING_ID}),
        ],
        "decide": [
            ({"conversation": busy, "call_id": a.call.call_id, "decision": "approve"},
             {"conversation": missing, "call_id": a.call.call_id, "decision": "approve"}),
            ({"conversation": own, "call_id": a.call.call_id, "decision": "deny"},
             {"conversation": own, "call_id": "call_missing", "decision": "deny"}),
        ],
    }


def error(frame: dict) -> bool:
    return frame["type"] == "error"


@pytest.mark.django_db(transaction=True)
async def test_every_socket_command_with_another_users_ids_is_not_found_and_changes_nothing(
        fake_llm):
    alice = await sync_to_async(make_world)()
    bob = await sync_to_async(make_world)(title="Bob", text="Bob asks")
    before = await sync_to_async(snapshot)(alice.user)
    table = socket_attempts(alice, bob)
    commands = {name.removeprefix("cmd_") for name in dir(ChatConsumer)
                if name.startswith("cmd_")}
    assert set(table) == commands, "give every socket command its attempts in socket_attempts"

    alice_socket = await connect(alice.user)
    await send(alice_socket, {"type": "watch", "conversation": str(alice.busy.pk)})
    await until(alice_socket, lambda f: f["type"] == "conversation")
    bob_socket = await connect(bob.user)
    for command, pairs in table.items():
        for theirs, missing in pairs:
            await send(bob_socket, {"type": command, **theirs})
            refused = await receive(bob_socket)
            await send(bob_socket, {"type": command, **missing})
            expected = await receive(bob_socket)
            assert error(refused) and error(expected), (command, refused, expected)
            assert (refused["code"], refused["message"]) == (
                expected["code"], expected["message"]), command
            if theirs["conversation"] != str(bob.conversation.pk):
                assert refused["code"] == "not_found", (command, refused)
    # Bob's socket still works, and was told nothing more.
    await send(bob_socket, {"type": "ping"})
    assert (await receive(bob_socket))["type"] == "pong"
    assert await alice_socket.receive_nothing(timeout=0.5)
    assert await sync_to_async(snapshot)(alice.user) == before
    for comm in (alice_socket, bob_socket):
        await comm.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_watching_ones_own_conversation_with_another_users_message_shows_only_ones_own(
        fake_llm):
    alice = await sync_to_async(make_world)()
    bob = await sync_to_async(make_world)()
    comm = await connect(bob.user)
    await send(comm, {"type": "watch", "conversation": str(bob.conversation.pk),
                      "leaf": alice.answer.pk})
    state, _ = await until(comm, lambda f: f["type"] == "conversation")
    assert [m["id"] for m in state["messages"]] == [bob.question.pk, bob.answer.pk]
    await comm.disconnect()
