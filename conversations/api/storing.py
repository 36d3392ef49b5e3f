"""Storing a /v1 request before the model is called, as a conversation with source API.

The request's messages are the conversation as the client holds it: stored in order (system,
user, assistant), each the parent of the next, the assistant's tool calls as ToolCall rows
with the results the client sent for them, then the pending answer. The audit shows exactly
what the model was given; the owner's chat list shows it only when they ask to see API
conversations (User.show_api_conversations).
"""

from __future__ import annotations

from dataclasses import replace

from django.db import transaction
from django.utils import timezone

from agents.definitions import AgentSpec
from conversations import actions
from conversations.api import catalog
from conversations.api.errors import ApiError
from conversations.api.requests import CompletionRequest
from conversations.models import Conversation, Message, ToolCall
from conversations.runner import TurnPlan
from conversations.titles import MAX_TITLE


def do_start_api_turn(*, user, request: CompletionRequest,
                      key_id: int | None = None) -> TurnPlan:
    """Store the request and its pending answer; the plan of the turn that writes it. `user`
    was just read, active, with the request's key (accounts.api_keys.authenticate_api_key).
    Raises ApiError: 404 (a model they may not use), 400 (a request the model's server cannot
    take), 429 (too many answers at once)."""
    with transaction.atomic():
        try:
            actions.check_capacity(user)
        except actions.TooManyTurns as exc:
            raise ApiError(429, str(exc), code="too_many_concurrent_answers",
                           retry_after=2) from None
        spec = catalog.spec_for_model(user=user, model_id=request.model)
        _check_fits(spec=spec, request=request)
        conversation = Conversation.objects.create(
            owner=user, agent_id=spec.agent_id, source=Conversation.Source.API,
            api_key_id=key_id, title=_title(request))
        parent = _store_messages(conversation=conversation, request=request)
        reply = Message.objects.create(conversation=conversation, role=Message.Role.ASSISTANT,
                                       parent=parent, status=Message.Status.PENDING)
    system = "\n\n".join(t for t in (spec.system_prompt, request.system_text) if t.strip())
    return TurnPlan(
        conversation_id=str(conversation.pk), message_id=reply.pk,
        user_message_id=parent.pk, user_id=user.pk,
        spec=spec if spec.system_prompt == system else replace(spec, system_prompt=system),
        history=request.history(),
        created_at=reply.created_at, options=request.options, client_tools=request.tools,
        source=Conversation.Source.API,
    )


def _check_fits(*, spec: AgentSpec, request: CompletionRequest) -> None:
    taken = {tool.exposed_name for tool in spec.tools}
    for tool in request.tools:
        if tool.name in taken:
            raise ApiError(400, f"The tool name {tool.name!r} is taken by one of this agent's "
                                "server tools: rename yours.", param="tools")
    kind = spec.targets[0][0].kind
    if request.options.response_format is not None and kind == "anthropic":
        raise ApiError(400, "response_format is not supported by this model's server "
                            "(Anthropic has no JSON mode).", param="response_format")


def _title(request: CompletionRequest) -> str:
    first = next((m.content for m in request.messages if m.role == "user"), "")
    title = " ".join(first.split())
    return title if len(title) <= MAX_TITLE else title[:MAX_TITLE - 1] + "…"


def _store_messages(*, conversation: Conversation, request: CompletionRequest) -> Message:
    """The request's messages as a chain of rows; returns the last one (the answer's parent).
    Tool results are stored on the calls they answer, not as messages of their own."""
    results = {m.tool_call_id: m.content for m in request.messages if m.role == "tool"}
    parent: Message | None = None
    calls: list[ToolCall] = []
    now = timezone.now()
    for message in request.messages:
        if message.role == "tool":
            continue
        role = Message.Role.SYSTEM if message.role in ("system", "developer") else message.role
        parent = Message.objects.create(
            conversation=conversation, role=role, content=message.content, parent=parent,
            status=Message.Status.COMPLETE)
        for call in message.tool_calls:
            answered = call.id in results
            calls.append(ToolCall(
                message=parent, call_id=call.id, tool_name=call.name, arguments=call.arguments,
                result=results.get(call.id, ""), status=ToolCall.Status.COMPLETE if answered
                else ToolCall.Status.CLIENT, finished_at=now if answered else None,
                result_chars=len(results.get(call.id, ""))))
    if calls:
        ToolCall.objects.bulk_create(calls)
    return parent
