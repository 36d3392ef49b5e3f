"""What a tool call gives the model: an MCP `CallToolResult` turned into plain text, pure values.

Binary content (images, audio, blobs) is never pasted as base64, which would cost a model
thousands of tokens for nothing it can read: each becomes one placeholder line naming its type
and size, and a short description in `attachments`. Text is joined, then cut to a size limit.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from mcp_types import (
    AudioContent,
    BlobResourceContents,
    CallToolResult,
    EmbeddedResource,
    ImageContent,
    ResourceLink,
    TextContent,
    TextResourceContents,
)

DEFAULT_MAX_RESULT_CHARS = 50_000


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """One tool call's result as the model and the audit see it.

    `content` is what the model reads; `original_chars` is its length before any cut (equal to
    `len(content)` when `truncated` is false). `attachments` describe binary content that was
    left out ("image/png, 68 bytes"). `structured` is the server's structured content, when it
    sent one (a non-object value is wrapped as {"result": value}, MCPServer's own convention)."""

    content: str
    is_error: bool = False
    truncated: bool = False
    original_chars: int = 0
    attachments: tuple[str, ...] = ()
    structured: dict[str, Any] | None = None


def error_outcome(message: str) -> ToolOutcome:
    """An error the pool produced itself (unreachable, timed out, crashed...): one line."""
    return ToolOutcome(content=message, is_error=True, original_chars=len(message))


def outcome_from_result(result: CallToolResult, *, max_chars: int = DEFAULT_MAX_RESULT_CHARS) -> ToolOutcome:
    """Convert a server's result; `max_chars` bounds `content` (a cut is said in its last line)."""
    lines: list[str] = []
    attachments: list[str] = []
    for block in result.content:
        text, attachment = _render_block(block)
        lines.append(text)
        if attachment:
            attachments.append(attachment)
    structured = _structured(result.structured_content)
    full = "\n".join(lines)
    if not full and structured is not None:
        # A server that answers only structured content still owes the model something to read.
        full = json.dumps(structured, ensure_ascii=False)
    content, truncated = cut(full, max_chars=max_chars)
    return ToolOutcome(content=content, is_error=bool(result.is_error), truncated=truncated,
                       original_chars=len(full), attachments=tuple(attachments),
                       structured=structured)


def cut(text: str, *, max_chars: int) -> tuple[str, bool]:
    """`text` cut to `max_chars` characters plus a line saying so; (text, was_cut)."""
    if len(text) <= max_chars:
        return text, False
    note = f"\n[cut: the result was {len(text):,} characters; only the first {max_chars:,} are shown]"
    return text[:max_chars] + note, True


def _render_block(block: Any) -> tuple[str, str]:
    """(text for the model, attachment description or "") for one content block."""
    if isinstance(block, TextContent):
        return block.text, ""
    if isinstance(block, ImageContent | AudioContent):
        kind = "image" if isinstance(block, ImageContent) else "audio"
        attachment = f"{block.mime_type}, {_decoded_size(block.data)} bytes"
        return f"[{kind} not shown: {attachment}]", attachment
    if isinstance(block, EmbeddedResource):
        resource = block.resource
        if isinstance(resource, TextResourceContents):
            return resource.text, ""
        if isinstance(resource, BlobResourceContents):
            mime = resource.mime_type or "application/octet-stream"
            attachment = f"{mime}, {_decoded_size(resource.blob)} bytes ({resource.uri})"
            return f"[resource not shown: {attachment}]", attachment
    if isinstance(block, ResourceLink):
        # A link is text already: the model may ask for it by name or URI.
        return f"[resource link: {block.name} {block.uri}]", ""
    kind = getattr(block, "type", type(block).__name__)
    return f"[unsupported content not shown: {kind}]", f"{kind} content"


def _decoded_size(data: str) -> int:
    """Bytes that base64 `data` stands for (the encoded length when it is not valid base64)."""
    try:
        return len(base64.b64decode(data, validate=False))
    except (binascii.Error, ValueError):
        return len(data)


def _structured(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, dict):
        return value
    return {"result": value}
