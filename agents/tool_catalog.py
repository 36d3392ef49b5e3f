"""The Django side of MCP tools: what servers listed, what admins accepted, what a turn offers.

A listing (agents.mcp.pool.ToolListing) is stored by `do_store_listing`. The first listing of a
server is accepted as it is: the admin adding the server sees those tools. From then on a tool
whose definition (name, description, input schema, annotations: its hash) differs from the
accepted one, and a tool that was not there before, is held: stored in `pending_*`, not offered
to any model and not run, until an admin accepts it (`do_accept_tool_definition`). Servers
cannot widen what a tool does behind an admin's back by editing its description.

`offered_tools` is what a turn may use, resolved with the agent (agents.definitions caches it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Exists, OuterRef, Q, Subquery
from django.utils import timezone

from agents import env_refs
from agents.access import open_to
from agents.mcp.config import McpServerConfig, ToolDefinition
from agents.models import Agent, AgentToolPolicy, ApprovalPolicy, McpServer, McpTool
from agents.tool_names import exposed_name

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OfferedTool:
    """One tool a turn may call: under which name, on which server, with which definition."""

    exposed_name: str
    tool_name: str
    server: McpServerConfig
    description: str
    input_schema: dict
    definition_hash: str
    approval: str  # ApprovalPolicy
    # The group limits of its server and of the tool itself (empty: none); a person's model
    # gets the tool only if it passes both (agents.access).
    server_groups: frozenset[int] = frozenset()
    tool_groups: frozenset[int] = frozenset()

    def __hash__(self) -> int:
        return hash((self.exposed_name, self.definition_hash))


@dataclass(frozen=True, slots=True)
class ListingReport:
    server: str
    ok: bool
    error: str = ""
    added: tuple[str, ...] = ()
    held: tuple[str, ...] = ()  # new tools or changed definitions, waiting for an admin
    missing: tuple[str, ...] = ()
    unchanged: int = 0
    truncated: str = ""  # why the listing was cut short, if it was

    def summary(self) -> str:
        if not self.ok:
            return f"{self.server}: {self.error}"
        parts = [f"{self.unchanged} unchanged"]
        if self.added:
            parts.append(f"added {', '.join(self.added)}")
        if self.held:
            parts.append(f"held for review: {', '.join(self.held)}")
        if self.missing:
            parts.append(f"no longer listed: {', '.join(self.missing)}")
        if self.truncated:
            parts.append(f"listing cut short: {self.truncated}")
        return f"{self.server}: " + "; ".join(parts)


def server_config(server: McpServer) -> McpServerConfig:
    """The server's config with its ${VAR} references resolved from our environment now.
    Raises env_refs.UnresolvedReference (a user-safe message) when one is unset."""
    return env_refs.resolve_server(server)


def do_store_listing(*, server_id: int, tools: tuple[ToolDefinition, ...] | None, error: str = "",
                     truncated: str = "", protocol_version: str = "") -> ListingReport:
    """Store what a server listed (or the error that kept it from listing). In one transaction,
    with the server's row locked, so two processes storing the same change notice do not both
    add a tool."""
    now = timezone.now()
    with transaction.atomic():
        server = McpServer.objects.select_for_update().get(pk=server_id)
        if tools is None:
            server.last_error = error
            server.save(update_fields=["last_error", "updated_at"])
            return ListingReport(server=server.name, ok=False, error=error)
        first_listing = server.last_listed_at is None
        existing = {t.name: t for t in McpTool.objects.filter(server=server)}
        taken = set(McpTool.objects.exclude(server=server).values_list("exposed_name", flat=True))
        taken.update(t.exposed_name for t in existing.values())
        added, held, unchanged = [], [], 0
        seen = set()
        for definition in tools:
            if definition.name in seen:  # a server listing one name twice: the first counts
                continue
            seen.add(definition.name)
            digest = definition.definition_hash()
            row = existing.get(definition.name)
            if row is None:
                name = exposed_name(server=server.name, tool=definition.name, taken=taken)
                taken.add(name)
                row = McpTool(server=server, name=definition.name, exposed_name=name,
                              last_seen_at=now)
                if first_listing:
                    _accept(row, definition, digest, user=None, now=now)
                    added.append(definition.name)
                else:
                    row.description = definition.description
                    row.input_schema = definition.input_schema
                    row.annotations = definition.annotations
                    _hold(row, definition, digest, now=now)
                    held.append(definition.name)
                row.save()
                continue
            row.missing, row.last_seen_at = False, now
            if digest == row.definition_hash:
                if row.pending_hash:  # the server went back to the accepted definition
                    _clear_pending(row)
                unchanged += 1
            elif digest != row.pending_hash:
                _hold(row, definition, digest, now=now)
                held.append(definition.name)
            else:
                held.append(definition.name)
            row.save()
        gone = [t for name, t in existing.items() if name not in seen and not t.missing]
        for row in gone:
            row.missing = True
            row.save(update_fields=["missing"])
        server.last_error, server.last_listed_at = "", now
        server.protocol_version = protocol_version or server.protocol_version
        server.save(update_fields=["last_error", "last_listed_at", "protocol_version",
                                   "updated_at"])
    return ListingReport(server=server.name, ok=True, added=tuple(added), held=tuple(held),
                         missing=tuple(t.name for t in gone), unchanged=unchanged,
                         truncated=truncated)


def do_accept_tool_definition(*, tool_id: int, user) -> McpTool:
    """An admin accepts the definition the server lists now: the tool is offered again."""
    with transaction.atomic():
        tool = McpTool.objects.select_for_update().get(pk=tool_id)
        if tool.pending_hash:
            definition = ToolDefinition(
                name=tool.name, description=tool.pending_description,
                input_schema=tool.pending_input_schema or {},
                annotations=tool.pending_annotations or {})
            _accept(tool, definition, tool.pending_hash, user=user, now=timezone.now())
            tool.save()
    return tool


def _accept(row: McpTool, definition: ToolDefinition, digest: str, *, user, now) -> None:
    row.description = definition.description
    row.input_schema = definition.input_schema
    row.annotations = definition.annotations
    row.definition_hash = digest
    row.accepted_by, row.accepted_at = user, now
    _clear_pending(row)


def _hold(row: McpTool, definition: ToolDefinition, digest: str, *, now) -> None:
    row.pending_hash = digest
    row.pending_description = definition.description
    row.pending_input_schema = definition.input_schema
    row.pending_annotations = definition.annotations
    row.pending_since = now


def _clear_pending(row: McpTool) -> None:
    row.pending_hash, row.pending_description = "", ""
    row.pending_input_schema = row.pending_annotations = row.pending_since = None


# --- what a turn offers --------------------------------------------------------------------------


def offerable() -> Q:
    """Tools a model may see: enabled, on an enabled server, still listed, and with an accepted
    definition and no change waiting for review."""
    return Q(enabled=True, server__enabled=True, missing=False, pending_hash="") & ~Q(
        definition_hash="")


def offered_tools(agent: Agent | None) -> tuple[OfferedTool, ...]:
    """The tools a turn of `agent` (None: the environment's default agent, which offers every
    offerable tool) may call. A server whose ${VAR} references cannot be resolved offers none
    (logged, and shown on its admin page at its next listing)."""
    mode = agent.tools_mode if agent is not None else Agent.ToolsMode.ALL
    if mode == Agent.ToolsMode.NONE:
        return ()
    # One query: the agent's choices and its policy overrides are subqueries.
    tools = McpTool.objects.filter(offerable()).select_related("server")
    if mode == Agent.ToolsMode.CHOSEN:
        tools = tools.filter(Q(server__in=agent.tool_servers.all()) | Q(pk__in=agent.tools.all()))
    if agent is not None:
        tools = tools.annotate(agent_approval=Subquery(AgentToolPolicy.objects.filter(
            agent=agent, tool=OuterRef("pk")).values("approval")[:1]))
    # Whether a limit exists is answered in the same query; the groups are read only then.
    tools = tools.annotate(
        server_limited=Exists(McpServer.allowed_groups.through.objects.filter(
            mcpserver_id=OuterRef("server_id"))),
        tool_limited=Exists(McpTool.allowed_groups.through.objects.filter(
            mcptool_id=OuterRef("pk"))))
    rows = list(tools.order_by("server__name", "name"))
    server_groups, tool_groups = _group_limits(rows)
    configs: dict[int, McpServerConfig | None] = {}
    offered = []
    for tool in rows:
        if tool.server_id not in configs:
            try:
                configs[tool.server_id] = server_config(tool.server)
            except env_refs.EnvReferenceError as exc:
                logger.warning("MCP server %s offers no tools: %s", tool.server.name, exc)
                configs[tool.server_id] = None
        config = configs[tool.server_id]
        if config is None:
            continue
        offered.append(OfferedTool(
            exposed_name=tool.exposed_name, tool_name=tool.name, server=config,
            description=tool.description, input_schema=tool.input_schema,
            definition_hash=tool.definition_hash,
            approval=getattr(tool, "agent_approval", None) or tool.approval or ApprovalPolicy.ASK,
            server_groups=server_groups.get(tool.server_id, frozenset()),
            tool_groups=tool_groups.get(tool.pk, frozenset())))
    return tuple(offered)


def _group_limits(rows: list[McpTool]) -> tuple[dict[int, frozenset[int]],
                                                dict[int, frozenset[int]]]:
    """The groups of the limited servers and tools among `rows`, by server and by tool id:
    one query per kind of limit, none when nothing is limited."""
    return (_groups_of(McpServer, {t.server_id for t in rows if t.server_limited}),
            _groups_of(McpTool, {t.pk for t in rows if t.tool_limited}))


def _groups_of(model, ids: set[int]) -> dict[int, frozenset[int]]:
    """The allowed groups of these rows of `model` (McpServer or McpTool), by row id."""
    if not ids:
        return {}
    column = f"{model._meta.model_name}_id"
    found: dict[int, set[int]] = {}
    for row_id, group_id in model.allowed_groups.through.objects.filter(
            **{f"{column}__in": ids}).values_list(column, "group_id"):
        found.setdefault(row_id, set()).add(group_id)
    return {k: frozenset(v) for k, v in found.items()}


def still_offered(*, exposed_name: str, definition_hash: str, user_id: int | None = None) -> bool:
    """At call time: the tool is still offerable with the definition the turn offered (a change
    notice may have held it since the turn began), and, given `user_id`, still open to that
    person (an admin may have limited it, or its server, to groups since). One query."""
    rows = McpTool.objects.filter(offerable(), exposed_name=exposed_name,
                                  definition_hash=definition_hash)
    if user_id is not None:
        rows = rows.filter(open_to(McpServer, user_id=user_id, outer="server_id"),
                           open_to(McpTool, user_id=user_id))
    return rows.exists()

