"""The MCP server admin, through the real admin (agents.admin_servers)."""

import json

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile

from agents.env_refs import mapping_text, stored_mapping
from agents.models import McpServer, McpTool
from tests.factories import make_mcp_server, make_user

pytestmark = pytest.mark.django_db

ADD = "/admin/agents/mcpserver/add/"
LIST = "/admin/agents/mcpserver/"
IMPORT = "/admin/agents/mcpserver/import/"
# A public address written as a literal: the address check needs no DNS for it.
PUBLIC_URL = "https://1.1.1.1/mcp"


def change_url(server) -> str:
    return f"/admin/agents/mcpserver/{server.pk}/change/"


def form(server: McpServer | None = None, **fields) -> dict:
    """The change form's fields as the browser would post them (the stored values, or a new
    server's defaults), with `fields` over them. Booleans: True posts "on", False omits."""
    data = {"name": "srv", "transport": "http", "enabled": True, "command": "", "args": "[]",
            "cwd": "", "url": "", "allow_private_addresses": False, "connect_timeout": 10,
            "list_timeout": 10, "call_timeout": 60, "env_lines": "", "header_lines": ""}
    if server is not None:
        data.update(name=server.name, transport=server.transport, enabled=server.enabled,
                    command=server.command, args=json.dumps(server.args), cwd=server.cwd,
                    url=server.url, allow_private_addresses=server.allow_private_addresses)
    data.update(fields)
    return {k: ("on" if v is True else v) for k, v in data.items() if v is not False}


