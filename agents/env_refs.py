"""`${VAR}` and `${VAR:-default}` references to this process's environment in MCP server values.

The syntax is Claude Code's (.mcp.json), so files written for it import as they are:

- `${NAME}` is the value of the environment variable NAME; NAME is `[A-Za-z_][A-Za-z0-9_]*`.
- `${NAME:-default}` is NAME's value, or `default` when NAME is unset or empty (the shell's
  `:-`). The default is literal text: it may not hold `}` or another `${` (no nesting).
- `$${` is a literal `${`: the only escape, so that a value which really holds `${` can be
  stored. No other `$` is special: `$NAME`, `$$`, `a$b` are kept as they are (a password such
  as `pa$$word` must not change meaning on import).
- Any other `${` (unclosed, `${env:X}`, `${input:x}`, `${1X}`) is malformed: resolving refuses
  it (MalformedReference) rather than send the literal text to a server as if it were a token.

References are stored as written (the literal `${...}` text) and resolved only when a session
is opened (`resolve_server`), so a secret lives in the environment and never in the database.
Because a reference can name any variable we have (SECRET_KEY, a cloud token), only superusers
may save one (agents.mcp_import, agents.admin_servers use `has_references` to tell).

Errors never hold a value, only variable names, field names and positions. No Django here but
the model type.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agents.mcp.config import McpServerConfig

if TYPE_CHECKING:
    from agents.models import McpServer

# One token at a time: the escape first, then a closed reference, then a `${` left unclosed.
_TOKEN = re.compile(r"\$\$\{|\$\{(?P<body>[^}]*)\}|\$\{")
_BODY = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>.*))?", re.DOTALL)


class EnvReferenceError(ValueError):
    """A value whose references cannot be resolved. `message` (also `str()`) names variables,
    fields and positions, never a value: it is safe to show admins and to log."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnresolvedReference(EnvReferenceError):
    """A `${NAME}` without a default whose variable is not set."""

    def __init__(self, name: str, *, server: str = "", field: str = "") -> None:
        self.name = name
        self.server = server
        self.field = field
        if server:
            message = (f"MCP server '{server}' needs the environment variable {name}, "
                       "which is not set")
        else:
            message = f"the environment variable {name} is not set"
        super().__init__(message)


class MalformedReference(EnvReferenceError):
    """A `${` that does not start `${NAME}` or `${NAME:-default}`."""


@dataclass(frozen=True, slots=True)
class _Reference:
    name: str
    default: str | None  # None: no default given


def _tokens(value: str) -> Iterator[str | _Reference]:
    """The value as literal text and references, in order. Raises MalformedReference."""
    position = 0
    for match in _TOKEN.finditer(value):
        if match.start() > position:
            yield value[position:match.start()]
        position = match.end()
        token = match.group(0)
        if token == "$${":
            yield "${"
            continue
        body = match.group("body")
        if body is None:
            raise MalformedReference(
                f"an unclosed '${{' at character {match.start() + 1} (write $${{ for a "
                "literal ${)")
        parsed = _BODY.fullmatch(body)
        if parsed is None or "${" in (parsed.group("default") or ""):
            raise MalformedReference(
                f"the '${{...}}' at character {match.start() + 1} is not ${{NAME}} or "
                "${NAME:-default} (NAME: letters, digits and _, not first a digit; no nesting; "
                "write $${ for a literal ${)")
        yield _Reference(name=parsed.group("name"), default=parsed.group("default"))
    if position < len(value):
        yield value[position:]


def has_references(value: str) -> bool:
    """Whether `value` holds a `${` that is not the `$${` escape: a reference, or something
    malformed that would be refused at connect. Never raises. The permission checks use this,
    so it errs towards True."""
    return any(match.group(0) != "$${" for match in _TOKEN.finditer(value))


def references_in(value: str) -> set[str]:
    """The names of the variables `value` refers to. Raises MalformedReference."""
    return {token.name for token in _tokens(value) if isinstance(token, _Reference)}


def check_syntax(value: str) -> None:
    """Raise MalformedReference unless every `${` in `value` is a reference or the escape."""
    for _token in _tokens(value):
        pass


def resolve(value: str, *, environ: Mapping[str, str]) -> str:
    """`value` with every reference replaced by its variable's value from `environ` and every
    `$${` by `${`. Raises UnresolvedReference (an unset variable without a default) or
    MalformedReference."""
    parts = []
    for token in _tokens(value):
        if isinstance(token, str):
            parts.append(token)
            continue
        found = environ.get(token.name)
        if token.default is not None:
            parts.append(found if found else token.default)
        elif found is None:
            raise UnresolvedReference(token.name)
        else:
            parts.append(found)
    return "".join(parts)


# McpServer.env and .headers hold a JSON object of names to values as (encrypted) text, ""
# for none. These two are the only readers and writers of that format.

def stored_mapping(text: str, *, where: str = "the field") -> dict[str, str]:
    """The names and values stored in `text`. Raises ValueError (naming `where`, never a value)
    when it is not a JSON object of strings."""
    if not text:
        return {}
    try:
        loaded = json.loads(text)
    except ValueError:
        raise ValueError(f"{where} does not hold valid JSON") from None
    if not isinstance(loaded, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in loaded.items()):
        raise ValueError(f"{where} does not hold a JSON object of strings")
    return loaded


def mapping_text(mapping: Mapping[str, str]) -> str:
    """The text to store for `mapping` ("" when empty), in a stable order."""
    if not mapping:
        return ""
    return json.dumps(dict(sorted(mapping.items())), ensure_ascii=False)


def resolve_server(server: McpServer, *, environ: Mapping[str, str] = os.environ
                   ) -> McpServerConfig:
    """The server's config for a session, with its references resolved from `environ` now.

    Only the values its transport uses are resolved (a stdio server's command, args, env and
    working directory; an HTTP server's URL and headers), so a leftover value of the other kind
    cannot keep it from connecting. Raises UnresolvedReference (with the server's name and the
    field) or MalformedReference, and ValueError if env or headers do not hold a JSON object."""

    def one(value: str, field: str) -> str:
        try:
            return resolve(value, environ=environ)
        except UnresolvedReference as exc:
            raise UnresolvedReference(exc.name, server=server.name, field=field) from None
        except MalformedReference as exc:
            raise MalformedReference(f"MCP server '{server.name}', {field}: {exc.message}"
                                     ) from None

    common = dict(name=server.name, transport=server.transport,
                  connect_timeout=server.connect_timeout, list_timeout=server.list_timeout,
                  call_timeout=server.call_timeout,
                  allow_private_addresses=server.allow_private_addresses)
    if server.transport == "stdio":
        env = stored_mapping(server.env, where=f"MCP server '{server.name}', env")
        return McpServerConfig(
            **common, command=one(server.command, "command"),
            args=tuple(one(str(arg), f"args[{i}]") for i, arg in enumerate(server.args or [])),
            env={name: one(value, f"env {name}") for name, value in env.items()},
            cwd=one(server.cwd, "working directory"))
    headers = stored_mapping(server.headers, where=f"MCP server '{server.name}', headers")
    return McpServerConfig(
        **common, url=one(server.url, "url"),
        headers={name: one(value, f"header {name}") for name, value in headers.items()})
