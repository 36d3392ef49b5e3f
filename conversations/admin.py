"""The audit views. Conversations, messages and tool calls are the audit record: staff read them,
nobody edits them here, and only superusers may delete."""

from __future__ import annotations

from django.contrib import admin
from django.db import connection
from django.db.models import OuterRef, Q
from django.contrib.admin.utils import unquote
from django.http import HttpRequest, StreamingHttpResponse
from django.urls import reverse
from django.utils.http import urlencode
from django.utils import timezone

from conversations.admin_counts import EstimatedCountPaginator
from conversations.admin_filters import (ConversationModelFilter, ConversationStatusFilter,
                                         ConversationToolFilter, DateRangeFilter, ModelNameFilter,
                                         OwnerGroupFilter, RecentValuesFilter, UserFilter)
from conversations.admin_transcript import transcript_page
from conversations.audit_reads import do_record_admin_read
from conversations.export import jsonl_lines
from conversations import budgets, search
from conversations.models import AdminRead, Budget, Conversation, Message, ToolCall


class AuditAdminMixin:
    """Read-only for everyone; deletion for superusers only."""

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.is_active and request.user.is_superuser


class LargeListMixin:
    """A change list that stays fast at a million rows: no exact count past a cap (an estimate,
    conversations.admin_counts), no full-table count beside it, no per-choice counts (facets)."""

    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = EstimatedCountPaginator


class ReadRecordedMixin:
    """Opening a record's page is recorded (AdminRead): who read whose conversation, when."""

    def change_view(self, request, object_id, form_url="", extra_context=None):
        response = super().change_view(request, object_id, form_url, extra_context)
        if request.method == "GET" and response.status_code == 200:
            obj = self.get_object(request, unquote(object_id))
            if obj is not None:
                conversation, what = self.read_of(obj)
                do_record_admin_read(reader=request.user, conversation=conversation, what=what)
        return response

    def read_of(self, obj) -> tuple[Conversation, str]:
        """The conversation the page shows part of, and what part."""
        raise NotImplementedError


class ToolCallInline(AuditAdminMixin, admin.TabularInline):
    model = ToolCall
    extra = 0
    fields = ["call_id", "server", "tool_name", "arguments", "status", "approval", "decided_by",
              "is_error", "result", "result_truncated", "started_at", "finished_at"]
    readonly_fields = fields
    show_change_link = True


class MessageInline(AuditAdminMixin, admin.TabularInline):
    model = Message
    extra = 0
    # The transcript: parent shows the branches (edits, regenerations), reasoning what the model
    # thought before it answered.
    fields = ["id", "parent", "role", "status", "model", "content", "reasoning", "error",
              "input_tokens", "output_tokens", "cached_tokens", "cost", "created_at"]
    readonly_fields = fields
    show_change_link = True
    ordering = ["created_at", "id"]
    # One page of the transcript (?page=N on the conversation's page), with links to the others
    # and to the message list filtered by the conversation: all 2,000 messages of a long one
    # inlined took 1.4 s and 5.5 MB.
    template = "admin/conversations/transcript_inline.html"

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        if obj is None:
            return formset
        page = transcript_page(conversation_id=obj.pk, number=request.GET.get("page"))
        shown = (Message.objects.filter(pk__in=page.ids).select_related("parent")
                 .order_by("created_at", "id"))
        list_url = (reverse(f"{self.admin_site.name}:conversations_message_changelist")
                    + "?" + urlencode({"conversation__id__exact": obj.pk}))

        class TranscriptFormSet(formset):
            transcript = page
            transcript_list_url = list_url

            def __init__(self, *args, queryset=None, **kw):
                super().__init__(*args, queryset=shown, **kw)

        return TranscriptFormSet


