"""Budgets and rate limits (conversations.budgets): turns run in-process against the fake
model server, and a refused turn must call nothing upstream."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Group

from agents.models import LanguageModel
from conversations import broker, budgets, sending
from conversations.models import Budget, Message
from conversations.sinks import TurnEvents
from tests.conversations.turns import Lookup, directive, read_all
from tests.factories import make_user

pytestmark = pytest.mark.django_db(transaction=True)

# The fake's answer: 4 tokens out, after a tenth of a second. It counts about four characters
# of the request's JSON a token: this prompt is 32 tokens in, so each turn uses 36.
ANSWER = directive(tokens=4, ttft_ms=100)
TURN = 36


async def run(user, text: str = ANSWER, *, tools=None) -> Message:
    prepared = await sync_to_async(sending.do_send)(
        user_id=user.pk, request=sending.check_send(conversation=None, text=text))
    events = TurnEvents()
    await broker.start_turn(plan=replace(prepared.plan, tools=tools), sinks=[events])
    await read_all(events)
    return await Message.objects.aget(pk=prepared.assistant_message.id)


@pytest.fixture
def small_holds(settings):
    # A round holds its input estimate plus this much output.
    settings.BUDGET_OUTPUT_TOKENS = 4


async def test_a_spent_daily_token_budget_refuses_the_next_turn_before_the_model(
        fake_llm, small_holds):
    user = await sync_to_async(make_user)()
    await Budget.objects.acreate(user=user, metric="tokens", period="day", limit=50)
    first = await run(user)
    assert (first.status, first.input_tokens + first.output_tokens) == ("complete", TURN)
    # 36 of 50 used: one more may start (and goes over, by less than a turn).
    assert (await run(user)).status == "complete"
    third = await run(user)
    assert fake_llm.stats().requests == 2
    assert third.status == "failed"
    assert third.error.startswith("This answer was not started: your limit of 50 tokens per "
                                  "day is reached (72 tokens used or held")
    assert "You can go on in" in third.error and "UTC)" in third.error
    # Refused turns count for nothing.
    assert await sync_to_async(budgets.used_in_period)(
        await Budget.objects.aget(user=user), now=third.created_at) == 2 * TURN


async def test_a_rate_limit_refuses_the_next_turn_with_the_time_to_wait(fake_llm, small_holds):
    user = await sync_to_async(make_user)()
    await Budget.objects.acreate(user=user, metric="turns", period="minute", limit=2)
    assert [(await run(user)).status for _ in range(2)] == ["complete", "complete"]
    third = await run(user)
    assert fake_llm.stats().requests == 2
    assert third.status == "failed"
    assert "your limit of 2 turns per minute is reached" in third.error
    # The first of the two leaves the window 60 s after it started.
    wait = int(third.error.split("go on in ")[1].split(" seconds")[0])
    assert 50 <= wait <= 60


async def test_a_groups_budget_is_its_members_use_added_up(fake_llm, small_holds):
    group = await Group.objects.acreate(name="research")
    alice, bob = [await sync_to_async(make_user)() for _ in range(2)]
    for person in (alice, bob):
        await person.groups.aadd(group)
    await Budget.objects.acreate(group=group, metric="tokens", period="month", limit=2 * TURN)
    assert (await run(alice)).status == "complete"
    assert (await run(bob)).status == "complete"
    refused = await run(alice)
    assert refused.status == "failed"
    assert "the group research's limit of 72 tokens per month" in refused.error
    # Someone outside the group is not limited by it.
    assert (await run(await sync_to_async(make_user)())).status == "complete"


async def test_a_money_budget_counts_cost_at_the_models_prices(fake_llm, small_holds):
    await LanguageModel.objects.acreate(server=None, name="fake-model",
                                        input_price=Decimal("1000"), output_price=Decimal("2000"))
    user = await sync_to_async(make_user)()
    await Budget.objects.acreate(user=user, metric="cost", period="day", limit=Decimal("0.03"))
    first = await run(user)
    # 32 input tokens at 1000 and 4 output at 2000 per million.
    assert first.cost == Decimal("0.040")
    refused = await run(user)
    assert refused.status == "failed"
    assert "your limit of 0.03 USD per day is reached (0.04 USD used" in refused.error
    assert fake_llm.stats().requests == 1


async def test_a_budget_spent_during_a_tool_loop_stops_it_before_the_next_round(
        fake_llm, small_holds):
    user = await sync_to_async(make_user)()
    # The first round may start (nothing used), and uses more than the whole budget.
    await Budget.objects.acreate(user=user, metric="tokens", period="day", limit=20)
    tools = Lookup()
    turn = directive(preamble="Let me look. ", tool_calls=[{"name": "lookup",
                                                              "arguments": {"q": "cat"}}])
    message = await run(user, turn, tools=tools)
    assert tools.calls == [{"q": "cat"}]  # the round's tools ran
    assert fake_llm.stats().requests == 1  # the next round was never asked for
    assert message.status == "failed"
    assert message.error.startswith("This answer stopped before its next model round")
    assert message.content == "Let me look. "


async def test_twenty_concurrent_turns_overspend_a_groups_budget_by_one_turn_at_most(
        fake_llm, small_holds):
    group = await Group.objects.acreate(name="crowd")
    people = []
    for _ in range(20):
        person = await sync_to_async(make_user)()
        await person.groups.aadd(group)
        people.append(person)
    limit = 5 * TURN - 10  # a little under five turns
    await Budget.objects.acreate(group=group, metric="tokens", period="day", limit=limit)
    # Answers that take a while: all twenty are running at once.
    messages = await asyncio.gather(*(run(person) for person in people))
    done = [m for m in messages if m.status == "complete"]
    refused = [m for m in messages if m.status == "failed"]
    used = sum(m.input_tokens + m.output_tokens for m in messages)
    assert len(done) + len(refused) == 20
    # Every turn saw what the others had used or held: no more than one turn over.
    assert used <= limit + TURN
    # Running turns hold a little more than they use (their estimate), so a few fewer than the
    # budget's worth may run at once: never none.
    assert 3 <= len(done) <= 5
    assert fake_llm.stats().requests == len(done)


def test_a_day_renews_at_the_next_local_midnight_across_a_clock_change(settings):
    settings.TIME_ZONE = "Europe/Berlin"
    berlin = ZoneInfo("Europe/Berlin")
    # Summer time starts on 2026-03-29 at 02:00: that day has 23 hours.
    now = datetime(2026, 3, 29, 10, 0, tzinfo=berlin)
    assert budgets.period_start("day", now) == datetime(2026, 3, 29, tzinfo=berlin)
    assert budgets.period_end("day", now) == datetime(2026, 3, 30, tzinfo=berlin)
    assert budgets.period_end("day", now).utcoffset() == timedelta(hours=2)
    assert budgets.period_start("month", now) == datetime(2026, 3, 1, tzinfo=berlin)
    assert budgets.period_end("month", now) == datetime(2026, 4, 1, tzinfo=berlin)
    december = datetime(2026, 12, 31, 23, 30, tzinfo=berlin)
    assert budgets.period_end("month", december) == datetime(2027, 1, 1, tzinfo=berlin)
