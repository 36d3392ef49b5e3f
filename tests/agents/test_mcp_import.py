"""Importing MCP servers from other clients' JSON files (agents.mcp_import and
`manage.py import_mcp_servers`)."""

import io
import json

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from agents.env_refs import stored_mapping
from agents.mcp_import import (
    ConfigError,
    do_import_mcp_servers,
    load_json,
    parse_config,
)
from agents.models import McpServer
from tests.factories import make_mcp_server

pytestmark = pytest.mark.django_db

CLAUDE_DESKTOP = {"mcpServers": {
    "filesystem": {"command": "npx",
                   "args": ["-y", "@modelcontextprotocol/server-filesystem", "/srv/files"]},
    "github": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-github"],
               "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_desktopsecret"}},
}}
CURSOR = {"mcpServers": {
    "linear": {"url": "https://mcp.linear.app/mcp",
               "headers": {"Authorization": "Bearer lin_cursorsecret"}},
}}
CLAUDE_CODE = {"mcpServers": {
    "events": {"type": "sse", "url": "https://api.example.com/mcp/sse",
               "headers": {"X-API-Key": "${API_KEY:-default-key}"}},
    "tool": {"type": "stdio", "command": "node", "args": ["./server.js"],
             "env": {"DEBUG": "${DEBUG:-false}"}},
}}
VSCODE = {
    "inputs": [{"type": "promptString", "id": "token", "password": True}],
    "servers": {
        "fetch": {"type": "stdio", "command": "uvx", "args": ["mcp-server-fetch"]},
        "remote": {"type": "http", "url": "https://mcp.example.com/mcp"},
    },
}


def superuser_import(data, **kw):
    return do_import_mcp_servers(definitions=parse_config(data), user_is_superuser=True, **kw)


def staff_import(data, **kw):
    return do_import_mcp_servers(definitions=parse_config(data), user_is_superuser=False, **kw)


def all_text(report) -> str:
    return "\n".join(report.text_lines())


def test_a_claude_desktop_file_creates_stdio_servers_with_their_env_encrypted():
    report = superuser_import(CLAUDE_DESKTOP)
    assert [(line.server, line.outcome) for line in report.lines] == [
        ("filesystem", "created"), ("github", "created")]
    github = McpServer.objects.get(name="github")
    assert github.transport == "stdio" and github.command == "npx"
    assert github.args == ["-y", "@modelcontextprotocol/server-github"]
    assert stored_mapping(github.env) == {"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_desktopsecret"}
    with connection.cursor() as cursor:
        cursor.execute("SELECT env FROM agents_mcpserver WHERE id = %s", [github.pk])
        [(stored,)] = cursor.fetchall()
    assert stored.startswith("fernet:") and "ghp_desktopsecret" not in stored
    assert "ghp_desktopsecret" not in all_text(report)


def test_a_cursor_file_with_a_url_and_headers_is_a_streamable_http_server():
    report = superuser_import(CURSOR)
    linear = McpServer.objects.get(name="linear")
    assert linear.transport == "http" and linear.url == "https://mcp.linear.app/mcp"
    assert stored_mapping(linear.headers) == {"Authorization": "Bearer lin_cursorsecret"}
    assert not linear.allow_private_addresses
    assert "Streamable HTTP assumed" in all_text(report)
    assert "lin_cursorsecret" not in all_text(report)


def test_a_claude_code_file_keeps_sse_and_its_references_as_written():
    superuser_import(CLAUDE_CODE)
    events = McpServer.objects.get(name="events")
    assert events.transport == "sse"
    assert stored_mapping(events.headers) == {"X-API-Key": "${API_KEY:-default-key}"}
    assert stored_mapping(McpServer.objects.get(name="tool").env) == {"DEBUG": "${DEBUG:-false}"}


def test_a_vs_code_file_reads_servers_and_their_type():
    superuser_import(VSCODE)
    assert dict(McpServer.objects.values_list("name", "transport")) == {
        "fetch": "stdio", "remote": "http"}


def test_vs_code_comments_and_trailing_commas_are_read():
    text = """{
      // VS Code writes comments
      "servers": {
        "fetch": {"type": "stdio", "command": "uvx", "args": ["a//b", "c/*d*/",],}, /* x */
      },
    }"""
    [fetch] = parse_config(load_json(text))
    assert fetch.args == ("a//b", "c/*d*/")


@pytest.mark.parametrize("spelling", ["http", "streamable-http", "streamableHttp",
                                      "streamable_http"])
