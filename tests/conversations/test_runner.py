"""The turn runner seen through a socket: faults, retries, fallbacks, tools, writes."""

import json

import pytest
from asgiref.sync import sync_to_async

from agents.models import Agent
from conversations.models import Message
from tests.conversations.ws import connect, finished, send, text_of, until
from tests.factories import make_user

pytestmark = pytest.mark.django_db(transaction=True)


def directive(**kw) -> str:
    return "fake: " + json.dumps(kw)


async def run(text: str, **frame) -> tuple[dict, list[dict], Message]:
    comm = await connect(await sync_to_async(make_user)())
    await send(comm, {"type": "send", "conversation": None, "text": text, **frame})
    ack, _ = await until(comm, lambda f: f["type"] == "ack")
    done, frames = await until(comm, finished, timeout=20)
    await comm.disconnect()
    return done["event"]["message"], frames, await Message.objects.aget(
        pk=ack["assistant_message"]["id"])


def statuses(frames: list[dict]) -> list[str]:
    return [f["event"]["detail"] for f in frames
            if f["type"] == "turn" and f["event"]["kind"] == "status"]


async def test_rate_limited_then_answered_after_retry_after(fake_llm):
    shown, frames, stored = await run(directive(tokens=3, fail={"status": 429, "times": 2,
                                                                "retry_after": 0.1}))
    assert (stored.status, stored.content) == ("complete", "tok0 tok1 tok2 ")
    assert len(statuses(frames)) == 2 and all("Retrying" in s for s in statuses(frames))
    assert fake_llm.stats().by_status == {429: 2, 200: 1}


async def test_server_error_then_success(fake_llm):
    _, _, stored = await run(directive(tokens=2, fail={"status": 500, "times": 1}))
    assert (stored.status, stored.content) == ("complete", "tok0 tok1 ")


async def test_failing_model_falls_back_and_the_message_records_who_answered(fake_llm, settings):
    settings.LLM_MAX_RETRIES = 1
    settings.LLM_FALLBACK_MODELS = ["fake-model-2"]
    # Only the main model fails, for ever; the fallback model answers.
    text = directive(tokens=2, fail={"status": 500, "models": ["fake-model"]})
    shown, frames, stored = await run(text)
    assert fake_llm.stats().by_status[500] == 2  # one try and one retry on the main model
    assert (stored.status, stored.model, stored.content) == ("complete", "fake-model-2",
                                                            "tok0 tok1 ")
    assert any("Trying fake-model-2 instead" in s for s in statuses(frames))


async def test_a_rejected_api_key_is_not_retried_and_says_so(fake_llm, settings):
    fake_llm.configure(required_api_key="right-key")
    settings.LLM_API_KEY = "wrong-key-123"
    shown, _, stored = await run(directive(tokens=2))
    assert stored.status == "failed"
    assert "rejected the API key" in stored.error
    assert "wrong-key-123" not in stored.error and "wrong-key-123" not in json.dumps(shown)
    assert fake_llm.stats().requests == 1


async def test_a_drop_mid_stream_keeps_the_partial_text_as_failed(fake_llm):
    shown, frames, stored = await run(directive(tokens=10, drop_after=4))
    assert stored.status == "failed"
    assert stored.content == "tok0 tok1 tok2 tok3 " == text_of(frames)
    assert stored.error
    assert fake_llm.stats().requests == 1  # not retried after the first token


async def test_no_answer_hits_the_first_token_timeout(fake_llm, settings):
    settings.LLM_FIRST_TOKEN_TIMEOUT = 0.3
    settings.LLM_MAX_RETRIES = 0
    shown, _, stored = await run(directive(hang=True))
    assert stored.status == "failed"
    assert stored.error == "The model did not start answering within 0.3 s."


async def test_an_unreachable_model_server_is_named_plainly(fake_llm, settings):
    settings.LLM_BASE_URL = "http://127.0.0.1:9/v1"
    settings.LLM_MAX_RETRIES = 0
    shown, _, stored = await run("hello")
    assert stored.status == "failed"
    assert "Cannot reach the model server at http://127.0.0.1:9/v1" in stored.error
    assert shown["error"] == stored.error


async def test_turns_beyond_the_concurrency_limit_wait_and_say_so(fake_llm, settings):
    settings.LLM_MAX_CONCURRENCY = 1
    user = await sync_to_async(make_user)()
    first, second = await connect(user), await connect(user)
    await send(first, {"type": "send", "conversation": None,
                       "text": directive(tokens=10, gap_ms=20)})
    await until(first, lambda f: f["type"] == "turn" and f["event"]["kind"] == "text")
    await send(second, {"type": "send", "conversation": None, "text": directive(tokens=2)})
    _, frames = await until(second, finished, timeout=20)
    assert any("Waiting for a free slot" in s for s in statuses(frames))
    assert text_of(frames) == "tok0 tok1 "
    await until(first, finished)
    await first.disconnect()
    await second.disconnect()


async def test_an_agent_from_the_admin_answers_with_its_model_and_prompt(fake_llm):
    agent = await Agent.objects.acreate(name="Helper", slug="helper", model="gpt-oss-120b",
                                        system_prompt="Be brief.")
    shown, _, stored = await run(directive(tokens=1), agent=agent.pk)
    assert stored.model == "gpt-oss-120b"
    body = fake_llm.requests()[-1]["body"]
    assert body["model"] == "gpt-oss-120b"
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}


