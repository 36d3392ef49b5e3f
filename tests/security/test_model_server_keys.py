"""A model server's stored key cannot be sent elsewhere: changing its URL or kind in the admin
without entering a key removes the stored one, so the next answer carries no key to the new
host; entering a key in the same save stores that one."""

from __future__ import annotations

import pytest

from agents.models import Agent, ModelServer
from tests.conversations.ws import connect, finished, send, until
from tests.factories import make_user

pytestmark = pytest.mark.django_db(transaction=True)

FORM = {"name": "vllm", "kind": "openai", "max_concurrency": 8, "first_token_timeout": 60,
        # The server's models (an inline): none.
        "models-TOTAL_FORMS": 0, "models-INITIAL_FORMS": 0}


def change(client, server: ModelServer, **fields):
    response = client.post(f"/admin/agents/modelserver/{server.pk}/change/",
                           {**FORM, "base_url": server.base_url, "api_key": "", **fields},
                           follow=True)
    assert response.status_code == 200
    server.refresh_from_db()
    return response


@pytest.fixture
def admin(client):
    client.force_login(make_user(is_staff=True, is_superuser=True))
    return client


def test_a_new_url_without_a_key_drops_the_stored_key_and_says_so(admin):
    server = ModelServer.objects.create(name="vllm", base_url="http://vllm:8000/v1",
                                        api_key="sk-secret-123")
    response = change(admin, server, base_url="http://elsewhere.example/v1")
    assert server.api_key == ""
    assert "API key of vllm was removed" in response.text
    assert "sk-secret-123" not in response.text


def test_a_new_kind_without_a_key_drops_it_too(admin):
    server = ModelServer.objects.create(name="vllm", base_url="http://vllm:8000/v1",
                                        api_key="sk-secret-123")
    change(admin, server, kind="anthropic")
    assert server.api_key == ""


def test_a_key_entered_with_the_new_url_is_the_one_stored(admin):
    server = ModelServer.objects.create(name="vllm", base_url="http://vllm:8000/v1",
                                        api_key="sk-secret-123")
    change(admin, server, base_url="http://elsewhere.example/v1", api_key="sk-new-456")
    assert server.api_key == "sk-new-456"


def test_other_changes_keep_the_stored_key(admin):
    server = ModelServer.objects.create(name="vllm", base_url="http://vllm:8000/v1",
                                        api_key="sk-secret-123")
    change(admin, server, max_concurrency=4)
    assert server.api_key == "sk-secret-123"


async def test_the_next_answer_carries_no_key_to_the_new_host(fake_llm, async_client):
    from asgiref.sync import sync_to_async

    old_host = fake_llm.base_url.replace("127.0.0.1", "localhost")
    server = await ModelServer.objects.acreate(name="vllm", base_url=old_host,
                                               api_key="sk-secret-123")
    await Agent.objects.acreate(name="Default", slug="default", server=server,
                                model="fake-model", is_default=True)
    staff = await sync_to_async(make_user)(is_staff=True, is_superuser=True)
    await async_client.aforce_login(staff)
    response = await async_client.post(
        f"/admin/agents/modelserver/{server.pk}/change/",
        {**FORM, "base_url": fake_llm.base_url, "api_key": ""})
    assert response.status_code == 302

    comm = await connect(await sync_to_async(make_user)())
    await send(comm, {"type": "send", "conversation": None, "text": 'fake: {"tokens": 1}'})
    await until(comm, finished)
    # (The fake records a secret header's presence, not its value.)
    headers = {k.lower() for k in fake_llm.requests()[-1]["headers"]}
    assert "authorization" not in headers
    await comm.disconnect()
