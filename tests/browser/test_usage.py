"""Usage in a real browser: the chat's context meter and each answer's usage line, and the
usage pages' charts."""

from __future__ import annotations

import re
from decimal import Decimal

from playwright.sync_api import expect

from agents.models import LanguageModel
from tests.browser.conftest import (
    directive,
    expect_connected,
    last_answer,
    log_in,
    send,
    shoot,
    watch,
)
from tests.factories import make_user


def test_the_context_meter_shows_the_window_and_follows_each_answer(chat, django_db_blocker):
    page = chat
    meter = page.locator("#context-meter")
    # Nothing answered yet: nothing to measure.
    expect(meter).to_be_hidden()
    with django_db_blocker.unblock():
        # The fake model, priced (per million tokens): the answer's line shows its cost.
        priced = LanguageModel.objects.create(server=None, name="fake-model",
                                              context_window=32_768,
                                              input_price=Decimal(1), output_price=Decimal(2))
    try:
        send(page, "Hello\n" + directive(reply="Hi.", usage={"prompt_tokens": 3000,
                                                             "completion_tokens": 200}))
        expect(last_answer(page)).to_contain_text("Hi.")
        # The model's window, 32,768 tokens.
        expect(meter).to_have_text("Context used: 3.2k / 32.8k tokens")
        expect(meter).to_have_attribute("data-level", "ok")
        expect(meter).to_have_attribute("title", re.compile(r"^3,200 of the model's 32,768 tokens"))
        # 3,000 × 1 + 200 × 2 millionths.
        expect(last_answer(page).locator(".usage")).to_have_text("3,200 tokens · $0.0034")

        send(page, "More\n" + directive(reply="Sure.", usage={"prompt_tokens": 27000,
                                                              "completion_tokens": 500}))
        expect(last_answer(page)).to_contain_text("Sure.")
        # Past 80 % of the window: the warning style.
        expect(meter).to_have_text("Context used: 27.5k / 32.8k tokens")
        expect(meter).to_have_attribute("data-level", "high")
        shoot(page, "context-meter.png")

        # A reload reads it from the conversation's state.
        page.reload()
        expect_connected(page)
        expect(meter).to_have_text("Context used: 27.5k / 32.8k tokens")
        # A new chat has no context yet.
        page.get_by_role("button", name="New chat").click()
        expect(meter).to_be_hidden()
    finally:
        with django_db_blocker.unblock():
            priced.delete()
    assert not page.watcher.errors and not page.watcher.csp_violations()


def test_the_usage_pages_draw_their_charts_without_scripts_or_violations(
        page, server_url, fake, django_db_blocker):
    with django_db_blocker.unblock():
        boss = make_user(is_staff=True, is_superuser=True)
        log_in(page.context, boss, server_url)
    seen = watch(page)
    page.goto(server_url + "/")
    expect_connected(page)
    send(page, "Count me\n" + directive(reply="Counted.", usage={"prompt_tokens": 1500,
                                                                "completion_tokens": 90}))
    expect(last_answer(page)).to_contain_text("Counted.")

    page.get_by_role("link", name="Usage").click()
    expect(page.get_by_role("heading", name="Your usage")).to_be_visible()
    expect(page.get_by_role("img", name=re.compile("^Tokens per day"))).to_be_visible()
    expect(page.locator("#usage-days tfoot")).to_contain_text("1,590")
    shoot(page, "usage.png")

    page.goto(server_url + "/admin/")
    page.get_by_role("link", name="Usage and cost").click()
    expect(page.get_by_role("heading", name="Usage and cost")).to_be_visible()
    expect(page.locator("#usage-users")).to_contain_text(boss.username)
    shoot(page, "usage-team.png")
    assert not seen.errors and not seen.csp_violations() and not seen.foreign_requests()
