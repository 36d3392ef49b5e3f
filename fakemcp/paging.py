"""Paged `tools/list` answers: the cursor is the offset of the next page, as text."""

from __future__ import annotations

from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, ListToolsResult, PaginatedRequestParams, Tool


def paged_list_tools(
    tools: list[Tool], params: PaginatedRequestParams | None, *, page_size: int
) -> ListToolsResult:
    """One page of `tools`; `next_cursor` is None on the last page. A cursor that is not one
    of ours is INVALID_PARAMS, as the spec asks."""
    cursor = params.cursor if params is not None else None
    try:
        start = int(cursor) if cursor else 0
    except ValueError:
        raise MCPError(code=INVALID_PARAMS, message=f"unknown cursor {cursor!r}") from None
    if start < 0 or start > len(tools):
        raise MCPError(code=INVALID_PARAMS, message=f"unknown cursor {cursor!r}")
    end = start + page_size
    return ListToolsResult(tools=tools[start:end], next_cursor=str(end) if end < len(tools) else None)
