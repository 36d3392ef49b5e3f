"""The admin of MCP servers, and its "Import a configuration" page.

(Longer than our usual module: the write-only secret fields, the superuser-only rules and their
form validation belong together, and split apart they would have to be read together anyway.)

Who may do what (agents.mcp_import applies the same rules to imports):
- A stdio server runs a program on this host: only superusers may add one, change one, or
  turn a server into one. Other staff see stdio rows read-only and are not offered "stdio".
- `${VAR}` references read our environment (any variable: SECRET_KEY too): only superusers
  may save one.
- Allowing private addresses opens our network to the URL: only superusers may turn it on,
  and it is turned off when anyone else changes the URL.

Secrets: env and headers are write-only. The page shows the names set, never a value (not
even back in a form that failed validation), and edits them by lines: `NAME=value` sets or
replaces one, `-NAME` removes one, names not mentioned keep their values. A stored header set
is dropped when the URL changes, and a stored env when the command changes, unless entered
again in the same save: otherwise the next connection would carry them to whatever the new URL
or program is (agents.admin.kept_key is the same rule for model servers' keys).

"Test connection" (a button on the server's page, and an action on the list) lists the tools
now and stores them (agents.tool_refresh), reporting what was added, what is held for review
and the error if it failed; the page also shows the session's state in this process.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlparse

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from agents import env_refs
from agents.admin_tools import group_names
from agents.mcp.addresses import AddressRefused, check_url
from agents.mcp.pool import session_states
from agents.mcp_import import (
    ConfigError,
    do_import_mcp_servers,
    load_json,
    parse_config,
    url_problem,
    valid_env_name,
    valid_header_name,
)
from agents.models import McpServer
from agents.tool_refresh import refresh_server_now

STDIO = McpServer.Transport.STDIO
REFERENCE_REFUSED = ("Only a superuser may save a ${VAR} reference: it reads a variable of "
                     "this server's environment.")
IMPORT_MAX_BYTES = 1_000_000


# Write-only entries (env, headers) as plain functions ------------------------------------

Kind = Literal["env", "headers"]


@dataclass(frozen=True, slots=True)
class EntryEdit:
    name: str
    value: str | None  # None: remove the entry


class LinesError(ValueError):
    """Lines that do not parse. `problems` name line numbers, never a line's content."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def parse_entry_lines(text: str, *, kind: Kind) -> list[EntryEdit]:
    """The edits in an admin's lines, in order. env: `NAME=value` (split at the first '=');
    headers: `Name: value` (split at the first ':'); either: `-NAME` removes. Blank lines are
    skipped; names and values are stripped of surrounding blanks (a pasted token's stray space
    is never what a server expects). Raises LinesError."""
    separator, example = ("=", "NAME=value") if kind == "env" else (":", "Name: value")
    valid = valid_env_name if kind == "env" else valid_header_name
    noun = "environment variable" if kind == "env" else "header"
    edits, problems = [], []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("-") and separator not in line:
            name, value = line[1:].strip(), None
        elif separator in line:
            name, value = (part.strip() for part in line.split(separator, 1))
        else:
            problems.append(f"line {number}: write {example} to set a {noun}, or -NAME to "
                            "remove one")
            continue
        if not valid(name):
            problems.append(f"line {number}: that is not a valid {noun} name")
        elif value is not None and "\x00" in value:
            problems.append(f"line {number}: the value holds a NUL character")
        else:
            edits.append(EntryEdit(name=name, value=value))
    if problems:
        raise LinesError(problems)
    return edits


def apply_entry_edits(stored: Mapping[str, str], edits: list[EntryEdit], *,
                      kind: Kind) -> dict[str, str]:
    """`stored` with `edits` applied in order. Header names are case-insensitive (HTTP):
    setting `authorization` replaces a stored `Authorization`."""
    result = dict(stored)
    for edit in edits:
        if kind == "headers":
            for existing in [n for n in result if n.lower() == edit.name.lower()]:
                del result[existing]
        else:
            result.pop(edit.name, None)
        if edit.value is not None:
            result[edit.name] = edit.value
    return result


def command_line(server: McpServer) -> str:
    """The program and its arguments as a shell would read them (nothing is run by a shell)."""
    return shlex.join([server.command, *map(str, server.args or [])]) if server.command else ""


# The form ---------------------------------------------------------------------------------