@admin.register(Conversation)
class ConversationAdmin(LargeListMixin, ReadRecordedMixin, AuditAdminMixin, admin.ModelAdmin):
    list_display = ["__str__", "owner", "agent", "source", "created_at", "updated_at",
                    "is_deleted"]
    # Choices from the small tables or a recent window, and EXISTS rather than joins for the
    # messages' model, tool and status (conversations.admin_filters).
    list_filter = [("owner", UserFilter), OwnerGroupFilter, "agent", ConversationModelFilter,
                   ConversationToolFilter, ConversationStatusFilter, "source", "is_deleted",
                   "legal_hold", ("created_at", DateRangeFilter)]
    # And the messages' text, through the search index (get_search_results).
    search_fields = ["title", "owner__username", "owner__email", "id"]
    ordering = ["-created_at", "-pk"]  # conv_created
    list_select_related = ["owner", "agent"]
    readonly_fields = ["id", "owner", "title", "agent", "source", "api_key", "created_at",
                       "updated_at", "is_deleted", "deleted_at", "legal_hold"]
    inlines = [MessageInline]
    actions = ["export_jsonl", "hold", "release"]

    def read_of(self, obj: Conversation) -> tuple[Conversation, str]:
        return obj, "the conversation"

    # Past this many matching messages a word is common (get_search_results).
    COMMON_MATCHES = 2_000

    def get_search_results(self, request, queryset, search_term):
        """The title, owner or id (Django's search of this small table), or a message's text.
        A rare word: the index's few matches, as a set of ids with the others. A common one
        on PostgreSQL (COMMON_MATCHES messages or more, counted through the index and no
        further): the conversations newest first, each checked by reading its messages until
        one matches, so that a page is full after a few hundred; the set of ids would hold
        most conversations (678 ms at a million messages)."""
        found, duplicates = super().get_search_results(request, queryset, search_term)
        if not search_term.strip():
            return found, duplicates
        own_fields = found.order_by().values("pk")
        by_text = search.messages_matching(messages=Message.objects.all(), query=search_term)
        # SQLite's FTS5 answers the whole set at once (117 ms for a common word at 100,000
        # messages) and would be asked again for each conversation on the walk (3.8 s).
        if (connection.vendor != "postgresql"
                or by_text[: self.COMMON_MATCHES].count() < self.COMMON_MATCHES):
            ids = own_fields.union(by_text.order_by().values("conversation_id"), all=True)
            return queryset.filter(pk__in=ids), False
        walked = search.messages_matching(
            messages=Message.objects.filter(conversation=OuterRef("pk")), query=search_term,
            within_conversation=True)
        return queryset.filter(Q(pk__in=own_fields) | search.CheckedPerRow(walked)), False

    @admin.action(description="Export as JSON Lines (one conversation per line)",
                  permissions=["view"])
    def export_jsonl(self, request, queryset):
        """The selected conversations (or, with "select all", every one the filters keep:
        one user's, a date range's), streamed; each recorded as read by whoever exported it."""
        name = f"conversations-{timezone.now():%Y%m%d-%H%M%S}.jsonl"
        response = StreamingHttpResponse(jsonl_lines(queryset, reader=request.user),
                                         content_type="application/x-ndjson")
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response

    @admin.action(description="Put under legal hold (kept by the retention purge)",
                  permissions=["hold"])
    def hold(self, request, queryset):
        self._set_hold(request, queryset, True)

    @admin.action(description="Release from legal hold", permissions=["hold"])
    def release(self, request, queryset):
        self._set_hold(request, queryset, False)

    def _set_hold(self, request, queryset, held: bool) -> None:
        changed = list(queryset.exclude(legal_hold=held))
        Conversation.objects.filter(pk__in=[c.pk for c in changed]).update(legal_hold=held)
        for conversation in changed:
            self.log_change(request, conversation,
                            "Put under legal hold" if held else "Released from legal hold")
        self.message_user(request, f"{len(changed)} conversation(s) "
                                   f"{'put under' if held else 'released from'} legal hold.")

    def has_hold_permission(self, request: HttpRequest) -> bool:
        # The audit is read-only for staff; what the purge keeps is a superuser's decision.
        return request.user.is_active and request.user.is_superuser


