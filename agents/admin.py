from __future__ import annotations

from django import forms
from django.contrib import admin, messages

from agents import admin_tools  # noqa: F401  (registers the MCP tool admin)
from agents.admin_tools import group_names
from agents.models import Agent, AgentToolPolicy, LanguageModel, ModelServer


class ModelServerForm(forms.ModelForm):
    # Write-only: the stored key is never rendered back; leaving the box empty keeps it.
    api_key = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted. Leave empty to keep the current key (changing the URL or "
                  "the kind removes it: enter it again in the same save).",
    )
    clear_api_key = forms.BooleanField(required=False, label="Remove the stored API key")

    class Meta:
        model = ModelServer
        fields = ["name", "kind", "base_url", "api_key", "clear_api_key", "max_concurrency",
                  "first_token_timeout"]

    # Set by clean() when a stored key was removed because the server changed.
    key_dropped = False

    def clean(self):
        data = super().clean()
        if self.instance.pk and not data.get("api_key") and not data.get("clear_api_key"):
            stored = ModelServer.objects.get(pk=self.instance.pk)
            data["api_key"] = kept_key(stored, kind=data.get("kind"),
                                       base_url=data.get("base_url"))
            self.key_dropped = bool(stored.api_key) and not data["api_key"]
        return data


def kept_key(stored: ModelServer, *, kind: str | None, base_url: str | None) -> str:
    """The stored key, if a save that enters none may keep it: only while the server stays the
    one it was entered for. Otherwise the next answer would carry it to whatever host the new
    URL names (a typo, or someone who may edit servers but must not read their keys)."""
    if stored.kind == kind and stored.base_url == base_url:
        return stored.api_key
    return ""


class LanguageModelInline(admin.TabularInline):
    model = LanguageModel
    extra = 1
    fields = ["name", "context_window", "max_output_tokens", "input_price", "output_price",
              "cached_input_price"]
    verbose_name_plural = "models (limits, and prices per million tokens)"


@admin.register(LanguageModel)
class LanguageModelAdmin(admin.ModelAdmin):
    """Every model, the default server's too (they have no server row to sit under)."""

    list_display = ["name", "server", "context_window", "max_output_tokens", "input_price",
                    "output_price", "cached_input_price"]
    list_filter = ["server"]
    search_fields = ["name"]
    fields = ["server", "name", "context_window", "max_output_tokens", "input_price",
              "output_price", "cached_input_price"]


@admin.register(ModelServer)
class ModelServerAdmin(admin.ModelAdmin):
    form = ModelServerForm
    list_display = ["name", "kind", "base_url", "has_api_key", "max_concurrency"]
    inlines = [LanguageModelInline]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if getattr(form, "key_dropped", False):
            messages.warning(request, f"The stored API key of {obj.name} was removed because its "
                             "URL or kind changed: enter the key again if the server needs one.")

    @admin.display(boolean=True, description="API key set")
    def has_api_key(self, obj: ModelServer) -> bool:
        return bool(obj.api_key)


class AgentToolPolicyInline(admin.TabularInline):
    model = AgentToolPolicy
    extra = 0
    autocomplete_fields = ["tool"]
    verbose_name = "approval policy for one tool (over the tool's own)"
    verbose_name_plural = "approval policies for single tools (over the tools' own)"


class AgentForm(forms.ModelForm):
    class Meta:
        model = Agent
        fields = "__all__"

    def clean(self):
        data = super().clean()
        # The default answers every conversation without an agent of its own: limited, it would
        # leave everyone outside its groups with no agent at all.
        if data.get("is_default") and data.get("allowed_groups"):
            raise forms.ValidationError("The default agent is everyone's: it cannot be limited "
                                        "to groups. Limit another agent, or make another one "
                                        "the default.")
        return data


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    form = AgentForm
    list_display = ["name", "slug", "server", "model", "tools_mode", "who", "is_default",
                    "enabled"]
    list_filter = ["server", "enabled", "tools_mode", "allowed_groups"]
    search_fields = ["name", "slug", "model"]
    prepopulated_fields = {"slug": ["name"]}
    filter_horizontal = ["allowed_groups", "tool_servers", "tools"]
    inlines = [AgentToolPolicyInline]
    fieldsets = [
        (None, {"fields": ["name", "slug", "description", "system_prompt", "server", "model",
                           "fallback_models", "temperature", "is_default", "enabled"]}),
        ("Who may use it", {"fields": ["allowed_groups"],
                            "description": "In the chat the limit applies to everyone, staff "
                                           "and superusers too: join a group to use the agent."}),
        ("Tools", {"fields": ["tools_mode", "tool_servers", "tools", "max_tool_rounds"]}),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("allowed_groups")

    @admin.display(description="Limited to")
    def who(self, obj: Agent) -> str:
        return group_names(obj.allowed_groups.all())



from agents import admin_servers  # noqa: F401, E402  (registers the MCP server admin)
