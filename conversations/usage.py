"""Usage and cost added up over a range of days: what the usage pages show (usage_views.py).

Assistant messages carry the usage: each answer's tokens (all its model rounds) and its cost,
in COST_CURRENCY, set when its turn ended (agents.model_info). Every answer counts, whatever
its status (a stopped or failed one was billed for what it used) and whether or not its
conversation was deleted (deleting hides a conversation, it does not undo its cost), from
the web page and the /v1 API alike. A message belongs to the day of its `created_at` (when its
turn started) in TIME_ZONE.

Each table is one aggregate query over the ORM (SQLite and PostgreSQL alike); totals are the
sum of the per-day rows, which split the range without overlap. Costs are added up as whole
millionths (the stored precision): SQLite keeps decimals as floating point, and a sum of floats
drifts, while a sum of whole numbers does not (PostgreSQL's numeric is exact either way).
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Count, DecimalField, F, QuerySet, Sum, Value
from django.db.models.functions import Round, TruncDate
from django.utils import timezone

from agents.model_info import COST_PLACES
from conversations.budgets import REFUSED
from conversations.models import Message

DEFAULT_DAYS = 30
# The range is bounded so every query is: a year and a day (a leap year's whole year, and a
# year from a date to the same date).
MAX_DAYS = 366
# The team page's by-user table lists the heaviest users first, up to this many; the rest are
# in the totals (and a filter by user finds any one of them).
MAX_USER_ROWS = 200
# Model labels and group names offered as filters.
MAX_CHOICES = 500

_MICRO = 1_000_000
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class BadRange(ValueError):
    """The dates asked for are not a range we show; the message says why, for the page."""


@dataclass(frozen=True, slots=True)
class DateRange:
    """Days in TIME_ZONE, both ends included."""

    start: date
    end: date

    @property
    def days(self) -> list[date]:
        return [self.start + timedelta(days=n) for n in range((self.end - self.start).days + 1)]

    def bounds(self) -> tuple[datetime, datetime]:
        """From the first day's midnight to the midnight after the last day, in TIME_ZONE."""
        tz = zoneinfo.ZoneInfo(settings.TIME_ZONE)
        return (datetime.combine(self.start, time.min, tzinfo=tz),
                datetime.combine(self.end + timedelta(days=1), time.min, tzinfo=tz))


def _parse_day(value: str, *, name: str) -> date:
    try:
        # fromisoformat alone would also take 20250331 and 2025-W13-1.
        if not _DAY.fullmatch(value):
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise BadRange(f"The {name} date must be a day written YYYY-MM-DD, like 2025-03-31; "
                       f"“{value[:40]}” is not one.") from None


def usage_range(*, start: str | None, end: str | None, today: date | None = None) -> DateRange:
    """The range asked for by `?start=&end=` (each YYYY-MM-DD, either may be left out): by
    default the last DEFAULT_DAYS days up to today (in TIME_ZONE). Raises BadRange."""
    today = today or timezone.localdate(timezone=zoneinfo.ZoneInfo(settings.TIME_ZONE))
    start, end = (start or "").strip(), (end or "").strip()
    last = _parse_day(end, name="end") if end else None
    first = _parse_day(start, name="start") if start else None
    if last is None:
        last = today if first is None else min(first + timedelta(days=DEFAULT_DAYS - 1), today)
        last = max(last, first) if first else last
    if first is None:
        first = last - timedelta(days=DEFAULT_DAYS - 1)
    if first > last:
        raise BadRange("The start date must not be after the end date.")
    if (last - first).days + 1 > MAX_DAYS:
        raise BadRange(f"A range can be at most {MAX_DAYS} days long; this one is "
                       f"{(last - first).days + 1}.")
    return DateRange(first, last)


# --- what is added up --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Totals:
    answers: int = 0
    input_tokens: int = 0  # includes the cached ones
    output_tokens: int = 0  # includes the reasoning ones
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cost: Decimal = Decimal("0.000000")

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Totals) -> Totals:
        return Totals(self.answers + other.answers, self.input_tokens + other.input_tokens,
                      self.output_tokens + other.output_tokens,
                      self.cached_tokens + other.cached_tokens,
                      self.reasoning_tokens + other.reasoning_tokens, self.cost + other.cost)


@dataclass(frozen=True, slots=True)
class DayRow:
    day: date
    totals: Totals


@dataclass(frozen=True, slots=True)
class ModelRow:
    # The answering model's label ("model", or "server:model"); blank when none answered.
    model: str
    totals: Totals


@dataclass(frozen=True, slots=True)
class UserRow:
    user_id: int
    username: str
    totals: Totals


@dataclass(frozen=True, slots=True)
class GroupRow:
    # None: the owners in no group at all.
    group_id: int | None
    name: str
    totals: Totals


def _sums() -> dict:
    return {
        # A turn a budget refused never reached the model: it is not an answer (nor a turn to
        # the budgets), and it used nothing.
        "answers": Count("id", filter=~REFUSED),
        "input": Sum("input_tokens"),
        "output": Sum("output_tokens"),
        "cached": Sum("cached_tokens"),
        "reasoning": Sum("reasoning_tokens"),
        # Whole millionths: see the module's docstring.
        "micro": Sum(Round(F("cost") * Value(_MICRO)),
                     output_field=DecimalField(max_digits=30, decimal_places=0)),
    }


def _totals(row: dict) -> Totals:
    micro = row["micro"] or 0
    return Totals(
        answers=row["answers"] or 0, input_tokens=int(row["input"] or 0),
        output_tokens=int(row["output"] or 0), cached_tokens=int(row["cached"] or 0),
        reasoning_tokens=int(row["reasoning"] or 0),
        cost=(Decimal(int(micro)) / _MICRO).quantize(COST_PLACES),
    )


