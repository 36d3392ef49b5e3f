"""Applying a configuration file (agents.config_schema) to the rows: `do_apply_config`.

Rows are matched by their natural keys (a model server's name, a model's server and name, an
agent's slug, an MCP server's name) and created or updated to what the file says; a row equal
to it is not written at all (its updated_at stays). Everything happens in one transaction: any
problem (a name the database does not know, an unset variable) raises ConfigError and nothing
is applied; a dry run does all of it and rolls back, so it reports exactly what a real run would.

Decisions an admin should know (the README says them too):
- Groups named in allowed_groups that do not exist are created (SSO creates groups by name at
  login: a file may name them before anyone of them has logged in). Groups are never removed.
- An agent's single tools ("server/tool") must be tools its server has listed: a tool unknown
  is an error (a typo would otherwise leave an agent silently without it). A server that was
  never listed has no tools yet: `list_tools=True` lists those servers first (it starts them).
- `prune` removes, in each section the file has, the rows it does not name: agents first (an
  agent's server is protected), then models, model servers and MCP servers (their tools, and
  agents' choices of them, go with them). Conversations of a removed agent keep their messages
  and are answered by the default agent from then on. A section the file leaves out is not
  pruned, and a model server that an agent left alone still uses is an error, not removed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import transaction

from agents import env_refs
from agents.config_schema import AgentEntry, ConfigFile, McpEntry, mcp_problem
from agents.mcp_import import ConfigError, do_import_mcp_servers
from agents.models import Agent, LanguageModel, McpServer, McpTool, ModelServer
from agents.tool_refresh import refresh_server_now

Outcome = Literal["created", "updated", "removed", "unchanged"]
OUTCOMES: tuple[Outcome, ...] = ("created", "updated", "removed", "unchanged")


@dataclass(frozen=True, slots=True)
class Change:
    kind: str  # "model server", "model", "agent", "MCP server", "group"
    key: str
    outcome: Outcome
    fields: tuple[str, ...] = ()  # updated: the names of the fields that changed, never values
    notes: tuple[str, ...] = ()

    def text(self, *, dry_run: bool) -> str:
        verb = self.outcome if not dry_run or self.outcome == "unchanged" else (
            f"would be {self.outcome}")
        line = f"{self.kind} {self.key}: {verb}"
        if self.fields:
            line += f" ({', '.join(self.fields)})"
        if self.notes:
            line += f" [{'; '.join(self.notes)}]"
        return line


@dataclass(frozen=True, slots=True)
class ApplyReport:
    changes: tuple[Change, ...]
    warnings: tuple[str, ...] = ()
    dry_run: bool = False

    def count(self, outcome: Outcome) -> int:
        return sum(1 for c in self.changes if c.outcome == outcome)

    @property
    def changed(self) -> int:
        return sum(1 for c in self.changes if c.outcome != "unchanged")

    def change(self, kind: str, key: str) -> Change:
        return next(c for c in self.changes if c.kind == kind and c.key == key)

    def text_lines(self) -> list[str]:
        lines = [c.text(dry_run=self.dry_run) for c in self.changes]
        lines += [f"warning: {w}" for w in self.warnings]
        counts = ", ".join(f"{self.count(o)} {o}" for o in OUTCOMES)
        lines.append(("Dry run, nothing was saved: " if self.dry_run else "") + counts + ".")
        return lines


def do_apply_config(*, config: ConfigFile, prune: bool = False, dry_run: bool = False,
                    list_tools: bool = False,
                    environ: Mapping[str, str] = os.environ) -> ApplyReport:
    """Make the rows what `config` says (see the module's docstring), in one transaction.

    For commands run on the server (the caller is as trusted as a superuser: stdio servers and
    `${VAR}` references are saved without the admin's checks). Raises ConfigError, with every
    problem found, before anything is committed. `dry_run`: the same report, rolled back.
    `environ` is where api_key_env variables are read."""
    with transaction.atomic():
        run = _Run(config=config, prune=prune, environ=environ)
        steps = [run.check_names, run.apply_groups, run.apply_model_servers, run.apply_models,
                 run.apply_mcp_servers, *([run.list_tools] if list_tools else []),
                 run.check_tools, run.apply_agents, *([run.prune] if prune else [])]
        for step in steps:
            step()
            # A step's problems stop the run before the next one builds on its rows.
            run.raise_problems()
        if dry_run:
            transaction.set_rollback(True)
    return ApplyReport(changes=tuple(run.changes), warnings=tuple(run.warnings),
                       dry_run=dry_run)


class _Run:
    def __init__(self, *, config: ConfigFile, prune: bool, environ: Mapping[str, str]):
        self.config, self.prune_rows, self.environ = config, prune, environ
        self.changes: list[Change] = []
        self.warnings: list[str] = []
        self.problems: list[str] = []
        self.api_keys: dict[str, str] = {}

    def raise_problems(self) -> None:
        if self.problems:
            raise ConfigError(self.problems)

    def record(self, kind: str, key: str, outcome: Outcome, fields: Iterable[str] = (),
               notes: Iterable[str] = ()) -> None:
        self.changes.append(Change(kind=kind, key=key, outcome=outcome, fields=tuple(fields),
                                   notes=tuple(notes)))

    # Names -------------------------------------------------------------------------------

    def _names(self, model, entries) -> set[str]:
        """The names of this kind that exist once the file is applied."""
        named = {e.name if not isinstance(e, McpEntry) else e.definition.name
                 for e in entries or ()}
        if entries is not None and self.prune_rows:
            return named
        return named | set(model.objects.values_list("name", flat=True))

    def check_names(self) -> None:
        config = self.config
        servers = self._names(ModelServer, config.model_servers)
        mcp = self._names(McpServer, config.mcp_servers)
        for entry in config.model_servers or ():
            if entry.api_key_env:
                value = self.environ.get(entry.api_key_env)
                if not value:
                    state = "is empty" if value == "" else "is not set"
                    self.problems.append(
                        f"model server '{entry.name}', api_key_env: the environment variable "
                        f"{entry.api_key_env} {state} (omit api_key_env for a server without "
                        "a key)")
                else:
                    self.api_keys[entry.name] = value
        def unknown(where: str, kind: str, name: str, section) -> None:
            if self.prune_rows and section is not None:
                why = f"no {kind} '{name}' in the file (--prune removes the others)"
            else:
                why = f"no {kind} '{name}' in the file or the database"
            self.problems.append(f"{where}: {why}")

        for entry in config.models or ():
            if entry.server and entry.server not in servers:
                unknown(f"model '{entry.label}', server", "model server", entry.server,
                        config.model_servers)
        for agent in config.agents or ():
            where = f"agent '{agent.slug}'"
            if agent.server and agent.server not in servers:
                unknown(f"{where}, server", "model server", agent.server, config.model_servers)
            for name in agent.tool_servers:
                if name not in mcp:
                    unknown(f"{where}, tool_servers", "MCP server", name, config.mcp_servers)
            for server, tool in agent.tools:
                if server not in mcp:
                    unknown(f"{where}, tools: '{server}/{tool}'", "MCP server", server,
                            config.mcp_servers)
        if self.prune_rows and config.model_servers is not None and config.agents is None:
            # Agents the file leaves alone keep their servers: PROTECT would refuse the removal.
            for agent in Agent.objects.filter(server__isnull=False).exclude(
                    server__name__in=servers).select_related("server").order_by("slug"):
                self.problems.append(
                    f"agent '{agent.slug}' uses model server '{agent.server.name}', which "
                    "--prune would remove (it is not in the file), and the file has no "
                    "[agents] section to change that agent")
        for entry in config.mcp_servers or ():
            self._warn_unset_references(entry)

    def _warn_unset_references(self, entry: McpEntry) -> None:
        d = entry.definition
        values = [("command", d.command), ("cwd", d.cwd), ("url", d.url),
                  *((f"args[{i}]", a) for i, a in enumerate(d.args)),
                  *((f"env {k}", v) for k, v in d.env.items()),
                  *((f"header {k}", v) for k, v in d.headers.items())]
        for label, value in values:
            try:
                env_refs.resolve(value, environ=self.environ)
            except env_refs.UnresolvedReference as missing:
                self.warnings.append(
                    f"MCP server '{d.name}', {label}: the environment variable {missing.name} "
                    "is not set here (it is read when the server connects: set it for the "
                    "chat server's processes)")

    # Writing -----------------------------------------------------------------------------

    def apply_groups(self) -> None:
        config = self.config
        names = {g for a in config.agents or () for g in a.allowed_groups}
        names |= {g for e in config.mcp_servers or () if e.access for g in
                  e.access.allowed_groups}
        existing = set(Group.objects.filter(name__in=names).values_list("name", flat=True))
        for name in sorted(names - existing):
            group = Group(name=name)
            self._clean(group, f"group '{name}'")
            group.save()
            self.record("group", name, "created")
        self.groups = {g.name: g for g in Group.objects.filter(name__in=names)}

    def apply_model_servers(self) -> None:
        stored = {s.name: s for s in ModelServer.objects.select_for_update().filter(
            name__in=[e.name for e in self.config.model_servers or ()])}
        for entry in self.config.model_servers or ():
            wanted = {"kind": entry.kind, "base_url": entry.base_url,
                      "api_key": self.api_keys.get(entry.name, ""),
                      "max_concurrency": entry.max_concurrency,
                      "first_token_timeout": entry.first_token_timeout}
            self._write(stored.get(entry.name) or ModelServer(name=entry.name), wanted,
                        kind="model server", key=entry.name)

    def apply_models(self) -> None:
        if self.config.models is None:
            return
        servers = {s.name: s for s in ModelServer.objects.all()}
        stored = {(m.server.name if m.server_id else None, m.name): m
                  for m in LanguageModel.objects.select_related("server")
                  .select_for_update(of=("self",))}
        for entry in self.config.models:
            wanted = {"context_window": entry.context_window,
                      "max_output_tokens": entry.max_output_tokens,
                      "input_price": entry.input_price, "output_price": entry.output_price,
                      "cached_input_price": entry.cached_input_price}
            row = stored.get((entry.server, entry.name)) or LanguageModel(
                server=servers[entry.server] if entry.server else None, name=entry.name)
            self._write(row, wanted, kind="model", key=entry.label)

    def apply_mcp_servers(self) -> None:
        entries = self.config.mcp_servers or ()
        if not entries:
            return
        try:
            report = do_import_mcp_servers(definitions=[e.definition for e in entries],
                                           user_is_superuser=True)
        except ConfigError as error:
            raise ConfigError([mcp_problem(p) for p in error.problems]) from None
        stored = {s.name: s for s in McpServer.objects.prefetch_related("allowed_groups")
                  .filter(name__in=[e.definition.name for e in entries])}
        for entry in entries:
            line = report.line(entry.definition.name)
            server = stored[entry.definition.name]
            fields = list(line.fields)
            if entry.access is not None:
                access = entry.access
                fields += _assign(server, {
                    "allow_private_addresses": access.allow_private_addresses,
                    "connect_timeout": access.connect_timeout,
                    "list_timeout": access.list_timeout, "call_timeout": access.call_timeout})
                if len(fields) > len(line.fields):
                    server.save()
                if self._set_groups(server, access.allowed_groups):
                    fields.append("allowed_groups")
            outcome = "created" if line.outcome == "created" else (
                "updated" if fields else "unchanged")
            self.record("MCP server", server.name, outcome,
                        fields if outcome == "updated" else (), line.notes)

    def list_tools(self) -> None:
        """List the tools of the MCP servers an agent names single tools of and that have none
        stored (a server just added). Starts those servers."""
        named = {server for a in self.config.agents or () for server, _ in a.tools}
        listed = set(McpTool.objects.filter(server__name__in=named)
                     .values_list("server__name", flat=True))
        for server in McpServer.objects.filter(name__in=named - listed).order_by("name"):
            report = refresh_server_now(server_id=server.pk)
            if not report.ok:
                self.problems.append(f"MCP server '{server.name}': its tools could not be "
                                     f"listed: {report.error}")

    def check_tools(self) -> None:
        named = {server for a in self.config.agents or () for server, _ in a.tools}
        tools: dict[str, set[str]] = {}
        for server, tool in McpTool.objects.filter(server__name__in=named).values_list(
                "server__name", "name"):
            tools.setdefault(server, set()).add(tool)
        mcp = {e.definition.name for e in self.config.mcp_servers or ()}
        for agent in self.config.agents or ():
            for server, tool in agent.tools:
                where = f"agent '{agent.slug}', tools: '{server}/{tool}'"
                known = tools.get(server)
                if not known and (server in mcp or McpServer.objects.filter(
                        name=server).exists()):
                    self.problems.append(
                        f"{where}: MCP server '{server}' has no tools listed yet (run "
                        "apply_config with --list-tools to list them first, or Test "
                        "connection in the admin; or choose the whole server in tool_servers)")
                elif known and tool not in known:
                    shown = ", ".join(sorted(known)[:20]) + (", ..." if len(known) > 20 else "")
                    self.problems.append(f"{where}: MCP server '{server}' has no tool '{tool}' "
                                         f"(its tools: {shown})")

    def apply_agents(self) -> None:
        entries = self.config.agents
        if entries is None:
            return
        servers = {s.name: s for s in ModelServer.objects.all()}
        mcp = {s.name: s for s in McpServer.objects.all()}
        tools = {(t.server.name, t.name): t for t in McpTool.objects.select_related("server")
                 .filter(server__name__in={s for a in entries for s, _ in a.tools})}
        stored = {a.slug: a for a in Agent.objects.select_for_update(of=("self",)).select_related("server")
                  .filter(slug__in=[a.slug for a in entries])}
        default = next((a.slug for a in entries if a.is_default), None)
        if default is not None:
            # One default at a time (a unique constraint): the file's replaces any other.
            for other in Agent.objects.filter(is_default=True).exclude(slug=default):
                if other.slug not in stored:
                    other.is_default = False
                    other.save()
                    self.record("agent", other.slug, "updated", ["is_default"],
                                [f"the file makes '{default}' the default"])
        # The default last, once no other row holds the flag.
        for entry in sorted(entries, key=lambda a: a.is_default):
            wanted = {"name": entry.name, "description": entry.description,
                      "system_prompt": entry.system_prompt,
                      "server": servers[entry.server] if entry.server else None,
                      "model": entry.model, "fallback_models": list(entry.fallback_models),
                      "temperature": entry.temperature, "is_default": entry.is_default,
                      "enabled": entry.enabled, "tools_mode": entry.tools_mode,
                      "max_tool_rounds": entry.max_tool_rounds}
            agent = stored.get(entry.slug) or Agent(slug=entry.slug)
            self._write(agent, wanted, kind="agent", key=entry.slug,
                        related=lambda a, e=entry: self._agent_relations(a, e, mcp, tools))

    def _agent_relations(self, agent: Agent, entry: AgentEntry, mcp: dict[str, McpServer],
                         tools: dict[tuple[str, str], McpTool]) -> list[str]:
        changed = []
        if self._set_groups(agent, entry.allowed_groups):
            changed.append("allowed_groups")
        wanted_servers = [mcp[name] for name in entry.tool_servers]
        if {s.pk for s in agent.tool_servers.all()} != {s.pk for s in wanted_servers}:
            agent.tool_servers.set(wanted_servers)
            changed.append("tool_servers")
        wanted_tools = [tools[pair] for pair in entry.tools]
        if {t.pk for t in agent.tools.all()} != {t.pk for t in wanted_tools}:
            agent.tools.set(wanted_tools)
            changed.append("tools")
        return changed

    def _set_groups(self, row: Agent | McpServer, names: tuple[str, ...]) -> bool:
        wanted = [self.groups[name] for name in names]
        if {g.pk for g in row.allowed_groups.all()} == {g.pk for g in wanted}:
            return False
        row.allowed_groups.set(wanted)
        return True

    def _write(self, row, wanted: dict[str, Any], *, kind: str, key: str,
               related=None) -> None:
        """Create `row` (unsaved) or update it to `wanted`; save only what differs."""
        created = row.pk is None
        fields = _assign(row, wanted)
        if created or fields:
            self._clean(row, f"{kind} '{key}'")
            if self.problems:
                return
            row.save()
        if related is not None:
            fields += related(row)
        outcome = "created" if created else "updated" if fields else "unchanged"
        self.record(kind, key, outcome, fields if outcome == "updated" else ())

    def _clean(self, row, where: str) -> None:
        # The schema checked the file's values; this catches what only the model knows
        # (lengths), under the file's key names.
        try:
            row.full_clean(validate_unique=False, validate_constraints=False)
        except ValidationError as error:
            for field, messages in error.message_dict.items():
                self.problems.extend(f"{where}, {field}: {m}" for m in messages)

    # Pruning -----------------------------------------------------------------------------

    def prune(self) -> None:
        config = self.config
        if config.agents is not None:
            self._remove("agent", Agent.objects.exclude(slug__in=[a.slug for a in config.agents]),
                         key=lambda a: a.slug)
        if config.models is not None:
            wanted = {(m.server, m.name) for m in config.models}
            doomed = [m for m in LanguageModel.objects.select_related("server")
                      if (m.server.name if m.server_id else None, m.name) not in wanted]
            for model in doomed:
                model.delete()
                self.record("model", str(model), "removed")
        if config.model_servers is not None:
            self._remove("model server", ModelServer.objects.exclude(
                name__in=[s.name for s in config.model_servers]), key=lambda s: s.name)
        if config.mcp_servers is not None:
            doomed = McpServer.objects.exclude(
                name__in=[e.definition.name for e in config.mcp_servers])
            for server in doomed:
                count = server.tools.count()
                server.delete()
                self.record("MCP server", server.name, "removed",
                            notes=[f"with its {count} tools"] if count else ())

    def _remove(self, kind: str, rows, *, key) -> None:
        for row in rows.order_by("pk"):
            name = key(row)
            row.delete()
            self.record(kind, name, "removed")


def _assign(row, wanted: dict[str, Any]) -> list[str]:
    """Set the fields of `row` that differ from `wanted`; their names, in `wanted`'s order."""
    changed = []
    for name, value in wanted.items():
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed.append(name)
    return changed

