"""Retention (conversations.retention and `manage.py purge_conversations`): old conversations go
with everything in them, recent and held ones stay, and the read audit outlives them."""

import re
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from conversations import retention
from conversations.audit_reads import do_record_admin_read
from conversations.models import AdminRead, Conversation, Message, ToolCall
from conversations.retention import PurgeReport, do_purge_conversations
from tests.factories import make_conversation, make_message, make_tool_call, make_user

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def last_active(conversation: Conversation, days_ago: float, *, now: datetime = NOW) -> None:
    # updated_at is auto_now: only an UPDATE can put it in the past.
    Conversation.objects.filter(pk=conversation.pk).update(
        updated_at=now - timedelta(days=days_ago))


def make_exchange(*, days_ago: float, now: datetime = NOW, **kw) -> Conversation:
    """A question with two answers (a regeneration: a branch sharing one parent), a tool call
    on the first, and a follow-up to it: 4 messages, 1 tool call."""
    conversation = make_conversation(**kw)
    question = make_message(conversation=conversation, content="What were Q3 sales?")
    first = make_message(conversation=conversation, role="assistant", parent=question,
                         content="Let me look.")
    make_message(conversation=conversation, role="assistant", parent=question, content="1.2M")
    make_tool_call(message=first, tool_name="sales_report", result="1.2M", status="complete")
    make_message(conversation=conversation, parent=first, content="And Q4?")
    last_active(conversation, days_ago, now=now)
    return conversation


def exists(conversation: Conversation) -> bool:
    return Conversation.objects.filter(pk=conversation.pk).exists()


def test_old_conversations_go_with_their_messages_and_tool_calls_recent_ones_stay():
    old = make_exchange(days_ago=40)
    recent = make_exchange(days_ago=10)

    report = do_purge_conversations(older_than=timedelta(days=30), now=NOW)

    assert report == PurgeReport(conversations=1, messages=4, tool_calls=1, held=0,
                                 cutoff=NOW - timedelta(days=30))
    assert not exists(old)
    assert not Message.objects.filter(conversation_id=old.pk).exists()
    assert exists(recent)
    assert Message.objects.filter(conversation=recent).count() == 4
    assert ToolCall.objects.filter(message__conversation=recent).count() == 1


def test_a_conversation_under_legal_hold_stays_whatever_its_age_and_is_reported():
    held = make_exchange(days_ago=3650, legal_hold=True)
    make_exchange(days_ago=40)

    report = do_purge_conversations(older_than=timedelta(days=30), now=NOW)

    assert (report.conversations, report.held) == (1, 1)
    assert exists(held)
    assert Message.objects.filter(conversation=held).count() == 4


def test_a_conversation_with_an_answer_being_written_is_left_alone():
    busy = make_exchange(days_ago=40)
    make_message(conversation=busy, role="assistant", status=Message.Status.STREAMING)
    last_active(busy, 40)

    report = do_purge_conversations(older_than=timedelta(days=30), now=NOW)

    assert (report.conversations, report.held) == (0, 0)  # excluded, not "held"
    assert exists(busy)


def test_a_dry_run_removes_nothing_and_reports_the_same_numbers():
    conversations = [make_exchange(days_ago=40) for _ in range(2)]
    make_exchange(days_ago=400, legal_hold=True)

    dry = do_purge_conversations(older_than=timedelta(days=30), dry_run=True, now=NOW)

    assert all(exists(c) for c in conversations)
    assert Message.objects.count() == 12 and ToolCall.objects.count() == 3
    real = do_purge_conversations(older_than=timedelta(days=30), now=NOW)
    assert dry == real == PurgeReport(conversations=2, messages=8, tool_calls=2, held=1,
                                      cutoff=NOW - timedelta(days=30))


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_purge_larger_than_a_batch_takes_them_all(monkeypatch, dry_run):
    monkeypatch.setattr(retention, "BATCH_SIZE", 2)
    for _ in range(5):
        make_exchange(days_ago=40)

    report = do_purge_conversations(older_than=timedelta(days=30), dry_run=dry_run, now=NOW)

    assert (report.conversations, report.messages, report.tool_calls) == (5, 20, 5)
    assert Conversation.objects.count() == (5 if dry_run else 0)


def test_the_admins_read_audit_outlives_a_purged_conversation():
    conversation = make_exchange(days_ago=40)
    reader = make_user(is_staff=True)
    do_record_admin_read(reader=reader, conversation=conversation, what="conversation")

    do_purge_conversations(older_than=timedelta(days=30), now=NOW)

    assert not exists(conversation)
    read = AdminRead.objects.get()
    assert (read.reader, read.owner_id, read.conversation_ref) == (
        reader, conversation.owner_id, str(conversation.pk))


def purge(*args: str) -> str:
    out = StringIO()
    call_command("purge_conversations", *args, stdout=out)
    return out.getvalue().strip()


LINE = re.compile(r"(Removed|Would remove) (.+) last active before "
                  r"(\d{4}-\d\d-\d\d \d\d:\d\d) UTC; kept (\d+) under legal hold\.")


def test_the_command_says_what_it_removed(settings):
    settings.RETENTION_DAYS = 30
    now = timezone.now()
    conversation = make_exchange(days_ago=40, now=now)
    make_exchange(days_ago=40, now=now, legal_hold=True)

    dry = LINE.fullmatch(purge("--dry-run"))
    assert exists(conversation)
    done = LINE.fullmatch(purge())

    assert dry and done
    assert dry[1] == "Would remove" and done[1] == "Removed"
    assert dry[2] == done[2] == "1 conversation (4 messages, 1 tool call)"
    assert dry[4] == done[4] == "1"
    cutoff = datetime.strptime(done[3], "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
    assert abs(cutoff - (now - timedelta(days=30))) < timedelta(minutes=2)
    assert not exists(conversation)


def test_the_option_wins_over_the_setting(settings):
    settings.RETENTION_DAYS = 30
    make_exchange(days_ago=40, now=timezone.now())

    assert purge("--older-than-days", "50").startswith("Removed 0 conversations (0 messages")
    assert purge("--older-than-days", "35").startswith("Removed 1 conversation ")


def test_the_command_refuses_without_a_retention_age(settings):
    settings.RETENTION_DAYS = 0
    conversation = make_exchange(days_ago=4000, now=timezone.now())

    with pytest.raises(CommandError, match="set RETENTION_DAYS or pass --older-than-days"):
        purge()
    with pytest.raises(CommandError, match="at least 1"):
        purge("--older-than-days", "0")
    assert exists(conversation)