class WriteOnlyTextarea(forms.Textarea):
    """Renders empty whatever it holds: a submitted secret is not sent back to the browser,
    not even in the form redisplayed after a validation error."""

    def format_value(self, value):
        return None


_LINES_HELP = ("One per line: {example} sets or replaces that one, -NAME removes it; names "
               "not mentioned keep their stored values. Stored encrypted; values are never "
               "shown again. ${{VAR}} and ${{VAR:-default}} read this server's environment at "
               "connect (superusers only; $${{ is a literal ${{).")


class McpServerForm(forms.ModelForm):
    env_lines = forms.CharField(
        label="Set or remove environment variables", required=False,
        widget=WriteOnlyTextarea(attrs={"rows": 3, "autocomplete": "off", "spellcheck": "false"}),
        help_text=_LINES_HELP.format(example="NAME=value"))
    clear_env = forms.BooleanField(
        required=False, label="Remove every stored environment variable (the lines above are "
                              "applied after)")
    header_lines = forms.CharField(
        label="Set or remove headers", required=False,
        widget=WriteOnlyTextarea(attrs={"rows": 3, "autocomplete": "off", "spellcheck": "false"}),
        help_text=_LINES_HELP.format(example="Name: value"))
    clear_headers = forms.BooleanField(
        required=False, label="Remove every stored header (the lines above are applied after)")

    class Meta:
        model = McpServer
        fields = ["name", "transport", "enabled", "allowed_groups", "command", "args", "cwd",
                  "url", "allow_private_addresses", "connect_timeout", "list_timeout",
                  "call_timeout"]
        widgets = {"args": forms.Textarea(attrs={"rows": 2})}
        labels = {"args": "Arguments", "url": "URL"}
        help_texts = {"args": 'A JSON list of strings, for example ["-y", "@scope/server"].'}

    # Set by McpServerAdmin.get_form from the request.
    user_is_superuser = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # What the save did beyond the fields, for the admin's messages.
        self.dropped_env: list[str] = []
        self.dropped_headers: list[str] = []
        self.private_turned_off = False
        if not self.user_is_superuser:
            if "transport" in self.fields:
                field = self.fields["transport"]
                field.choices = [c for c in field.choices if c[0] != STDIO]
                if not self.instance.pk:
                    self.initial.setdefault("transport", McpServer.Transport.HTTP)
            if "allow_private_addresses" in self.fields:
                self.fields["allow_private_addresses"].disabled = True
                self.fields["allow_private_addresses"].help_text += " Only a superuser may " \
                                                                    "change this."

    def _value(self, name: str):
        """The submitted value of a field, or the stored one when the form does not have it."""
        if name in self.fields:
            return self.cleaned_data.get(name)
        return getattr(self.instance, name)

    def clean_args(self):
        args = self.cleaned_data.get("args")
        if args in (None, ""):
            return []
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise forms.ValidationError('Enter a JSON list of strings, for example ["-y", '
                                        '"@scope/server"].')
        return args

    def _clean_timeout(self, name: str):
        value = self.cleaned_data.get(name)
        if value is not None and value <= 0:
            raise forms.ValidationError("Enter a number of seconds greater than 0.")
        return value

    def clean_connect_timeout(self):
        return self._clean_timeout("connect_timeout")

    def clean_list_timeout(self):
        return self._clean_timeout("list_timeout")

    def clean_call_timeout(self):
        return self._clean_timeout("call_timeout")

    def clean(self):
        data = super().clean()
        stored = self.instance if self.instance.pk else None
        transport = self._value("transport")
        if transport == STDIO and not self.user_is_superuser:
            raise forms.ValidationError("Only a superuser may add or change a stdio server.")

        for name in ("command", "cwd", "url"):
            if name in self.fields and data.get(name):
                self._check_syntax(name, data[name])
        for i, arg in enumerate(data.get("args") or []):
            self._check_syntax("args", arg, label=f"argument {i + 1}: ")

        command = self._value("command") or ""
        url = self._value("url") or ""
        if transport == STDIO and not command.strip():
            self.add_error("command", "A stdio server needs a command.")
        if transport in ("http", "sse") and "url" not in self.errors:
            problem = url_problem(url)
            if problem:
                self.add_error("url", f"The URL {problem}.")

        url_changed = stored is not None and url != stored.url
        if not self.user_is_superuser and env_refs.has_references(url) and (
                stored is None or url_changed):
            self.add_error("url", REFERENCE_REFUSED)

        self._clean_entries("env", stored, target_changed=stored is not None
                            and command != stored.command)
        self._clean_entries("headers", stored, target_changed=url_changed)

        allow_private = bool(self._value("allow_private_addresses"))
        if (not self.user_is_superuser and allow_private and stored is not None
                and (url_changed or transport != stored.transport)):
            # Allowed by a superuser for the URL they saw, not for one chosen by someone else.
            allow_private = False
            self.private_turned_off = True
        self.instance.allow_private_addresses = allow_private
        if "allow_private_addresses" in self.fields:
            data["allow_private_addresses"] = allow_private

        # The address check: early and clear for the admin (the connect check is the
        # guarantee). Only when something it depends on changed, so an unrelated save (turning
        # a server off) does not fail on a DNS hiccup. A URL holding references is checked
        # when it is resolved, at connect.
        if (transport in ("http", "sse") and url and "url" not in self.errors
                and not env_refs.has_references(url)
                and (stored is None or url_changed or transport != stored.transport
                     or allow_private != stored.allow_private_addresses)):
            try:
                check_url(url, allow_private=allow_private)
            except AddressRefused as exc:
                self.add_error("url", exc.message)
        return data

    def _check_syntax(self, field: str, value: str, *, label: str = "") -> None:
        try:
            env_refs.check_syntax(value)
        except env_refs.MalformedReference as exc:
            self.add_error(field, f"{label}{exc.message}.")

    def _clean_entries(self, kind: Kind, stored: McpServer | None, *,
                       target_changed: bool) -> None:
        """The env or headers to store, set on the instance: the stored ones (none if the
        command or URL changed), cleared if asked, then the lines applied."""
        lines_field = "env_lines" if kind == "env" else "header_lines"
        clear_field = "clear_env" if kind == "env" else "clear_headers"
        text = getattr(stored, kind) if stored is not None else ""
        try:
            current = env_refs.stored_mapping(text, where=kind)
        except ValueError:
            current = {}  # unreadable: replaced by what this save enters
        if lines_field not in self.fields:  # not editable by this user
            return
        try:
            edits = parse_entry_lines(self.cleaned_data.get(lines_field) or "", kind=kind)
        except LinesError as exc:
            for problem in exc.problems:
                self.add_error(lines_field, problem)
            return
        for edit in edits:
            if edit.value is None:
                continue
            try:
                env_refs.check_syntax(edit.value)
            except env_refs.MalformedReference as exc:
                self.add_error(lines_field, f"{edit.name}: {exc.message}.")
            if not self.user_is_superuser and env_refs.has_references(edit.value):
                self.add_error(lines_field, f"{edit.name}: {REFERENCE_REFUSED}")
        base = {} if target_changed or self.cleaned_data.get(clear_field) else current
        result = apply_entry_edits(base, edits, kind=kind)
        if target_changed and not self.cleaned_data.get(clear_field):
            dropped = [n for n in current if n not in result]
            if kind == "env":
                self.dropped_env = dropped
            else:
                self.dropped_headers = dropped
        setattr(self.instance, kind, env_refs.mapping_text(result))