@dataclass(frozen=True, slots=True)
class UsageFilter:
    """The team page's filters; None is "all"."""

    user_id: int | None = None
    group_id: int | None = None
    model: str | None = None


def usage_messages(*, period: DateRange, owner=None,
                   only: UsageFilter = UsageFilter()) -> QuerySet[Message]:
    """The answers that count for `period`: of `owner` only when given (a person's own page),
    else everyone's, narrowed by `only`. The date bounds use the msg_created index."""
    begin, end = period.bounds()
    rows = Message.objects.filter(role=Message.Role.ASSISTANT, created_at__gte=begin,
                                  created_at__lt=end)
    if owner is not None:
        rows = rows.filter(conversation__owner=owner)
    if only.user_id is not None:
        rows = rows.filter(conversation__owner_id=only.user_id)
    if only.group_id is not None:
        # A subquery, not a join: a join through the groups would count a message once per
        # matching membership row, and it would narrow the by-group table to this one group.
        members = get_user_model().objects.filter(groups=only.group_id).values("pk")
        rows = rows.filter(conversation__owner__in=members)
    if only.model is not None:
        rows = rows.filter(model=only.model)
    return rows.order_by()


def by_day(messages: QuerySet[Message], *, period: DateRange) -> list[DayRow]:
    """Every day of the range, those with no answer at zero, in order. One query."""
    tz = zoneinfo.ZoneInfo(settings.TIME_ZONE)
    found = {
        row["day"]: _totals(row)
        for row in messages.annotate(day=TruncDate("created_at", tzinfo=tz))
        .values("day").annotate(**_sums()).order_by("day")
    }
    return [DayRow(day, found.get(day, Totals())) for day in period.days]


def _heaviest_first(rows: list) -> list:
    return sorted(rows, key=lambda r: (-r.totals.cost, -r.totals.tokens))


def by_model(messages: QuerySet[Message]) -> list[ModelRow]:
    """Dearest first (then most tokens). One query; a range holds few models."""
    return _heaviest_first([ModelRow(row["model"], _totals(row))
                            for row in messages.values("model").annotate(**_sums())])


def by_user(messages: QuerySet[Message], *, limit: int = MAX_USER_ROWS
            ) -> tuple[list[UserRow], bool]:
    """The `limit` heaviest users (by cost, then tokens, then name), and whether there are
    more. One query."""
    rows = list(
        messages.values("conversation__owner", "conversation__owner__username")
        .annotate(**_sums())
        .order_by("-micro", F("input").desc(), F("output").desc(),
                  "conversation__owner__username")[:limit + 1]
    )
    return ([UserRow(row["conversation__owner"], row["conversation__owner__username"],
                     _totals(row)) for row in rows[:limit]], len(rows) > limit)


def by_group(messages: QuerySet[Message]) -> list[GroupRow]:
    """A message counts once for each group its owner belongs to (and under None for an owner
    in none), so these rows add up to more than the totals when groups overlap. One query."""
    rows = messages.values("conversation__owner__groups",
                           "conversation__owner__groups__name").annotate(**_sums())
    found = [GroupRow(row["conversation__owner__groups"],
                      row["conversation__owner__groups__name"] or "", _totals(row))
             for row in rows]
    # The owners in no group last, whatever they used.
    return (_heaviest_first([r for r in found if r.group_id is not None])
            + [r for r in found if r.group_id is None])


def total(rows: list[DayRow]) -> Totals:
    """The range's totals, from its per-day rows (every answer is in exactly one day)."""
    result = Totals()
    for row in rows:
        result += row.totals
    return result


# --- the pages' reports --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PersonalUsage:
    period: DateRange
    days: list[DayRow]
    models: list[ModelRow]
    totals: Totals


def personal_usage(*, user, period: DateRange) -> PersonalUsage:
    """One person's own answers (every source). Two queries."""
    messages = usage_messages(period=period, owner=user)
    days = by_day(messages, period=period)
    return PersonalUsage(period, days, by_model(messages), total(days))


@dataclass(frozen=True, slots=True)
class TeamUsage:
    period: DateRange
    only: UsageFilter
    days: list[DayRow]
    models: list[ModelRow]
    users: list[UserRow]
    # More users used something than `users` lists.
    more_users: bool
    groups: list[GroupRow]
    totals: Totals
    # The filters' choices: models that answered in the range, and every group.
    model_choices: list[str] = field(default_factory=list)
    group_choices: list[tuple[int, str]] = field(default_factory=list)


def can_see_team_usage(user) -> bool:
    """Staff who may read the audit's messages in the admin (conversations.view_message), and
    superusers: the team page is a summary of those messages, by person."""
    return bool(user.is_authenticated and user.is_active and user.is_staff
                and (user.is_superuser or user.has_perm("conversations.view_message")))


def team_usage(*, period: DateRange, only: UsageFilter = UsageFilter()) -> TeamUsage:
    """Everyone's answers, narrowed by `only`. Six queries: the four tables and the two lists
    of choices. Callers check can_see_team_usage first."""
    from django.contrib.auth.models import Group

    messages = usage_messages(period=period, only=only)
    days = by_day(messages, period=period)
    users, more = by_user(messages)
    # The choices ignore the model filter itself, or it could only ever offer one model.
    models_used = usage_messages(period=period, only=UsageFilter(only.user_id, only.group_id))
    return TeamUsage(
        period=period, only=only, days=days, models=by_model(messages), users=users,
        more_users=more, groups=by_group(messages), totals=total(days),
        model_choices=list(models_used.values_list("model", flat=True).distinct()
                           .order_by("model")[:MAX_CHOICES]),
        group_choices=list(Group.objects.order_by("name").values_list("pk", "name")
                           [:MAX_CHOICES]),
    )