async def test_reasoning_is_streamed_and_stored_with_its_duration(fake_llm):
    shown, frames, stored = await run(directive(reasoning=5, tokens=2))
    reasoning = "".join(f["event"]["text"] for f in frames
                        if f["type"] == "turn" and f["event"]["kind"] == "reasoning")
    assert reasoning and stored.reasoning == reasoning
    assert stored.reasoning_ms is not None
    assert stored.content == "tok0 tok1 "


async def test_the_first_exchange_gets_a_short_plain_title(fake_llm, settings):
    settings.GENERATE_TITLES = True
    user = await sync_to_async(make_user)()
    comm = await connect(user)
    await send(comm, {"type": "send", "conversation": None, "text": directive(tokens=3)})
    ack, _ = await until(comm, lambda f: f["type"] == "ack")
    await until(comm, finished)
    changed, _ = await until(comm, lambda f: f["type"] == "conversations_changed")
    assert changed["conversation"] == ack["conversation"]["id"]
    from conversations.models import Conversation
    conversation = await Conversation.objects.aget(pk=ack["conversation"]["id"])
    # The fake answers the title request with its default 8 tokens.
    assert conversation.title == "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7"
    last = fake_llm.requests()[-1]["body"]
    assert "title" in last["messages"][-1]["content"]
    assert last["stream"] is False  # one JSON answer: nobody watches a title arrive
    await comm.disconnect()


def test_titles_are_cleaned_to_plain_short_text():
    from conversations.titles import clean_title
    assert clean_title('  "**Planning** the <b>Q3</b> `budget`."  ') == "Planning the Q3 budget"
    assert len(clean_title("word " * 100)) <= 80


async def test_streaming_and_tool_calls_work_together_and_land_in_the_ledger(fake_llm):
    from conversations.models import ToolCall
    comm = await connect(await sync_to_async(make_user)())
    text = directive(preamble="Let me check. ", tool_calls=[
        {"name": "lookup", "arguments": {"q": "a"}}, {"name": "lookup", "arguments": {"q": "b"}}])
    await send(comm, {"type": "send", "conversation": None, "text": text})
    ack, _ = await until(comm, lambda f: f["type"] == "ack")
    done, frames = await until(comm, finished)
    kinds = [f["event"]["kind"] for f in frames if f["type"] == "turn"]
    assert kinds.count("tool_call_started") == 2 and kinds.count("tool_call_finished") == 2
    assert kinds.index("tool_call_finished") > kinds.index("tool_call_started")
    streamed = text_of(frames)
    assert streamed.startswith("Let me check. Tool results:")
    calls = [c async for c in ToolCall.objects.filter(
        message_id=ack["assistant_message"]["id"]).order_by("id")]
    assert [(c.tool_name, c.arguments, c.status, c.is_error) for c in calls] == [
        ("lookup", {"q": "a"}, "failed", True), ("lookup", {"q": "b"}, "failed", True)]
    assert all(c.text_offset == len("Let me check. ") for c in calls)
    assert done["event"]["message"]["tool_calls"][0]["result"] == (
        "Not run: there is no tool named 'lookup'.")

    # The next turn's history carries the calls and their results in the provider's form.
    await send(comm, {"type": "send", "conversation": ack["conversation"]["id"],
                      "text": directive(tokens=1)})
    await until(comm, finished)
    upstream = fake_llm.requests()[-1]["body"]["messages"]
    assert [m["role"] for m in upstream] == [
        "system", "user", "assistant", "tool", "tool", "assistant", "user"]
    assert upstream[2]["content"] == "Let me check. "
    assert [c["function"]["name"] for c in upstream[2]["tool_calls"]] == ["lookup", "lookup"]
    assert upstream[5]["content"] == streamed[len("Let me check. "):]
    await comm.disconnect()


async def test_an_answer_is_written_at_boundaries_never_per_token(fake_llm, settings):
    """Hot path: 300 tokens in about 1.5 s make a handful of writes, not 300."""
    from channels.db import database_sync_to_async
    from django.db import connection

    writes: list[str] = []

    def count(execute, sql, params, many, context):
        if sql.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")) and (
                "conversations_message" in sql):
            writes.append(sql.split()[0].upper())
        return execute(sql, params, many, context)

    # Database work runs on the one thread database_sync_to_async uses: wrap it there.
    await database_sync_to_async(lambda: connection.execute_wrappers.append(count))()
    try:
        settings.TURN_FLUSH_INTERVAL = 1.0
        _, frames, stored = await run(directive(tokens=300, gap_ms=5))
    finally:
        await database_sync_to_async(lambda: connection.execute_wrappers.remove(count))()
    assert len(stored.content.split()) == 300
    # Writes to the messages table: the user message and the empty reply inserted, one or two
    # periodic flushes, one final update.
    assert writes.count("INSERT") == 2
    assert 1 <= writes.count("UPDATE") <= 4, writes


async def test_each_rounds_reasoning_is_its_own_paragraph(fake_llm):
    _, frames, stored = await run(directive(reasoning="Think.", tool_calls=[
        {"name": "lookup", "arguments": {}}]))
    assert stored.reasoning == "Think.\n\nThink."