# The admin --------------------------------------------------------------------------------

class ImportForm(forms.Form):
    config = forms.CharField(
        label="Configuration (JSON)", required=False,
        widget=WriteOnlyTextarea(attrs={"rows": 16, "cols": 100, "spellcheck": "false"}),
        help_text='{"mcpServers": {...}} from Claude Desktop, Cursor or Claude Code, or '
                  '{"servers": {...}} from VS Code. Not shown again after an error: it may hold '
                  "tokens.")
    file = forms.FileField(label="Or a file", required=False)
    dry_run = forms.BooleanField(label="Dry run: report what would change, save nothing",
                                 required=False)

    def clean(self):
        data = super().clean()
        upload = data.get("file")
        if upload is not None:
            if upload.size > IMPORT_MAX_BYTES:
                raise forms.ValidationError("The file is larger than 1 MB.")
            try:
                data["text"] = upload.read().decode("utf-8")
            except UnicodeDecodeError:
                raise forms.ValidationError("The file is not UTF-8 text.") from None
        elif data.get("config", "").strip():
            data["text"] = data["config"]
        else:
            raise forms.ValidationError("Paste a configuration or choose a file.")
        return data


@admin.register(McpServer)
class McpServerAdmin(admin.ModelAdmin):
    form = McpServerForm
    list_display = ["name", "transport", "enabled", "where", "who", "tool_count", "short_error"]
    list_filter = ["transport", "enabled", "allowed_groups"]
    filter_horizontal = ["allowed_groups"]
    search_fields = ["name", "command", "url"]
    readonly_fields = ["full_command_line", "env_names", "header_names", "last_error",
                       "last_listed_at", "protocol_version", "session", "listed_tools"]
    change_list_template = "admin/agents/mcpserver/change_list.html"
    change_form_template = "admin/agents/mcpserver/change_form.html"
    actions = ["test_connection"]

    def get_queryset(self, request):
        return (super().get_queryset(request).annotate(tool_total=Count("tools"))
                .prefetch_related("allowed_groups"))

    # Permissions: stdio rows are superusers' only.

    def has_change_permission(self, request, obj=None):
        if obj is not None and obj.transport == STDIO and not request.user.is_superuser:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.transport == STDIO and not request.user.is_superuser:
            return False
        return super().has_delete_permission(request, obj)

    def get_actions(self, request, action_location=admin.ActionLocation.CHANGE_LIST):
        actions = super().get_actions(request, action_location=action_location)
        if not request.user.is_superuser:
            # The bulk delete checks no row, so it would delete stdio servers too: others
            # delete a server from its own page.
            actions.pop("delete_selected", None)
        return actions

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        return type(form.__name__, (form,), {"user_is_superuser": request.user.is_superuser})

    def get_fieldsets(self, request, obj=None):
        editable = obj is None or self.has_change_permission(request, obj)
        program = ["command", "args", "cwd"]
        remote = ["url", "allow_private_addresses"]
        if obj is not None:
            program += ["full_command_line", "env_names"]
            remote += ["header_names"]
        if editable:
            program += ["env_lines", "clear_env"]
            remote += ["header_lines", "clear_headers"]
        fieldsets = [(None, {"fields": ["name", "transport", "enabled"]}),
                     ("Whose models get its tools", {
                         "fields": ["allowed_groups"],
                         "description": "In the chat the limit applies to everyone, staff and "
                                        "superusers too. A single tool can be limited further "
                                        "on its own page."})]
        # Other staff cannot make a server a stdio one: its fields would only confuse them.
        if request.user.is_superuser or (obj is not None and obj.transport == STDIO):
            fieldsets.append(("Program (stdio)", {"fields": program}))
        fieldsets += [
            ("Remote server (http, sse)", {"fields": remote}),
            ("Timeouts", {"fields": ["connect_timeout", "list_timeout", "call_timeout"]}),
        ]
        if obj is not None:
            fieldsets.append(("Connection and tools", {"fields": [
                "session", "last_error", "last_listed_at", "protocol_version", "listed_tools"]}))
        return fieldsets

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if form.dropped_env:
            messages.warning(request, f"The stored environment variables of {obj.name} "
                             f"({', '.join(form.dropped_env)}) were removed because its command "
                             "changed: enter them again if the program needs them.")
        if form.dropped_headers:
            messages.warning(request, f"The stored headers of {obj.name} "
                             f"({', '.join(form.dropped_headers)}) were removed because its URL "
                             "changed: enter them again if the server needs them.")
        if form.private_turned_off:
            messages.warning(request, f"Private addresses are no longer allowed for {obj.name}: "
                             "its URL changed, and only a superuser may allow them.")

    # Columns and read-only fields.

    @admin.display(description="Where")
    def where(self, obj: McpServer) -> str:
        if obj.transport == STDIO:
            return obj.command
        try:
            return urlparse(obj.url).hostname or obj.url[:40]
        except ValueError:
            return obj.url[:40]

    @admin.display(description="Limited to")
    def who(self, obj: McpServer) -> str:
        return group_names(obj.allowed_groups.all())

    @admin.display(description="Tools", ordering="tool_total")
    def tool_count(self, obj: McpServer) -> int:
        total = getattr(obj, "tool_total", None)  # annotated by get_queryset
        return obj.tools.count() if total is None else total

    @admin.display(description="Last error")
    def short_error(self, obj: McpServer) -> str:
        error = obj.last_error.strip().splitlines()[0] if obj.last_error.strip() else ""
        return error if len(error) <= 80 else error[:79] + "…"

    @admin.display(description="Command line")
    def full_command_line(self, obj: McpServer) -> str:
        return command_line(obj) or "-"

    @admin.display(description="Environment variables set")
    def env_names(self, obj: McpServer) -> str:
        return _names(obj.env)

    @admin.display(description="Headers set")
    def header_names(self, obj: McpServer) -> str:
        return _names(obj.headers)

    @admin.display(description="Session (in this process)")
    def session(self, obj: McpServer) -> str:
        states = session_states(obj.name)
        if not states:
            return "No session open in this process yet."
        parts = []
        for state in states:
            text = state.status.replace("_", " ")
            if state.protocol_version:
                text += f", protocol {state.protocol_version}"
            if state.pid:
                text += f", pid {state.pid}"
            if state.status == "backing_off":
                text += f", next try in {state.retry_in():.0f} s"
            if state.error:
                text += f": {state.error}"
            parts.append(text)
        return "; ".join(parts)

    @admin.display(description="Tools listed")
    def listed_tools(self, obj: McpServer) -> str:
        tools = list(obj.tools.order_by("name"))
        if not tools:
            return "None yet: use Test connection."
        url = reverse("admin:agents_mcptool_changelist") + f"?server__id__exact={obj.pk}"
        held = sum(1 for t in tools if t.pending_hash)
        return format_html(
            '{} (<a href="{}">{} tools{}</a>)', ", ".join(t.name for t in tools), url,
            len(tools), f", {held} held for review" if held else "")

    # Test connection: list the tools now, store them, and say what changed.

    @admin.action(description="Test connection and list tools")
    def test_connection(self, request: HttpRequest, queryset) -> None:
        for server in queryset:
            self._report(request, refresh_server_now(server_id=server.pk))

    def test_view(self, request: HttpRequest, server_id: int):
        server = get_object_or_404(McpServer, pk=server_id)
        if request.method != "POST" or not self.has_view_permission(request, server):
            raise PermissionDenied
        self._report(request, refresh_server_now(server_id=server.pk))
        return HttpResponseRedirect(reverse("admin:agents_mcpserver_change", args=[server.pk]))

    def _report(self, request: HttpRequest, report) -> None:
        level = messages.SUCCESS if report.ok and not report.held else (
            messages.WARNING if report.ok else messages.ERROR)
        messages.add_message(request, level, report.summary())

    # Import.

    def get_urls(self):
        return [path("import/", self.admin_site.admin_view(self.import_view),
                     name="agents_mcpserver_import"),
                path("<int:server_id>/test/", self.admin_site.admin_view(self.test_view),
                     name="agents_mcpserver_test"), *super().get_urls()]

    def import_view(self, request: HttpRequest):
        if not (self.has_add_permission(request) and self.has_change_permission(request)):
            raise PermissionDenied
        form = ImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            dry_run = form.cleaned_data["dry_run"]
            try:
                definitions = parse_config(load_json(form.cleaned_data["text"]))
                report = do_import_mcp_servers(
                    definitions=definitions, user_is_superuser=request.user.is_superuser,
                    dry_run=dry_run)
            except ConfigError as exc:
                for problem in exc.problems:
                    form.add_error(None, problem)
            else:
                levels = {"created": messages.SUCCESS, "updated": messages.SUCCESS,
                          "unchanged": messages.INFO, "refused": messages.WARNING}
                for line in report.lines:
                    messages.add_message(request, levels[line.outcome],
                                         line.text(dry_run=dry_run))
                messages.info(request, report.text_lines()[-1])
                target = "admin:agents_mcpserver_import" if dry_run else \
                    "admin:agents_mcpserver_changelist"
                return HttpResponseRedirect(reverse(target))
        context = {
            **self.admin_site.each_context(request), "opts": self.model._meta, "form": form,
            "title": "Import MCP servers from a configuration",
            "is_superuser": request.user.is_superuser,
        }
        return TemplateResponse(request, "admin/agents/mcpserver/import.html", context)


def _names(text: str) -> str:
    try:
        names = sorted(env_refs.stored_mapping(text))
    except ValueError:
        return "(unreadable: enter the values again)"
    return ", ".join(names) if names else "(none)"
