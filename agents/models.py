"""Admin-managed definitions of the model side: model servers and agents.

Until an admin adds rows here, the default provider and agent come from the environment
(LLM_* settings, see agents.definitions)."""

from __future__ import annotations

from urllib.parse import urlparse

from django.core.exceptions import ValidationError
from django.db import models

from agents.fields import EncryptedTextField


def validate_server_url(value: str) -> None:
    # Not URLField: intranet hosts such as http://vllm:8000/v1 have no dot in their name.
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValidationError("Enter an http:// or https:// URL with a host name.")


class ModelServer(models.Model):
    class Kind(models.TextChoices):
        OPENAI = "openai", "OpenAI-compatible (vLLM, Ollama, OpenRouter, LM Studio)"
        ANTHROPIC = "anthropic", "Anthropic Messages API"

    name = models.SlugField(max_length=64, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.OPENAI)
    base_url = models.CharField(
        max_length=500, validators=[validate_server_url],
        help_text="For example http://vllm:8000/v1",
    )
    # Encrypted at rest; never rendered back in the admin or sent to a browser.
    api_key = EncryptedTextField(blank=True, default="")
    max_concurrency = models.PositiveIntegerField(
        default=32, help_text="Turns beyond this many concurrent streams wait in a queue."
    )
    first_token_timeout = models.FloatField(default=120.0, help_text="Seconds.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.name


class Agent(models.Model):
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=64, unique=True)
    description = models.CharField(max_length=300, blank=True)
    system_prompt = models.TextField(blank=True)
    # Null: the default model server from the environment (LLM_BASE_URL).
    server = models.ForeignKey(ModelServer, null=True, blank=True, on_delete=models.PROTECT)
    model = models.CharField(max_length=200, help_text="The model name the server expects.")
    # Tried in order when the main model fails before its first token: ["server-name:model", ...]
    # or plain model names on the same server.
    fallback_models = models.JSONField(default=list, blank=True)
    is_default = models.BooleanField(default=False)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"],
                condition=models.Q(is_default=True),
                name="one_default_agent",
            )
        ]

    def __str__(self) -> str:
        return self.name
