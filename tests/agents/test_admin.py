"""The agent admin (agents.admin): who may use an agent is set on its page and listed."""

import pytest
from django.contrib.auth.models import Group

from agents.models import Agent

pytestmark = pytest.mark.django_db

ADD = "/admin/agents/agent/add/"


def agent_form(**fields) -> dict:
    data = {"name": "Books", "slug": "books", "model": "m", "tools_mode": "all",
            "fallback_models": "[]", "enabled": "on", "tool_policies-TOTAL_FORMS": "0",
            "tool_policies-INITIAL_FORMS": "0"}
    data.update(fields)
    return data


def test_an_agent_is_limited_to_groups_and_the_list_says_so(admin_client):
    finance = Group.objects.create(name="finance")
    assert "Who may use it" in admin_client.get(ADD).text
    response = admin_client.post(ADD, agent_form(allowed_groups=[str(finance.pk)]))
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert list(Agent.objects.get(slug="books").allowed_groups.all()) == [finance]
    Agent.objects.create(name="General", slug="general", model="m")
    page = admin_client.get("/admin/agents/agent/").text
    assert "Limited to" in page and "finance" in page and "everyone" in page


def test_the_default_agent_cannot_be_limited(admin_client):
    """It answers every conversation without an agent: limited, it would leave everyone else
    with none."""
    finance = Group.objects.create(name="finance")
    response = admin_client.post(ADD, agent_form(is_default="on",
                                                 allowed_groups=[str(finance.pk)]))
    assert response.status_code == 200
    assert "cannot be limited to groups" in response.text
    assert not Agent.objects.exists()
