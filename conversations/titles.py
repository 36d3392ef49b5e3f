"""Titles for conversations: asked of the model after the first exchange, stored as plain text.

`title_after_first_exchange` is a turn_finished hook (registered in conversations.apps); the
request goes through the same retries, fallbacks and concurrency limit as an answer.
"""

from __future__ import annotations

import logging
import re

from channels.db import database_sync_to_async
from django.conf import settings

from agents.definitions import AgentSpec, live_targets
from agents.events import ChatMessage, ChatRequest, ProviderError, RequestOptions
from agents.loop import complete_text
from conversations.groups import announce_changed
from conversations.hooks import TurnContext
from conversations.models import Conversation, Message
from conversations.payloads import MessageView

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


async def title_after_first_exchange(ctx: TurnContext, message: MessageView) -> None:
    # An API conversation is titled by its first message when stored: a title from the model
    # would be one more upstream request for every API request.
    if (message.status == Message.Status.COMPLETE and settings.GENERATE_TITLES
            and len(ctx.history) == 1 and ctx.source == Conversation.Source.WEB):
        await generate_title(conversation_id=ctx.conversation_id, user_id=ctx.user_id,
                             spec=ctx.spec, history=ctx.history, answer=message.content)


async def generate_title(*, conversation_id: str, user_id: int, spec: AgentSpec,
                         history: tuple[ChatMessage, ...], answer: str) -> None:
    request = ChatRequest(
        model=spec.targets[0][1],
        messages=(*history, ChatMessage(role="assistant", content=answer[:4000]),
                  ChatMessage(role="user", content=TITLE_PROMPT)),
        options=RequestOptions(max_tokens=30),
        stream=False,
    )
    try:
        raw = await complete_text(targets=live_targets(spec), request=request)
    except ProviderError as exc:
        logger.info("no title for %s: %s", conversation_id, exc.message)
        return
    title = clean_title(raw)
    if title and await database_sync_to_async(_store)(conversation_id, title):
        await announce_changed(user_id=user_id, conversation_id=conversation_id)
