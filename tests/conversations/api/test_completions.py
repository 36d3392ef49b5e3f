"""POST /v1/chat/completions through the official openai SDK."""

from __future__ import annotations

import json

import openai
import pytest

from conversations.models import Conversation, Message, ToolCall


def fake(**directive) -> str:
    return "fake: " + json.dumps(directive)


def test_a_streamed_answer_arrives_token_by_token_with_usage_last(client):
    stream = client.chat.completions.create(
        model="default", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Count.\n" + fake(tokens=5)}])
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "tok0 tok1 tok2 tok3 tok4 "
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    conversation = Conversation.objects.get()
    assert conversation.source == Conversation.Source.API
    assert conversation.api_key.name == "tests"  # the audit says which key it was
    answer = conversation.messages.get(role=Message.Role.ASSISTANT)
    assert answer.status == Message.Status.COMPLETE and answer.content == text
    assert answer.output_tokens == chunks[-1].usage.completion_tokens


def test_a_whole_answer_without_stream(client):
    completion = client.chat.completions.create(
        model="default", messages=[{"role": "system", "content": "Be brief."},
                                   {"role": "user", "content": [
                                       {"type": "text", "text": "Hi"},
                                       {"type": "text", "text": fake(reply="Hello there.")}]}])
    assert completion.choices[0].message.content == "Hello there."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.total_tokens == (completion.usage.prompt_tokens
                                             + completion.usage.completion_tokens)
    roles = list(Message.objects.order_by("id").values_list("role", flat=True))
    assert roles == ["system", "user", "assistant"]


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}


@pytest.mark.parametrize("stream", [False, True])
def test_client_tools_come_back_as_tool_calls_and_their_results_get_an_answer(
        client, fake_llm, stream):
    ask = {"role": "user", "content": "Weather?\n" + fake(
        tool_calls=[{"name": "get_weather", "arguments": {"city": "Oslo"}}])}
    if stream:
        chunks = list(client.chat.completions.create(
            model="default", messages=[ask], tools=[WEATHER], tool_choice="auto", stream=True))
        deltas = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or ()]
        (delta,) = deltas
        call_id, name, arguments = delta.id, delta.function.name, delta.function.arguments
        finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
    else:
        completion = client.chat.completions.create(
            model="default", messages=[ask], tools=[WEATHER], tool_choice="auto")
        (call,) = completion.choices[0].message.tool_calls
        call_id, name, arguments = call.id, call.function.name, call.function.arguments
        finish = completion.choices[0].finish_reason
    assert (name, json.loads(arguments), finish) == ("get_weather", {"city": "Oslo"},
                                                     "tool_calls")
    upstream = fake_llm.requests()[-1]["body"]
    assert upstream["tools"][0]["function"]["name"] == "get_weather"
    assert upstream["tool_choice"] == "auto"
    # The call is on record, as handed to the client.
    row = ToolCall.objects.get(call_id=call_id, message__role="assistant")
    assert (row.status, row.arguments) == (ToolCall.Status.CLIENT, {"city": "Oslo"})

    follow_up = client.chat.completions.create(model="default", tools=[WEATHER], messages=[
        ask, {"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function",
             "function": {"name": name, "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": call_id, "content": "Sunny, 21 C"}])
    assert "get_weather=Sunny, 21 C" in follow_up.choices[0].message.content
    assert follow_up.choices[0].finish_reason == "stop"
    # The second request is its own conversation, with the client's call and result on record.
    stored = ToolCall.objects.get(call_id=call_id, status=ToolCall.Status.COMPLETE)
    assert stored.result == "Sunny, 21 C"
    assert Conversation.objects.count() == 2


@pytest.mark.parametrize("response_format", [
    {"type": "json_object"},
    {"type": "json_schema", "json_schema": {"name": "city", "schema": {
        "type": "object", "properties": {"name": {"type": "string"}}}}},
])
def test_response_format_and_sampling_values_reach_the_model_server(
        client, fake_llm, response_format):
    completion = client.chat.completions.create(
        model="default", response_format=response_format, temperature=0.2, top_p=0.9,
        seed=7, stop=["END"], max_completion_tokens=50,
        messages=[{"role": "user", "content": fake(reply='{"name": "Oslo"}')}])
    assert json.loads(completion.choices[0].message.content) == {"name": "Oslo"}
    body = fake_llm.requests()[-1]["body"]
    assert body["response_format"] == response_format
    assert (body["temperature"], body["top_p"], body["seed"], body["stop"],
            body["max_tokens"]) == (0.2, 0.9, 7, ["END"], 50)


def test_reasoning_streams_as_reasoning_content(client):
    chunks = list(client.chat.completions.create(
        model="default", stream=True,
        messages=[{"role": "user", "content": fake(reasoning=3, tokens=2)}]))
    reasoning = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or ""
                        for c in chunks if c.choices)
    assert reasoning.startswith("think0") and "".join(
        c.choices[0].delta.content or "" for c in chunks if c.choices) == "tok0 tok1 "


def test_a_length_cut_answer_says_so(client):
    completion = client.chat.completions.create(
        model="default", messages=[{"role": "user", "content": fake(
            tokens=3, finish_reason="length")}])
    assert completion.choices[0].finish_reason == "length"


def test_api_conversations_stay_out_of_the_chat_list_but_in_the_audit(client, api_user,
                                                                       admin_client):
    client.chat.completions.create(model="default", messages=[
        {"role": "user", "content": "Summarise our Q3.\n" + fake(tokens=2)}])
    from conversations.selectors import conversations_for
    assert not conversations_for(user=api_user).exists()
    audit = admin_client.get("/admin/conversations/conversation/?source__exact=api")
    assert "Summarise our Q3." in audit.text
    conversation = Conversation.objects.get()
    page = admin_client.get(f"/admin/conversations/conversation/{conversation.pk}/change/")
    assert "tests (sk-ch-" in page.text  # the key it came with, by its public part
    assert "tok0 tok1" in page.text  # the answer, with the request, in the audit
    api_user.show_api_conversations = True
    api_user.save()
    (conversation,) = conversations_for(user=api_user)
    assert conversation.title.startswith("Summarise our Q3.")


def test_the_stream_offers_the_servers_own_send_to_the_direct_writer(client, monkeypatch):
    """Under Daphne the chunk writer recognises Daphne's send (stream_writer): it must be
    given the server's own, not a wrapper of ours around it (which it would refuse)."""
    from conversations.api import asgi

    offered = []

    def spy(send):
        offered.append(send)
        return None

    monkeypatch.setattr(asgi, "direct_chunk_writer", spy)
    list(client.chat.completions.create(model="default", stream=True, messages=[
        {"role": "user", "content": fake(tokens=3)}]))
    (send,) = offered
    assert getattr(send, "__qualname__", "").split(".")[-1] != "watched_send"
    assert "conversations.api" not in getattr(send, "__module__", "")
