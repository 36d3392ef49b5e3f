"""Resolving a conversation's agent, and the per-process cache of resolved agents."""

from __future__ import annotations

from decimal import Decimal

import pytest

from agents import definitions
from agents.definitions import AGENT_CACHE_SECONDS, resolve_agent
from agents.events import RequestOptions
from agents.models import Agent, LanguageModel, ModelServer

pytestmark = pytest.mark.django_db


@pytest.fixture
def clock(monkeypatch):
    """The cache's clock, moved by hand."""
    now = [1000.0]
    monkeypatch.setattr(definitions, "_clock", lambda: now[0])
    return now


def test_without_agents_the_environment_default_answers(settings):
    settings.LLM_MODEL = "env-model"
    settings.SYSTEM_PROMPT = "From the environment."
    spec = resolve_agent(None)
    assert (spec.agent_id, spec.system_prompt) == (None, "From the environment.")
    assert [model for _, model in spec.targets] == ["env-model"]


def test_a_conversations_own_agent_wins_over_the_default_unless_disabled():
    Agent.objects.create(name="Default", slug="default", model="m-default", is_default=True)
    own = Agent.objects.create(name="Own", slug="own", model="m-own")
    assert resolve_agent(own.pk).targets[0][1] == "m-own"
    own.enabled = False
    own.save()
    assert resolve_agent(own.pk).targets[0][1] == "m-default"


def test_a_resolved_agent_is_reused_without_a_query(django_assert_num_queries):
    Agent.objects.create(name="Default", slug="default", model="m", is_default=True)
    # The agent, its models' settings, and the tools it offers.
    with django_assert_num_queries(3):
        first = resolve_agent(None)
    with django_assert_num_queries(0):
        assert resolve_agent(None) is first


def test_a_changed_default_agent_is_used_by_the_next_turn_at_once(clock):
    """Changes made through this process (the admin) clear the cache: no wait at all."""
    assert resolve_agent(None).agent_id is None
    agent = Agent.objects.create(name="Default", slug="default", model="m1", is_default=True,
                                 system_prompt="One.")
    assert resolve_agent(None).system_prompt == "One."
    agent.system_prompt, agent.model = "Two.", "m2"
    agent.save()
    spec = resolve_agent(None)
    assert (spec.system_prompt, spec.targets[0][1]) == ("Two.", "m2")
    agent.delete()
    assert resolve_agent(None).agent_id is None


def test_a_change_to_the_agents_server_is_used_at_once():
    server = ModelServer.objects.create(name="vllm", base_url="http://vllm:8000/v1", api_key="k1")
    Agent.objects.create(name="Default", slug="default", model="m", is_default=True,
                         server=server)
    assert resolve_agent(None).targets[0][0].api_key == "k1"
    server.api_key, server.base_url = "k2", "http://vllm2:8000/v1"
    server.save()
    config = resolve_agent(None).targets[0][0]
    assert (config.api_key, config.base_url) == ("k2", "http://vllm2:8000/v1")


def test_a_change_from_another_process_is_seen_within_the_cache_bound(clock):
    """Another Daphne process's change sends no signal here: it shows once the entry expires."""
    agent = Agent.objects.create(name="Default", slug="default", model="old", is_default=True)
    assert resolve_agent(None).targets[0][1] == "old"
    # An update() sends no signal: as seen from this process, like another process's write.
    Agent.objects.filter(pk=agent.pk).update(model="new")
    clock[0] += AGENT_CACHE_SECONDS - 0.1
    assert resolve_agent(None).targets[0][1] == "old"
    clock[0] += 0.2
    assert resolve_agent(None).targets[0][1] == "new"


def test_a_spec_read_while_the_rows_change_is_not_kept(monkeypatch, django_assert_num_queries):
    """A turn reading the old rows while an admin's change commits must not store them."""
    load = definitions._load_agent

    def load_then_change(agent_id):
        spec = load(agent_id)
        definitions.clear_agent_cache()  # the change's commit, between the read and the store
        return spec

    monkeypatch.setattr(definitions, "_load_agent", load_then_change)
    resolve_agent(None)
    monkeypatch.setattr(definitions, "_load_agent", load)
    with django_assert_num_queries(3):  # read again: the agent, its models, its tools
        resolve_agent(None)


def test_changed_settings_change_the_environment_default(settings):
    settings.LLM_MODEL = "first"
    assert resolve_agent(None).targets[0][1] == "first"
    settings.LLM_MODEL = "second"
    assert resolve_agent(None).targets[0][1] == "second"


def test_the_http_transport_setting_reaches_every_model_servers_config(settings):
    assert resolve_agent(None).targets[0][0].transport == "own"
    settings.LLM_HTTP_TRANSPORT = "stock"
    server = ModelServer.objects.create(name="vllm", base_url="http://vllm:8000/v1")
    Agent.objects.create(name="Default", slug="default", model="m", is_default=True,
                         server=server, fallback_models=["other-model"])
    spec = resolve_agent(None)
    assert [config.transport for config, _ in spec.targets] == ["stock", "stock"]


def test_each_target_gets_its_models_limits_and_prices(settings):
    settings.MODEL_CONTEXT_WINDOW = 8192
    server = ModelServer.objects.create(name="vllm", base_url="http://vllm:8000/v1")
    LanguageModel.objects.create(server=server, name="big", context_window=131072,
                                 max_output_tokens=4096, input_price=Decimal("0.15"),
                                 output_price=Decimal("0.60"), cached_input_price=Decimal("0.075"))
    # The same name on the default server is another model, with its own row.
    LanguageModel.objects.create(server=None, name="big", context_window=2048)
    Agent.objects.create(name="A", slug="a", model="big", server=server, is_default=True,
                         fallback_models=["small"])
    spec = resolve_agent(None)
    main, fallback = spec.models
    assert (main.label, main.context_window, main.max_output_tokens) == ("vllm:big", 131072, 4096)
    # A model without a row: the defaults, and no cost.
    assert (fallback.label, fallback.context_window, fallback.priced) == (
        "vllm:small", 8192, False)
    assert spec.model_info("vllm:small") is fallback
    # A million input tokens of which half were cached, and 100,000 output tokens.
    assert main.cost(input_tokens=1_000_000, output_tokens=100_000,
                     cached_tokens=500_000) == Decimal("0.075") + Decimal("0.0375") + Decimal(
                         "0.06")


def test_the_agents_temperature_and_the_models_output_bound_go_into_each_request():
    server = ModelServer.objects.create(name="vllm", base_url="http://vllm:8000/v1")
    LanguageModel.objects.create(server=server, name="m", max_output_tokens=1000)
    Agent.objects.create(name="A", slug="a", model="m", server=server, is_default=True,
                         temperature=0.2)
    spec = resolve_agent(None)
    assert spec.options(None) == RequestOptions(temperature=0.2, max_tokens=1000)
    # An API client's own values win, within the model's bound.
    assert spec.options(RequestOptions(temperature=1.0, max_tokens=5000)) == RequestOptions(
        temperature=1.0, max_tokens=1000)
    assert spec.options(RequestOptions(max_tokens=10)).max_tokens == 10


def test_without_a_model_row_no_output_bound_is_sent():
    """A server's own bound applies (vLLM refuses a max_tokens beyond what the prompt leaves)."""
    Agent.objects.create(name="A", slug="a", model="m", is_default=True)
    assert resolve_agent(None).options(None) == RequestOptions()
