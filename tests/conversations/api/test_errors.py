"""Every error status of the API, in OpenAI's shape, as the official SDK's own exceptions; and
limits answered before anything reaches the model server."""

from __future__ import annotations

import json
import socket
from datetime import timedelta

import httpx
import openai
import pytest
from django.utils import timezone

from accounts.api_keys import do_create_api_key, do_revoke_api_key
from accounts.models import ApiKey
from conversations import hooks
from conversations.models import Budget, Conversation, Message


def fake(**directive) -> str:
    return "fake: " + json.dumps(directive)


def ask(client, content="hi", **kw):
    return client.chat.completions.create(
        model=kw.pop("model", "default"), messages=[{"role": "user", "content": content}], **kw)


@pytest.mark.parametrize("kw, field", [
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10**9}, "max_tokens"),
    ({"messages": [{"role": "user", "content": "hi"}], "temperature": 5}, "temperature"),
    ({"messages": [{"role": "user", "content": "hi"}], "n": 2}, "n"),
    ({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]}, "messages"),
    ({"messages": [{"role": "tool", "tool_call_id": "nope", "content": "x"}]}, "messages"),
    ({"messages": [{"role": "user", "content": "hi"}],
      "tool_choice": {"type": "function", "function": {"name": "missing"}}}, "tool_choice"),
])
def test_invalid_requests_are_400s_before_any_upstream_call(client, fake_llm, kw, field):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="default", **kw)
    assert caught.value.param == field and caught.value.message
    assert fake_llm.stats().requests == 0 and not Conversation.objects.exists()


