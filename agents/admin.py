from __future__ import annotations

from django import forms
from django.contrib import admin

from agents.models import Agent, ModelServer


class ModelServerForm(forms.ModelForm):
    # Write-only: the stored key is never rendered back; leaving the box empty keeps it.
    api_key = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted. Leave empty to keep the current key.",
    )
    clear_api_key = forms.BooleanField(required=False, label="Remove the stored API key")

    class Meta:
        model = ModelServer
        fields = ["name", "kind", "base_url", "api_key", "clear_api_key", "max_concurrency",
                  "first_token_timeout"]

    def clean(self):
        data = super().clean()
        if self.instance.pk and not data.get("api_key") and not data.get("clear_api_key"):
            data["api_key"] = ModelServer.objects.get(pk=self.instance.pk).api_key
        return data


@admin.register(ModelServer)
class ModelServerAdmin(admin.ModelAdmin):
    form = ModelServerForm
    list_display = ["name", "kind", "base_url", "has_api_key", "max_concurrency"]

    @admin.display(boolean=True, description="API key set")
    def has_api_key(self, obj: ModelServer) -> bool:
        return bool(obj.api_key)


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "server", "model", "is_default", "enabled"]
    list_filter = ["server", "enabled"]
    search_fields = ["name", "slug", "model"]
    prepopulated_fields = {"slug": ["name"]}
