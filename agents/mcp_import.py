"""Import MCP servers from the JSON files other MCP clients use.

(Longer than our usual module: each client's spelling and its error message is a few lines, and
keeping every format in one place is what lets one read what an import accepts.)

Formats read (`parse_config`):

- `{"mcpServers": {NAME: {...}}}`: Claude Desktop, Cursor, Claude Code (.mcp.json), Cline,
  Windsurf. A server has `command`, `args`, `env`, `cwd` (stdio) or `url`, `headers` (remote),
  and optionally `type`.
- `{"servers": {NAME: {...}}}`: VS Code (.vscode/mcp.json), whose `type` is usually given.

Spellings of the transport seen in the wild, all read: `type` (Claude Code, VS Code, Cursor),
`transport` and `transportType` (Cline and others); for Streamable HTTP `http`,
`streamable-http` (the MCP registry's server.json), `streamableHttp` (Cline), `streamable_http`.
Without one, a `command` means stdio and a `url` means Streamable HTTP (what Cursor and Claude
Code do: the older HTTP+SSE transport needs `"type": "sse"`).

Values may hold `${VAR}` and `${VAR:-default}` references (agents.env_refs); Cursor's and VS
Code's `${env:VAR}` is read as `${VAR}`. Editor variables (`${workspaceFolder}`, `${userHome}`)
and VS Code's `${input:...}` prompts are refused: we have no editor and cannot prompt.

`do_import_mcp_servers` creates or updates servers by name. The file is the definition of each
server it names: its command, args, env, working directory, URL and headers replace the stored
ones (a key the file leaves out is cleared). What only our admin sets is kept: timeouts,
`allow_private_addresses`, and `enabled` unless the file says `"disabled"`.

Errors and reports name servers, fields and variables, never a value: env and header values are
secrets, and URLs and args often carry tokens too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlparse

from django.db import transaction

from agents import env_refs
from agents.models import McpServer

Transport = Literal["stdio", "http", "sse"]

_TRANSPORTS: dict[str, Transport] = {
    "stdio": "stdio",
    "http": "http",
    "streamablehttp": "http",  # streamable-http, streamableHttp, streamable_http
    "sse": "sse",
}
# Keys read; anything else in a server's object is reported as ignored (agents.config_schema
# refuses it, beside its own keys).
DEFINITION_KEYS = frozenset({"type", "transport", "transportType", "command", "args", "env",
                             "cwd", "url", "headers", "disabled"})
# VS Code's and Cursor's predefined variables: meaningful in an editor, not on our server.
_EDITOR_VARIABLES = frozenset({
    "workspaceFolder", "workspaceFolderBasename", "workspaceRoot", "userHome", "pathSeparator",
    "file", "fileWorkspaceFolder", "relativeFile", "relativeFileDirname", "fileBasename",
    "fileBasenameNoExtension", "fileExtname", "fileDirname", "fileDirnameBasename", "cwd",
    "lineNumber", "selectedText", "execPath", "defaultBuildTask",
})
_EDITOR_FORM = re.compile(r"(?<!\$)\$\{(?P<kind>input|command|config|env):(?P<rest>[^}]*)\}")
_ENV_FORM = re.compile(r"(?<!\$)\$\{env:(?P<name>[A-Za-z_][A-Za-z0-9_]*)\}")
# RFC 9110 token characters.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_ENV_NAME = re.compile(r"[^=\s\x00]+")
_MAX = {"command": 500, "cwd": 500, "url": 500}


class ConfigError(ValueError):
    """A configuration we will not import. `problems` are one line each, naming the server and
    the field; `message` (also `str()`) is all of them on one line. No values in either."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        if len(self.problems) == 1:
            self.message = self.problems[0]
        else:
            self.message = (f"{len(self.problems)} problems in the configuration: "
                            + "; ".join(self.problems))
        super().__init__(self.message)


@dataclass(frozen=True)
class ServerDefinition:
    """One server as a configuration file defines it, checked (`definition_problems`).

    `env` and `headers` are secrets: kept out of repr so that a log line or a traceback
    printing a definition shows none."""

    name: str
    transport: Transport
    command: str = ""
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    cwd: str = ""
    url: str = ""
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    enabled: bool | None = None  # None: the file does not say
    notes: tuple[str, ...] = ()  # what was ignored or assumed, for the report

    def values(self) -> dict[str, Any]:
        """The model fields this definition sets, as stored (env and headers as dicts)."""
        values: dict[str, Any] = {
            "transport": self.transport, "command": self.command, "args": list(self.args),
            "env": dict(self.env), "cwd": self.cwd, "url": self.url,
            "headers": dict(self.headers)}
        if self.enabled is not None:
            values["enabled"] = self.enabled
        return values

    def has_references(self) -> bool:
        return any(env_refs.has_references(v) for v in _strings(self))


