"""The file of `manage.py apply_config` and `export_config`, read and checked into plain values.

A TOML file with up to four sections (each optional; a section left out is left alone, even by
`--prune`):

    [model_servers.NAME]   kind, base_url, api_key_env, max_concurrency, first_token_timeout
    [[models]]             server (left out: the environment's default server), name,
                           context_window, max_output_tokens, input_price, output_price,
                           cached_input_price (per million tokens)
    [agents.SLUG]          name, model, description, system_prompt, server, fallback_models,
                           temperature, is_default, enabled, allowed_groups, tools_mode,
                           tool_servers, tools ("server/tool"), max_tool_rounds
    [mcpServers.NAME]      the `mcpServers` object of Claude Desktop and Cursor, read by
                           agents.mcp_import (command, args, env, cwd; url, headers; type;
                           disabled), and beside it our own keys: allowed_groups,
                           allow_private_addresses, connect_timeout, list_timeout, call_timeout

A key left out of a row takes the model's default: the file is the whole definition of every
row it names, so applying it twice gives the same rows. Unknown keys, wrong types and values out
of range are errors naming the section, the row and the key.

Secrets are named, never held: a model server's key is the variable named by `api_key_env`
(an `api_key` key is refused), and an MCP server's env and header values must hold a `${VAR}`
reference (agents.env_refs), stored as written and resolved at connect.

A JSON file (`{"mcpServers": ...}` or VS Code's `{"servers": ...}`) is read exactly as
`manage.py import_mcp_servers` reads it: MCP servers only, literal values allowed, and what only
our admin sets (groups, timeouts, private addresses) kept.

Nothing here touches the database: names of servers, groups and tools are checked against it
by agents.config_apply. Messages name sections, rows and keys, never a value.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError

from agents import env_refs
from agents.mcp_import import (
    DEFINITION_KEYS,
    ConfigError,
    ServerDefinition,
    load_json,
    parse_config,
)
from agents.models import validate_server_url

SECTIONS = ("model_servers", "models", "agents", "mcpServers")
KINDS = ("openai", "anthropic")
TOOLS_MODES = ("all", "chosen", "none")
MCP_ACCESS_KEYS = ("allowed_groups", "allow_private_addresses", "connect_timeout",
                   "list_timeout", "call_timeout")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SLUG = re.compile(r"[-a-zA-Z0-9_]{1,64}")
# The bounds of the model's fields (PositiveIntegerField, DecimalField(12, 4)).
_MAX_INT = 2_147_483_647
_PRICE_PLACES = 4
_PRICE_DIGITS = 12


@dataclass(frozen=True, slots=True)
class ModelServerEntry:
    name: str
    kind: str
    base_url: str
    api_key_env: str  # "": no key
    max_concurrency: int
    first_token_timeout: float


@dataclass(frozen=True, slots=True)
class ModelEntry:
    server: str | None  # None: the environment's default server
    name: str
    context_window: int | None
    max_output_tokens: int | None
    input_price: Decimal
    output_price: Decimal
    cached_input_price: Decimal

    @property
    def label(self) -> str:
        return f"{self.server}:{self.name}" if self.server else self.name


@dataclass(frozen=True, slots=True)
class AgentEntry:
    slug: str
    name: str
    model: str
    description: str = ""
    system_prompt: str = ""
    server: str | None = None  # None: the environment's default server
    fallback_models: tuple[str, ...] = ()
    temperature: float | None = None
    is_default: bool = False
    enabled: bool = True
    allowed_groups: tuple[str, ...] = ()
    tools_mode: str = "all"
    tool_servers: tuple[str, ...] = ()
    tools: tuple[tuple[str, str], ...] = ()  # (server, tool)
    max_tool_rounds: int | None = None


@dataclass(frozen=True, slots=True)
class McpAccess:
    """Our own keys beside the `mcpServers` shape: what other clients' files do not have."""

    allowed_groups: tuple[str, ...] = ()
    allow_private_addresses: bool = False
    connect_timeout: float = 10.0
    list_timeout: float = 10.0
    call_timeout: float = 60.0


@dataclass(frozen=True, slots=True)
class McpEntry:
    definition: ServerDefinition
    # None: the file does not say (a JSON file of another client): the stored values stay.
    access: McpAccess | None


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """A checked file. A section is None when the file leaves it out (then it is left alone)."""

    model_servers: tuple[ModelServerEntry, ...] | None = None
    models: tuple[ModelEntry, ...] | None = None
    agents: tuple[AgentEntry, ...] | None = None
    mcp_servers: tuple[McpEntry, ...] | None = None


