"""The current setup as a configuration file (agents.config_schema's format): `export_config`.

No secret is ever written. A stored model-server key is not the name of a variable, so the file
names a placeholder variable instead (`VLLM_API_KEY` for the server vllm), with a comment saying
it must be set before the file is applied. An MCP server's env and header values are written
when they hold `${VAR}` references (they are no secrets then); any other value is written as a
placeholder reference (`${GITHUB_GITHUB_TOKEN}`), with the same comment. Applying the file on an
empty database, with those variables set to the old values, gives the same rows.

What the format does not hold stays out: per-agent approval policies and tools' own settings
(they belong to listed tools, edited in the admin), and tool choices of an agent whose tools
mode is not "chosen" (unused).
"""

from __future__ import annotations

import re
from typing import Any

import tomli_w

from agents import env_refs
from agents.config_schema import placeholder_env_name
from agents.models import Agent, LanguageModel, McpServer, ModelServer

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def export_config() -> str:
    """The TOML text of every model server, model, agent and MCP server, in name order."""
    out = _Writer()
    out.comment("chatsite configuration, written by manage.py export_config.")
    out.comment("Apply it with manage.py apply_config FILE (--dry-run first shows what changes).")
    servers = list(ModelServer.objects.order_by("name"))
    models = list(LanguageModel.objects.select_related("server").order_by("server__name",
                                                                           "name"))
    agents = list(Agent.objects.select_related("server").prefetch_related(
        "allowed_groups", "tool_servers", "tools__server").order_by("slug"))
    mcp = list(McpServer.objects.prefetch_related("allowed_groups").order_by("name"))
    if not models:
        out.blank()
        out.value("models", [])

    out.table(("model_servers",), {}, force=not servers)
    for server in servers:
        out.table(("model_servers", server.name), {
            "kind": server.kind, "base_url": server.base_url,
            "max_concurrency": server.max_concurrency,
            "first_token_timeout": server.first_token_timeout})
        if server.api_key:
            name = placeholder_env_name(server.name, "API_KEY")
            out.comment(f"Placeholder: set {name} to this server's API key before applying "
                        "(the stored key is never exported).")
            out.value("api_key_env", name)

    for model in models:
        out.blank()
        out.line("[[models]]")
        values: dict[str, Any] = {"server": model.server.name if model.server_id else None,
                                  "name": model.name, "context_window": model.context_window,
                                  "max_output_tokens": model.max_output_tokens,
                                  "input_price": model.input_price,
                                  "output_price": model.output_price,
                                  "cached_input_price": model.cached_input_price}
        for key, value in values.items():
            out.value(key, value)

    out.table(("agents",), {}, force=not agents)
    for agent in agents:
        chosen = agent.tools_mode == Agent.ToolsMode.CHOSEN
        out.table(("agents", agent.slug), {
            "name": agent.name, "description": agent.description or None,
            "system_prompt": agent.system_prompt or None,
            "server": agent.server.name if agent.server_id else None, "model": agent.model,
            "fallback_models": list(agent.fallback_models or []),
            "temperature": agent.temperature, "is_default": agent.is_default,
            "enabled": agent.enabled,
            "allowed_groups": sorted(g.name for g in agent.allowed_groups.all()),
            "tools_mode": agent.tools_mode,
            "tool_servers": sorted(s.name for s in agent.tool_servers.all()) if chosen else [],
            "tools": sorted(f"{t.server.name}/{t.name}" for t in agent.tools.all())
            if chosen else [],
            "max_tool_rounds": agent.max_tool_rounds})

    out.table(("mcpServers",), {}, force=not mcp)
    for server in mcp:
        _mcp_server(out, server)
    return out.text()


def _mcp_server(out: _Writer, server: McpServer) -> None:
    stdio = server.transport == McpServer.Transport.STDIO
    values: dict[str, Any] = {"type": server.transport}
    if stdio:
        values.update(command=server.command, args=[str(a) for a in server.args or []],
                      cwd=server.cwd or None)
    else:
        values["url"] = server.url
    values.update(
        disabled=True if not server.enabled else None,
        allowed_groups=sorted(g.name for g in server.allowed_groups.all()),
        allow_private_addresses=server.allow_private_addresses,
        connect_timeout=server.connect_timeout, list_timeout=server.list_timeout,
        call_timeout=server.call_timeout)
    out.table(("mcpServers", server.name), values)
    kind, text = ("env", server.env) if stdio else ("headers", server.headers)
    try:
        mapping = env_refs.stored_mapping(text)
    except ValueError:
        out.comment(f"The stored {kind} could not be read (not a JSON object): left out.")
        return
    if mapping:
        out.table(("mcpServers", server.name, kind), {})
    for name, value in sorted(mapping.items()):
        if _is_reference(value):
            out.value(name, value)
            continue
        variable = placeholder_env_name(server.name, name)
        what = "environment variable" if kind == "env" else "header"
        out.comment(f"Placeholder: set {variable} to the value of the {what} {name} before "
                    "applying (stored values are never exported).")
        out.value(name, "${" + variable + "}")


def _is_reference(value: str) -> bool:
    try:
        return bool(env_refs.references_in(value))
    except env_refs.MalformedReference:
        return False


class _Writer:
    """TOML written line by line (for the comments), each value formatted by tomli_w."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def line(self, text: str) -> None:
        self.lines.append(text)

    def blank(self) -> None:
        self.lines.append("")

    def comment(self, text: str) -> None:
        self.lines.append(f"# {text}")

    def value(self, key: str, value: Any) -> None:
        """`key = value`; None writes nothing (TOML has no null: left out is the default)."""
        if value is None:
            return
        if isinstance(value, list) and value:
            inline = f"{_key(key)} = [{', '.join(_string(item) for item in value)}]"
            if len(inline) <= 96:  # tomli_w writes every array one item a line
                self.lines.append(inline)
                return
        self.lines.append(tomli_w.dumps({key: value}, multiline_strings=True).rstrip("\n"))

    def table(self, path: tuple[str, ...], values: dict[str, Any], *, force: bool = True
              ) -> None:
        if not force and not values:
            return
        self.blank()
        self.lines.append(f"[{'.'.join(_key(part) for part in path)}]")
        for key, value in values.items():
            self.value(key, value)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _key(part: str) -> str:
    # A quoted key is a TOML string.
    return part if _BARE_KEY.fullmatch(part) else _string(part)


def _string(value: str) -> str:
    """`value` as a one-line TOML string, quoted by tomli_w."""
    return tomli_w.dumps({"k": value}).removeprefix("k = ").rstrip("\n")
