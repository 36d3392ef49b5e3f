"""Admin-managed definitions of the model side: model servers and agents.

Until an admin adds rows here, the default provider and agent come from the environment
(LLM_* settings, see agents.definitions)."""

from __future__ import annotations

from decimal import Decimal
from urllib.parse import urlparse

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
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


def _price_field(label: str) -> models.DecimalField:
    return models.DecimalField(
        f"{label} price", max_digits=12, decimal_places=4, default=Decimal(0),
        validators=[MinValueValidator(Decimal(0))],
        help_text="Per million tokens, in COST_CURRENCY. Zero for our own hardware, or an "
                  "internal cost.")


class LanguageModel(models.Model):
    """What we know of one model on one server: its limits and its prices. A model an agent
    names without a row here gets MODEL_CONTEXT_WINDOW, MAX_OUTPUT_TOKENS and no cost."""

    # Null: the environment's default server (LLM_BASE_URL).
    server = models.ForeignKey(ModelServer, null=True, blank=True, on_delete=models.CASCADE,
                               related_name="models",
                               help_text="Empty: the default server of the environment.")
    name = models.CharField(max_length=200, help_text="The model name the server expects.")
    context_window = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(256)],
        help_text="Tokens of input and output together. Empty: MODEL_CONTEXT_WINDOW.")
    max_output_tokens = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)],
        help_text="The most tokens one answer may have. Empty: MAX_OUTPUT_TOKENS.")
    input_price = _price_field("input")
    output_price = _price_field("output")
    cached_input_price = _price_field("cached input")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "model"
        constraints = [
            models.UniqueConstraint(fields=["server", "name"],
                                    condition=models.Q(server__isnull=False),
                                    name="languagemodel_once_per_server"),
            models.UniqueConstraint(fields=["name"], condition=models.Q(server__isnull=True),
                                    name="languagemodel_once_on_default"),
        ]

    def __str__(self) -> str:
        return f"{self.server.name}:{self.name}" if self.server_id else self.name


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
    # Null: the model's own default. A client of the /v1 API may set its own.
    temperature = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.0), MaxValueValidator(2.0)],
        help_text="0 to 2. Empty: the model's default.")
    is_default = models.BooleanField(default=False)
    enabled = models.BooleanField(default=True)
    # Empty: everyone may use it (agents.access says who may, and that the limit applies to
    # staff in the chat too).
    allowed_groups = models.ManyToManyField(
        Group, blank=True, related_name="+", verbose_name="limited to groups",
        help_text="Only members of these groups see and use this agent. None: everyone.")

    class ToolsMode(models.TextChoices):
        ALL = "all", "Every enabled tool"
        CHOSEN = "chosen", "Only the servers and tools chosen below"
        NONE = "none", "No tools"

    tools_mode = models.CharField(max_length=8, choices=ToolsMode.choices, default=ToolsMode.ALL)
    tool_servers = models.ManyToManyField("McpServer", blank=True, related_name="+",
                                          help_text="With chosen tools: every tool of these.")
    tools = models.ManyToManyField("McpTool", blank=True, related_name="+",
                                   help_text="With chosen tools: these single tools too.")
    # Model rounds in one answer (each round may call tools); blank: TOOL_MAX_ROUNDS.
    max_tool_rounds = models.PositiveSmallIntegerField(null=True, blank=True)
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


def validate_mcp_server_name(value: str) -> None:
    # Names from Claude Desktop or Cursor files ("brave-search", "github.com") are kept as they
    # are; the model sees tools under a sanitized form (agents.tool_names).
    if not value or not all(c.isascii() and (c.isalnum() or c in "-_.") for c in value):
        raise ValidationError("Use letters, digits, '-', '_' and '.' only.")


class ApprovalPolicy(models.TextChoices):
    RUN = "run", "Run without asking"
    ASK = "ask", "Ask the user first"


