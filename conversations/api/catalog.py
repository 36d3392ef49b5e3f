"""The model ids of the /v1 API, per person (groups apply, as in the chat page's picker):

- each agent they may use, by its slug: its system prompt, models and MCP tools (run on the
  server); "default" is the environment's agent while no agent row is the default;
- each model behind those agents, as "<server>/<model>" ("default" is the LLM_* server): the
  bare model, with no system prompt and no server tools, for clients that bring their own
  (editors do). Only models of agents the person may use: a group limit on an agent also
  keeps its model from those outside the group.

Synchronous (ORM): call through database_sync_to_async.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from agents.access import AgentNotAvailable, agents_for, spec_for
from agents.definitions import AgentSpec, resolve_agent
from agents.models import Agent
from conversations.api.errors import ApiError

DEFAULT_ID = "default"


@dataclass(frozen=True, slots=True)
class ApiModel:
    id: str
    owned_by: str
    created: int
    spec: AgentSpec


class ModelNotFound(ApiError):
    def __init__(self, model_id: str) -> None:
        super().__init__(404, f"The model {model_id!r} does not exist or you do not have "
                              "access to it: GET /v1/models lists yours.",
                         code="model_not_found", param="model")


def models_for(*, user) -> list[ApiModel]:
    """Agents first (the default one first), then the bare models behind them."""
    agents: list[ApiModel] = []
    rows = list(agents_for(user=user))
    for agent in rows:
        try:
            spec = spec_for(resolve_agent(agent.pk), user_id=user.pk)
        except AgentNotAvailable:  # limited since the list was read
            continue
        agents.append(ApiModel(id=agent.slug, owned_by="agent",
                               created=int(agent.created_at.timestamp()), spec=spec))
    if not any(agent.is_default for agent in rows) and not Agent.objects.filter(
            is_default=True, enabled=True).exists():
        spec = spec_for(resolve_agent(None), user_id=user.pk)
        if spec.agent_id is None and not any(a.id == DEFAULT_ID for a in agents):
            agents.append(ApiModel(id=DEFAULT_ID, owned_by="agent", created=0, spec=spec))
    models: dict[str, ApiModel] = {}
    for agent in agents:
        for (config, model), info in zip(agent.spec.targets, agent.spec.models, strict=True):
            model_id = f"{config.name}/{model}"
            if model_id not in models:
                models[model_id] = ApiModel(
                    id=model_id, owned_by=config.name, created=agent.created,
                    spec=AgentSpec(agent_id=None, name=model_id, system_prompt="",
                                   targets=((config, model),), models=(info,),
                                   max_rounds=settings.TOOL_MAX_ROUNDS))
    return [*agents, *models.values()]


def spec_for_model(*, user, model_id: str) -> AgentSpec:
    """The agent a request for `model_id` runs with, checked for `user` now (call it in the
    transaction that stores the request, as a send does); raises ModelNotFound."""
    if "/" not in model_id:
        # An agent: one row read, not the whole list (the specs themselves are cached).
        agent = agents_for(user=user).filter(slug=model_id).first()
        if agent is None:
            if model_id == DEFAULT_ID:
                spec = resolve_agent(None)
                if spec.agent_id is None:  # no agent row is the default
                    return spec_for(spec, user_id=user.pk)
            raise ModelNotFound(model_id)
        try:
            return spec_for(resolve_agent(agent.pk), user_id=user.pk)
        except AgentNotAvailable:
            raise ModelNotFound(model_id) from None
    for model in models_for(user=user):
        if model.id == model_id and model.spec.agent_id is None and "/" in model.id:
            return model.spec
    raise ModelNotFound(model_id)