def test_the_spellings_of_streamable_http_in_the_wild_are_read(spelling):
    [server] = parse_config({"mcpServers": {"x": {"type": spelling, "url": "https://h.example/"}}})
    assert server.transport == "http"
    [server] = parse_config({"mcpServers": {"x": {"transportType": spelling,
                                                  "url": "https://h.example/"}}})
    assert server.transport == "http"


def test_env_colon_references_of_cursor_and_vs_code_are_read_as_plain_references():
    [server] = parse_config({"mcpServers": {"x": {
        "url": "https://h.example/", "headers": {"Authorization": "Bearer ${env:TOKEN}"}}}})
    assert dict(server.headers) == {"Authorization": "Bearer ${TOKEN}"}


def test_vs_code_inputs_and_editor_variables_are_refused_by_server_and_field():
    data = {"servers": {
        "a": {"type": "http", "url": "https://h.example/",
              "headers": {"Authorization": "Bearer ${input:token}"}},
        "b": {"type": "stdio", "command": "node", "args": ["${workspaceFolder}/s.js"]},
    }}
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    problems = caught.value.problems
    assert any("server 'a', header Authorization" in p and "cannot prompt" in p
               for p in problems)
    assert any("server 'b', args[0]" in p and "${workspaceFolder}" in p for p in problems)


def test_unknown_keys_are_ignored_with_a_note_in_the_report():
    data = {"mcpServers": {"x": {"command": "node", "autoApprove": ["a"], "timeout": 30}}}
    report = superuser_import(data)
    text = all_text(report)
    assert 'ignored the key "autoApprove"' in text and 'ignored the key "timeout"' in text


@pytest.mark.parametrize(("data", "expected"), [
    ([], "must be a JSON object"),
    ({"other": {}}, 'no "mcpServers"'),
    ({"mcpServers": []}, '"mcpServers" must be an object'),
    ({"mcpServers": {"x": "npx"}}, "server 'x' must be an object"),
    ({"mcpServers": {"x": {}}}, "server 'x' needs a \"command\""),
    ({"mcpServers": {"x": {"command": "a", "url": "https://h/"}}}, "both"),
    ({"mcpServers": {"x": {"command": "a", "args": "-y"}}}, "server 'x': \"args\" must be a list"),
    ({"mcpServers": {"x": {"command": "a", "env": {"K": ["v"]}}}}, "env K must be a string"),
    ({"mcpServers": {"x": {"type": "websocket", "url": "wss://h/"}}}, '"type" must be'),
    ({"mcpServers": {"x": {"type": "http", "url": "ftp://h/"}}}, "http:// or https://"),
    ({"mcpServers": {"bad name": {"command": "a"}}}, "server name 'bad name'"),
    ({"mcpServers": {"x": {"url": "https://h/", "headers": {"Bad Header": "v"}}}},
     "not an HTTP header name"),
    ({"mcpServers": {"x": {"command": "a", "env": {"K": "${unclosed"}}}},
     "server 'x', env K: an unclosed"),
])
def test_a_bad_configuration_names_the_server_and_the_field(data, expected):
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert expected in caught.value.message


def test_errors_never_show_values():
    data = {"mcpServers": {"x": {"url": "https://h/", "headers": {"A": "${sk-secret-value"}}}}
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert "sk-secret-value" not in caught.value.message


def test_an_import_run_twice_changes_nothing_the_second_time():
    superuser_import({**CLAUDE_DESKTOP, **{"mcpServers": {**CLAUDE_DESKTOP["mcpServers"],
                                                          **CURSOR["mcpServers"]}}})
    before = dict(McpServer.objects.values_list("name", "updated_at"))
    report = superuser_import({"mcpServers": {**CLAUDE_DESKTOP["mcpServers"],
                                              **CURSOR["mcpServers"]}})
    assert [line.outcome for line in report.lines] == ["unchanged"] * 3
    assert dict(McpServer.objects.values_list("name", "updated_at")) == before
    assert McpServer.objects.count() == 3
    assert report.text_lines()[-1] == "0 created, 0 updated, 3 unchanged, 0 refused."


def test_an_import_updates_by_name_and_reports_which_fields_changed():
    server = make_mcp_server(name="github", command="old", connect_timeout=3.0, enabled=False)
    report = superuser_import(CLAUDE_DESKTOP)
    line = report.line("github")
    assert line.outcome == "updated" and line.fields == ("command", "args", "env")
    assert McpServer.objects.filter(name="github").count() == 1
    server.refresh_from_db()
    assert server.command == "npx"
    assert server.connect_timeout == 3.0 and not server.enabled  # what only admins set stays
    assert "ghp_desktopsecret" not in all_text(report)