def _strings(definition: ServerDefinition) -> list[str]:
    return [definition.command, *definition.args, *definition.env.values(), definition.cwd,
            definition.url, *definition.headers.values()]


# Parsing ----------------------------------------------------------------------------------

def load_json(text: str, *, source: str = "the configuration") -> Any:
    """The JSON document in `text`. VS Code's mcp.json is JSON with comments (JSONC): `//`
    and `/* */` comments and trailing commas are accepted too. Raises ConfigError naming
    `source` and a position, never the content (it may hold tokens)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        first = error
    try:
        # Comments and trailing commas become spaces: positions in errors stay the file's.
        return json.loads(_without_comments(text))
    except json.JSONDecodeError:
        raise ConfigError([f"{source} is not valid JSON ({first.msg} at line {first.lineno}, "
                           f"column {first.colno})"]) from None


def _without_comments(text: str) -> str:
    out = list(text)
    i, n = 0, len(text)
    last_comma = -1  # where a comma outside strings was seen, until something else follows
    while i < n:
        c = text[i]
        if c == '"':
            last_comma = -1
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
        elif text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end == -1 else end
            out[i:end] = " " * (end - i)
            i = end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end == -1 else end + 2
            out[i:end] = ["\n" if ch == "\n" else " " for ch in text[i:end]]
            i = end
        else:
            if c == ",":
                last_comma = i
            elif c in "}]" and last_comma >= 0:
                out[last_comma] = " "
                last_comma = -1
            elif not c.isspace():
                last_comma = -1
            i += 1
    return "".join(out)


def parse_config(data: Any) -> list[ServerDefinition]:
    """The servers a parsed JSON document defines, in file order. Raises ConfigError listing
    every problem found (the document is not one we read; a server or a field is invalid):
    a file is imported whole or not at all."""
    if not isinstance(data, dict):
        raise ConfigError(["the configuration must be a JSON object with an \"mcpServers\" "
                           "(Claude Desktop, Cursor, Claude Code) or \"servers\" (VS Code) "
                           "object"])
    sections = [key for key in ("mcpServers", "servers") if key in data]
    if not sections:
        raise ConfigError(["the configuration has no \"mcpServers\" (Claude Desktop, Cursor, "
                           "Claude Code) or \"servers\" (VS Code) object"])
    problems: list[str] = []
    definitions: list[ServerDefinition] = []
    seen: set[str] = set()
    for section in sections:
        servers = data[section]
        if not isinstance(servers, dict):
            problems.append(f"\"{section}\" must be an object of server names to servers")
            continue
        for name, entry in servers.items():
            if name in seen:
                problems.append(f"server '{name}' is defined twice")
                continue
            seen.add(name)
            definition = _definition(str(name), entry, problems)
            if definition is not None:
                found = definition_problems(definition)
                problems.extend(found)
                if not found:
                    definitions.append(definition)
    if problems:
        raise ConfigError(problems)
    return definitions


def _definition(name: str, entry: Any, problems: list[str]) -> ServerDefinition | None:
    where = f"server '{name}'"
    if not isinstance(entry, dict):
        problems.append(f"{where} must be an object")
        return None
    before = len(problems)
    notes = [f"ignored the key \"{key}\"" for key in entry if key not in DEFINITION_KEYS]

    transport = _transport(entry, where, problems, notes)
    command = _string(entry, "command", where, problems)
    url = _string(entry, "url", where, problems)
    if command and url:
        problems.append(f"{where} has both \"command\" and \"url\": keep one")
    if transport is None and len(problems) == before:
        if command:
            transport = "stdio"
        elif url:
            transport = "http"
            notes.append("no type given: Streamable HTTP assumed (set \"type\": \"sse\" for the "
                         "older HTTP+SSE transport)")
        else:
            problems.append(f"{where} needs a \"command\" (a local program) or a \"url\"")
    args = _string_list(entry, "args", where, problems)
    env = _string_map(entry, "env", where, problems, notes)
    cwd = _string(entry, "cwd", where, problems)
    headers = _string_map(entry, "headers", where, problems, notes)
    enabled = None
    if "disabled" in entry:
        if isinstance(entry["disabled"], bool):
            enabled = not entry["disabled"]
        else:
            problems.append(f"{where}: \"disabled\" must be true or false")

    if transport == "stdio":
        ignored = [key for key in ("url", "headers") if key in entry]
        url, headers = "", {}
    else:
        ignored = [key for key in ("args", "env", "cwd") if key in entry]
        args, env, cwd = [], {}, ""
    notes.extend(f"ignored \"{key}\": a {transport} server does not use it" for key in ignored)
    if len(problems) > before or transport is None:
        return None
    definition = ServerDefinition(
        name=name, transport=transport, command=command, args=tuple(args), env=env, cwd=cwd,
        url=url, headers=headers, enabled=enabled, notes=tuple(notes))
    return _editor_forms(definition, problems)


def _transport(entry: dict, where: str, problems: list[str], notes: list[str]) -> Transport | None:
    given = [(key, entry[key]) for key in ("type", "transport", "transportType") if key in entry]
    if not given:
        return None
    key, value = given[0]
    if not isinstance(value, str):
        problems.append(f"{where}: \"{key}\" must be \"stdio\", \"http\" or \"sse\"")
        return None
    transport = _TRANSPORTS.get(value.lower().replace("-", "").replace("_", ""))
    if transport is None:
        problems.append(f"{where}: \"{key}\" must be \"stdio\", \"http\" (or "
                        f"\"streamable-http\") or \"sse\", not \"{value[:40]}\"")
        return None
    notes.extend(f"ignored \"{other}\": \"{key}\" is read" for other, _ in given[1:])
    return transport


def _string(entry: dict, key: str, where: str, problems: list[str]) -> str:
    value = entry.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        problems.append(f"{where}: \"{key}\" must be a string")
        return ""
    return value


def _string_list(entry: dict, key: str, where: str, problems: list[str]) -> list[str]:
    value = entry.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        problems.append(f"{where}: \"{key}\" must be a list of strings")
        return []
    out = []
    for i, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            problems.append(f"{where}: \"{key}\"[{i}] must be a string")
        else:
            # Numbers ("--port", 8080) are what the program would receive as text anyway.
            out.append(item if isinstance(item, str) else str(item))
    return out


def _string_map(entry: dict, key: str, where: str, problems: list[str],
                notes: list[str]) -> dict[str, str]:
    value = entry.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(f"{where}: \"{key}\" must be an object of names to strings")
        return {}
    out = {}
    for name, item in value.items():
        if item is None:
            # VS Code's way to unset an inherited variable: our children inherit none anyway.
            notes.append(f"ignored {key} {name}: null")
        elif isinstance(item, bool) or not isinstance(item, (str, int, float)):
            problems.append(f"{where}: {key} {name} must be a string")
        else:
            out[name] = item if isinstance(item, str) else str(item)
    return out


def _editor_forms(definition: ServerDefinition, problems: list[str]) -> ServerDefinition | None:
    """`${env:X}` rewritten as `${X}`; None (with problems) if a value uses an editor's
    variables, which nothing here can resolve."""
    where = f"server '{definition.name}'"
    before = len(problems)

    def rewrite(value: str, field_name: str) -> str:
        for match in _EDITOR_FORM.finditer(value):
            kind = match.group("kind")
            if kind == "input":
                problems.append(f"{where}, {field_name}: ${{input:{match.group('rest')[:40]}}} "
                                "asks the user of an editor for a value, and we cannot prompt: "
                                "write the value, or a ${VAR} reference to our environment")
            elif kind != "env":
                problems.append(f"{where}, {field_name}: ${{{kind}:...}} is an editor "
                                "variable (VS Code, Cursor) with no meaning here: write its value")
        value = _ENV_FORM.sub(lambda m: "${" + m.group("name") + "}", value)
        try:
            names = env_refs.references_in(value)
        except env_refs.MalformedReference:
            return value  # reported by definition_problems
        for name in sorted(names & _EDITOR_VARIABLES):
            problems.append(f"{where}, {field_name}: ${{{name}}} is an editor variable (VS "
                            "Code, Cursor) with no meaning here: write its value")
        return value

    rewritten = ServerDefinition(
        name=definition.name, transport=definition.transport,
        command=rewrite(definition.command, "command"),
        args=tuple(rewrite(a, f"args[{i}]") for i, a in enumerate(definition.args)),
        env={k: rewrite(v, f"env {k}") for k, v in definition.env.items()},
        cwd=rewrite(definition.cwd, "cwd"), url=rewrite(definition.url, "url"),
        headers={k: rewrite(v, f"header {k}") for k, v in definition.headers.items()},
        enabled=definition.enabled, notes=definition.notes)
    return rewritten if len(problems) == before else None


def definition_problems(definition: ServerDefinition) -> list[str]:
    """What keeps `definition` from being saved, one line each (empty: nothing). The same
    rules as the admin form's, less the address check (done at connect)."""
    where = f"server '{definition.name}'"
    problems = []
    name = definition.name
    if not name or len(name) > 64 or not all(
            c.isascii() and (c.isalnum() or c in "-_.") for c in name):
        shown = name if len(name) <= 64 else name[:64] + "..."
        return [f"server name '{shown}': use 1 to 64 letters, digits, '-', '_' and '.'"]
    if definition.transport not in ("stdio", "http", "sse"):
        problems.append(f"{where}: the transport must be stdio, http or sse")
    if definition.transport == "stdio" and not definition.command.strip():
        problems.append(f"{where}: a stdio server needs a \"command\"")
    if definition.transport in ("http", "sse"):
        problem = url_problem(definition.url)
        if problem:
            problems.append(f"{where}: \"url\" {problem}")
    for key, limit in _MAX.items():
        if len(getattr(definition, key)) > limit:
            problems.append(f"{where}: \"{key}\" is longer than {limit} characters")
    for env_name in definition.env:
        if not valid_env_name(env_name):
            problems.append(f"{where}: \"{env_name[:40]}\" is not an environment variable name")
    for header in definition.headers:
        if not valid_header_name(header):
            problems.append(f"{where}: \"{header[:40]}\" is not an HTTP header name")
    labelled = [("command", definition.command), ("cwd", definition.cwd),
                ("url", definition.url),
                *((f"args[{i}]", a) for i, a in enumerate(definition.args)),
                *((f"env {k}", v) for k, v in definition.env.items()),
                *((f"header {k}", v) for k, v in definition.headers.items())]
    for label, value in labelled:
        if "\x00" in value:
            problems.append(f"{where}, {label}: holds a NUL character")
        try:
            env_refs.check_syntax(value)
        except env_refs.MalformedReference as exc:
            problems.append(f"{where}, {label}: {exc.message}")
    return problems


