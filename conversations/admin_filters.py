"""The audit admin's list filters, with choices that cost the same at a million messages as at
ten: taken from the small tables (users, models) or from a bounded window of the newest rows,
never from a DISTINCT over the messages.

Filtering conversations by their messages (model, tool, status) or their owner's groups is an
EXISTS or IN subquery: a field filter on the to-many path would make the change list join and
then DISTINCT the whole result to drop the repeated rows.
"""

from __future__ import annotations

import datetime

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models import Exists, OuterRef
from django.utils import timezone

from agents.models import LanguageModel
from conversations.models import Message, ToolCall

# Users listed as links in the user filter; past that, the filter's username box finds anyone.
USER_CHOICES = 100
# Distinct values offered by a "recent values" filter are those of the newest RECENT_WINDOW rows
# (an index scan of that many rows), plus any value the filter is set to.
RECENT_WINDOW = 5000


def _hidden_params(request, *, own: set[str]) -> list[tuple[str, str]]:
    """The list's other parameters, for a filter's own form to carry along (not the page)."""
    return [(key, value) for key, values in request.GET.lists() if key not in own and key != "p"
            for value in values]


class UserFilter(admin.RelatedFieldListFilter):
    """By person: up to USER_CHOICES users as links (one bounded query on the users table), and
    a username box for the rest. RelatedOnlyFieldListFilter, which this replaces, listed the
    users found in a DISTINCT over every row of the list."""

    template = "admin/conversations/user_filter.html"

    def __init__(self, field, request, params, model, model_admin, field_path):
        # Not "<path>__username": the admin refuses lookups that far along a relation unless
        # they are a list_filter's own path.
        self.lookup_kwarg_username = f"{field_path}_username"
        super().__init__(field, request, params, model, model_admin, field_path)
        username = (self.used_parameters.pop(self.lookup_kwarg_username, None) or [""])[-1]
        self.username = username.strip()
        self.hidden = _hidden_params(request, own=set(self.expected_parameters()))

    def queryset(self, request, queryset):
        queryset = super().queryset(request, queryset)
        if self.username:
            queryset = queryset.filter(**{f"{self.field_path}__username": self.username})
        return queryset

    def expected_parameters(self):
        return [*super().expected_parameters(), self.lookup_kwarg_username]

    def has_output(self):
        return True

    def field_choices(self, field, request, model_admin):
        users = get_user_model().objects.order_by("username").only("pk", "username")
        rows = list(users[: USER_CHOICES + 1])
        self.more_users = len(rows) > USER_CHOICES
        rows = rows[:USER_CHOICES]
        chosen = self.lookup_val[-1] if self.lookup_val else None
        if chosen and chosen.isdigit() and all(str(u.pk) != chosen for u in rows):
            rows += list(users.filter(pk=int(chosen)))
        return [(u.pk, u.get_username()) for u in rows]


def recent_values(model, field_name: str, *, also=()) -> list[str]:
    """The distinct non-blank values of `field_name` among the newest RECENT_WINDOW rows of
    `model` (by created_at), with `also`, sorted."""
    values = set(model._default_manager.order_by("-created_at")
                 .values_list(field_name, flat=True)[:RECENT_WINDOW])
    return sorted(v for v in values | set(also) if v)


def model_names() -> list[str]:
    """The configured models, named as messages store them ("server:model", or a default
    server's bare name)."""
    return [str(m) for m in LanguageModel.objects.select_related("server")]


class RecentValuesFilter(admin.AllValuesFieldListFilter):
    """By a text field's value (a model name, a tool): the values of the newest RECENT_WINDOW
    rows of the field's table, instead of AllValuesFieldListFilter's DISTINCT over all of them.
    An older value is still a filter by URL (?<field>=<value>), and shown once chosen."""

    def __init__(self, field, request, params, model, model_admin, field_path):
        super().__init__(field, request, params, model, model_admin, field_path)
        # The parent's lookup_choices is a lazy DISTINCT query: replaced before it runs.
        self.lookup_choices = recent_values(field.model, field.name,
                                            also=[*self.known_values(), *(self.lookup_val or ())])

    def known_values(self) -> list[str]:
        return []