def test_the_apps_own_limits_are_400s(client, fake_llm, settings):
    settings.API_MAX_MESSAGES = 2
    with pytest.raises(openai.BadRequestError, match="at most 2"):
        client.chat.completions.create(model="default", messages=[
            {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"}])
    with pytest.raises(openai.BadRequestError, match="too long"):
        ask(client, "x" * (settings.MAX_MESSAGE_CHARS + 1))
    assert fake_llm.stats().requests == 0


@pytest.mark.parametrize("body, content_type, status", [
    (b"{not json", "application/json", 400),
    (b"[1, 2]", "application/json", 400),
    (b'{"model": "default"}', "application/json", 400),
    (b"model=default", "application/x-www-form-urlencoded", 415),
    (b'{"model": "default", "messages": [{"role": "user", "content": "a\\u0000b"}]}',
     "application/json", 400),
])
def test_malformed_bodies_get_an_error_in_openais_shape(api_server, api_key, body,
                                                        content_type, status):
    response = httpx.post(f"{api_server.base_url}/chat/completions", content=body, headers={
        "Authorization": f"Bearer {api_key}", "Content-Type": content_type})
    assert response.status_code == status
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]


def test_a_body_over_the_limit_is_413_in_openais_shape(api_server, api_key, settings, fake_llm):
    # Only the headers are sent: the answer must come before any of the body is read (a
    # client still sending 10 MB may see the connection reset instead of the answer).
    with socket.create_connection(("127.0.0.1", api_server.port), timeout=10) as sock:
        sock.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      f"Authorization: Bearer {api_key}\r\nContent-Type: application/json\r\n"
                      f"Content-Length: {settings.MAX_REQUEST_BODY_BYTES + 1}\r\n\r\n").encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    error = json.loads(body)["error"]
    assert error["code"] == "request_too_large" and str(settings.MAX_REQUEST_BODY_BYTES) in (
        error["message"])
    assert fake_llm.stats().requests == 0


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as caught:
        ask(client, model="gpt-17")
    assert caught.value.code == "model_not_found" and "gpt-17" in caught.value.message


@pytest.mark.parametrize("key", ["", "sk-ch-nonsense", "Bearer-less"])
def test_a_wrong_key_is_401(api_server, key):
    client = openai.OpenAI(base_url=api_server.base_url, api_key=key or "x", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


def test_a_revoked_key_fails_at_once(client, api_user):
    ask(client)
    do_revoke_api_key(user=api_user, key_id=ApiKey.objects.get().pk)
    with pytest.raises(openai.AuthenticationError):
        ask(client)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


def test_an_expired_key_fails(api_server, api_user):
    _, raw = do_create_api_key(user=api_user, name="short",
                               expires_at=timezone.now() + timedelta(hours=1))
    ApiKey.objects.filter(name="short").update(expires_at=timezone.now() - timedelta(seconds=1))
    client = openai.OpenAI(base_url=api_server.base_url, api_key=raw, max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


def test_a_deactivated_users_key_fails_at_once(client, api_user):
    ask(client)
    api_user.is_active = False
    api_user.save()
    with pytest.raises(openai.AuthenticationError):
        ask(client)


def test_the_header_is_the_only_place_for_a_key(api_server, api_key):
    response = httpx.get(f"{api_server.base_url}/models?api_key={api_key}")
    assert response.status_code == 401
    response = httpx.get(f"{api_server.base_url}/models", headers={"X-Api-Key": api_key})
    assert response.status_code == 401
    assert api_key not in response.text


def test_repeated_bad_keys_from_one_address_get_429_with_retry_after(api_server, settings):
    settings.API_KEY_FAILURES_PER_ADDRESS = 3
    client = openai.OpenAI(base_url=api_server.base_url, api_key="sk-ch-AAAAAAAA_guess",
                           max_retries=0)
    for _ in range(3):
        with pytest.raises(openai.AuthenticationError):
            client.models.list()
    with pytest.raises(openai.RateLimitError) as caught:
        client.models.list()
    assert int(caught.value.response.headers["Retry-After"]) > 0


def test_a_refusing_hook_is_403(client):
    async def refuse(ctx):
        raise hooks.TurnRefused("Your team's budget for this month is spent.")

    unregister = hooks.register("before_model", refuse)
    try:
        with pytest.raises(openai.PermissionDeniedError, match="budget"):
            ask(client)
    finally:
        unregister()
    assert Message.objects.get(role="assistant").status == Message.Status.FAILED


def test_a_rate_limit_is_429_with_the_seconds_to_wait(client, api_user, fake_llm):
    Budget.objects.create(user=api_user, metric="turns", period="minute", limit=1)
    assert ask(client).choices[0].finish_reason == "stop"
    with pytest.raises(openai.RateLimitError, match="limit of 1 turn per minute") as caught:
        ask(client)
    assert 50 <= int(caught.value.response.headers["Retry-After"]) <= 60
    assert caught.value.code == "budget_exceeded"
    assert fake_llm.stats().requests == 1


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_429_is_a_429_with_retry_after(client, settings, stream):
    settings.LLM_MAX_RETRIES = 0
    with pytest.raises(openai.RateLimitError) as caught:
        response = ask(client, fake(fail={"status": 429, "retry_after": 7}), stream=stream)
        list(response) if stream else None
    assert caught.value.response.headers["Retry-After"] == "7"


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_500_is_a_5xx(client, settings, stream):
    settings.LLM_MAX_RETRIES = 0
    with pytest.raises(openai.InternalServerError) as caught:
        response = ask(client, fake(fail={"status": 500}), stream=stream)
        list(response) if stream else None
    assert caught.value.status_code == 502
    answer = Message.objects.get(role="assistant")
    assert answer.status == Message.Status.FAILED and answer.error


def test_a_failure_mid_stream_is_an_error_event_the_sdk_raises(client, settings):
    settings.LLM_MAX_RETRIES = 0
    stream = ask(client, fake(tokens=50, drop_after=5), stream=True)
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass
    answer = Message.objects.get(role="assistant")
    assert answer.status == Message.Status.FAILED and answer.content.startswith("tok0")


def test_too_many_answers_at_once_is_a_429(client, settings):
    settings.USER_MAX_CONCURRENT_TURNS = 1
    slow = ask(client, fake(tokens=3, gap_ms=1000), stream=True)
    next(iter(slow))  # the first answer is being written
    with pytest.raises(openai.RateLimitError) as caught:
        ask(client)
    assert caught.value.code == "too_many_concurrent_answers"
    assert caught.value.response.headers["Retry-After"]
    slow.close()