def valid_env_name(name: str) -> bool:
    """A name the environment of a program can hold (no '=', blank or NUL; not starting '-',
    which the admin's lines use to remove one)."""
    return bool(_ENV_NAME.fullmatch(name)) and not name.startswith("-")


def valid_header_name(name: str) -> bool:
    return bool(_HEADER_NAME.fullmatch(name))


def url_problem(url: str) -> str:
    """Why `url` is not an http(s) URL with a host ("" if it is). A URL holding references is
    checked when it is resolved, at connect."""
    if env_refs.has_references(url):
        return ""
    if not url:
        return "is required for an http or sse server"
    try:
        parsed = urlparse(url)
        host = parsed.hostname
        parsed.port  # noqa: B018  (raises on a bad port)
    except ValueError:
        return "is not a valid URL"
    if parsed.scheme not in ("http", "https") or not host:
        return "must be an http:// or https:// URL with a host name"
    return ""


# Importing --------------------------------------------------------------------------------

Outcome = Literal["created", "updated", "unchanged", "refused"]


@dataclass(frozen=True, slots=True)
class ImportLine:
    server: str
    outcome: Outcome
    fields: tuple[str, ...] = ()  # updated: which fields changed (names only, never values)
    reason: str = ""  # refused: why
    notes: tuple[str, ...] = ()

    def text(self, *, dry_run: bool = False) -> str:
        verb = {"created": "would be created" if dry_run else "created",
                "updated": "would be updated" if dry_run else "updated",
                "unchanged": "unchanged", "refused": "refused"}[self.outcome]
        line = f"{self.server}: {verb}"
        if self.fields:
            line += f" ({', '.join(self.fields)})"
        if self.reason:
            line += f": {self.reason}"
        if self.notes:
            line += f" [{'; '.join(self.notes)}]"
        return line


