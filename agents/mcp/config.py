"""What the pool needs to know about one MCP server, and what it learns from it: pure values."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

TransportKind = Literal["stdio", "http", "sse"]


@dataclass(frozen=True, slots=True)
class McpServerConfig:
    """One server, with every `${VAR}` reference already resolved (by agents.tool_catalog).

    Two configs with the same `name` but different values are different sessions: the pool
    closes the old one and opens a new one when a config changes (an admin edited the row)."""

    name: str
    transport: TransportKind
    # stdio
    command: str = ""
    args: tuple[str, ...] = ()
    # Secrets: kept out of repr(), so that no log line or error that prints a config shows them.
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    cwd: str = ""
    # http (streamable HTTP) and sse (the older HTTP+SSE transport)
    url: str = ""
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    # Seconds.
    connect_timeout: float = 10.0
    list_timeout: float = 10.0
    call_timeout: float = 60.0
    # HTTP servers on loopback, private or link-local addresses are refused unless allowed.
    allow_private_addresses: bool = False

    def __hash__(self) -> int:  # Mappings are not hashable; configs are compared by value
        return hash((self.name, self.transport, self.command, self.args, self.url))

    def key(self) -> tuple[Any, ...]:
        """Equal keys: the same session can serve both configs."""
        return (self.name, self.transport, self.command, self.args,
                tuple(sorted(self.env.items())), self.cwd, self.url,
                tuple(sorted(self.headers.items())), self.connect_timeout, self.list_timeout,
                self.call_timeout, self.allow_private_addresses)


@dataclass(frozen=True, slots=True)
class ToolDefinition:
    """A tool as a server lists it."""

    name: str
    description: str
    input_schema: dict[str, Any]
    annotations: dict[str, Any] = field(default_factory=dict)

    def __hash__(self) -> int:
        return hash(self.definition_hash())

    def definition_hash(self) -> str:
        """sha256 of the definition (name, description, input schema, annotations) in canonical
        JSON: what an admin approved is this hash, and a server that changes any of the four
        changes it."""
        canonical = json.dumps(
            {"name": self.name, "description": self.description,
             "input_schema": self.input_schema, "annotations": self.annotations},
            sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()
