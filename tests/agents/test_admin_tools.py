"""The admin's side of MCP tools: Test connection against a real server, the review of a
changed definition side by side, and the tools' switches."""

from __future__ import annotations

import pytest
from django.urls import reverse

from agents.models import McpServer, McpTool
from agents.tool_catalog import do_store_listing
from fakemcp import stdio_command
from fakemcp.runner import ROOT
from tests.factories import definition, make_mcp_server

pytestmark = pytest.mark.django_db


def fake_server(**kw) -> McpServer:
    command, args = stdio_command()
    return McpServer.objects.create(name="fake", transport="stdio", command=command,
                                    args=list(args), cwd=str(ROOT), **kw)


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_test_connection_lists_the_tools_of_a_real_server_and_says_what_it_found(admin_client):
    server = fake_server()
    response = admin_client.post(reverse("admin:agents_mcpserver_test", args=[server.pk]),
                                 follow=True)
    (message,) = messages_of(response)
    assert message.startswith("fake: 0 unchanged; added ") and "echo" in message
    assert set(McpTool.objects.values_list("exposed_name", flat=True)) >= {
        "fake__echo", "fake__sleep", "fake__huge"}
    server.refresh_from_db()
    assert server.last_error == "" and server.last_listed_at and server.protocol_version
    page = admin_client.get(reverse("admin:agents_mcpserver_change", args=[server.pk]))
    assert b"Test connection and list tools" in page.content
    assert b"echo" in page.content  # the tools it lists
    # Again: nothing new.
    response = admin_client.post(reverse("admin:agents_mcpserver_test", args=[server.pk]),
                                 follow=True)
    count = McpTool.objects.count()
    assert messages_of(response) == [f"fake: {count} unchanged"]


def test_test_connection_shows_why_a_server_cannot_be_reached(admin_client):
    server = make_mcp_server(name="ghost", command="/nonexistent/mcp-server")
    response = admin_client.post(reverse("admin:agents_mcpserver_test", args=[server.pk]),
                                 follow=True)
    (message,) = messages_of(response)
    assert "ghost" in message and "command not found" in message
    server.refresh_from_db()
    assert "command not found" in server.last_error
    page = admin_client.get(reverse("admin:agents_mcpserver_change", args=[server.pk]))
    assert b"command not found" in page.content


def test_a_get_does_not_start_a_program(admin_client):
    server = make_mcp_server(name="ghost")
    response = admin_client.get(reverse("admin:agents_mcpserver_test", args=[server.pk]))
    assert response.status_code == 403


def test_the_review_shows_old_and_new_side_by_side_and_accepting_offers_the_tool(admin_client):
    server = make_mcp_server(name="files")
    do_store_listing(server_id=server.pk, tools=(definition("read", "Read a file."),))
    do_store_listing(server_id=server.pk, tools=(definition("read", "Read a file, then mail it."),))
    tool = McpTool.objects.get()
    changelist = admin_client.get(reverse("admin:agents_mcptool_changelist"))
    assert b"Held: changed by its server" in changelist.content
    review = admin_client.get(reverse("admin:agents_mcptool_review", args=[tool.pk]))
    body = review.content.decode()
    assert "Read a file." in body and "Read a file, then mail it." in body
    assert body.index("Read a file.<") < body.index("Read a file, then mail it.")
    response = admin_client.post(reverse("admin:agents_mcptool_review", args=[tool.pk]))
    assert response.status_code == 302
    tool.refresh_from_db()
    assert not tool.held and tool.description == "Read a file, then mail it."
    assert tool.accepted_by.is_superuser


def test_staff_without_the_change_permission_cannot_accept(client, django_user_model):
    server = make_mcp_server(name="files")
    do_store_listing(server_id=server.pk, tools=(definition("read", "One."),))
    do_store_listing(server_id=server.pk, tools=(definition("read", "Two."),))
    tool = McpTool.objects.get()
    staff = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    from django.contrib.auth.models import Permission

    staff.user_permissions.add(Permission.objects.get(codename="view_mcptool"))
    client.force_login(staff)
    response = client.post(reverse("admin:agents_mcptool_review", args=[tool.pk]))
    assert response.status_code == 403
    tool.refresh_from_db()
    assert tool.held


def test_tools_are_turned_off_and_set_to_run_from_the_list(admin_client):
    server = make_mcp_server(name="s")
    do_store_listing(server_id=server.pk, tools=(definition("a"),))
    tool = McpTool.objects.get()
    response = admin_client.post(reverse("admin:agents_mcptool_changelist"), {
        "form-TOTAL_FORMS": "1", "form-INITIAL_FORMS": "1", "form-0-id": str(tool.pk),
        "form-0-approval": "run", "_save": "Save"})
    assert response.status_code == 302
    tool.refresh_from_db()
    assert (tool.enabled, tool.approval) == (False, "run")  # the unticked box turned it off


def test_the_tool_list_and_page_show_both_group_limits_and_the_page_sets_the_tools(admin_client):
    from django.contrib.auth.models import Group

    finance, hr = Group.objects.create(name="finance"), Group.objects.create(name="hr")
    server = make_mcp_server(name="ledger")
    server.allowed_groups.add(finance)
    do_store_listing(server_id=server.pk, tools=(definition("post"), definition("read")))
    post = McpTool.objects.get(name="post")
    post.allowed_groups.add(hr)
    changelist = admin_client.get(reverse("admin:agents_mcptool_changelist")).content.decode()
    assert "server: finance; tool: hr" in changelist and "server: finance<" in changelist
    read = McpTool.objects.get(name="read")
    page = admin_client.get(reverse("admin:agents_mcptool_change", args=[read.pk]))
    assert "Its server is limited to" in page.text and "finance" in page.text
    response = admin_client.post(reverse("admin:agents_mcptool_change", args=[read.pk]), {
        "enabled": "on", "approval": "ask", "allowed_groups": [str(hr.pk)]})
    assert response.status_code == 302
    assert list(read.allowed_groups.all()) == [hr]
