"""Group limits on agents, MCP servers and tools (agents.access): who sees which agent, whose
model gets which tools, and what the check costs when nothing is limited."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from agents.access import AgentNotAvailable, agents_for, spec_for
from agents.definitions import resolve_agent
from agents.models import Agent, McpTool
from agents.tool_catalog import still_offered
from tests.factories import make_mcp_server, make_user

pytestmark = pytest.mark.django_db


def tool(server, name: str) -> McpTool:
    return McpTool.objects.create(server=server, name=name,
                                  exposed_name=f"{server.name}__{name}", definition_hash="h")


def names(spec) -> list[str]:
    return [t.exposed_name for t in spec.tools]


@pytest.fixture
def finance():
    return Group.objects.create(name="finance")


def test_the_picker_lists_a_limited_agent_only_to_members_of_its_groups(finance):
    member, outsider = make_user(), make_user()
    member.groups.add(finance, Group.objects.create(name="also"))
    Agent.objects.create(name="General", slug="general", model="m")
    books = Agent.objects.create(name="Books", slug="books", model="m")
    books.allowed_groups.add(finance, Group.objects.get(name="also"))
    Agent.objects.create(name="Off", slug="off", model="m", enabled=False)
    # Once each, though the member is in both of its groups.
    assert [a.name for a in agents_for(user=member)] == ["Books", "General"]
    assert [a.name for a in agents_for(user=outsider)] == ["General"]


def test_the_limit_applies_to_superusers_outside_the_groups_too(finance):
    admin = make_user(is_staff=True, is_superuser=True)
    books = Agent.objects.create(name="Books", slug="books", model="m")
    books.allowed_groups.add(finance)
    assert list(agents_for(user=admin)) == []
    with pytest.raises(AgentNotAvailable):
        spec_for(resolve_agent(books.pk), user_id=admin.pk)
    admin.groups.add(finance)
    assert list(agents_for(user=admin)) == [books]


def test_a_persons_model_gets_only_the_tools_of_servers_and_tools_open_to_them(finance):
    hr = Group.objects.create(name="hr")
    member, outsider, both = make_user(), make_user(), make_user()
    member.groups.add(finance)
    both.groups.add(finance, hr)
    open_server, ledger = make_mcp_server(name="open"), make_mcp_server(name="ledger")
    ledger.allowed_groups.add(finance)
    tool(open_server, "time")
    salaries = tool(open_server, "salaries")
    salaries.allowed_groups.add(hr)
    tool(ledger, "post")
    secret = tool(ledger, "secret")
    secret.allowed_groups.add(hr)  # on top of the server's limit: finance and hr
    spec = resolve_agent(None)
    assert names(spec) == ["ledger__post", "ledger__secret", "open__salaries", "open__time"]
    assert names(spec_for(spec, user_id=outsider.pk)) == ["open__time"]
    assert names(spec_for(spec, user_id=member.pk)) == ["ledger__post", "open__time"]
    assert names(spec_for(spec, user_id=both.pk)) == names(spec)


def test_nothing_limited_costs_no_query_per_turn(django_assert_num_queries):
    person = make_user()
    tool(make_mcp_server(name="open"), "time")
    spec = resolve_agent(None)
    with django_assert_num_queries(0):
        assert spec_for(spec, user_id=person.pk) is spec


def test_a_limit_costs_one_query_per_turn_and_a_membership_counts_at_once(
        finance, django_assert_num_queries):
    person = make_user()
    server = make_mcp_server(name="ledger")
    server.allowed_groups.add(finance)
    tool(server, "post")
    spec = resolve_agent(None)
    with django_assert_num_queries(1):
        assert names(spec_for(spec, user_id=person.pk)) == []
    person.groups.add(finance)  # no cache of a person's groups: the next turn has the tool
    assert names(spec_for(resolve_agent(None), user_id=person.pk)) == ["ledger__post"]


def test_a_limit_set_in_the_admin_reaches_the_next_turn_without_waiting(finance):
    """A change of the groups clears the cache of resolved agents, like any other edit."""
    person = make_user()
    books = Agent.objects.create(name="Books", slug="books", model="m")
    server = make_mcp_server(name="ledger")
    tool(server, "post")
    assert spec_for(resolve_agent(books.pk), user_id=person.pk).agent_id == books.pk
    server.allowed_groups.add(finance)
    assert names(spec_for(resolve_agent(books.pk), user_id=person.pk)) == []
    books.allowed_groups.add(finance)
    with pytest.raises(AgentNotAvailable):
        spec_for(resolve_agent(books.pk), user_id=person.pk)
    finance.delete()  # its limits go with it
    assert names(spec_for(resolve_agent(books.pk), user_id=person.pk)) == ["ledger__post"]


def test_a_call_checks_the_limits_again(finance):
    """A limit added while an answer runs holds the tool's next call in it."""
    person = make_user()
    server = make_mcp_server(name="ledger")
    post = tool(server, "post")
    assert still_offered(exposed_name="ledger__post", definition_hash="h", user_id=person.pk)
    server.allowed_groups.add(finance)
    assert not still_offered(exposed_name="ledger__post", definition_hash="h",
                             user_id=person.pk)
    person.groups.add(finance)
    assert still_offered(exposed_name="ledger__post", definition_hash="h", user_id=person.pk)
    post.allowed_groups.add(Group.objects.create(name="hr"))
    assert not still_offered(exposed_name="ledger__post", definition_hash="h",
                             user_id=person.pk)
