"""The admin of MCP tools: turn each on or off, set its approval policy, and review a changed
definition side by side before accepting it (agents.tool_catalog holds it until then)."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from agents.models import McpTool
from agents.tool_catalog import do_accept_tool_definition


class HeldFilter(admin.SimpleListFilter):
    title = "review"
    parameter_name = "held"

    def lookups(self, request, model_admin):
        return [("yes", "Changed, waiting for review"), ("no", "Accepted")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.exclude(pending_hash="")
        if self.value() == "no":
            return queryset.filter(pending_hash="")
        return queryset


@admin.register(McpTool)
class McpToolAdmin(admin.ModelAdmin):
    list_display = ["exposed_name", "server", "enabled", "approval", "who", "review", "missing",
                    "last_seen_at"]
    list_editable = ["enabled", "approval"]
    list_filter = ["server", "enabled", "approval", HeldFilter, "missing", "allowed_groups"]
    search_fields = ["name", "exposed_name", "description", "server__name"]
    list_select_related = ["server"]
    filter_horizontal = ["allowed_groups"]
    fields = ["server", "name", "exposed_name", "enabled", "approval", "server_limit",
              "allowed_groups", "review", "description", "schema", "annotations_json",
              "definition_hash", "accepted_by", "accepted_at", "first_seen_at", "last_seen_at",
              "missing"]
    readonly_fields = ["server", "name", "exposed_name", "server_limit", "review",
                       "description", "schema", "annotations_json", "definition_hash",
                       "accepted_by", "accepted_at", "first_seen_at", "last_seen_at", "missing"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # tools come from their servers' listings

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("allowed_groups",
                                                              "server__allowed_groups")

    @admin.display(description="Limited to")
    def who(self, obj: McpTool) -> str:
        """Both limits: a person must pass the server's and the tool's."""
        server, own = obj.server.allowed_groups.all(), obj.allowed_groups.all()
        if not server and not own:
            return "everyone"
        parts = []
        if server:
            parts.append(f"server: {group_names(server)}")
        if own:
            parts.append(f"tool: {group_names(own)}")
        return "; ".join(parts)

    @admin.display(description="Its server is limited to")
    def server_limit(self, obj: McpTool) -> str:
        return group_names(obj.server.allowed_groups.all())

    @admin.display(description="Definition")
    def review(self, obj: McpTool) -> str:
        if not obj.pending_hash:
            return "accepted"
        url = reverse("admin:agents_mcptool_review", args=[obj.pk])
        label = "new tool" if not obj.definition_hash else "changed by its server"
        return format_html('<a href="{}"><strong>Held: {}</strong>, review</a>', url, label)

    @admin.display(description="Input schema")
    def schema(self, obj: McpTool) -> str:
        return format_html("<pre>{}</pre>", _pretty(obj.input_schema))

    @admin.display(description="Annotations (the server's hints: they approve nothing)")
    def annotations_json(self, obj: McpTool) -> str:
        return format_html("<pre>{}</pre>", _pretty(obj.annotations))

    def get_urls(self):
        return [path("<int:tool_id>/review/", self.admin_site.admin_view(self.review_view),
                     name="agents_mcptool_review"), *super().get_urls()]

    def review_view(self, request: HttpRequest, tool_id: int):
        tool = get_object_or_404(McpTool.objects.select_related("server"), pk=tool_id)
        if not self.has_change_permission(request, tool):
            raise PermissionDenied
        if request.method == "POST" and tool.pending_hash:
            do_accept_tool_definition(tool_id=tool.pk, user=request.user)
            messages.success(request, f"The new definition of {tool} is accepted: the tool is "
                                      "offered again.")
            return HttpResponseRedirect(reverse("admin:agents_mcptool_change", args=[tool.pk]))
        context = {
            **self.admin_site.each_context(request), "opts": self.model._meta, "tool": tool,
            "title": f"Review the definition of {tool}",
            "rows": [
                ("Description", tool.description if tool.definition_hash else "",
                 tool.pending_description),
                ("Input schema", _pretty(tool.input_schema) if tool.definition_hash else "",
                 _pretty(tool.pending_input_schema)),
                ("Annotations", _pretty(tool.annotations) if tool.definition_hash else "",
                 _pretty(tool.pending_annotations)),
                ("Hash", tool.definition_hash, tool.pending_hash),
            ],
        }
        return TemplateResponse(request, "admin/agents/mcptool/review.html", context)


def _pretty(value) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) if value else ""


def group_names(groups) -> str:
    """A group limit as the admin shows it (from prefetched groups: no query)."""
    names = sorted(g.name for g in groups)
    return ", ".join(names) if names else "everyone"
