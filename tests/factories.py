"""Factories: the smallest valid rows, with keyword overrides."""

from __future__ import annotations

import itertools

from django.contrib.auth import get_user_model

from conversations.models import Conversation, Message, ToolCall

_n = itertools.count(1)


def make_user(**kw):
    n = next(_n)
    kw.setdefault("username", f"user{n}")
    kw.setdefault("email", f"user{n}@example.com")
    password = kw.pop("password", "correct horse battery staple")
    user = get_user_model()(**kw)
    user.set_password(password)
    user.save()
    return user


def make_conversation(*, owner=None, **kw) -> Conversation:
    return Conversation.objects.create(owner=owner or make_user(), **kw)


def make_message(*, conversation=None, role=Message.Role.USER, **kw) -> Message:
    return Message.objects.create(conversation=conversation or make_conversation(), role=role, **kw)


def make_tool_call(*, message=None, **kw) -> ToolCall:
    kw.setdefault("call_id", f"call_{next(_n)}")
    kw.setdefault("tool_name", "get_time")
    return ToolCall.objects.create(
        message=message or make_message(role=Message.Role.ASSISTANT), **kw)


def make_mcp_server(**kw):
    from agents.models import McpServer

    n = next(_n)
    kw.setdefault("name", f"server{n}")
    kw.setdefault("transport", McpServer.Transport.STDIO)
    kw.setdefault("command", "true")
    return McpServer.objects.create(**kw)


def definition(name: str, description: str = "", schema: dict | None = None, **annotations):
    from agents.mcp.config import ToolDefinition

    return ToolDefinition(name=name, description=description or f"The {name} tool.",
                          input_schema=schema or {"type": "object"}, annotations=annotations)


def make_branch(*, conversation: Conversation, messages: int, parent: Message | None = None,
                text: str = "message {n}", **kw) -> list[Message]:
    """`messages` messages in a row, questions and answers taking turns, each answering the one
    before (from `parent`); `text` is formatted with the message's number. In one transaction:
    thousands take a second, not one commit each."""
    from django.db import transaction

    made: list[Message] = []
    with transaction.atomic():
        for n in range(messages):
            parent = Message.objects.create(
                conversation=conversation, parent=parent, content=text.format(n=n),
                role=Message.Role.USER if n % 2 == 0 else Message.Role.ASSISTANT, **kw)
            made.append(parent)
    return made
