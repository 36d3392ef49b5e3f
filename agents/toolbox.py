"""MCP tools for one turn: the `agents.tools.ToolBox` the agent loop calls, over the session pool.

It offers exactly the tools the turn's agent was resolved with (agents.tool_catalog), and runs
a call only if, at that moment, the tool is still offered with the same definition: a change
notice that arrived mid-turn holds the tool for this turn too.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from channels.db import database_sync_to_async
from django.conf import settings

from agents import tool_catalog, tool_refresh
from agents.events import ToolCall, ToolSpec
from agents.tool_catalog import OfferedTool
from agents.tools import ToolResult

logger = logging.getLogger(__name__)


class McpToolBox:
    def __init__(self, tools: Sequence[OfferedTool], *, user_id: int | None = None) -> None:
        """`tools`: the turn's (already only those open to its person, agents.access);
        `user_id`: whose turn, so that each call checks the group limits again."""
        self._user_id = user_id
        self._tools = {tool.exposed_name: tool for tool in tools}
        self._specs = tuple(
            ToolSpec(name=t.exposed_name, description=t.description, input_schema=t.input_schema)
            for t in tools)

    def specs(self) -> Sequence[ToolSpec]:
        return self._specs

    def offered(self, name: str) -> OfferedTool | None:
        return self._tools.get(name)

    def server_of(self, name: str) -> str:
        tool = self._tools.get(name)
        return tool.server.name if tool is not None else ""

    def definition_hash_of(self, name: str) -> str:
        tool = self._tools.get(name)
        return tool.definition_hash if tool is not None else ""

    async def call(self, call: ToolCall) -> ToolResult:
        tool = self._tools.get(call.name)
        if tool is None:
            return ToolResult(content=f"Not run: there is no tool named {call.name!r}.",
                              is_error=True)
        if not await database_sync_to_async(tool_catalog.still_offered)(
                exposed_name=tool.exposed_name, definition_hash=tool.definition_hash,
                user_id=self._user_id):
            return ToolResult(
                content=f"Not run: the tool {call.name!r} was changed, turned off or limited "
                        "to other groups by its server or an admin since this answer began.",
                is_error=True)
        outcome = await tool_refresh.pool().call_tool(
            tool.server, tool.tool_name, call.arguments,
            max_result_chars=settings.TOOL_RESULT_MAX_CHARS)
        return ToolResult(content=outcome.content, is_error=outcome.is_error,
                          truncated=outcome.truncated, original_chars=outcome.original_chars)
