"""Who may use which agent and which tools: the group limits.

An agent, an MCP server or a single MCP tool with no groups is for everyone; with groups, only
for members of at least one of them. A tool must pass its server's limit and its own. A person
outside an agent's groups does not see it in the picker and cannot start or continue a turn
with it; the model of a person outside a tool's (or its server's) groups is never offered the
tool, and a call to it by name is refused like a call to a tool that does not exist.

The limits apply in the chat to everybody, staff and superusers included: being an admin is no
membership (an admin who wants to try a limited agent joins one of its groups). The admin site
shows every row to whoever may edit it there.

Limits are read with the agent (agents.definitions caches them with it, AGENT_CACHE_SECONDS at
most in other processes); a person's groups are read at each turn's start, and only when the
agent or one of its tools is limited, so unlimited setups pay no query for them. A tool call
checks the limits again (agents.tool_catalog.still_offered): a limit added mid-turn holds the
tool's next call.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from django.contrib.auth import get_user_model
from django.db.models import Exists, OuterRef, Q, QuerySet

from agents.models import Agent

if TYPE_CHECKING:
    from agents.definitions import AgentSpec


class AgentNotAvailable(Exception):
    """The agent a turn would run with is limited to groups the person is not in."""


def open_to(model, *, user_id: int, outer: str = "pk") -> Q:
    """A filter for rows of `model` (Agent, McpServer or McpTool: each has allowed_groups) that
    the user may use: no groups, or one of theirs. `outer` names the row's id in the filtered
    query. Subqueries rather than joins: no repeated rows for a person in two of the groups."""
    through = model.allowed_groups.through
    column = f"{model._meta.model_name}_id"
    return ~Q(Exists(through.objects.filter(**{column: OuterRef(outer)}))) | Q(Exists(
        through.objects.filter(**{column: OuterRef(outer), "group__user": user_id})))


def agents_for(*, user) -> QuerySet[Agent]:
    """The agents `user` may pick: enabled and open to them, the default first."""
    return (Agent.objects.filter(open_to(Agent, user_id=user.pk), enabled=True)
            .order_by("-is_default", "name"))


def group_ids(*, user_id: int) -> frozenset[int]:
    """The person's groups, now. One query."""
    through = get_user_model().groups.through
    return frozenset(through.objects.filter(user_id=user_id).values_list("group_id", flat=True))


def allows(limit: frozenset[int], groups: frozenset[int]) -> bool:
    return not limit or not limit.isdisjoint(groups)


def limited(spec: AgentSpec) -> bool:
    return bool(spec.allowed_groups) or any(
        t.server_groups or t.tool_groups for t in spec.tools)


def spec_for(spec: AgentSpec, *, user_id: int) -> AgentSpec:
    """`spec` as the person's turn runs it: without the tools outside their groups. Raises
    AgentNotAvailable when the agent itself is outside them. No query unless something in the
    spec is limited."""
    if not limited(spec):
        return spec
    groups = group_ids(user_id=user_id)
    if not allows(spec.allowed_groups, groups):
        raise AgentNotAvailable(spec.name)
    tools = tuple(t for t in spec.tools
                  if allows(t.server_groups, groups) and allows(t.tool_groups, groups))
    return spec if len(tools) == len(spec.tools) else replace(spec, tools=tools)
