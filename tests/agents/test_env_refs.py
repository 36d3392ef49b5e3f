"""${VAR} references in MCP server values (agents.env_refs)."""

import pytest

from agents.env_refs import (
    MalformedReference,
    UnresolvedReference,
    has_references,
    mapping_text,
    references_in,
    resolve,
    resolve_server,
    stored_mapping,
)
from agents.models import McpServer
from tests.factories import make_mcp_server


def test_a_reference_is_replaced_by_its_variable():
    assert resolve("Bearer ${TOKEN}", environ={"TOKEN": "abc"}) == "Bearer abc"


def test_a_default_is_used_when_the_variable_is_unset_or_empty():
    assert resolve("${MODE:-prod}", environ={}) == "prod"
    assert resolve("${MODE:-prod}", environ={"MODE": ""}) == "prod"
    assert resolve("${MODE:-prod}", environ={"MODE": "dev"}) == "dev"
    assert resolve("${MODE:-}", environ={}) == ""


def test_an_unset_variable_without_default_is_refused_by_name():
    with pytest.raises(UnresolvedReference) as caught:
        resolve("x ${GITHUB_TOKEN} y", environ={})
    assert caught.value.name == "GITHUB_TOKEN"
    assert "GITHUB_TOKEN" in caught.value.message


def test_a_set_but_empty_variable_without_default_is_empty():
    assert resolve("[${EMPTY}]", environ={"EMPTY": ""}) == "[]"


def test_only_the_braced_form_is_a_reference_and_double_dollar_brace_escapes_it():
    environ = {"HOME": "/root", "X": "1"}
    assert resolve("$HOME pa$$word $$ a$b", environ=environ) == "$HOME pa$$word $$ a$b"
    assert resolve("$${X} is ${X}", environ=environ) == "${X} is 1"
    assert not has_references("$${X}")
    assert has_references("$${X} ${Y}")


@pytest.mark.parametrize("value", ["${", "abc ${X", "${env:X}", "${input:token}", "${1X}",
                                   "${}", "${A:-${B}}", "${A-b}"])
def test_a_malformed_reference_is_refused_not_sent_as_text(value):
    with pytest.raises(MalformedReference) as caught:
        resolve(value, environ={"X": "1", "A": "a", "B": "b"})
    assert "character" in caught.value.message
    assert has_references(value)  # the permission check treats it as one


def test_references_in_names_every_variable():
    assert references_in("${A}/${B:-x}/${A}/$${C}") == {"A", "B"}
    assert references_in("plain") == set()
    assert not has_references("plain $ text")


def test_stored_mappings_round_trip_and_empty_is_none():
    assert stored_mapping("") == {}
    assert mapping_text({}) == ""
    assert stored_mapping(mapping_text({"B": "2", "A": "${X}"})) == {"A": "${X}", "B": "2"}
    with pytest.raises(ValueError, match="env does not hold a JSON object") as caught:
        stored_mapping('["sk-secret"]', where="env")
    assert "sk-secret" not in str(caught.value)


@pytest.mark.django_db
def test_a_stdio_server_resolves_its_command_args_env_and_cwd():
    server = make_mcp_server(
        name="github", command="${NODE:-node}", args=["${APP_DIR}/server.js", "--flag"],
        env=mapping_text({"GITHUB_TOKEN": "${GITHUB_TOKEN}", "DEBUG": "${DEBUG:-false}"}),
        cwd="${APP_DIR}", url="${NOT_USED_BY_STDIO}", call_timeout=5.0)
    server.refresh_from_db()  # through the encrypted field, as a session would read it
    config = resolve_server(server, environ={"APP_DIR": "/srv/app", "GITHUB_TOKEN": "ghp_1"})
    assert config.name == "github" and config.transport == "stdio"
    assert config.command == "node"
    assert config.args == ("/srv/app/server.js", "--flag")
    assert dict(config.env) == {"GITHUB_TOKEN": "ghp_1", "DEBUG": "false"}
    assert config.cwd == "/srv/app"
    assert config.url == "" and config.call_timeout == 5.0


@pytest.mark.django_db
def test_an_http_server_resolves_its_url_and_headers():
    server = make_mcp_server(
        name="remote", transport=McpServer.Transport.HTTP, command="",
        url="https://${MCP_HOST:-mcp.example.com}/mcp",
        headers=mapping_text({"Authorization": "Bearer ${API_TOKEN}"}),
        allow_private_addresses=True)
    server.refresh_from_db()
    config = resolve_server(server, environ={"API_TOKEN": "tok"})
    assert config.url == "https://mcp.example.com/mcp"
    assert dict(config.headers) == {"Authorization": "Bearer tok"}
    assert config.allow_private_addresses and config.env == {}


@pytest.mark.django_db
def test_an_unset_variable_names_the_server_and_the_variable():
    server = make_mcp_server(name="x", env=mapping_text({"GITHUB_TOKEN": "${GITHUB_TOKEN}"}))
    with pytest.raises(UnresolvedReference) as caught:
        resolve_server(server, environ={})
    assert str(caught.value) == ("MCP server 'x' needs the environment variable GITHUB_TOKEN, "
                                 "which is not set")
    assert caught.value.field == "env GITHUB_TOKEN"


@pytest.mark.django_db
def test_references_are_stored_as_written():
    server = make_mcp_server(env=mapping_text({"TOKEN": "${TOKEN}"}))
    server.refresh_from_db()
    assert stored_mapping(server.env) == {"TOKEN": "${TOKEN}"}