@admin.register(Message)
class MessageAdmin(LargeListMixin, ReadRecordedMixin, AuditAdminMixin, admin.ModelAdmin):
    list_display = ["id", "conversation_owner", "role", "status", "model", "short_content",
                    "input_tokens", "output_tokens", "cost", "created_at"]
    list_filter = [("conversation__owner", UserFilter), "conversation__agent", "role", "status",
                   ("model", ModelNameFilter), ("created_at", DateRangeFilter)]
    # And the text, through the search index (get_search_results).
    search_fields = ["content"]  # through the index (get_search_results)
    ordering = ["-created_at", "-pk"]  # msg_created, and the filters' (field, created_at) indexes
    list_select_related = ["conversation__owner"]
    readonly_fields = [f.name for f in Message._meta.fields]
    inlines = [ToolCallInline]

    def read_of(self, obj: Message) -> tuple[Conversation, str]:
        return obj.conversation, f"message {obj.pk}"

    def get_search_results(self, request, queryset, search_term):
        """Message text, through the search index alone: OR-ed with the title, owner and model
        LIKEs (joins), PostgreSQL walked every message for a rare word (2.2 s at a million).
        The person and model filters narrow by those."""
        if not search_term.strip():
            return queryset, False
        return search.messages_matching(messages=queryset, query=search_term), False

    @admin.display(description="User", ordering="conversation__owner__username")
    def conversation_owner(self, obj: Message) -> str:
        return obj.conversation.owner.get_username()

    @admin.display(description="Content")
    def short_content(self, obj: Message) -> str:
        return obj.content[:80] + ("…" if len(obj.content) > 80 else "")


@admin.register(ToolCall)
class ToolCallAdmin(LargeListMixin, ReadRecordedMixin, AuditAdminMixin, admin.ModelAdmin):
    list_display = ["id", "tool_name", "server", "status", "approval", "decided_by", "is_error",
                    "user", "started_at", "finished_at"]
    list_filter = [("tool_name", RecentValuesFilter), ("server", RecentValuesFilter), "status",
                   "approval", "is_error", "result_truncated",
                   ("message__conversation__owner", UserFilter), ("created_at", DateRangeFilter)]
    search_fields = ["tool_name", "server", "call_id", "result"]
    ordering = ["-created_at", "-pk"]  # toolcall_created, toolcall_tool_created
    list_select_related = ["message__conversation__owner", "decided_by"]
    readonly_fields = [f.name for f in ToolCall._meta.fields]

    def read_of(self, obj: ToolCall) -> tuple[Conversation, str]:
        return obj.message.conversation, f"tool call {obj.pk}"

    @admin.display(description="User", ordering="message__conversation__owner__username")
    def user(self, obj: ToolCall) -> str:
        return obj.message.conversation.owner.get_username()


@admin.register(AdminRead)
class AdminReadAdmin(LargeListMixin, admin.ModelAdmin):
    """Who read whose conversation: for superusers only, and read-only for them too."""

    list_display = ["at", "reader", "owner", "what", "conversation_ref"]
    list_filter = [("reader", UserFilter), ("owner", UserFilter), ("at", DateRangeFilter)]
    search_fields = ["reader__username", "owner__username", "conversation_ref"]
    ordering = ["-at", "-pk"]  # adminread_at
    list_select_related = ["reader", "owner"]
    readonly_fields = ["at", "reader", "owner", "what", "conversation_ref"]

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    """Budgets and rate limits (conversations.budgets): a rate limit is a budget of turns per
    minute."""

    list_display = ["who", "metric", "period", "limit", "used_now", "enabled"]
    list_display_links = ["who"]
    list_filter = ["metric", "period", "enabled"]
    search_fields = ["user__username", "group__name"]
    autocomplete_fields = ["user", "group"]
    fields = ["user", "group", "metric", "period", "limit", "enabled"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user", "group")

    @admin.display(description="Person or group")
    def who(self, obj: Budget) -> str:
        return f"{obj.user}" if obj.user_id else f"group {obj.group}"

    @admin.display(description="Used this period (and held by running answers)")
    def used_now(self, obj: Budget) -> str:
        used = budgets.used_in_period(obj, now=timezone.now())
        share = f" ({used / obj.limit:.0%})" if obj.limit else ""
        return f"{used:f}{share}" if obj.metric == Budget.Metric.COST else f"{used:,}{share}"
