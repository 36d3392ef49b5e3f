"""Conversations, messages and tool calls: what users see and what the audit keeps.

Rows are loaded for users only through conversations.selectors (access_*), never directly in a
view or consumer. Messages and tool calls are the audit record: the admin shows them read-only.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class Conversation(models.Model):
    class Source(models.TextChoices):
        WEB = "web", "Web"
        API = "api", "API"

    # Random ids in addresses: a conversation's URL reveals nothing about how many others exist.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="conversations"
    )
    title = models.CharField(max_length=200, blank=True)
    agent = models.ForeignKey(
        "agents.Agent", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.WEB)
    # The personal key an API conversation was made with (the audit says which script it was).
    api_key = models.ForeignKey("accounts.ApiKey", null=True, blank=True,
                                on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    # Last activity (a message sent or answered): the sidebar's order.
    updated_at = models.DateTimeField(auto_now=True)
    # Kept by the retention purge whatever its age (conversations.retention), until released.
    legal_hold = models.BooleanField(default=False)
    # Deleting hides a conversation from its owner; the audit keeps it.
    is_deleted = models.BooleanField(default=False)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # A user's conversations by recency (the sidebar).
            models.Index(
                fields=["owner", "-updated_at"],
                condition=Q(is_deleted=False),
                name="conv_owner_recent",
            ),
            # Audit: conversations by date, and by user and date (deleted ones included).
            models.Index(fields=["created_at"], name="conv_created"),
            models.Index(fields=["owner", "created_at"], name="conv_owner_created"),
        ]

    def __str__(self) -> str:
        return self.title or f"Conversation {self.id}"


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user", "User"
        ASSISTANT = "assistant", "Assistant"
        SYSTEM = "system", "System"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"  # stored, waiting for the model (queued or retrying)
        STREAMING = "streaming", "Streaming"
        COMPLETE = "complete", "Complete"
        STOPPED = "stopped", "Stopped"  # the user pressed Stop; the partial text is kept
        FAILED = "failed", "Failed"  # the model server failed; error says why
        INTERRUPTED = "interrupted", "Interrupted"  # the process running the turn died

    # A turn is writing the message (or its process died before it could say otherwise): the
    # one list of them (the schema's check constraint and index spell it out for migrations).
    UNFINISHED_STATUSES = (Status.PENDING, Status.STREAMING)

    conversation = models.ForeignKey(
        Conversation, on_delete=models.PROTECT, related_name="messages"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True)
    reasoning = models.TextField(blank=True)
    # Anthropic signs thinking blocks; the signature must go back upstream with the reasoning.
    reasoning_signature = models.TextField(blank=True)
    reasoning_ms = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE)
    # The model that actually answered (after any fallback), as "server:model".
    model = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    # Edits and regenerations make branches: a message's parent is the message it answers or
    # follows; siblings share a parent. Null for the first message of a conversation.
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    # Sent by the client with a user message, so a resent message is stored once.
    client_key = models.CharField(max_length=64, null=True, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    reasoning_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    # At the prices of the answering model when the turn started (agents.model_info), in
    # COST_CURRENCY.
    cost = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    # While the turn runs: what budgets hold back for it (its rounds so far and the dearest
    # next one; conversations.budgets). Meaningless once it has finished.
    reserved_tokens = models.PositiveIntegerField(default=0)
    reserved_cost = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    # Timings: created (queued), first token, finished.
    created_at = models.DateTimeField(auto_now_add=True)
    first_token_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Last write of a streaming message: also the turn's heartbeat (see TURN_STALE_AFTER).
    updated_at = models.DateTimeField(auto_now=True)
    # Number of the last turn event included in this row's content (joining mid-turn).
    last_seq = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["conversation", "client_key"],
                condition=Q(client_key__isnull=False),
                name="message_client_key_once",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "streaming", "complete", "stopped",
                                        "failed", "interrupted"]),
                name="message_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(role__in=["user", "assistant", "system"]),
                name="message_role_valid",
            ),
        ]
        indexes = [
            # A conversation's messages in order.
            models.Index(fields=["conversation", "created_at", "id"], name="msg_conv_order"),
            # Audit by date and by model; finding turns left streaming by a dead process.
            models.Index(fields=["created_at"], name="msg_created"),
            # A resent message is found by its key before a new conversation is made for it.
            models.Index(
                fields=["client_key"], condition=Q(client_key__isnull=False), name="msg_client_key"
            ),
            models.Index(fields=["model", "created_at"], name="msg_model_created"),
            models.Index(
                fields=["updated_at"],
                condition=Q(status__in=["pending", "streaming"]),
                name="msg_unfinished",
            ),
            # The audit's status filter, newest first (conversations.admin): only answers that
            # ended badly, so a row enters it at most once, when its turn fails, stops or is
            # interrupted (nothing on the hot path of a normal turn); "complete", nearly every
            # row, is served by msg_created, and the unfinished ones by msg_unfinished.
            models.Index(
                fields=["created_at"],
                condition=Q(status__in=["stopped", "failed", "interrupted"]),
                name="msg_ended_badly",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.role} message {self.pk}"


class ToolCall(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"  # asked for by the model, not yet started
        AWAITING_APPROVAL = "awaiting_approval", "Awaiting approval"
        RUNNING = "running", "Running"
        COMPLETE = "complete", "Complete"
        FAILED = "failed", "Failed"
        DENIED = "denied", "Denied"
        CANCELLED = "cancelled", "Cancelled"
        # A tool of the /v1 API's client: the call went back to the client, which runs it.
        CLIENT = "client", "Returned to the client"

    class Approval(models.TextChoices):
        POLICY = "policy", "Run by policy"
        APPROVED = "approved", "Approved"
        DENIED = "denied", "Denied"
        TIMED_OUT = "timed_out", "No decision in time"

    message = models.ForeignKey(Message, on_delete=models.PROTECT, related_name="tool_calls")
    # The id the model gave the call; results go back upstream under it.
    call_id = models.CharField(max_length=200)
    # Name of the MCP server that served the tool (blank for built-in tools).
    server = models.CharField(max_length=100, blank=True)
    tool_name = models.CharField(max_length=200)
    arguments = models.JSONField(default=dict)
    # Which model round asked for the call, and how much of the answer's text came before it:
    # together they rebuild the upstream history (text, calls, results, more text) in order.
    round = models.PositiveSmallIntegerField(default=0)
    text_offset = models.PositiveIntegerField(default=0)
    # The exact definition (agents.mcp.config.ToolDefinition.definition_hash) that was offered
    # and run: what the call did is judged against what the tool said it does.
    definition_hash = models.CharField(max_length=64, blank=True)
    result = models.TextField(blank=True)
    # A result longer than TOOL_RESULT_MAX_CHARS is cut before it reaches the model: `result`
    # is what the model saw, `result_chars` the size the server sent.
    result_truncated = models.BooleanField(default=False)
    result_chars = models.PositiveIntegerField(default=0)
    is_error = models.BooleanField(default=False)
    status = models.CharField(max_length=24, choices=Status.choices, default=Status.PENDING)
    # How the call was allowed: by policy (run), or by a user's decision (approved, denied).
    approval = models.CharField(max_length=12, choices=Approval.choices, blank=True)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.PROTECT, related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["message", "call_id"], name="toolcall_once_per_msg"),
        ]
        indexes = [
            # Audit by tool and date.
            models.Index(fields=["tool_name", "created_at"], name="toolcall_tool_created"),
            models.Index(fields=["server", "created_at"], name="toolcall_server_created"),
            models.Index(fields=["created_at"], name="toolcall_created"),
        ]

    def __str__(self) -> str:
        return f"{self.tool_name} ({self.call_id})"


class AdminRead(models.Model):
    """Who read whose conversation in the admin, and when: the audit of the audit. Written by
    the admin's own pages (conversations.audit_reads), never changed or deleted there; only
    superusers see it."""

    reader = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                               related_name="+")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                              related_name="+")
    # The conversation's id as text: the record must outlive the conversation (a purge).
    conversation_ref = models.CharField("conversation", max_length=36)
    # What was opened: the conversation, one of its messages, or one of its tool calls.
    what = models.CharField(max_length=100)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "admin read"
        indexes = [
            models.Index(fields=["at"], name="adminread_at"),
            models.Index(fields=["owner", "at"], name="adminread_owner_at"),
            models.Index(fields=["reader", "at"], name="adminread_reader_at"),
        ]

    def __str__(self) -> str:
        return f"{self.reader} read {self.what} of {self.owner}"


class Budget(models.Model):
    """A limit on one person's or one group's use: tokens, cost or turns, per minute, day or
    month (conversations.budgets checks it before each model round). A group's budget is the
    whole group's: its members' use is added up."""

    class Metric(models.TextChoices):
        TOKENS = "tokens", "Tokens (input and output)"
        COST = "cost", "Cost (in COST_CURRENCY)"
        TURNS = "turns", "Turns (answers started)"

    class Period(models.TextChoices):
        MINUTE = "minute", "Minute (the last 60 seconds)"
        DAY = "day", "Day (from midnight, TIME_ZONE)"
        MONTH = "month", "Month (from the 1st, TIME_ZONE)"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                             on_delete=models.CASCADE, related_name="budgets")
    group = models.ForeignKey("auth.Group", null=True, blank=True, on_delete=models.CASCADE,
                              related_name="budgets")
    metric = models.CharField(max_length=8, choices=Metric.choices)
    period = models.CharField(max_length=8, choices=Period.choices)
    limit = models.DecimalField(max_digits=14, decimal_places=4,
                                help_text="Tokens, an amount of money or a number of turns.")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(user__isnull=False, group__isnull=True)
                | Q(user__isnull=True, group__isnull=False),
                name="budget_user_or_group"),
            models.UniqueConstraint(fields=["user", "metric", "period"],
                                    condition=Q(user__isnull=False), name="budget_once_per_user"),
            models.UniqueConstraint(fields=["group", "metric", "period"],
                                    condition=Q(group__isnull=False),
                                    name="budget_once_per_group"),
            models.CheckConstraint(condition=Q(limit__gte=0), name="budget_limit_positive"),
        ]

    def __str__(self) -> str:
        who = f"user {self.user}" if self.user_id else f"group {self.group}"
        return f"{who}: {self.limit.normalize():f} {self.metric} per {self.period}"