@pytest.fixture
def superuser(client):
    client.force_login(make_user(is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def staff(client):
    user = make_user(is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(
        codename__in=["add_mcpserver", "change_mcpserver", "view_mcpserver",
                      "delete_mcpserver"]))
    client.force_login(user)
    return client


def messages_of(response) -> str:
    return "\n".join(str(m) for m in response.context["messages"])


def errors_of(response) -> dict:
    return response.context["adminform"].form.errors


# Who may do what


def test_staff_are_not_offered_stdio_and_cannot_add_a_stdio_server(staff):
    page = staff.get(ADD)
    assert page.status_code == 200
    assert 'value="stdio"' not in page.text
    assert 'value="http"' in page.text
    response = staff.post(ADD, form(name="evil", transport="stdio", command="rm"))
    assert response.status_code == 200 and "transport" in errors_of(response)
    assert not McpServer.objects.exists()


def test_staff_see_a_stdio_server_read_only(staff):
    server = make_mcp_server(name="fs", command="npx", args=["-y", "server-fs"],
                             env=mapping_text({"TOKEN": "sk-stdio-secret"}))
    page = staff.get(change_url(server))
    assert page.status_code == 200
    assert "npx -y server-fs" in page.text
    assert 'name="env_lines"' not in page.text and "sk-stdio-secret" not in page.text
    response = staff.post(change_url(server), form(server, command="sh"))
    assert response.status_code == 403
    server.refresh_from_db()
    assert server.command == "npx"


def test_staff_may_add_an_http_server_on_a_public_address(staff):
    response = staff.post(ADD, form(name="remote", url=PUBLIC_URL,
                                    header_lines="Authorization: Bearer tok-1"))
    assert response.status_code == 302, errors_of(response)
    server = McpServer.objects.get(name="remote")
    assert server.transport == "http"
    assert stored_mapping(server.headers) == {"Authorization": "Bearer tok-1"}


def test_staff_cannot_reach_a_loopback_address_or_allow_private_ones(staff):
    response = staff.post(ADD, form(name="local", url="http://127.0.0.1:9000/mcp",
                                    allow_private_addresses=True))
    assert response.status_code == 200
    assert "loopback" in " ".join(errors_of(response)["url"])
    assert not McpServer.objects.exists()


def test_staff_changing_the_url_loses_a_superusers_private_allowance(staff):
    server = make_mcp_server(name="lan", transport="http", command="",
                             url="http://10.0.0.5/mcp", allow_private_addresses=True)
    response = staff.post(change_url(server), form(server, url="http://169.254.169.254/"))
    assert response.status_code == 200
    assert "link-local" in " ".join(errors_of(response)["url"])
    response = staff.post(change_url(server), form(server, url=PUBLIC_URL), follow=True)
    assert "Private addresses are no longer allowed" in response.text
    server.refresh_from_db()
    assert server.url == PUBLIC_URL and not server.allow_private_addresses


def test_staff_cannot_save_references(staff):
    response = staff.post(ADD, form(name="r", url="https://${MCP_HOST}/mcp"))
    assert "superuser" in " ".join(errors_of(response)["url"])
    response = staff.post(ADD, form(name="r", url=PUBLIC_URL,
                                    header_lines="Authorization: Bearer ${SECRET_KEY}"))
    assert "superuser" in " ".join(errors_of(response)["header_lines"])
    assert not McpServer.objects.exists()


def test_a_superuser_adds_a_stdio_server_and_its_page_shows_the_command_line_not_the_env(
        superuser):
    response = superuser.post(ADD, form(
        name="files", transport="stdio", command="npx",
        args='["-y", "@modelcontextprotocol/server-filesystem", "/srv/my files"]',
        env_lines="GITHUB_TOKEN=ghp_supersecret\nDEBUG=${DEBUG:-false}"))
    assert response.status_code == 302, errors_of(response)
    server = McpServer.objects.get(name="files")
    assert stored_mapping(server.env) == {"GITHUB_TOKEN": "ghp_supersecret",
                                          "DEBUG": "${DEBUG:-false}"}
    page = superuser.get(change_url(server))
    assert "npx -y @modelcontextprotocol/server-filesystem &#x27;/srv/my files&#x27;" in page.text
    assert "DEBUG, GITHUB_TOKEN" in page.text
    assert "ghp_supersecret" not in page.text and "${DEBUG:-false}" not in page.text


# Write-only env and headers


def test_env_lines_set_replace_and_remove_single_entries_and_keep_the_rest(superuser):
    server = make_mcp_server(name="p", command="node",
                             env=mapping_text({"A": "1", "B": "2", "KEEP": "k"}))
    response = superuser.post(change_url(server), form(server, env_lines="B=3\n-A\n\nC = 4 "))
    assert response.status_code == 302, errors_of(response)
    server.refresh_from_db()
    assert stored_mapping(server.env) == {"B": "3", "C": "4", "KEEP": "k"}

    superuser.post(change_url(server), form(server, enabled=False))  # no lines: all kept
    server.refresh_from_db()
    assert stored_mapping(server.env) == {"B": "3", "C": "4", "KEEP": "k"} and not server.enabled

    superuser.post(change_url(server), form(server, clear_env=True, env_lines="ONLY=1"))
    server.refresh_from_db()
    assert stored_mapping(server.env) == {"ONLY": "1"}


def test_a_bad_line_names_its_number_and_nothing_entered_is_rendered_back(superuser):
    server = make_mcp_server(name="p", command="node", env=mapping_text({"A": "stored-value"}))
    response = superuser.post(change_url(server), form(
        server, env_lines="TOKEN=sk-typed-secret\nno separator here", call_timeout=0))
    assert response.status_code == 200
    errors = errors_of(response)
    assert "line 2" in " ".join(errors["env_lines"])
    assert "greater than 0" in " ".join(errors["call_timeout"])
    assert "sk-typed-secret" not in response.text and "stored-value" not in response.text
    assert "no separator here" not in response.text
    server.refresh_from_db()
    assert stored_mapping(server.env) == {"A": "stored-value"}


def test_header_names_are_case_insensitive(superuser):
    server = make_mcp_server(name="h", transport="http", command="", allow_private_addresses=True,
                             url="http://127.0.0.1:8001/mcp",
                             headers=mapping_text({"Authorization": "Bearer old", "X-A": "1"}))
    superuser.post(change_url(server), form(server, header_lines="authorization: Bearer new\n-x-a"))
    server.refresh_from_db()
    assert stored_mapping(server.headers) == {"authorization": "Bearer new"}


def test_stored_headers_are_dropped_when_the_url_changes_with_a_warning(superuser):
    server = make_mcp_server(name="h", transport="http", command="", allow_private_addresses=True,
                             url="http://127.0.0.1:8001/mcp",
                             headers=mapping_text({"Authorization": "Bearer sk-old"}))
    response = superuser.post(change_url(server), form(server, url="http://127.0.0.1:8002/mcp"),
                              follow=True)
    assert "The stored headers of h (Authorization) were removed because its URL changed" \
        in response.text
    assert "sk-old" not in response.text
    server.refresh_from_db()
    assert server.url == "http://127.0.0.1:8002/mcp" and server.headers == ""


def test_headers_entered_with_the_new_url_are_the_ones_stored(superuser):
    server = make_mcp_server(name="h", transport="http", command="", allow_private_addresses=True,
                             url="http://127.0.0.1:8001/mcp",
                             headers=mapping_text({"Authorization": "Bearer sk-old", "X-B": "b"}))
    response = superuser.post(change_url(server), form(
        server, url="http://127.0.0.1:8002/mcp", header_lines="Authorization: Bearer sk-new"),
        follow=True)
    assert "(X-B) were removed" in response.text
    server.refresh_from_db()
    assert stored_mapping(server.headers) == {"Authorization": "Bearer sk-new"}


def test_other_changes_keep_the_stored_headers(superuser):
    server = make_mcp_server(name="h", transport="http", command="", allow_private_addresses=True,
                             url="http://127.0.0.1:8001/mcp",
                             headers=mapping_text({"Authorization": "Bearer sk-old"}))
    superuser.post(change_url(server), form(server, call_timeout=5))
    server.refresh_from_db()
    assert server.call_timeout == 5 and stored_mapping(server.headers) == {
        "Authorization": "Bearer sk-old"}


def test_the_stored_env_is_dropped_when_the_command_changes(superuser):
    server = make_mcp_server(name="p", command="node", env=mapping_text({"TOKEN": "sk-env"}))
    response = superuser.post(change_url(server), form(server, command="python"), follow=True)
    assert "environment variables of p (TOKEN) were removed because its command changed" \
        in response.text
    server.refresh_from_db()
    assert server.env == ""


# Validation


def test_a_stdio_server_needs_a_command_and_a_remote_one_an_http_url(superuser):
    response = superuser.post(ADD, form(name="p", transport="stdio"))
    assert "needs a command" in " ".join(errors_of(response)["command"])
    response = superuser.post(ADD, form(name="r", transport="sse", url="ftp://host/x"))
    assert "http:// or https://" in " ".join(errors_of(response)["url"])
    response = superuser.post(ADD, form(name="r", transport="http", url=""))
    assert "url" in errors_of(response)
    response = superuser.post(ADD, form(name="r", url=PUBLIC_URL, connect_timeout=-1))
    assert "connect_timeout" in errors_of(response)
    assert not McpServer.objects.exists()


def test_a_superuser_reaches_a_loopback_address_only_when_allowed(superuser):
    response = superuser.post(ADD, form(name="local", url="http://127.0.0.1:9000/mcp"))
    assert "loopback" in " ".join(errors_of(response)["url"])
    response = superuser.post(ADD, form(name="local", url="http://127.0.0.1:9000/mcp",
                                        allow_private_addresses=True))
    assert response.status_code == 302, errors_of(response)


def test_a_url_with_a_reference_is_checked_at_connect_not_at_save(superuser):
    response = superuser.post(ADD, form(name="r", url="${MCP_URL}"))
    assert response.status_code == 302, errors_of(response)


def test_a_malformed_reference_is_refused(superuser):
    response = superuser.post(ADD, form(name="p", transport="stdio", command="node",
                                        env_lines="TOKEN=${input:token}"))
    assert "TOKEN" in " ".join(errors_of(response)["env_lines"])


# The list and the import


def test_the_list_shows_where_each_server_is_and_its_tools(superuser):
    stdio = make_mcp_server(name="fs", command="npx")
    make_mcp_server(name="remote", transport="http", command="",
                    url="https://user:pw@mcp.example.com/mcp",
                    last_error="connection refused\nTraceback...")
    McpTool.objects.create(server=stdio, name="read", exposed_name="fs__read",
                           definition_hash="x")
    page = superuser.get(LIST)
    assert page.status_code == 200
    assert "mcp.example.com" in page.text and "pw@" not in page.text
    assert "connection refused" in page.text and "Traceback" not in page.text
    assert IMPORT in page.text


CONFIG = {"mcpServers": {
    "github": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-github"],
               "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_importsecret"}},
    "linear": {"url": PUBLIC_URL, "headers": {"Authorization": "Bearer lin_importsecret"}},
}}


