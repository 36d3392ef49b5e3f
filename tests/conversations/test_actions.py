"""Sending, editing and regenerating at the action level: what is stored, what is refused, and
what the writes of a turn cost."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from conversations import actions
from conversations.actions import (
    InvalidInput,
    TurnInProgress,
    do_finish_message,
    do_flush_message,
    do_regenerate,
    do_send_message,
)
from conversations.models import Message
from conversations.payloads import UsageView
from conversations.selectors import ConversationNotFound, branch
from conversations.titles import _store as store_title
from tests.factories import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def user():
    return make_user()


def answered(result: actions.SendResult, text: str = "An answer.") -> actions.SendResult:
    Message.objects.filter(pk=result.assistant_message.pk).update(status="complete", content=text)
    return result


def test_a_send_continues_the_newest_message(user):
    first = answered(do_send_message(user=user, conversation_id=None, text="One"))
    second = do_send_message(user=user, conversation_id=first.conversation.pk, text="Two")
    assert second.created and not second.new_conversation
    assert second.user_message.parent_id == first.assistant_message.pk
    assert second.assistant_message.parent_id == second.user_message.pk
    assert [m.content for m in branch(conversation=first.conversation)][:3] == [
        "One", "An answer.", "Two"]


def test_an_edit_starts_a_branch_at_the_message_it_names(user):
    first = answered(do_send_message(user=user, conversation_id=None, text="One"))
    answered(do_send_message(user=user, conversation_id=first.conversation.pk, text="Two"))
    edit = do_send_message(user=user, conversation_id=first.conversation.pk, text="Two, again",
                           parent=first.assistant_message.pk)
    assert edit.user_message.parent_id == first.assistant_message.pk
    answered(edit)
    root = do_send_message(user=user, conversation_id=first.conversation.pk, text="Anew",
                           parent=None)
    assert root.user_message.parent_id is None


def test_an_edit_cannot_name_a_message_of_another_conversation(user):
    mine = answered(do_send_message(user=user, conversation_id=None, text="One"))
    other = answered(do_send_message(user=user, conversation_id=None, text="Other"))
    with pytest.raises(InvalidInput):
        do_send_message(user=user, conversation_id=mine.conversation.pk, text="x",
                        parent=other.assistant_message.pk)
    assert Message.objects.filter(conversation=mine.conversation).count() == 2


def test_a_resent_client_key_returns_the_stored_pair(user):
    first = do_send_message(user=user, conversation_id=None, text="One", client_key="k")
    again = do_send_message(user=user, conversation_id=None, text="One", client_key="k")
    assert not again.created
    assert (again.conversation.pk, again.user_message.pk, again.assistant_message.pk) == (
        first.conversation.pk, first.user_message.pk, first.assistant_message.pk)
    # Another user's identical key is theirs alone.
    theirs = do_send_message(user=make_user(), conversation_id=None, text="One", client_key="k")
    assert theirs.created and theirs.conversation.pk != first.conversation.pk


def test_a_send_while_an_answer_is_written_is_refused_and_changes_nothing(user):
    first = do_send_message(user=user, conversation_id=None, text="One")
    with pytest.raises(TurnInProgress):
        do_send_message(user=user, conversation_id=first.conversation.pk, text="Two")
    assert Message.objects.filter(conversation=first.conversation).count() == 2
    first.assistant_message.refresh_from_db()
    assert first.assistant_message.status == "pending"


def test_an_answer_left_by_a_dead_process_is_interrupted_by_the_next_send(user, settings):
    first = do_send_message(user=user, conversation_id=None, text="One")
    Message.objects.filter(pk=first.assistant_message.pk).update(
        status="streaming", content="half",
        updated_at=timezone.now() - timedelta(seconds=settings.TURN_STALE_AFTER + 5))
    second = do_send_message(user=user, conversation_id=first.conversation.pk, text="Two")
    assert second.created
    first.assistant_message.refresh_from_db()
    assert (first.assistant_message.status, first.assistant_message.content) == (
        "interrupted", "half")


def test_a_deleted_conversation_takes_no_more_messages(user):
    first = answered(do_send_message(user=user, conversation_id=None, text="One"))
    actions.do_delete_conversation(user=user, conversation_id=first.conversation.pk)
    with pytest.raises(ConversationNotFound):
        do_send_message(user=user, conversation_id=first.conversation.pk, text="Two")


def test_regenerate_makes_a_sibling_answer_to_the_same_question(user):
    first = answered(do_send_message(user=user, conversation_id=None, text="One"))
    again = do_regenerate(user=user, conversation_id=first.conversation.pk,
                          message_id=first.assistant_message.pk)
    assert again.created and again.user_message.pk == first.user_message.pk
    assert again.assistant_message.parent_id == first.user_message.pk
    assert again.assistant_message.status == "pending"
    with pytest.raises(TurnInProgress):
        do_regenerate(user=user, conversation_id=first.conversation.pk,
                      message_id=first.assistant_message.pk)
    answered(again)
    with pytest.raises(InvalidInput):
        do_regenerate(user=user, conversation_id=first.conversation.pk,
                      message_id=first.user_message.pk)


def test_the_writes_of_a_turn_are_one_statement_each(user, django_assert_num_queries):
    """Hot path: a periodic flush, the final write and the title are each one UPDATE."""
    sent = do_send_message(user=user, conversation_id=None, text="One")
    with django_assert_num_queries(1):
        do_flush_message(message_id=sent.assistant_message.pk, content="Some", reasoning="",
                         status="streaming", last_seq=3, model="m", first_token_at=None)
    with django_assert_num_queries(1):
        do_finish_message(message_id=sent.assistant_message.pk, content="Some text.",
                          reasoning="", reasoning_signature="", reasoning_ms=None,
                          status="complete", error="", last_seq=5, model="m",
                          first_token_at=None, usage=UsageView(output_tokens=3))
    with django_assert_num_queries(1):
        assert store_title(str(sent.conversation.pk), "A title")


# --- agents limited to groups (agents.access) --------------------------------------------------


@pytest.fixture
def books():
    from django.contrib.auth.models import Group

    from agents.models import Agent

    agent = Agent.objects.create(name="Books", slug="books", model="m")
    agent.allowed_groups.add(Group.objects.create(name="finance"))
    return agent


def test_a_new_conversation_with_an_agent_outside_the_users_groups_is_refused_unstored(
        user, books):
    with pytest.raises(actions.AgentUnavailable) as refused:
        do_send_message(user=user, conversation_id=None, text="Hi", agent_id=books.pk)
    with pytest.raises(actions.AgentUnavailable) as missing:
        do_send_message(user=user, conversation_id=None, text="Hi", agent_id=books.pk + 99)
    # Told exactly what a made-up id is told: nothing says the agent exists.
    assert str(refused.value) == str(missing.value) == actions.NO_SUCH_AGENT
    assert refused.value.code == "agent_unavailable"
    assert not Message.objects.exists()
    user.groups.add(books.allowed_groups.get())
    result = do_send_message(user=user, conversation_id=None, text="Hi", agent_id=books.pk)
    assert result.spec.agent_id == books.pk


def test_a_conversation_whose_agent_became_limited_refuses_the_next_turn(user, books):
    from agents.models import Agent

    general = Agent.objects.create(name="General", slug="general", model="m")
    first = answered(do_send_message(user=user, conversation_id=None, text="One",
                                     agent_id=general.pk))
    conversation = first.conversation.pk
    general.allowed_groups.add(books.allowed_groups.get())
    before = list(Message.objects.values_list("pk", "status"))
    with pytest.raises(actions.AgentUnavailable, match="no longer available to you"):
        do_send_message(user=user, conversation_id=conversation, text="Two")
    with pytest.raises(actions.AgentUnavailable, match="no longer available to you"):
        do_regenerate(user=user, conversation_id=conversation,
                      message_id=first.assistant_message.pk)
    assert list(Message.objects.values_list("pk", "status")) == before
