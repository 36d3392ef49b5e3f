"""Account changes reach open sockets at once, without waiting for the person to send anything.

A socket is authorised once, at its handshake, by its session. When an account changes (saved:
deactivated, password changed; deleted; logged out in one tab) every socket of that user is told
(`account.changed` on the user's group, in every process) and checks its session again exactly
as an HTTP request would (`django.contrib.auth.get_user`: the session still exists, belongs to
this user, carries the current password's hash, and the user may sign in). A socket whose
session no longer passes is closed. Deactivation (or deletion) also stops the user's running
turns, wherever they run, with their text kept. The SSO issue's deactivation saves the user, so
it goes through the same path.
"""

from __future__ import annotations

import hashlib
import logging
from importlib import import_module
from types import SimpleNamespace

from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib import auth
from django.contrib.auth.signals import user_logged_out
from django.db.models.signals import post_delete, post_save

from conversations.groups import on_commit_run, user_group
from conversations.models import Message

logger = logging.getLogger(__name__)


def session_fingerprint(session_key: str | None) -> str:
    """A session as named on the channel layer: never the key itself, which is a credential."""
    return hashlib.sha256((session_key or "").encode()).hexdigest()


def session_user_id(session_key: str | None) -> int | None:
    """The user a session still signs in, checked as for an HTTP request; None when it ended.
    Synchronous."""
    if not session_key:
        return None
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    user = auth.get_user(SimpleNamespace(session=store))
    return user.pk if user.is_authenticated else None


async def announce(*, user_id: int, ended_session: str | None = None) -> None:
    try:
        await get_channel_layer().group_send(user_group(user_id), {
            "type": "account.changed", "ended_session": ended_session})
    except Exception:  # sockets are checked again at their next command anyway
        logger.exception("could not tell the sockets of user %s of an account change", user_id)


async def stop_turns(*, user_id: int) -> None:
    """Stop every answer of the user still being written, in whichever process."""
    from channels.db import database_sync_to_async

    from conversations import broker

    conversation_ids = await database_sync_to_async(_unfinished_conversations)(user_id=user_id)
    for conversation_id in conversation_ids:
        await broker.request_stop(conversation_id=conversation_id)


def _unfinished_conversations(*, user_id: int) -> list[str]:
    return sorted({str(c) for c in Message.objects.filter(
        conversation__owner_id=user_id, status__in=Message.UNFINISHED_STATUSES,
    ).values_list("conversation_id", flat=True)})


def _after_commit(user_id: int, *, stop: bool, ended_session: str | None = None) -> None:
    async def notice() -> None:
        await announce(user_id=user_id, ended_session=ended_session)
        if stop:
            await stop_turns(user_id=user_id)
    on_commit_run(notice)


def _user_saved(sender, instance, created: bool, **kwargs) -> None:
    if not created:
        _after_commit(instance.pk, stop=not instance.is_active)


def _user_deleted(sender, instance, **kwargs) -> None:
    _after_commit(instance.pk, stop=True)


def _logged_out(sender, request, user, **kwargs) -> None:
    # Sent before logout() flushes the session: name it, so its sockets close whatever the
    # order in which the flush and their check happen.
    if user is not None and getattr(request, "session", None) is not None:
        _after_commit(user.pk, stop=False,
                      ended_session=session_fingerprint(request.session.session_key))


def connect_signals() -> None:
    user_model = auth.get_user_model()
    post_save.connect(_user_saved, sender=user_model, dispatch_uid="account-changes-saved")
    post_delete.connect(_user_deleted, sender=user_model, dispatch_uid="account-changes-deleted")
    user_logged_out.connect(_logged_out, dispatch_uid="account-changes-logged-out")
