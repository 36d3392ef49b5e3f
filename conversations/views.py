"""Pages and the sidebar's small JSON endpoints. Thin: they load through selectors, write
through actions and translate; the chat itself runs over the socket (consumers.py).

JSON endpoints answer 401 (not a login redirect) to an anonymous caller, 404 for a conversation
that is not the caller's, and need the CSRF token on POST (header X-CSRFToken).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from agents.access import agents_for
from conversations import actions
from conversations.search import BadCursor, conversation_page
from conversations.payloads import conversation_payload
from conversations.selectors import ConversationNotFound, access_conversation

SIDEBAR_PAGE = 50
MAX_PAGE = 100


def _json_login_required(view: Callable) -> Callable:
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        if not request.user.is_authenticated:
            return JsonResponse({"error": "Log in first."}, status=401)
        return view(request, *args, **kwargs)
    return wrapper


def _agents(user) -> list[dict]:
    # Only the agents open to this user (agents.access): a limited one is not even named.
    rows = agents_for(user=user)
    return [{"id": a.pk, "name": a.name, "description": a.description, "default": a.is_default}
            for a in rows]


@login_required
def chat(request: HttpRequest, conversation_id=None) -> HttpResponse:
    conversation = None
    if conversation_id is not None:
        try:
            conversation = access_conversation(user=request.user, conversation_id=conversation_id)
        except ConversationNotFound:
            raise Http404("No such conversation.") from None
    page = conversation_page(user=request.user, limit=SIDEBAR_PAGE)
    return render(request, "conversations/chat.html", {
        "conversation": conversation,
        # The first sidebar page goes into the page itself (json_script): no round trip.
        "boot": {
            "conversation": str(conversation.pk) if conversation else None,
            "title": conversation.title if conversation else "",
            "sidebar": {"items": page.items, "next_cursor": page.next_cursor},
            "agents": _agents(request.user),
            "user": request.user.get_username(),
            # Each answer's cost is shown in it (the chat page's usage line).
            "currency": settings.COST_CURRENCY,
        },
    })


@require_GET
@_json_login_required
def conversation_list(request: HttpRequest) -> JsonResponse:
    """GET ?q=<search>&cursor=<next_cursor>&limit=<n>: {"items": [...], "next_cursor": ...}."""
    try:
        limit = min(max(int(request.GET.get("limit", SIDEBAR_PAGE)), 1), MAX_PAGE)
    except ValueError:
        return JsonResponse({"error": "limit must be a number."}, status=400)
    try:
        page = conversation_page(user=request.user, query=request.GET.get("q", ""),
                                 cursor=request.GET.get("cursor") or None, limit=limit)
    except BadCursor as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    return JsonResponse({"items": page.items, "next_cursor": page.next_cursor})


def _body(request: HttpRequest) -> dict:
    try:
        data = json.loads(request.body or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


@require_POST
@_json_login_required
def conversation_rename(request: HttpRequest, conversation_id) -> JsonResponse:
    """POST {"title": "..."}: the conversation as the socket describes it."""
    # Asked first, before anything reads the body: CSRF's check has already read a form post
    # (request.POST), after which the body cannot be read at all.
    if request.content_type != "application/json":
        return JsonResponse(
            {"error": "Send the new title as JSON (Content-Type: application/json)."}, status=415)
    try:
        conversation = actions.do_rename_conversation(
            user=request.user, conversation_id=conversation_id, title=_body(request).get("title"))
    except ConversationNotFound:
        return JsonResponse({"error": "No such conversation."}, status=404)
    except actions.InvalidInput as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    return JsonResponse({"conversation": conversation_payload(conversation)})


@require_POST
@_json_login_required
def conversation_delete(request: HttpRequest, conversation_id) -> JsonResponse:
    """POST: hides the conversation from its owner (the audit keeps it)."""
    try:
        actions.do_delete_conversation(user=request.user, conversation_id=conversation_id)
    except ConversationNotFound:
        return JsonResponse({"error": "No such conversation."}, status=404)
    return JsonResponse({"deleted": str(conversation_id)})
