"""Which system prompt and which models answer a conversation.

An agent is a row of agents.Agent, or, until an admin adds one, the default built from the
LLM_* settings. Resolution happens once per turn, at its start, and is cached per process (see
resolve_agent)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q

from agents.events import RequestOptions
from agents.loop import Target
from agents.model_info import ModelInfo, model_label
from agents.models import Agent, LanguageModel, ModelServer
from agents.tool_catalog import OfferedTool, offered_tools
from agents.providers import get_provider
from agents.providers.base import ProviderConfig, Timeouts


@dataclass(frozen=True, slots=True)
class AgentSpec:
    agent_id: int | None
    name: str
    system_prompt: str
    # Main model first, then fallbacks: (provider config, model name).
    targets: tuple[tuple[ProviderConfig, str], ...]
    # The MCP tools its turns may call, and how many model rounds an answer may take.
    tools: tuple[OfferedTool, ...] = ()
    max_rounds: int = 10
    # The agent's group limit (empty: everyone). Resolved specs are everyone's: a person's turn
    # runs agents.access.spec_for(spec), which applies this and the tools' limits.
    allowed_groups: frozenset[int] = frozenset()
    # What is known of each target's model, in the order of `targets`.
    models: tuple[ModelInfo, ...] = ()
    temperature: float | None = None

    def model_info(self, label: str) -> ModelInfo:
        """The model that answered (a message's `model`), or the main one when the label is not
        one of the agent's (no model answered yet)."""
        for info in self.models:
            if info.label == label:
                return info
        return self.models[0] if self.models else default_model_info(label)

    def options(self, given: RequestOptions | None) -> RequestOptions:
        """The request options of a turn: the caller's (the /v1 API's client), then the
        agent's temperature, with the output bounded by the main model's maximum."""
        given = given or RequestOptions()
        most = self.model_info("").max_output_tokens
        wanted = given.max_tokens
        return replace(
            given,
            temperature=self.temperature if given.temperature is None else given.temperature,
            max_tokens=min(wanted, most) if wanted and most else wanted or most,
        )


def default_model_info(label: str) -> ModelInfo:
    return ModelInfo(label=label, context_window=settings.MODEL_CONTEXT_WINDOW)


def model_infos(targets: tuple[tuple[ProviderConfig, str], ...]) -> tuple[ModelInfo, ...]:
    """One query for every target's model row; a model without one gets the defaults."""
    wanted = Q(pk__in=[])
    for config, model in targets:
        wanted |= (Q(server__isnull=True, name=model) if config.name == "default"
                   else Q(server__name=config.name, name=model))
    rows = {model_label(row.server.name if row.server_id else "default", row.name): row
            for row in LanguageModel.objects.select_related("server").filter(wanted)}
    infos = []
    for config, model in targets:
        label = model_label(config.name, model)
        row = rows.get(label)
        if row is None:
            infos.append(default_model_info(label))
            continue
        infos.append(ModelInfo(
            label=label,
            context_window=row.context_window or settings.MODEL_CONTEXT_WINDOW,
            max_output_tokens=row.max_output_tokens,
            input_price=row.input_price, output_price=row.output_price,
            cached_input_price=row.cached_input_price))
    return tuple(infos)


def live_targets(spec: AgentSpec) -> list[Target]:
    """The agent's models (main, then fallbacks) on this event loop's pooled providers: the one
    place turns and titles get their providers. Call from async code."""
    return [Target(provider=get_provider(config), model=model) for config, model in spec.targets]


def default_server_config() -> ProviderConfig:
    return ProviderConfig(
        name="default",
        kind=settings.LLM_KIND,
        base_url=settings.LLM_BASE_URL,
        api_key=settings.LLM_API_KEY,
        timeouts=Timeouts(
            connect=settings.LLM_CONNECT_TIMEOUT,
            first_token=settings.LLM_FIRST_TOKEN_TIMEOUT,
            gap=settings.LLM_GAP_TIMEOUT,
            total=settings.LLM_TOTAL_TIMEOUT,
        ),
        max_concurrency=settings.LLM_MAX_CONCURRENCY,
        max_retries=settings.LLM_MAX_RETRIES,
        # One for every server: registered ones inherit it through server_config.
        transport=settings.LLM_HTTP_TRANSPORT,
    )


def server_config(server: ModelServer | None) -> ProviderConfig:
    """A registered model server's config; what it does not set comes from the default's."""
    default = default_server_config()
    if server is None:
        return default
    return replace(
        default,
        name=server.name,
        kind=server.kind,
        base_url=server.base_url,
        api_key=server.api_key,
        timeouts=replace(default.timeouts, first_token=server.first_token_timeout),
        max_concurrency=server.max_concurrency,
    )


def _fallback_targets(agent: Agent) -> list[tuple[ProviderConfig, str]]:
    """Fallbacks are "model" (same server) or "server-name:model" (another registered server)."""
    names = {name.split(":", 1)[0] for name in agent.fallback_models if ":" in name}
    servers = {s.name: s for s in ModelServer.objects.filter(name__in=names)}
    targets = []
    for entry in agent.fallback_models:
        server_name, sep, model = entry.partition(":")
        if sep and server_name in servers:
            targets.append((server_config(servers[server_name]), model))
        else:
            targets.append((server_config(agent.server), entry))
    return targets


# Every turn resolves its agent, and the rows behind it change only when an admin edits them, so
# each process keeps the resolved specs for a few seconds. A change made through this process's
# ORM (the admin, a shell) clears them at once, through the signals connected in
# agents.apps; a change made in another Daphne process, or by SQL, cannot reach this one that
# way, and is seen here at most AGENT_CACHE_SECONDS later. A bounded delay was chosen over a
# version stamp read each turn: the stamp would be a query per turn again (the saving is the
# query, its ORM work and decrypting the server's key), and an edited prompt or model taking
# effect a few seconds late in other processes is something an admin does not notice.
AGENT_CACHE_SECONDS = 5.0
# Read through a name of our own so that tests can move the clock.
_clock = time.monotonic
_cache_lock = threading.Lock()
# agent id (None: the default) -> (expires at, spec).
_specs: dict[int | None, tuple[float, AgentSpec]] = {}
# Raised by every invalidation: a spec read from the database before one is not stored after it.
_generation = 0


def clear_agent_cache(**_: Any) -> None:
    """Forget every resolved spec. Also a signal receiver (hence **_)."""
    global _generation
    with _cache_lock:
        _generation += 1
        _specs.clear()


def agent_rows_changed(*, using: str = "default", **_: Any) -> None:
    """post_save / post_delete / m2m_changed receiver for the rows an AgentSpec is built from
    (agents, model servers, MCP servers, tools and tool policies)."""
    # Now, so that this connection's next read inside the same transaction sees the change, and
    # again at commit: another thread may have read the old rows in between and stored them.
    clear_agent_cache()
    transaction.on_commit(clear_agent_cache, using=using)


def settings_changed(*, setting: str, **_: Any) -> None:
    """setting_changed receiver: the environment's default agent is built from settings."""
    if setting.startswith(("LLM_", "TOOL_")) or setting in (
            "SYSTEM_PROMPT", "MODEL_CONTEXT_WINDOW", "MAX_OUTPUT_TOKENS"):
        clear_agent_cache()


def resolve_agent(agent_id: int | None) -> AgentSpec:
    """The agent to use for a conversation: its own, else the admin's default, else the
    environment's default. Synchronous (ORM): call through database_sync_to_async. May be up
    to AGENT_CACHE_SECONDS old when the rows were changed by another process."""
    now = _clock()
    cached = _specs.get(agent_id)
    if cached is not None and cached[0] > now:
        return cached[1]
    generation = _generation
    spec = _load_agent(agent_id)
    with _cache_lock:
        if generation == _generation:
            _specs[agent_id] = (now + AGENT_CACHE_SECONDS, spec)
    return spec


def _load_agent(agent_id: int | None) -> AgentSpec:
    # One query for both candidates: the conversation's agent and the admin's default.
    wanted = Q(is_default=True) if agent_id is None else Q(pk=agent_id) | Q(is_default=True)
    # Whether the agent is limited to groups comes with it; the groups are read only then.
    limit = Agent.allowed_groups.through.objects.filter(agent_id=OuterRef("pk"))
    candidates = list(Agent.objects.select_related("server").filter(wanted, enabled=True)
                      .annotate(limited=Exists(limit)))
    agent = next((a for a in candidates if a.pk == agent_id), None) or next(
        (a for a in candidates if a.is_default), None)
    if agent is None:
        config = default_server_config()
        targets = ((config, settings.LLM_MODEL),) + tuple(
            (config, model) for model in settings.LLM_FALLBACK_MODELS)
        return AgentSpec(
            agent_id=None,
            name="Assistant",
            system_prompt=settings.SYSTEM_PROMPT,
            targets=targets,
            tools=offered_tools(None),
            max_rounds=settings.TOOL_MAX_ROUNDS,
            models=model_infos(targets),
        )
    targets = ((server_config(agent.server), agent.model), *_fallback_targets(agent))
    return AgentSpec(
        agent_id=agent.pk,
        name=agent.name,
        system_prompt=agent.system_prompt or settings.SYSTEM_PROMPT,
        targets=targets,
        tools=offered_tools(agent),
        max_rounds=agent.max_tool_rounds or settings.TOOL_MAX_ROUNDS,
        allowed_groups=frozenset(agent.allowed_groups.values_list("pk", flat=True))
        if agent.limited else frozenset(),
        models=model_infos(targets),
        temperature=agent.temperature,
    )
