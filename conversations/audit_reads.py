"""The audit of the audit: each time an admin opens someone's conversation in the admin (the
conversation, one of its messages or one of its tool calls), who, whose and when is stored as
an AdminRead row. conversations.admin calls it after a page that showed the record was served.
"""

from __future__ import annotations

from conversations.models import AdminRead, Conversation


def do_record_admin_read(*, reader, conversation: Conversation, what: str) -> AdminRead:
    return AdminRead.objects.create(reader=reader, owner_id=conversation.owner_id,
                                    conversation_ref=str(conversation.pk), what=what[:100])