@dataclass(frozen=True, slots=True)
class ImportReport:
    lines: tuple[ImportLine, ...]
    dry_run: bool = False

    def count(self, outcome: Outcome) -> int:
        return sum(1 for line in self.lines if line.outcome == outcome)

    def line(self, server: str) -> ImportLine:
        return next(line for line in self.lines if line.server == server)

    def text_lines(self) -> list[str]:
        lines = [line.text(dry_run=self.dry_run) for line in self.lines]
        if not lines:
            lines = ["The configuration defines no servers."]
        counts = ", ".join(f"{self.count(o)} {o}" for o in
                           ("created", "updated", "unchanged", "refused"))
        lines.append(("Dry run, nothing was saved: " if self.dry_run else "") + counts + ".")
        return lines


# The order the report names changed fields in.
_FIELDS = ("transport", "enabled", "command", "args", "env", "cwd", "url", "headers")


def do_import_mcp_servers(*, definitions: list[ServerDefinition], user_is_superuser: bool,
                          dry_run: bool = False) -> ImportReport:
    """Create or update one McpServer per definition, matched by name: never a second row of
    a name, and a definition equal to the stored row saves nothing (no updated_at bump).

    In one transaction, with the rows of these names locked, so two imports at once do not
    both create a name. Permissions (the caller says who asks): only a superuser may create a
    stdio server or change one (or turn one into a remote server), and only a superuser may
    save a value holding a `${VAR}` reference, since it can name any variable of ours. A
    definition that would break either is refused whole, and the others still apply.
    `dry_run`: the same report, nothing written. Raises ConfigError if a definition is invalid
    (parse_config's definitions never are)."""
    problems = [p for d in definitions for p in definition_problems(d)]
    if problems:
        raise ConfigError(problems)
    lines = []
    with transaction.atomic():
        stored = {s.name: s for s in McpServer.objects.select_for_update().filter(
            name__in=[d.name for d in definitions])}
        for definition in definitions:
            lines.append(_import_one(definition, stored.get(definition.name),
                                     user_is_superuser=user_is_superuser, dry_run=dry_run))
    return ImportReport(lines=tuple(lines), dry_run=dry_run)


