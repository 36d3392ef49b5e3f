"""Listing a server's tools: paged, capped, and converted into our `ToolDefinition`s.

A server is untrusted: it may list thousands of tools, page forever or send megabytes of
schemas. The caps keep one listing bounded in pages, tools and bytes; a listing that hit one is
returned with `truncated=True` and the reason, never silently short.

Annotations are kept in the wire form: `ToolAnnotations.model_dump(mode="json", by_alias=True,
exclude_none=True)`, i.e. the spec's camelCase keys ("readOnlyHint") with absent hints left out.
That form is the protocol's, not the SDK's attribute names, so `definition_hash()` stays stable
across SDK versions and matches what other MCP clients show.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from mcp_types import ListToolsResult, Tool

from agents.mcp.config import ToolDefinition

DEFAULT_MAX_PAGES = 20
DEFAULT_MAX_TOOLS = 500
DEFAULT_MAX_BYTES = 1_000_000


@dataclass(frozen=True, slots=True)
class ListingCaps:
    max_pages: int = DEFAULT_MAX_PAGES
    max_tools: int = DEFAULT_MAX_TOOLS
    # Bytes of the definitions as compact JSON (name, description, schema, annotations).
    max_bytes: int = DEFAULT_MAX_BYTES


@dataclass(frozen=True, slots=True)
class ToolListing:
    """What one `list_tools` found. `reason` says which cap cut it (empty when complete);
    `protocol_version` is the one the session negotiated ("2025-11-25", "2026-07-28")."""

    tools: tuple[ToolDefinition, ...]
    truncated: bool = False
    reason: str = ""
    pages: int = 0
    protocol_version: str = ""


class _Lister(Protocol):
    async def list_tools(self, *, cursor: str | None = None) -> ListToolsResult: ...


def to_definition(tool: Tool) -> ToolDefinition:
    annotations: dict[str, Any] = (
        tool.annotations.model_dump(mode="json", by_alias=True, exclude_none=True)
        if tool.annotations is not None else {})
    return ToolDefinition(name=tool.name, description=tool.description or "",
                          input_schema=dict(tool.input_schema), annotations=annotations)


async def collect_tools(client: _Lister, *, caps: ListingCaps) -> ToolListing:
    """Page through `tools/list` (cursor after cursor) until the last page or a cap."""
    tools: list[ToolDefinition] = []
    total_bytes = 0
    cursor: str | None = None
    pages = 0
    while True:
        if pages >= caps.max_pages:
            return ToolListing(tuple(tools), truncated=True, pages=pages,
                               reason=f"the server has more than {caps.max_pages} pages of tools; "
                                      f"the first {pages} were read")
        page = await client.list_tools(cursor=cursor)
        pages += 1
        for tool in page.tools:
            if len(tools) >= caps.max_tools:
                return ToolListing(tuple(tools), truncated=True, pages=pages, reason=_too_many(caps))
            definition = to_definition(tool)
            size = _size(definition)
            if total_bytes + size > caps.max_bytes:
                return ToolListing(tuple(tools), truncated=True, pages=pages,
                                   reason=f"the tool definitions exceed {caps.max_bytes:,} bytes; "
                                          f"the first {len(tools)} tools were kept")
            tools.append(definition)
            total_bytes += size
        cursor = page.next_cursor
        if cursor is None:
            return ToolListing(tuple(tools), pages=pages)
        if len(tools) >= caps.max_tools:
            # Full, and the server says there is more: no need to fetch it to know.
            return ToolListing(tuple(tools), truncated=True, pages=pages, reason=_too_many(caps))


def _too_many(caps: ListingCaps) -> str:
    return f"the server lists more than {caps.max_tools} tools; the first {caps.max_tools} were kept"


def _size(definition: ToolDefinition) -> int:
    return len(json.dumps({"name": definition.name, "description": definition.description,
                           "input_schema": definition.input_schema,
                           "annotations": definition.annotations},
                          separators=(",", ":"), ensure_ascii=False).encode())
