"""Budgets and rate limits, checked before each model round (the before_model and
before_round hooks), so that a refused turn calls nothing upstream.

A budget (conversations.models.Budget) limits one person or one group (its members' use added
up) to a number of tokens, an amount of money or a number of turns, per minute (the last 60
seconds), per day or per month (calendar, in TIME_ZONE). A turn may start, or go on to another
round, while what the budget's scope has used in the period is below the limit, counting:

- finished answers at what they used (input plus output tokens, or their cost);
- answers still running at what they hold back: their rounds so far plus the dearest next
  round (its estimated input and the model's max_output_tokens, or BUDGET_OUTPUT_TOKENS);
- for a limit of turns, every answer started in the period except those a budget refused.

The check and the turn's own hold are one transaction, with the budget rows locked (SQLite
takes its write lock at the start of every transaction), so concurrent turns are counted one
after the other: each sees what the others hold. Overspend is then at most the last admitted
round's worth, as long as rounds stay within what they held (an output within the model's
bound, an input within its estimate).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import transaction
from django.db.models import Case, DecimalField, F, IntegerField, Q, Sum, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from agents.definitions import AgentSpec
from agents.model_info import request_tokens
from conversations import hooks
from conversations.models import Budget, Message

MINUTE = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class Hold:
    """What one model round may cost at most."""

    tokens: int
    cost: Decimal


def round_hold(spec: AgentSpec, input_tokens: int) -> Hold:
    info = spec.model_info("")
    output = info.max_output_tokens or settings.BUDGET_OUTPUT_TOKENS
    return Hold(tokens=input_tokens + output,
                cost=info.most_cost(input_tokens=input_tokens, output_tokens=output))


def period_start(period: str, now: datetime) -> datetime:
    if period == Budget.Period.MINUTE:
        return now - MINUTE
    local = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    return local.replace(day=1) if period == Budget.Period.MONTH else local


def period_end(period: str, now: datetime) -> datetime:
    """When a day's or a month's budget starts afresh."""
    start = period_start(period, now)
    if period == Budget.Period.DAY:
        # Through the calendar, not + 24 h: a day with a clock change is 23 or 25 hours.
        following = (start + timedelta(days=1, hours=12)).replace(hour=0)
    else:
        following = (start + timedelta(days=32)).replace(day=1)
    return timezone.make_aware(following.replace(tzinfo=None), start.tzinfo)


# Whether any budget exists at all, per process, for a few seconds: most installations have
# none, and then a turn should not pay a database round trip per model round to learn it.
# Saving or deleting a budget through this process's ORM clears it at once (conversations.apps);
# another process sees a first budget at most BUDGETS_CACHE_SECONDS later.
BUDGETS_CACHE_SECONDS = 5.0
_clock = time.monotonic
_any_budget: tuple[float, bool] | None = None


def budgets_changed(**_: object) -> None:
    """post_save / post_delete receiver for Budget."""
    global _any_budget
    _any_budget = None


def _budgets_exist() -> bool:
    global _any_budget
    now = _clock()
    if _any_budget is None or _any_budget[0] <= now:
        _any_budget = (now + BUDGETS_CACHE_SECONDS, Budget.objects.exists())
    return _any_budget[1]


def _known_none() -> bool:
    """No budget exists, as this process knows without asking the database."""
    known = _any_budget
    return known is not None and not known[1] and known[0] > _clock()


def do_hold_round(*, user_id: int, message_id: int, used_tokens: int, used_cost: Decimal,
                  hold: Callable[[], Hold], starting: bool, now: datetime | None = None) -> None:
    """Admit the next round of turn `message_id` (which has used `used_*` so far) against every
    budget of its owner and the owner's groups, and hold `hold()` for it; raises TurnRefused,
    saying which limit and when it renews. `starting`: the turn's first round (a limit of
    turns counts turns, not rounds). Without budgets this is one read, and no write."""
    now = now or timezone.now()
    if not _budgets_exist():
        return
    applying = Budget.objects.filter(Q(user_id=user_id) | Q(group__user=user_id), enabled=True)
    # Most people have no budget: a plain read, without the write transaction (which on SQLite
    # takes the database's write lock).
    if not applying.exists():
        return
    with transaction.atomic():
        budgets = list(applying.select_for_update(of=("self",)).select_related("group")
                       .order_by("pk"))
        for budget in budgets:
            if budget.metric == Budget.Metric.TURNS and not starting:
                continue
            _check(budget, message_id=message_id, used_tokens=used_tokens, used_cost=used_cost,
                   now=now, starting=starting)
        held = hold()
        Message.objects.filter(pk=message_id).update(
            reserved_tokens=used_tokens + held.tokens, reserved_cost=used_cost + held.cost)


def _scope(budget: Budget, *, message_id: int | None, since: datetime):
    rows = Message.objects.filter(role=Message.Role.ASSISTANT, created_at__gte=since)
    if message_id is not None:
        rows = rows.exclude(pk=message_id)
    if budget.user_id:
        return rows.filter(conversation__owner_id=budget.user_id)
    return rows.filter(conversation__owner__groups=budget.group_id)


# A turn a budget refused: it failed before any round was admitted (nothing held, nothing sent).
REFUSED = Q(status=Message.Status.FAILED, reserved_tokens=0, first_token_at__isnull=True)


def used_in_period(budget: Budget, *, now: datetime, message_id: int | None = None,
                   rows=None) -> Decimal | int:
    """What the budget's scope has used or holds in its current period (tokens, cost or
    turns), leaving out turn `message_id`."""
    if rows is None:
        rows = _scope(budget, message_id=message_id, since=period_start(budget.period, now))
    running = Q(status__in=Message.UNFINISHED_STATUSES)
    if budget.metric == Budget.Metric.TURNS:
        return rows.exclude(REFUSED).count()
    if budget.metric == Budget.Metric.TOKENS:
        return rows.aggregate(total=Coalesce(Sum(Case(
            When(running, then=F("reserved_tokens")),
            default=F("input_tokens") + F("output_tokens"), output_field=IntegerField())), 0)
        )["total"]
    return rows.aggregate(total=Coalesce(Sum(Case(
        When(running, then=F("reserved_cost")), default=F("cost"),
        output_field=DecimalField(max_digits=14, decimal_places=6))), Decimal(0))
    )["total"]


def _check(budget: Budget, *, message_id: int, used_tokens: int, used_cost: Decimal,
           now: datetime, starting: bool) -> None:
    rows = _scope(budget, message_id=message_id, since=period_start(budget.period, now))
    used = used_in_period(budget, now=now, rows=rows)
    own = {Budget.Metric.TURNS: 0, Budget.Metric.TOKENS: used_tokens}.get(budget.metric,
                                                                          used_cost)
    if used + own < budget.limit:
        return
    retry_at = _renewal(budget, rows=rows, now=now)
    raise hooks.TurnRefused(_refusal(budget, used=used + own, retry_at=retry_at, now=now,
                                     starting=starting),
                            retry_after=max(1.0, (retry_at - now).total_seconds()))


def _renewal(budget: Budget, *, rows, now: datetime) -> datetime:
    if budget.period != Budget.Period.MINUTE:
        return period_end(budget.period, now)
    times = list(rows.exclude(REFUSED).order_by("created_at").values_list("created_at",
                                                                          flat=True))
    if budget.metric == Budget.Metric.TURNS:
        # Another turn fits once enough of the window's turns have left it.
        index = max(0, len(times) - int(budget.limit))
        if index < len(times):
            return times[index] + MINUTE
    return (times[0] + MINUTE) if times else now + MINUTE


def _amount(budget: Budget, value: Decimal | int) -> str:
    if budget.metric == Budget.Metric.COST:
        return f"{Decimal(value).quantize(Decimal('0.01'))} {settings.COST_CURRENCY}"
    noun = "turn" if budget.metric == Budget.Metric.TURNS else "token"
    return f"{int(value):,} {noun}{'' if value == 1 else 's'}"


def _wait(seconds: float) -> str:
    seconds = math.ceil(seconds)
    if seconds < 120:
        return f"{seconds} seconds"
    minutes = math.ceil(seconds / 60)
    if minutes < 120:
        return f"{minutes} minutes"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _refusal(budget: Budget, *, used: Decimal | int, retry_at: datetime, now: datetime,
             starting: bool) -> str:
    whose = "your" if budget.user_id else f"the group {budget.group.name}'s"
    per = {"minute": "per minute", "day": "per day", "month": "per month"}[budget.period]
    stopped = ("This answer was not started" if starting
               else "This answer stopped before its next model round")
    what = f"{stopped}: {whose} limit of {_amount(budget, budget.limit)} {per} is reached"
    if budget.metric != Budget.Metric.TURNS:
        what += f" ({_amount(budget, used)} used or held by answers running now)"
    local = timezone.localtime(retry_at)
    when = local.strftime("%H:%M:%S" if budget.period == Budget.Period.MINUTE else
                          "%Y-%m-%d %H:%M")
    return (f"{what}. You can go on in {_wait((retry_at - now).total_seconds())} "
            f"({when} {local.tzname()}).")


async def check_before_model(ctx: hooks.TurnContext) -> None:
    if _known_none():  # then without a thread hop
        return
    def hold() -> Hold:
        return round_hold(ctx.spec, request_tokens(
            system=ctx.spec.system_prompt, history=ctx.history, tools=ctx.spec.tools))

    await database_sync_to_async(do_hold_round)(
        user_id=ctx.user_id, message_id=ctx.message_id, used_tokens=0, used_cost=Decimal(0),
        hold=hold, starting=True)


async def check_before_round(ctx: hooks.TurnContext, info: hooks.RoundInfo) -> None:
    if _known_none():
        return
    await database_sync_to_async(do_hold_round)(
        user_id=ctx.user_id, message_id=ctx.message_id,
        used_tokens=info.usage.input_tokens + info.usage.output_tokens,
        used_cost=info.usage.cost, hold=lambda: round_hold(ctx.spec, info.next_input_tokens),
        starting=False)
