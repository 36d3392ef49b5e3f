"""Titles for conversations: asked of the model after the first exchange, stored as plain text."""

from __future__ import annotations

import logging
import re

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from agents.definitions import AgentSpec
from agents.events import ChatMessage, ChatRequest, ProviderError, TextDelta
from agents.providers import get_provider
from conversations.models import Conversation

logger = logging.getLogger(__name__)

TITLE_PROMPT = (
    "Write a title of at most six words for the conversation above. Answer with the title "
    "only: no quotes, no punctuation at the end, no markdown."
)
MAX_TITLE = 80


def clean_title(raw: str) -> str:
    """Model text → a short plain-text title (the page renders it as text, never as HTML)."""
    text = re.sub(r"<[^>]*>", "", raw)
    text = re.sub(r"[`*_#>\[\]<]", "", text)
    text = " ".join(text.split()).strip(" \"'.:;")
    return text[:MAX_TITLE].rstrip()


def _store(conversation_id: str, title: str) -> bool:
    # Only if nobody named it meanwhile: a user's rename wins over the model.
    return bool(Conversation.objects.filter(pk=conversation_id, title="").update(title=title))


async def generate_title(*, conversation_id: str, user_id: int, spec: AgentSpec,
                         history: list[ChatMessage], answer: str) -> None:
    config, model = spec.targets[0]
    request = ChatRequest(
        model=model,
        messages=(*history, ChatMessage(role="assistant", content=answer[:4000]),
                  ChatMessage(role="user", content=TITLE_PROMPT)),
        max_tokens=30,
    )
    parts: list[str] = []
    try:
        async for event in get_provider(config).stream(request):
            if isinstance(event, TextDelta):
                parts.append(event.text)
    except ProviderError as exc:
        logger.info("no title for %s: %s", conversation_id, exc.message)
        return
    title = clean_title("".join(parts))
    if title and await database_sync_to_async(_store)(conversation_id, title):
        await get_channel_layer().group_send(
            f"user.{user_id}", {"type": "conversation.changed", "conversation": conversation_id})