class ModelNameFilter(RecentValuesFilter):
    """By the model that answered: the configured models (agents.models.LanguageModel, named as
    messages store them, "server:model" or a default server's bare name) and those seen lately."""

    def known_values(self) -> list[str]:
        return model_names()


class DateRangeFilter(admin.DateFieldListFilter):
    """By date: today, past 7 days, this month, this year (the parent's links, no query), and a
    from-to form (both days included, in TIME_ZONE). Replaces date_hierarchy, which listed the
    distinct years, months or days present: a scan of the whole table on every page."""

    template = "admin/conversations/date_range_filter.html"

    def __init__(self, field, request, params, model, model_admin, field_path):
        self.lookup_kwarg_from = f"{field_path}__from"
        self.lookup_kwarg_to = f"{field_path}__to"
        super().__init__(field, request, params, model, model_admin, field_path)
        self.typed = {}
        for key, lookup, days in ((self.lookup_kwarg_from, self.lookup_kwarg_since, 0),
                                  (self.lookup_kwarg_to, self.lookup_kwarg_until, 1)):
            values = self.used_parameters.pop(key, None)
            if not values or not values[-1]:
                continue
            try:
                day = datetime.date.fromisoformat(values[-1])
            except ValueError as exc:
                raise IncorrectLookupParameters(exc) from exc
            self.typed[key] = day.isoformat()
            moment = datetime.datetime.combine(day + datetime.timedelta(days=days),
                                               datetime.time.min)
            self.used_parameters[lookup] = [timezone.make_aware(moment)]
        self.typed_from = self.typed.get(self.lookup_kwarg_from, "")
        self.typed_to = self.typed.get(self.lookup_kwarg_to, "")
        self.hidden = _hidden_params(request, own=set(self.expected_parameters()))

    def expected_parameters(self):
        return [*super().expected_parameters(), self.lookup_kwarg_from, self.lookup_kwarg_to]


class _ConversationsWithFilter(admin.SimpleListFilter):
    """Conversations with at least one matching message (or tool call), as EXISTS."""

    def matching(self, value: str):
        """The rows that make a conversation (OuterRef("pk")) match."""
        raise NotImplementedError

    def queryset(self, request, queryset):
        value = self.value()
        return queryset if value is None else queryset.filter(Exists(self.matching(value)))


class ConversationModelFilter(_ConversationsWithFilter):
    title = "model"
    parameter_name = "messages__model"

    def lookups(self, request, model_admin):
        chosen = [self.value()] if self.value() else []
        return [(v, v) for v in recent_values(Message, "model", also=[*model_names(), *chosen])]

    def matching(self, value):
        return Message.objects.filter(conversation=OuterRef("pk"), model=value)


class ConversationToolFilter(_ConversationsWithFilter):
    title = "tool"
    parameter_name = "messages__tool_calls__tool_name"

    def lookups(self, request, model_admin):
        chosen = [self.value()] if self.value() else []
        return [(v, v) for v in recent_values(ToolCall, "tool_name", also=chosen)]

    def matching(self, value):
        return ToolCall.objects.filter(message__conversation=OuterRef("pk"), tool_name=value)


class ConversationStatusFilter(_ConversationsWithFilter):
    title = "message status"
    parameter_name = "messages__status"

    def lookups(self, request, model_admin):
        return Message.Status.choices

    def matching(self, value):
        return Message.objects.filter(conversation=OuterRef("pk"), status=value)


class OwnerGroupFilter(admin.SimpleListFilter):
    """By the owner's group (the groups table: small). The owners are a subquery, so a
    conversation is listed once whatever the joins."""

    title = "group"
    parameter_name = "owner__groups"

    def lookups(self, request, model_admin):
        return [(str(g.pk), g.name) for g in Group.objects.order_by("name")]

    def queryset(self, request, queryset):
        value = self.value()
        if value is None:
            return queryset
        if not value.isdigit():
            raise IncorrectLookupParameters(f"No group {value!r}.")
        return queryset.filter(owner__in=get_user_model().objects.filter(groups=int(value))
                               .values("pk"))
