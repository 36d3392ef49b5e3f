"""The admins' tour of the README, in a real browser: connect a model server with its models
and prices, define an agent, set a budget, read a conversation in the audit. Each step's page
is the README's screenshot of it."""

from __future__ import annotations

from decimal import Decimal

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import log_in, shoot
from tests.factories import make_conversation, make_message, make_user


@pytest.fixture
def admin_page(page, server_url, django_db_blocker):
    with django_db_blocker.unblock():
        boss = make_user(is_staff=True, is_superuser=True)
        log_in(page.context, boss, server_url)
    page.set_viewport_size({"width": 1400, "height": 900})
    # The admin's navigation sidebar folded away: the screenshots show the page itself.
    page.add_init_script("localStorage.setItem('django.admin.navSidebarIsOpen', 'false')")
    page.boss = boss
    return page


@pytest.fixture
def tour_rows(django_db_blocker):
    """The browser tests share one database: what the tour makes is removed after it."""
    yield
    from agents.models import Agent, ModelServer
    from conversations.models import Budget

    with django_db_blocker.unblock():
        Agent.objects.filter(slug="research").delete()
        ModelServer.objects.filter(name="vllm").delete()
        Budget.objects.all().delete()


def test_an_admin_connects_a_server_defines_an_agent_and_sets_a_budget(
        admin_page, server_url, fake, django_db_blocker, tour_rows):
    from agents.models import Agent, LanguageModel, ModelServer
    from conversations.models import Budget

    page = admin_page
    page.goto(server_url + "/admin/agents/modelserver/add/")
    page.locator("#id_name").fill("vllm")
    page.locator("#id_base_url").fill(fake.base_url)
    page.locator("#id_api_key").fill("sk-very-secret")
    page.locator("#id_models-0-name").fill("gpt-oss-120b")
    page.locator("#id_models-0-context_window").fill("131072")
    page.locator("#id_models-0-max_output_tokens").fill("8192")
    page.locator("#id_models-0-input_price").fill("0.15")
    page.locator("#id_models-0-output_price").fill("0.60")
    page.locator("#id_models-0-cached_input_price").fill("0.075")
    shoot(page, "admin-model-server.png")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#result_list")).to_contain_text("vllm")
    with django_db_blocker.unblock():
        server = ModelServer.objects.get(name="vllm")
        assert server.api_key == "sk-very-secret"
        model = LanguageModel.objects.get(server=server)
        assert (model.context_window, model.output_price) == (131072, Decimal("0.6"))
    # The key is never shown back.
    page.goto(server_url + f"/admin/agents/modelserver/{server.pk}/change/")
    assert "sk-very-secret" not in page.content()

    page.goto(server_url + "/admin/agents/agent/add/")
    page.locator("#id_name").fill("Research")
    page.locator("#id_system_prompt").fill("You answer questions about our papers.")
    page.locator("#id_server").select_option(label="vllm")
    page.locator("#id_model").fill("gpt-oss-120b")
    page.locator("#id_temperature").fill("0.3")
    shoot(page, "admin-agent.png")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#result_list")).to_contain_text("Research")
    with django_db_blocker.unblock():
        agent = Agent.objects.get(slug="research")
        assert (agent.server_id, agent.temperature) == (server.pk, 0.3)

    with django_db_blocker.unblock():
        member = make_user()
    page.goto(server_url + "/admin/conversations/budget/add/")
    # The person is chosen by searching (an autocomplete box).
    page.locator("span[aria-labelledby='select2-id_user-container']").click()
    page.locator(".select2-search__field").fill(member.username)
    page.locator(".select2-results__option", has_text=member.username).click()
    page.locator("#id_metric").select_option("tokens")
    page.locator("#id_period").select_option("day")
    page.locator("#id_limit").fill("200000")
    page.get_by_role("button", name="Save", exact=True).click()
    with django_db_blocker.unblock():
        budget = Budget.objects.get(user=member)
        assert (budget.metric, budget.period, budget.limit) == ("tokens", "day", 200000)
        Budget.objects.create(user=member, metric="turns", period="minute", limit=10)
    page.goto(server_url + "/admin/conversations/budget/")
    expect(page.locator("#result_list")).to_contain_text("Used this period")
    expect(page.locator("#result_list tbody tr")).to_have_count(2)
    shoot(page, "admin-budgets.png")


def test_an_admin_reads_a_conversation_and_the_read_is_recorded(
        admin_page, server_url, django_db_blocker):
    from conversations.models import AdminRead

    with django_db_blocker.unblock():
        owner = make_user()
        conversation = make_conversation(owner=owner, title="Quarterly numbers")
        question = make_message(conversation=conversation, content="What did we spend in Q3?")
        make_message(conversation=conversation, role="assistant", parent=question,
                     content="About 12,400 EUR on compute.", model="vllm:gpt-oss-120b",
                     input_tokens=1200, output_tokens=80, cost=Decimal("0.00023"))
    page = admin_page
    page.goto(server_url + "/admin/conversations/conversation/")
    expect(page.locator("#result_list")).to_contain_text("Quarterly numbers")
    page.get_by_role("link", name="Quarterly numbers").click()
    expect(page.locator("body")).to_contain_text("About 12,400 EUR on compute.")
    shoot(page, "admin-audit.png")
    with django_db_blocker.unblock():
        read = AdminRead.objects.get(owner=owner)
        assert (read.reader_id, read.conversation_ref) == (page.boss.pk, str(conversation.pk))