def parse_config_text(text: str, *, source: str) -> ConfigFile:
    """The file in `text`: JSON when `source` ends in .json, else TOML. Raises ConfigError
    listing every problem found."""
    if source.lower().endswith(".json"):
        return parse_json(text, source=source)
    return parse_toml(text, source=source)


def parse_json(text: str, *, source: str = "the configuration") -> ConfigFile:
    definitions = parse_config(load_json(text, source=source))
    return ConfigFile(mcp_servers=tuple(McpEntry(definition=d, access=None)
                                        for d in definitions))


def parse_toml(text: str, *, source: str = "the configuration") -> ConfigFile:
    try:
        # Decimal keeps prices exact (0.1 stays 0.1); other numbers are made floats below.
        data = tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as error:
        # Its message names a position, not the text there.
        raise ConfigError([f"{source} is not valid TOML ({error})"]) from None
    problems: list[str] = []
    for key in data:
        if key not in SECTIONS:
            problems.append(f"unknown section \"{key}\" (the sections are "
                            f"{', '.join(SECTIONS)})")
    config = ConfigFile(
        model_servers=_section(data, "model_servers", _model_server, problems),
        models=_models(data, problems),
        agents=_section(data, "agents", _agent, problems),
        mcp_servers=_mcp_servers(data, problems),
    )
    if config.agents is not None:
        defaults = [a.slug for a in config.agents if a.is_default]
        if len(defaults) > 1:
            problems.append(f"agents {', '.join(repr(s) for s in defaults)} are all "
                            "is_default = true: only one agent can be the default")
    if problems:
        raise ConfigError(problems)
    return config


# Reading one table ---------------------------------------------------------------------

