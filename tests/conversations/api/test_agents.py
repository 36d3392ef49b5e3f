"""Agents through the API: their MCP tools run on the server within the request, their group
limits hold, and GET /v1/models lists what the key's owner may use."""

from __future__ import annotations

import json

import openai
import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import Group

from agents import tool_refresh
from agents.models import Agent, McpServer, McpTool
from conversations.models import Message, ToolCall
from fakemcp import stdio_command
from fakemcp.runner import ROOT


def fake(**directive) -> str:
    return "fake: " + json.dumps(directive)


@pytest.fixture
def mcp_agent(fake_llm):
    command, args = stdio_command()
    server = McpServer.objects.create(name="fake", transport="stdio", command=command,
                                      args=list(args), cwd=str(ROOT), call_timeout=5.0)
    report = async_to_sync(tool_refresh.refresh_server)(server_id=server.pk)
    assert report.ok, report.error
    McpTool.objects.filter(server=server).update(approval="run")
    return Agent.objects.create(name="Helper", slug="helper", model="fake-model",
                                system_prompt="You help.")


@pytest.mark.parametrize("stream", [False, True])
def test_an_agents_mcp_tool_runs_on_the_server_and_the_client_sees_the_answer(
        client, mcp_agent, stream):
    messages = [{"role": "user", "content": fake(
        preamble="Checking. ", tool_calls=[{"name": "fake__echo", "arguments": {"text": "hi"}}])}]
    if stream:
        chunks = list(client.chat.completions.create(model="helper", messages=messages,
                                                     stream=True))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert not any(c.choices[0].delta.tool_calls for c in chunks if c.choices)
    else:
        completion = client.chat.completions.create(model="helper", messages=messages)
        text = completion.choices[0].message.content
        assert completion.choices[0].message.tool_calls is None
        assert completion.choices[0].finish_reason == "stop"
    assert text.startswith("Checking. ") and "fake__echo=hi" in text
    row = ToolCall.objects.get()
    assert (row.tool_name, row.server, row.status, row.result) == (
        "fake__echo", "fake", "complete", "hi")
    assert row.message.conversation.agent == mcp_agent


def test_a_tool_that_asks_first_is_refused_since_nobody_can_approve(client, mcp_agent):
    McpTool.objects.filter(name="echo").update(approval="ask")
    completion = client.chat.completions.create(model="helper", messages=[
        {"role": "user", "content": fake(tool_calls=[
            {"name": "fake__echo", "arguments": {"text": "hi"}}])}])
    row = ToolCall.objects.get()
    assert row.status == ToolCall.Status.DENIED and "approval" in row.result
    assert "approval" in completion.choices[0].message.content  # the model was told


def test_models_lists_agents_and_their_models_for_the_keys_owner(client, api_user, fake_llm):
    staff = Group.objects.create(name="staff")
    Agent.objects.create(name="Open", slug="open", model="fake-model", is_default=True)
    secret = Agent.objects.create(name="Secret", slug="secret", model="secret-model")
    secret.allowed_groups.add(staff)
    Agent.objects.create(name="Off", slug="off", model="off-model", enabled=False)
    ids = [m.id for m in client.models.list()]
    assert ids == ["open", "default/fake-model"]
    api_user.groups.add(staff)
    assert [m.id for m in client.models.list()] == [
        "open", "secret", "default/fake-model", "default/secret-model"]


def test_one_model_is_read_by_its_id_and_unknown_urls_are_json_404s(client, api_server,
                                                                     api_key, fake_llm):
    import httpx

    assert client.models.retrieve("default/fake-model").owned_by == "default"
    assert client.models.retrieve("default").id == "default"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")
    response = httpx.get(f"{api_server.base_url}/embeddings",
                         headers={"Authorization": f"Bearer {api_key}"})
    assert response.status_code == 404 and response.json()["error"]["code"] == "unknown_url"


def test_a_key_cannot_use_an_agent_its_owners_groups_do_not_allow(client, fake_llm):
    secret = Agent.objects.create(name="Secret", slug="secret", model="secret-model")
    secret.allowed_groups.add(Group.objects.create(name="legal"))
    for model in ("secret", "default/secret-model"):
        with pytest.raises(openai.NotFoundError) as caught:
            client.chat.completions.create(model=model, messages=[
                {"role": "user", "content": "hi"}])
        assert caught.value.code == "model_not_found"
    assert fake_llm.stats().requests == 0
    assert not Message.objects.exists()


def test_a_bare_model_gets_no_system_prompt_and_no_server_tools(client, mcp_agent, fake_llm):
    Agent.objects.filter(pk=mcp_agent.pk).update(is_default=True)
    client.chat.completions.create(model="default/fake-model", messages=[
        {"role": "system", "content": "Client prompt."}, {"role": "user", "content": "hi"}])
    body = fake_llm.requests()[-1]["body"]
    assert body["messages"][0] == {"role": "system", "content": "Client prompt."}
    assert "tools" not in body
    client.chat.completions.create(model="helper", messages=[
        {"role": "system", "content": "Client prompt."}, {"role": "user", "content": "hi"}])
    body = fake_llm.requests()[-1]["body"]
    assert body["messages"][0]["content"] == "You help.\n\nClient prompt."
    assert {t["function"]["name"] for t in body["tools"]} >= {"fake__echo"}
