"""Pages and the sidebar's JSON endpoints (the chat itself is the socket: test_consumers.py)."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents.models import Agent
from conversations.models import Conversation
from conversations.search import encode_cursor
from tests.factories import make_conversation, make_message, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def user():
    return make_user()


@pytest.fixture
def client(user):
    c = Client()
    c.force_login(user)
    return c


def aged(conversation: Conversation, minutes: int) -> Conversation:
    Conversation.objects.filter(pk=conversation.pk).update(
        updated_at=timezone.now() - timedelta(minutes=minutes))
    conversation.refresh_from_db()
    return conversation


def boot(response) -> dict:
    match = re.search(rb'<script id="boot" type="application/json">(.*?)</script>', response.content)
    return json.loads(match.group(1))


# --- pages ---------------------------------------------------------------------------------------


def test_pages_need_a_login():
    conversation = make_conversation()
    for url in ("/", f"/c/{conversation.pk}/"):
        response = Client().get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_the_chat_page_has_the_landmarks_names_and_a_csp_nonce(client, user):
    response = client.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assert '<nav class="sidebar" id="sidebar" aria-label="Conversations">' in html
    assert '<main class="chat" id="main">' in html
    assert '<label for="message" class="visually-hidden">Message</label>' in html
    assert ">New chat</button>" in html and ">Send</button>" in html and ">Stop</button>" in html
    csp = response["Content-Security-Policy"]
    nonce = re.search(r"'nonce-([^']+)'", csp).group(1)
    assert f'<script type="module" src="/static/chat/chat.js" nonce="{nonce}">' in html
    assert "unsafe-inline" not in csp
    assert boot(response)["conversation"] is None and boot(response)["user"] == user.username


def test_a_conversation_page_and_another_users_is_404(client, user):
    mine = make_conversation(owner=user, title="Mine")
    theirs = make_conversation(title="Theirs")
    response = client.get(f"/c/{mine.pk}/")
    assert response.status_code == 200
    assert boot(response)["conversation"] == str(mine.pk)
    assert boot(response)["title"] == "Mine"
    assert client.get(f"/c/{theirs.pk}/").status_code == 404
    deleted = make_conversation(owner=user, is_deleted=True)
    assert client.get(f"/c/{deleted.pk}/").status_code == 404


def test_titles_are_escaped_in_the_page(client, user):
    payload = "</script><script>alert(1)</script>"
    conversation = make_conversation(owner=user, title=payload)
    html = client.get(f"/c/{conversation.pk}/").content.decode()
    assert "<script>alert(1)" not in html
    assert boot(client.get(f"/c/{conversation.pk}/"))["title"] == payload


def test_the_page_offers_the_enabled_agents_default_first(client):
    Agent.objects.create(name="Zed", slug="zed", model="m", is_default=True)
    Agent.objects.create(name="Alpha", slug="alpha", model="m")
    Agent.objects.create(name="Off", slug="off", model="m", enabled=False)
    agents = boot(client.get("/"))["agents"]
    assert [a["name"] for a in agents] == ["Zed", "Alpha"]
    assert agents[0]["default"] is True


def test_an_agent_limited_to_other_groups_is_not_in_the_picker_or_the_page(client, user):
    from django.contrib.auth.models import Group

    finance = Group.objects.create(name="finance")
    Agent.objects.create(name="General", slug="general", model="m")
    books = Agent.objects.create(name="Bookkeeper", slug="books", model="m",
                                 description="Posts to the ledger.")
    books.allowed_groups.add(finance)
    page = client.get("/")
    assert [a["name"] for a in boot(page)["agents"]] == ["General"]
    assert "Bookkeeper" not in page.text and "ledger" not in page.text
    user.groups.add(finance)
    assert [a["name"] for a in boot(client.get("/"))["agents"]] == ["Bookkeeper", "General"]


# --- the list ------------------------------------------------------------------------------------


def test_the_list_needs_a_login():
    response = Client().get("/api/conversations/")
    assert response.status_code == 401


def test_the_list_pages_most_recent_first_without_gaps_or_repeats(client, user):
    made = [aged(make_conversation(owner=user, title=f"c{i}"), minutes=i) for i in range(7)]
    # Two with the same time: the id breaks the tie, so paging still sees each once.
    Conversation.objects.filter(pk=made[4].pk).update(updated_at=made[3].updated_at)
    make_conversation(title="someone else's")
    make_conversation(owner=user, title="deleted", is_deleted=True)
    seen, cursor, pages = [], None, 0
    while True:
        url = "/api/conversations/?limit=3" + (f"&cursor={cursor}" if cursor else "")
        data = client.get(url).json()
        seen += [item["title"] for item in data["items"]]
        pages += 1
        cursor = data["next_cursor"]
        if not cursor:
            break
    assert pages == 3
    assert sorted(seen) == sorted(f"c{i}" for i in range(7)) and len(seen) == 7
    assert seen[:3] == ["c0", "c1", "c2"] and seen[-2:] == ["c5", "c6"]


def test_a_page_of_the_list_costs_one_query_whatever_its_size(client, user):
    for i in range(60):
        c = make_conversation(owner=user, title=f"c{i}")
        make_message(conversation=c, content=f"question {i}")
    with CaptureQueriesContext(connection) as queries:
        data = client.get("/api/conversations/?limit=50").json()
    assert len(data["items"]) == 50 and data["next_cursor"]
    # Session and user, then the page itself.
    assert len([q for q in queries if "conversations_conversation" in q["sql"]]) == 1
    assert data["items"][0]["preview"].startswith("question")


def test_search_matches_titles_and_message_text_case_insensitively(client, user):
    by_title = make_conversation(owner=user, title="Kubernetes upgrade")
    by_text = make_conversation(owner=user, title="Other")
    make_message(conversation=by_text, content="How do I drain a KUBERNETES node safely?")
    make_conversation(owner=user, title="Unrelated")
    theirs = make_conversation(title="kubernetes too")
    data = client.get("/api/conversations/?q=kubernetes").json()
    ids = {item["id"] for item in data["items"]}
    assert ids == {str(by_title.pk), str(by_text.pk)}
    snippet = next(i["snippet"] for i in data["items"] if i["id"] == str(by_text.pk))
    assert "KUBERNETES node" in snippet
    assert str(theirs.pk) not in ids


def test_api_conversations_are_listed_only_when_the_user_asks_for_them(client, user):
    web = make_conversation(owner=user, title="From the browser")
    api = make_conversation(owner=user, title="From a script", source=Conversation.Source.API)

    def listed(url: str = "/api/conversations/") -> set[str]:
        return {item["id"] for item in client.get(url).json()["items"]}

    def in_page() -> set[str]:
        return {item["id"] for item in boot(client.get("/"))["sidebar"]["items"]}

    assert listed() == listed("/api/conversations/?q=From") == in_page() == {str(web.pk)}
    # Hidden from the list, not from its owner: its link still opens it.
    opened = client.get(f"/c/{api.pk}/")
    assert opened.status_code == 200 and boot(opened)["conversation"] == str(api.pk)
    user.show_api_conversations = True
    user.save(update_fields=["show_api_conversations"])
    assert listed() == in_page() == {str(web.pk), str(api.pk)}
    assert listed("/api/conversations/?q=script") == {str(api.pk)}


def test_a_bad_cursor_or_limit_is_a_400(client):
    assert client.get("/api/conversations/?cursor=nonsense").status_code == 400
    assert client.get("/api/conversations/?limit=many").status_code == 400


def test_the_cursor_is_opaque_but_stable(user):
    conversation = make_conversation(owner=user)
    assert encode_cursor(conversation) == encode_cursor(Conversation.objects.get(pk=conversation.pk))


# --- rename and delete ---------------------------------------------------------------------------


def post(client, url, body=None):
    return client.post(url, data=json.dumps(body or {}), content_type="application/json")


def test_rename(client, user):
    conversation = make_conversation(owner=user, title="Old")
    response = post(client, f"/api/conversations/{conversation.pk}/rename/", {"title": "  New   name "})
    assert response.status_code == 200
    assert response.json()["conversation"]["title"] == "New name"
    conversation.refresh_from_db()
    assert conversation.title == "New name"
    response = post(client, f"/api/conversations/{conversation.pk}/rename/", {"title": " "})
    assert response.status_code == 400


def test_delete_hides_the_conversation(client, user):
    conversation = make_conversation(owner=user)
    response = post(client, f"/api/conversations/{conversation.pk}/delete/")
    assert response.status_code == 200
    conversation.refresh_from_db()
    assert conversation.is_deleted
    assert client.get("/api/conversations/").json()["items"] == []
    assert post(client, f"/api/conversations/{conversation.pk}/delete/").status_code == 404


def test_rename_and_delete_tell_the_users_other_tabs_once_committed(
        client, user, django_capture_on_commit_callbacks):
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from conversations.groups import user_group

    layer = get_channel_layer()
    tab = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(user_group(user.pk), tab)
    conversation = make_conversation(owner=user, title="Old")
    for action, body in (("rename", {"title": "New"}), ("delete", None)):
        with django_capture_on_commit_callbacks() as callbacks:
            post(client, f"/api/conversations/{conversation.pk}/{action}/", body)
        assert len(callbacks) == 1  # nothing is sent before the commit
        callbacks[0]()  # the commit
        message = async_to_sync(layer.receive)(tab)
        assert message == {"type": "conversation.changed", "conversation": str(conversation.pk)}


def test_another_users_conversation_is_404_for_rename_and_delete(client):
    theirs = make_conversation(title="Theirs")
    assert post(client, f"/api/conversations/{theirs.pk}/rename/", {"title": "Mine"}).status_code == 404
    assert post(client, f"/api/conversations/{theirs.pk}/delete/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.title == "Theirs" and not theirs.is_deleted


def test_posts_need_a_login_the_csrf_token_and_post(user):
    conversation = make_conversation(owner=user, title="Old")
    url = f"/api/conversations/{conversation.pk}/rename/"
    assert post(Client(), url, {"title": "x"}).status_code == 401
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    assert post(strict, url, {"title": "x"}).status_code == 403
    strict.get("/")  # sets the CSRF cookie, as the page does
    token = strict.cookies["csrftoken"].value
    response = strict.post(url, data=json.dumps({"title": "With token"}),
                           content_type="application/json", headers={"X-CSRFToken": token})
    assert response.status_code == 200
    assert strict.get(url).status_code == 405
    conversation.refresh_from_db()
    assert conversation.title == "With token"