def test_the_import_view_creates_servers_and_reports_as_messages(superuser):
    response = superuser.post(IMPORT, {"config": json.dumps(CONFIG)}, follow=True)
    assert response.redirect_chain[-1][0] == LIST
    assert "github: created" in messages_of(response)
    assert "linear: created" in messages_of(response)
    assert "ghp_importsecret" not in response.text and "lin_importsecret" not in response.text
    assert set(McpServer.objects.values_list("name", flat=True)) == {"github", "linear"}

    upload = SimpleUploadedFile("mcp.json", json.dumps(CONFIG).encode())
    again = superuser.post(IMPORT, {"file": upload}, follow=True)
    assert "github: unchanged" in messages_of(again)
    assert "0 created, 0 updated, 2 unchanged" in messages_of(again)


def test_the_import_view_dry_run_saves_nothing(superuser):
    response = superuser.post(IMPORT, {"config": json.dumps(CONFIG), "dry_run": "on"},
                              follow=True)
    assert "github: would be created" in messages_of(response)
    assert not McpServer.objects.exists()


def test_the_import_view_refuses_stdio_servers_to_staff(staff):
    response = staff.post(IMPORT, {"config": json.dumps(CONFIG)}, follow=True)
    assert "github: refused" in messages_of(response)
    assert set(McpServer.objects.values_list("name", flat=True)) == {"linear"}


