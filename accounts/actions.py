"""Writes to a person's own account settings (their API keys are accounts/api_keys.py)."""

from __future__ import annotations

from accounts.models import User


def do_set_show_api_conversations(*, user: User, show: bool) -> None:
    """Whether the user's chat list includes the conversations their API keys made
    (conversations.selectors.conversations_for). Takes effect at the list's next load."""
    user.show_api_conversations = bool(show)
    user.save(update_fields=["show_api_conversations"])