def test_disabled_in_the_file_turns_a_server_off():
    superuser_import({"mcpServers": {"x": {"command": "node", "disabled": True}}})
    assert not McpServer.objects.get(name="x").enabled


def test_a_dry_run_reports_and_saves_nothing():
    report = superuser_import(CLAUDE_DESKTOP, dry_run=True)
    assert [line.outcome for line in report.lines] == ["created", "created"]
    assert "would be created" in all_text(report)
    assert not McpServer.objects.exists()


def test_a_non_superuser_import_of_a_stdio_server_is_refused_and_the_rest_imported():
    data = {"mcpServers": {**CLAUDE_DESKTOP["mcpServers"], **CURSOR["mcpServers"]}}
    report = staff_import(data)
    assert report.line("github").outcome == "refused"
    assert "only a superuser may add or change a stdio server" in report.line("github").reason
    assert report.line("linear").outcome == "created"
    assert set(McpServer.objects.values_list("name", flat=True)) == {"linear"}
    assert "ghp_desktopsecret" not in all_text(report)


def test_a_non_superuser_cannot_turn_a_stdio_server_into_a_remote_one():
    make_mcp_server(name="linear", command="node")
    report = staff_import(CURSOR)
    assert report.line("linear").outcome == "refused"
    assert McpServer.objects.get(name="linear").transport == "stdio"


def test_references_are_refused_for_non_superusers_and_nothing_of_that_server_saved():
    make_mcp_server(name="events", transport="http", command="", url="https://old.example/")
    report = staff_import(CLAUDE_CODE)
    line = report.line("events")
    assert line.outcome == "refused" and "${VAR} reference" in line.reason
    events = McpServer.objects.get(name="events")
    assert events.url == "https://old.example/" and events.headers == ""


def test_a_non_superuser_changing_the_url_loses_the_private_address_allowance():
    make_mcp_server(name="linear", transport="http", command="", url="http://10.0.0.5/mcp",
                    allow_private_addresses=True)
    report = staff_import(CURSOR)
    assert "allow_private_addresses" in report.line("linear").fields
    assert not McpServer.objects.get(name="linear").allow_private_addresses


def test_the_command_imports_a_file_and_prints_the_report_without_secrets(tmp_path):
    path = tmp_path / "claude_desktop_config.json"
    path.write_text(json.dumps({"mcpServers": {**CLAUDE_DESKTOP["mcpServers"],
                                               **CURSOR["mcpServers"]}}))
    out = io.StringIO()
    call_command("import_mcp_servers", str(path), stdout=out)
    assert "github: created" in out.getvalue() and "linear: created" in out.getvalue()
    assert "ghp_desktopsecret" not in out.getvalue()
    assert "lin_cursorsecret" not in out.getvalue()

    again = io.StringIO()
    call_command("import_mcp_servers", str(path), stdout=again)
    assert "0 created, 0 updated, 3 unchanged, 0 refused." in again.getvalue()


def test_the_command_reads_standard_input_and_dry_runs():
    out = io.StringIO()
    call_command("import_mcp_servers", "-", "--dry-run", stdin=io.StringIO(json.dumps(VSCODE)),
                 stdout=out)
    assert "fetch: would be created" in out.getvalue()
    assert "Dry run, nothing was saved" in out.getvalue()
    assert not McpServer.objects.exists()


@pytest.mark.parametrize(("content", "expected"), [
    ('{"mcpServers": {"x": ', "is not valid JSON"),
    ('{"servers": 3}', '"servers" must be an object'),
    ('{"projects": {}}', 'no "mcpServers"'),
])
def test_a_bad_file_is_a_one_line_command_error(tmp_path, content, expected):
    path = tmp_path / "mcp.json"
    path.write_text(content)
    with pytest.raises(CommandError) as caught:
        call_command("import_mcp_servers", str(path))
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_a_bad_file_error_does_not_show_its_content(tmp_path):
    path = tmp_path / "mcp.json"
    path.write_text('{"mcpServers": {"x": {"command": "a", "env": {"K": "sk-inside"}}} oops')
    with pytest.raises(CommandError) as caught:
        call_command("import_mcp_servers", str(path))
    assert "sk-inside" not in str(caught.value)


def test_a_missing_file_is_a_command_error(tmp_path):
    with pytest.raises(CommandError, match="Cannot read"):
        call_command("import_mcp_servers", str(tmp_path / "nope.json"))