def test_a_bad_configuration_is_an_error_on_the_import_page_without_its_content(superuser):
    response = superuser.post(IMPORT, {"config": '{"mcpServers": {"x": "sk-pasted-secret"'})
    assert response.status_code == 200
    assert "not valid JSON" in response.text and "sk-pasted-secret" not in response.text
    response = superuser.post(IMPORT, {"config": '{"servers": {"x": {"command": 3}}}'})
    assert "server &#x27;x&#x27;: &quot;command&quot; must be a string" in response.text
    assert not McpServer.objects.exists()


def test_the_import_view_needs_the_add_and_change_permissions(client):
    user = make_user(is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_mcpserver"))
    client.force_login(user)
    assert client.get(IMPORT).status_code == 403


def test_a_server_is_limited_to_groups_on_its_page_and_the_list_shows_the_limit(superuser):
    from django.contrib.auth.models import Group

    finance = Group.objects.create(name="finance")
    server = make_mcp_server(name="remote", transport="http", command="", url=PUBLIC_URL)
    make_mcp_server(name="open", transport="http", command="", url=PUBLIC_URL)
    response = superuser.post(change_url(server), form(server, allowed_groups=[str(finance.pk)]))
    assert response.status_code == 302, errors_of(response)
    assert list(server.allowed_groups.all()) == [finance]
    page = superuser.get(LIST).text
    assert "Limited to" in page and "finance" in page and "everyone" in page
