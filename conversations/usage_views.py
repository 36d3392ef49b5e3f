"""The usage pages: a person's own (/usage/) and the team's, for staff (/usage/team/, in the
admin's look and linked from its header). Thin: the figures come from conversations.usage,
the charts from conversations.usage_charts.

Who sees the team page: staff who may view messages in the admin (the permission
conversations.view_message), and superusers (usage.can_see_team_usage). Anyone else logged in
gets 403; anonymous visitors go to the login page.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from conversations import usage, usage_charts

MAX_MODEL_CHARS = 200


def _shown(days, named: dict[str, tuple[str, list[tuple[str, usage.Totals]]]]) -> dict:
    """The tables' rows as (name, totals) and the charts drawn from the same rows. `named`:
    for each table, the title of its chart and its rows."""
    context = {
        "day_rows": [(d.day.isoformat(), d.totals) for d in days
                     if d.totals.answers or d.totals.tokens or d.totals.cost],
        "charts": {
            "tokens_per_day": usage_charts.tokens_per_day(days),
            "cost_per_day": usage_charts.cost_per_day(days, currency=settings.COST_CURRENCY),
        },
    }
    for key, (title, rows) in named.items():
        context[f"{key}_rows"] = rows
        context["charts"][f"tokens_by_{key}"] = usage_charts.tokens_by_name(
            rows, chart_id=f"tokens-{key}", title=title) if rows else ""
    return context


def _model_rows(models: list[usage.ModelRow]) -> list[tuple[str, usage.Totals]]:
    return [(m.model or "(no model)", m.totals) for m in models]


def _range(request: HttpRequest) -> tuple[usage.DateRange | None, str]:
    try:
        return usage.usage_range(start=request.GET.get("start"), end=request.GET.get("end")), ""
    except usage.BadRange as exc:
        return None, str(exc)


@require_GET
@login_required
def my_usage(request: HttpRequest) -> HttpResponse:
    period, error = _range(request)
    context = {"currency": settings.COST_CURRENCY, "time_zone": settings.TIME_ZONE, "error": error,
               "start": request.GET.get("start", ""), "end": request.GET.get("end", ""),
               "max_days": usage.MAX_DAYS}
    if period is None:
        return render(request, "conversations/usage.html", context, status=400)
    report = usage.personal_usage(user=request.user, period=period)
    context.update(report=report, start=period.start.isoformat(), end=period.end.isoformat(),
                   **_shown(report.days, {"model": ("Tokens by model",
                                                    _model_rows(report.models))}))
    return render(request, "conversations/usage.html", context)


def _filters(request: HttpRequest) -> tuple[usage.UsageFilter, str]:
    """The team page's ?user=<username>&group=<id>&model=<label>, or an error to show."""
    username = request.GET.get("user", "").strip()
    group = request.GET.get("group", "").strip()
    model = request.GET.get("model", "")
    user_id = group_id = None
    if username:
        user_id = (get_user_model().objects.filter(**{get_user_model().USERNAME_FIELD: username})
                   .values_list("pk", flat=True).first())
        if user_id is None:
            return usage.UsageFilter(), f"There is no user named “{username[:150]}”."
    if group:
        if not group.isdigit():
            return usage.UsageFilter(), "Choose the group from the list."
        group_id = int(group)
    if len(model) > MAX_MODEL_CHARS:
        return usage.UsageFilter(), "That is not a model's name."
    return usage.UsageFilter(user_id=user_id, group_id=group_id, model=model or None), ""


@require_GET
@login_required
def team_usage(request: HttpRequest) -> HttpResponse:
    if not usage.can_see_team_usage(request.user):
        raise PermissionDenied("Only staff who may view messages see the team's usage.")
    period, error = _range(request)
    only, filter_error = _filters(request) if period is not None else (usage.UsageFilter(), "")
    context = {
        **admin.site.each_context(request), "title": "Usage and cost",
        "currency": settings.COST_CURRENCY, "time_zone": settings.TIME_ZONE,
        "error": error or filter_error,
        "start": request.GET.get("start", ""), "end": request.GET.get("end", ""),
        "user_filter": request.GET.get("user", "").strip(),
        "group_filter": request.GET.get("group", ""), "model_filter": request.GET.get("model", ""),
        "max_days": usage.MAX_DAYS, "max_users": usage.MAX_USER_ROWS,
    }
    if period is None or filter_error:
        return render(request, "conversations/usage_team.html", context, status=400)
    report = usage.team_usage(period=period, only=only)
    context.update(report=report, start=period.start.isoformat(), end=period.end.isoformat(),
                   **_shown(report.days, {
                       "model": ("Tokens by model", _model_rows(report.models)),
                       "user": ("Tokens by person",
                                [(u.username, u.totals) for u in report.users]),
                       "group": ("Tokens by group",
                                 [(g.name if g.group_id else "(in no group)", g.totals)
                                  for g in report.groups]),
                   }))
    return render(request, "conversations/usage_team.html", context)
