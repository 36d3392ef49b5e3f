"""The tool-call record: each call is a ToolCall row, written when it starts, when it pauses
for or gets a decision, and when it ends. Admins read it in the audit (conversations.admin),
where only superusers may change or delete a row.

Tool results come from servers we do not control: what is stored is made storable (no NUL,
which PostgreSQL text refuses, and no lone surrogates, which UTF-8 cannot carry) rather than
failing the write and losing the record.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from conversations.models import ToolCall
from conversations.selectors import access_conversation

NOT_WAITING = "That tool call is not waiting for a decision."


class NotWaiting(Exception):
    """A decision for a call that is not (or no longer) awaiting one: decided in another tab,
    or its turn ended."""


def storable(text: str) -> str:
    text = text.replace("\x00", "\ufffd")
    try:
        text.encode()
    except UnicodeEncodeError:
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def do_record_tool_call(
    *, message_id: int, call_id: str, name: str, server: str, arguments: dict[str, Any],
    round: int, text_offset: int, definition_hash: str = "",
) -> None:
    ToolCall.objects.create(
        message_id=message_id, call_id=call_id, tool_name=name, server=server,
        arguments=arguments, round=round, text_offset=text_offset,
        definition_hash=definition_hash, status=ToolCall.Status.RUNNING,
        started_at=timezone.now(),
    )


def do_record_client_tool_call(*, message_id: int, call_id: str, name: str,
                               arguments: dict[str, Any], round: int, text_offset: int) -> None:
    ToolCall.objects.create(
        message_id=message_id, call_id=call_id, tool_name=name, arguments=arguments,
        round=round, text_offset=text_offset, status=ToolCall.Status.CLIENT,
    )


def do_finish_tool_call(*, message_id: int, call_id: str, result: str, is_error: bool,
                        denied: bool = False, truncated: bool = False,
                        original_chars: int = 0) -> None:
    status = (ToolCall.Status.DENIED if denied else
              ToolCall.Status.FAILED if is_error else ToolCall.Status.COMPLETE)
    ToolCall.objects.filter(message_id=message_id, call_id=call_id).update(
        result=storable(result), is_error=is_error, finished_at=timezone.now(), status=status,
        result_truncated=truncated, result_chars=original_chars or len(result))


def do_mark_tool_call(*, message_id: int, call_id: str, status: str,
                      approval: str | None = None) -> None:
    """A running call's state while it waits for a decision (awaiting_approval, running);
    `approval` records how it was allowed to run when no person decided (policy, timed out)."""
    rows = ToolCall.objects.filter(message_id=message_id, call_id=call_id)
    values: dict[str, Any] = {"status": status}
    if approval is not None:
        # Never over a person's decision that came in at the last moment.
        rows = rows.filter(approval="")
        values["approval"] = approval
        if approval == ToolCall.Approval.TIMED_OUT:
            values["decided_at"] = timezone.now()
    rows.update(**values)


def do_decide_tool_call(*, user, conversation_id: str, call_id: str, decision: str) -> None:
    """Record `user`'s decision (approve, deny) on a call awaiting one, before the turn hears
    of it: who, when, what stay on record even if the turn's process dies. The first decision
    wins; a later one (another tab) raises NotWaiting. The caller has checked that `user` may
    decide for the conversation."""
    updated = ToolCall.objects.filter(
        message__conversation_id=conversation_id, call_id=call_id,
        status=ToolCall.Status.AWAITING_APPROVAL, approval="",
    ).update(
        approval=ToolCall.Approval.APPROVED if decision == "approve" else ToolCall.Approval.DENIED,
        decided_by=user, decided_at=timezone.now())
    if not updated:
        raise NotWaiting(NOT_WAITING)


def do_decide_for_owner(*, user, conversation_id: str, call_id: str, decision: str) -> None:
    """do_decide_tool_call for a conversation `user` may see (ConversationNotFound otherwise)."""
    access_conversation(user=user, conversation_id=conversation_id)
    do_decide_tool_call(user=user, conversation_id=conversation_id, call_id=call_id,
                        decision=decision)
