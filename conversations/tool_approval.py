"""Approval: a before_tool_call hook (registered in conversations.apps) that applies each tool's
policy. "run" lets the call go; "ask" pauses it until the conversation's owner approves or
denies it on the page (the decision reaches the turn through the control channel, wherever it
runs; conversations.tool_records stores who decided and when). No decision within
TOOL_APPROVAL_TIMEOUT counts as a denial. What a server says about its tool (read-only hints
and other annotations) approves nothing: only the admin's policy does.
"""

from __future__ import annotations

from channels.db import database_sync_to_async
from django.conf import settings

from agents.events import ToolCall
from agents.models import ApprovalPolicy
from agents.tools import ToolResult
from conversations import tool_records
from conversations.hooks import TurnContext
from conversations.models import Conversation
from conversations.models import ToolCall as ToolCallRow

DENIED = "Not run: the user denied this call."
NOBODY_TO_ASK = ("Not run: this tool needs a person's approval, and a request through the API "
                 "has nobody to ask.")


async def apply_tool_policy(ctx: TurnContext, call: ToolCall) -> ToolResult | None:
    tool = next((t for t in ctx.spec.tools if t.exposed_name == call.name), None)
    if tool is None:  # not an MCP tool of this agent (a tool box a test or a built-in brings)
        return None
    if tool.approval != ApprovalPolicy.ASK:
        await database_sync_to_async(tool_records.do_mark_tool_call)(
            message_id=ctx.message_id, call_id=call.id, status=ToolCallRow.Status.RUNNING,
            approval=ToolCallRow.Approval.POLICY)
        return None
    if ctx.source == Conversation.Source.API:
        return ToolResult(content=NOBODY_TO_ASK, is_error=True, denied=True)
    timeout = settings.TOOL_APPROVAL_TIMEOUT
    try:
        decision = await ctx.wait_for_decision(call_id=call.id, timeout=timeout)
    except TimeoutError:
        await database_sync_to_async(tool_records.do_mark_tool_call)(
            message_id=ctx.message_id, call_id=call.id,
            status=ToolCallRow.Status.AWAITING_APPROVAL, approval=ToolCallRow.Approval.TIMED_OUT)
        return ToolResult(content=f"Not run: no one approved this call within "
                                  f"{_duration(timeout)}.", is_error=True, denied=True)
    if decision != "approve":
        return ToolResult(content=DENIED, is_error=True, denied=True)
    return None


def _duration(seconds: float) -> str:
    if seconds >= 120:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds:.0f} seconds"
