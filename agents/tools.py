"""What the loop needs from tools: their specs and a way to call them.

The MCP client pool (a later issue) implements `ToolBox`; so can a test. Hooks run before a call
(policy, approval) and after it (recording)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from agents.events import ToolCall, ToolSpec


@dataclass(frozen=True, slots=True)
class ToolResult:
    # What the model is given (already cut to the configured size, binary content described).
    content: str
    is_error: bool = False
    # No one approved the call (denied, or no decision in time): it did not run.
    denied: bool = False
    # `content` was cut from a result of `original_chars` characters.
    truncated: bool = False
    original_chars: int = 0


class ToolBox(Protocol):
    def specs(self) -> Sequence[ToolSpec]: ...

    def server_of(self, name: str) -> str:
        """The MCP server that provides the tool ("" for built-ins); recorded in the ledger."""
        ...

    def definition_hash_of(self, name: str) -> str:
        """The hash of the tool's definition as offered ("" when unknown); recorded too."""
        ...

    async def call(self, call: ToolCall) -> ToolResult: ...


# Before a call: return None to let it run, or a ToolResult to answer instead (denied, say).
BeforeToolCall = Callable[[ToolCall], Awaitable[ToolResult | None]]


class NoTools:
    def specs(self) -> Sequence[ToolSpec]:
        return ()

    def server_of(self, name: str) -> str:
        return ""

    def definition_hash_of(self, name: str) -> str:
        return ""

    async def call(self, call: ToolCall) -> ToolResult:
        return ToolResult(content=f"Unknown tool: {call.name}", is_error=True)
