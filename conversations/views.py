"""Pages. Thin: they load through selectors and render; the chat itself runs over the socket."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from conversations.selectors import ConversationNotFound, access_conversation, conversations_for

SIDEBAR_PAGE = 50


@login_required
def chat(request: HttpRequest, conversation_id=None) -> HttpResponse:
    conversation = None
    if conversation_id is not None:
        try:
            conversation = access_conversation(user=request.user, conversation_id=conversation_id)
        except ConversationNotFound:
            raise Http404("No such conversation.") from None
    return render(request, "conversations/chat.html", {
        "conversation": conversation,
        "conversations": conversations_for(user=request.user)[:SIDEBAR_PAGE],
        "model_server": settings.LLM_BASE_URL,
    })