class McpServer(models.Model):
    """An MCP server whose tools the models may call. A stdio server is a program we start on
    this host: only superusers may add or change one (agents.admin)."""

    class Transport(models.TextChoices):
        STDIO = "stdio", "stdio (a local program)"
        HTTP = "http", "Streamable HTTP"
        SSE = "sse", "HTTP+SSE (the older transport)"

    name = models.CharField(max_length=64, unique=True, validators=[validate_mcp_server_name])
    transport = models.CharField(max_length=8, choices=Transport.choices,
                                 default=Transport.STDIO)
    enabled = models.BooleanField(default=True)
    # Empty: every person's model may get its tools (agents.access).
    allowed_groups = models.ManyToManyField(
        Group, blank=True, related_name="+", verbose_name="limited to groups",
        help_text="Only the models of members of these groups get this server's tools. "
                  "None: everyone's.")
    # stdio. Any value here (and in url, env, headers) may hold ${VAR} or ${VAR:-default}
    # references to this process's environment, resolved at connect (agents.env_refs); since
    # one can name any variable we have, only superusers may save one.
    command = models.CharField(max_length=500, blank=True)
    args = models.JSONField(default=list, blank=True)
    # JSON objects of names to values, encrypted at rest (values are often tokens): write-only
    # in the admin, which shows only the names.
    env = EncryptedTextField(blank=True, default="")
    cwd = models.CharField("working directory", max_length=500, blank=True)
    # http, sse
    url = models.CharField(max_length=500, blank=True)
    headers = EncryptedTextField(blank=True, default="")
    allow_private_addresses = models.BooleanField(
        default=False, help_text="Allow a URL on a loopback, private or link-local address "
        "(refused by default: the server would fetch it from inside our network).")
    connect_timeout = models.FloatField(default=10.0, help_text="Seconds to start and greet.")
    list_timeout = models.FloatField(default=10.0, help_text="Seconds to list the tools.")
    call_timeout = models.FloatField(default=60.0, help_text="Seconds for one tool call.")
    # From the last listing (admin "Test connection", a change notice, a reconnect).
    last_error = models.TextField(blank=True)
    last_listed_at = models.DateTimeField(null=True, blank=True)
    protocol_version = models.CharField(max_length=32, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "MCP server"

    def __str__(self) -> str:
        return self.name


class McpTool(models.Model):
    """A tool as its server listed it, and what admins decided about it.

    `definition_hash` is the definition admins accepted (the first listing of a server is
    accepted as the admin adding it sees it). When the server later lists a different
    definition under the same name, the new one waits in `pending_*` and the tool is held: not
    offered to models and not run, until an admin accepts it (agents.tool_catalog)."""

    server = models.ForeignKey(McpServer, on_delete=models.CASCADE, related_name="tools")
    name = models.CharField(max_length=200, help_text="The server's name for the tool.")
    # As the model sees it: unique across servers, [A-Za-z0-9_-]{1,64} (agents.tool_names).
    exposed_name = models.CharField(max_length=64, unique=True)
    description = models.TextField(blank=True)
    input_schema = models.JSONField(default=dict)
    annotations = models.JSONField(default=dict, blank=True)
    definition_hash = models.CharField(max_length=64)
    enabled = models.BooleanField(default=True)
    # On top of its server's limit: a person must pass both (agents.access). Empty: no limit
    # of its own.
    allowed_groups = models.ManyToManyField(
        Group, blank=True, related_name="+", verbose_name="limited to groups",
        help_text="Only the models of members of these groups get this tool, on top of its "
                  "server's limit. None: no limit of its own.")
    approval = models.CharField(max_length=8, choices=ApprovalPolicy.choices,
                                default=ApprovalPolicy.ASK)
    # A definition the server lists now that no admin has accepted yet (blank hash: none).
    pending_hash = models.CharField(max_length=64, blank=True)
    pending_description = models.TextField(blank=True)
    pending_input_schema = models.JSONField(null=True, blank=True)
    pending_annotations = models.JSONField(null=True, blank=True)
    pending_since = models.DateTimeField(null=True, blank=True)
    # The server's last listing did not have it.
    missing = models.BooleanField(default=False)
    accepted_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                    on_delete=models.SET_NULL, related_name="+")
    accepted_at = models.DateTimeField(null=True, blank=True)
    first_seen_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "MCP tool"
        constraints = [
            models.UniqueConstraint(fields=["server", "name"], name="mcptool_once_per_server"),
        ]

    def __str__(self) -> str:
        return f"{self.server.name}/{self.name}"

    @property
    def held(self) -> bool:
        return bool(self.pending_hash)


class AgentToolPolicy(models.Model):
    """An agent's own approval policy for one tool, over the tool's."""

    agent = models.ForeignKey("Agent", on_delete=models.CASCADE, related_name="tool_policies")
    tool = models.ForeignKey(McpTool, on_delete=models.CASCADE, related_name="+")
    approval = models.CharField(max_length=8, choices=ApprovalPolicy.choices)

    class Meta:
        verbose_name = "tool policy"
        constraints = [
            models.UniqueConstraint(fields=["agent", "tool"], name="agenttoolpolicy_once"),
        ]