class _Table:
    """One table of the file, read key by key; problems name `where` and the key."""

    def __init__(self, data: Any, where: str, problems: list[str], known: Iterable[str]):
        self.where, self.problems = where, problems
        self.ok = isinstance(data, dict)
        self.data = data if self.ok else {}
        if not self.ok:
            problems.append(f"{where} must be a table")
            return
        known = tuple(known)
        for key in self.data:
            if key not in known:
                problems.append(f"{where}: unknown key \"{key}\" (known: {', '.join(known)})")

    def problem(self, key: str, text: str) -> None:
        self.problems.append(f"{self.where}: \"{key}\" {text}")

    def string(self, key: str, *, required: bool = False, default: str = "") -> str:
        if key not in self.data:
            if required:
                self.problem(key, "is required")
            return default
        value = self.data[key]
        if not isinstance(value, str):
            self.problem(key, "must be a string")
            return default
        if required and not value.strip():
            self.problem(key, "must not be empty")
        if "\x00" in value:
            self.problem(key, "holds a NUL character")
        return value

    def name(self, key: str) -> str | None:
        """A model server's name (its slug), or None when the key is left out."""
        if key not in self.data:
            return None
        value = self.string(key)
        if value and not _SLUG.fullmatch(value):
            self.problem(key, "must be a model server's name (letters, digits, '-', '_')")
        return value or None

    def boolean(self, key: str, *, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            self.problem(key, "must be true or false")
            return default
        return value

    def integer(self, key: str, *, minimum: int, maximum: int = _MAX_INT,
                default: int | None = None) -> int | None:
        if key not in self.data:
            return default
        value = self.data[key]
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(key, f"must be a whole number from {minimum} to {maximum}")
            return default
        if not minimum <= value <= maximum:
            self.problem(key, f"must be from {minimum} to {maximum}")
            return default
        return value

    def number(self, key: str, *, default: float | None, minimum: float = 0.0,
               maximum: float | None = None, above: bool = False) -> float | None:
        if key not in self.data:
            return default
        value = self.data[key]
        if isinstance(value, bool) or not isinstance(value, (int, Decimal)) or (
                isinstance(value, Decimal) and not value.is_finite()):
            self.problem(key, "must be a number")
            return default
        number = float(value)
        low = "above" if above else "at least"
        if number < minimum or (above and number == minimum) or (
                maximum is not None and number > maximum):
            bound = f" and at most {maximum:g}" if maximum is not None else ""
            self.problem(key, f"must be {low} {minimum:g}{bound}")
            return default
        return number

    def price(self, key: str) -> Decimal:
        if key not in self.data:
            return Decimal(0)
        value = self.data[key]
        if isinstance(value, bool) or not isinstance(value, (int, Decimal)) or (
                isinstance(value, Decimal) and not value.is_finite()):
            self.problem(key, "must be a number (per million tokens)")
            return Decimal(0)
        value = Decimal(value)
        exponent = value.as_tuple().exponent
        places = -exponent if isinstance(exponent, int) and exponent < 0 else 0
        if value < 0:
            self.problem(key, "must not be negative")
        elif places > _PRICE_PLACES:
            # Stored with four places: more would be rounded, and differ at every apply.
            self.problem(key, f"may have at most {_PRICE_PLACES} decimal places")
        elif value >= 10 ** (_PRICE_DIGITS - _PRICE_PLACES):
            self.problem(key, f"must be below {10 ** (_PRICE_DIGITS - _PRICE_PLACES)}")
        else:
            return value
        return Decimal(0)

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.data.get(key, [])
        if not isinstance(value, list):
            self.problem(key, "must be a list of strings")
            return ()
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                self.problem(f"{key}[{i}]", "must be a non-empty string")
            elif item in out:
                self.problem(f"{key}[{i}]", "is in the list twice")
            else:
                out.append(item)
        return tuple(out)

    def choice(self, key: str, choices: tuple[str, ...], *, default: str) -> str:
        value = self.data.get(key, default)
        if value not in choices:
            self.problem(key, f"must be one of {', '.join(repr(c) for c in choices)}")
            return default
        return value


def _section(data: dict, section: str, read, problems: list[str]) -> tuple | None:
    if section not in data:
        return None
    tables = data[section]
    if not isinstance(tables, dict):
        problems.append(f"[{section}] must be a table of names to tables")
        return ()
    entries = [read(str(name), value, problems) for name, value in tables.items()]
    return tuple(e for e in entries if e is not None)


# The sections ---------------------------------------------------------------------------

def _model_server(name: str, data: Any, problems: list[str]) -> ModelServerEntry | None:
    where = f"model server '{name}'"
    before = len(problems)
    if isinstance(data, dict) and "api_key" in data:
        problems.append(f"{where}: \"api_key\" is refused: the file names secrets, never holds "
                        "them; name the variable with api_key_env (api_key_env = "
                        f"\"{placeholder_env_name(name, 'API_KEY')}\") and set it when applying")
        data = {k: v for k, v in data.items() if k != "api_key"}
    table = _Table(data, where, problems, ("kind", "base_url", "api_key_env", "max_concurrency",
                                           "first_token_timeout"))
    if not table.ok:
        return None
    if not _SLUG.fullmatch(name):
        problems.append(f"{where}: a model server's name is 1 to 64 letters, digits, '-' and '_'")
    kind = table.choice("kind", KINDS, default="openai")
    base_url = table.string("base_url", required=True)
    if base_url:
        try:
            validate_server_url(base_url)
        except ValidationError:
            table.problem("base_url", "must be an http:// or https:// URL with a host name")
    api_key_env = table.string("api_key_env")
    if api_key_env and not ENV_NAME.fullmatch(api_key_env):
        table.problem("api_key_env", "must name an environment variable (letters, digits and "
                      "_, not first a digit), not hold the key")
    entry = ModelServerEntry(
        name=name, kind=kind, base_url=base_url, api_key_env=api_key_env,
        max_concurrency=table.integer("max_concurrency", minimum=1, default=32),
        first_token_timeout=table.number("first_token_timeout", default=120.0, above=True))
    return entry if len(problems) == before else None


def _models(data: dict, problems: list[str]) -> tuple[ModelEntry, ...] | None:
    if "models" not in data:
        return None
    rows = data["models"]
    if not isinstance(rows, list):
        problems.append("\"models\" must be an array of tables ([[models]])")
        return ()
    entries, seen = [], set()
    for i, row in enumerate(rows):
        where = f"models[{i}]"
        if isinstance(row, dict) and isinstance(row.get("name"), str):
            where += f" ({row['name']})"
        before = len(problems)
        table = _Table(row, where, problems, (
            "server", "name", "context_window", "max_output_tokens", "input_price",
            "output_price", "cached_input_price"))
        if not table.ok:
            continue
        entry = ModelEntry(
            server=table.name("server"), name=table.string("name", required=True),
            context_window=table.integer("context_window", minimum=256),
            max_output_tokens=table.integer("max_output_tokens", minimum=1),
            input_price=table.price("input_price"), output_price=table.price("output_price"),
            cached_input_price=table.price("cached_input_price"))
        if (entry.server, entry.name) in seen:
            problems.append(f"{where}: the model '{entry.label}' is listed twice")
        seen.add((entry.server, entry.name))
        if len(problems) == before:
            entries.append(entry)
    return tuple(entries)


_AGENT_KEYS = ("name", "model", "description", "system_prompt", "server", "fallback_models",
               "temperature", "is_default", "enabled", "allowed_groups", "tools_mode",
               "tool_servers", "tools", "max_tool_rounds")


def _agent(slug: str, data: Any, problems: list[str]) -> AgentEntry | None:
    where = f"agent '{slug}'"
    before = len(problems)
    table = _Table(data, where, problems, _AGENT_KEYS)
    if not table.ok:
        return None
    if not _SLUG.fullmatch(slug):
        problems.append(f"{where}: an agent's slug is 1 to 64 letters, digits, '-' and '_'")
    tools_mode = table.choice("tools_mode", TOOLS_MODES, default="all")
    tool_servers = table.strings("tool_servers")
    tools = []
    for i, name in enumerate(table.strings("tools")):
        server, _, tool = name.partition("/")
        if not server or not tool:
            table.problem(f"tools[{i}]", "must name a tool as \"server/tool\"")
        else:
            tools.append((server, tool))
    if (tool_servers or tools) and tools_mode != "chosen":
        problems.append(f"{where}: tool_servers and tools are read only with tools_mode = "
                        "\"chosen\"")
    entry = AgentEntry(
        slug=slug, name=table.string("name", required=True),
        model=table.string("model", required=True),
        description=table.string("description"), system_prompt=table.string("system_prompt"),
        server=table.name("server"), fallback_models=table.strings("fallback_models"),
        temperature=table.number("temperature", default=None, maximum=2.0),
        is_default=table.boolean("is_default", default=False),
        enabled=table.boolean("enabled", default=True),
        allowed_groups=table.strings("allowed_groups"), tools_mode=tools_mode,
        tool_servers=tool_servers, tools=tuple(tools),
        max_tool_rounds=table.integer("max_tool_rounds", minimum=1, maximum=32767))
    if entry.is_default and entry.allowed_groups:
        # As the admin's form: the default answers every conversation without an agent.
        problems.append(f"{where}: the default agent is everyone's: it cannot have "
                        "allowed_groups")
    return entry if len(problems) == before else None


def _mcp_servers(data: dict, problems: list[str]) -> tuple[McpEntry, ...] | None:
    if "mcpServers" not in data:
        return None
    servers = data["mcpServers"]
    if not isinstance(servers, dict):
        problems.append("[mcpServers] must be a table of server names to tables")
        return ()
    shapes, accesses = {}, {}
    known = (*sorted(DEFINITION_KEYS), *MCP_ACCESS_KEYS)
    for name, entry in servers.items():
        table = _Table(entry, f"MCP server '{name}'", problems, known)
        if not table.ok:
            continue
        shapes[name] = {k: v for k, v in entry.items() if k in DEFINITION_KEYS}
        accesses[name] = McpAccess(
            allowed_groups=table.strings("allowed_groups"),
            allow_private_addresses=table.boolean("allow_private_addresses", default=False),
            connect_timeout=table.number("connect_timeout", default=10.0, above=True),
            list_timeout=table.number("list_timeout", default=10.0, above=True),
            call_timeout=table.number("call_timeout", default=60.0, above=True))
    try:
        definitions = parse_config({"mcpServers": shapes}) if shapes else []
    except ConfigError as error:
        problems.extend(mcp_problem(p) for p in error.problems)
        return ()
    entries = []
    for definition in definitions:
        before = len(problems)
        for kind, mapping in (("env", definition.env), ("header", definition.headers)):
            for key, value in mapping.items():
                if not env_refs.references_in(value):
                    problems.append(
                        f"MCP server '{definition.name}', {kind} {key}: write the value as a "
                        "${VAR} reference to the environment (the file names secrets, never "
                        "holds them; ${VAR:-default} for a value that is no secret)")
        if len(problems) == before:
            # Declarative: without "disabled" the server is enabled, whatever it was.
            entries.append(McpEntry(
                definition=dataclasses.replace(
                    definition, enabled=True if definition.enabled is None
                    else definition.enabled),
                access=accesses[definition.name]))
    return tuple(entries)


def mcp_problem(problem: str) -> str:
    """agents.mcp_import's problem, naming an MCP server as such beside the model servers."""
    return f"MCP {problem}" if problem.startswith("server ") else problem


def placeholder_env_name(*parts: str) -> str:
    """An environment variable's name made of `parts`: VLLM_API_KEY for ("vllm", "API_KEY")."""
    name = "_".join(re.sub(r"[^A-Za-z0-9]+", "_", p).strip("_") for p in parts).upper()
    name = re.sub(r"_+", "_", name).strip("_") or "SECRET"
    return f"_{name}" if name[0].isdigit() else name