def _import_one(definition: ServerDefinition, server: McpServer | None, *,
                user_is_superuser: bool, dry_run: bool) -> ImportLine:
    wanted = definition.values()
    notes = definition.notes
    if server is not None:
        current = _stored_values(server)
        changed = tuple(f for f in _FIELDS if f in wanted and wanted[f] != current[f])
        if not changed:
            return ImportLine(server=definition.name, outcome="unchanged", notes=notes)
    refusal = "" if user_is_superuser else _refusal(definition, server)
    if refusal:
        return ImportLine(server=definition.name, outcome="refused", reason=refusal,
                          notes=notes)
    if server is None:
        if not dry_run:
            server = McpServer(name=definition.name)
            _assign(server, wanted)
            server.save()
        return ImportLine(server=definition.name, outcome="created", notes=notes)
    updates = {f: wanted[f] for f in changed}
    if not user_is_superuser and server.allow_private_addresses and (
            "url" in changed or "transport" in changed):
        # A superuser allowed private addresses for the URL they saw; a new URL from someone
        # who may not allow them must pass the address check like any other.
        updates["allow_private_addresses"] = False
        changed = (*changed, "allow_private_addresses")
        notes = (*notes, "private addresses are no longer allowed for it: its URL changed, "
                         "and only a superuser may allow them")
    if not dry_run:
        _assign(server, updates)
        server.save()
    return ImportLine(server=definition.name, outcome="updated", fields=changed, notes=notes)


def _refusal(definition: ServerDefinition, server: McpServer | None) -> str:
    if definition.transport == "stdio":
        return ("only a superuser may add or change a stdio server (it runs a program on this "
                "host)")
    if server is not None and server.transport == "stdio":
        return "only a superuser may change a stdio server"
    if definition.has_references():
        return ("only a superuser may save a ${VAR} reference (it reads a variable of this "
                "server's environment)")
    return ""


def _stored_values(server: McpServer) -> dict[str, Any]:
    return {"transport": server.transport, "enabled": server.enabled,
            "command": server.command, "args": list(server.args or []),
            "env": _readable(server.env), "cwd": server.cwd, "url": server.url,
            "headers": _readable(server.headers)}


def _readable(text: str) -> dict[str, str] | None:
    try:
        return env_refs.stored_mapping(text)
    except ValueError:
        return None  # not a JSON object (written by hand?): differs from any definition's


def _assign(server: McpServer, values: dict[str, Any]) -> None:
    for name, value in values.items():
        if name in ("env", "headers"):
            value = env_refs.mapping_text(value)
        setattr(server, name, value)
