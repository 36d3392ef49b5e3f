"""Turning MCP results into what the model reads: pure conversions, no server needed."""

from __future__ import annotations

import base64

from mcp_types import (
    AudioContent,
    BlobResourceContents,
    CallToolResult,
    EmbeddedResource,
    ResourceLink,
    TextContent,
    TextResourceContents,
)

from agents.mcp.results import cut, outcome_from_result

WAV = base64.b64encode(b"RIFF" + b"\0" * 96).decode()


def test_text_blocks_are_joined_and_binary_becomes_placeholders():
    result = CallToolResult(content=[
        TextContent(text="first"),
        AudioContent(data=WAV, mime_type="audio/wav"),
        EmbeddedResource(resource=TextResourceContents(uri="file:///a.txt", text="inline text")),
        EmbeddedResource(resource=BlobResourceContents(uri="file:///b.bin", blob=WAV,
                                                       mime_type="application/pdf")),
        ResourceLink(name="report", uri="file:///report.pdf"),
    ])
    outcome = outcome_from_result(result)
    assert outcome.content.splitlines() == [
        "first",
        "[audio not shown: audio/wav, 100 bytes]",
        "inline text",
        "[resource not shown: application/pdf, 100 bytes (file:///b.bin)]",
        "[resource link: report file:///report.pdf]",
    ]
    assert WAV not in outcome.content
    assert outcome.attachments == ("audio/wav, 100 bytes", "application/pdf, 100 bytes (file:///b.bin)")
    assert (outcome.is_error, outcome.truncated, outcome.structured) == (False, False, None)


def test_structured_content_is_kept_and_read_when_there_is_no_text():
    only_structured = outcome_from_result(CallToolResult(content=[], structured_content={"n": 1}))
    assert only_structured.content == '{"n": 1}' and only_structured.structured == {"n": 1}
    # 2026-07-28 allows any JSON value; it is wrapped the way MCPServer wraps return values.
    scalar = outcome_from_result(CallToolResult(content=[TextContent(text="7")], structured_content=7))
    assert scalar.structured == {"result": 7}


def test_errors_keep_their_flag_and_long_text_is_cut_with_its_size():
    outcome = outcome_from_result(CallToolResult(content=[TextContent(text="e" * 50)], is_error=True),
                                  max_chars=10)
    assert outcome.is_error and outcome.truncated and outcome.original_chars == 50
    assert outcome.content == "e" * 10 + "\n[cut: the result was 50 characters; only the first 10 are shown]"
    assert cut("short", max_chars=10) == ("short", False)
