"""Sending: what one send costs and what it prepares for the turn, at the service level."""

import pytest

from agents.models import Agent
from conversations import sending
from conversations.models import Message
from tests.factories import make_user

pytestmark = pytest.mark.django_db(transaction=True)


def prepare(user, *, conversation=None, key=None, text="Hello") -> sending.PreparedTurn:
    """A send's trip to the database, as the socket makes it."""
    return sending.do_send(user_id=user.pk, request=sending.check_send(
        conversation=conversation, text=text, client_key=key))


def answered(prepared: sending.PreparedTurn) -> sending.PreparedTurn:
    """Its answer finished, so that the conversation takes the next message."""
    Message.objects.filter(pk=prepared.assistant_message.id).update(
        status="complete", content="An answer.")
    return prepared


def test_a_new_conversations_send_costs_at_most_eight_statements(django_assert_max_num_queries):
    """Hot path, once per turn: the user checked again, the client key probed, then BEGIN, the
    user's running answers counted (USER_MAX_CONCURRENT_TURNS), the conversation, the message
    pair, COMMIT. The agent comes from the process's cache."""
    user = make_user()
    prepare(user, key="k-1")  # the process's first turn resolves the agent
    with django_assert_max_num_queries(8):
        prepared = prepare(user, key="k-2")
    assert prepared.created and prepared.new_conversation
    assert [m.content for m in prepared.plan.history] == ["Hello"]


def test_a_send_into_a_conversation_costs_at_most_thirteen_statements(
        django_assert_max_num_queries):
    """Hot path: as above, plus the conversation locked, checked idle and its newest message
    found, its recency updated, and the branch and its tool calls read for the history."""
    user = make_user()
    conversation = str(answered(prepare(user, key="k-1")).conversation_id)
    answered(prepare(user, conversation=conversation, key="k-2"))
    with django_assert_max_num_queries(13):
        prepared = prepare(user, conversation=conversation, key="k-3")
    assert [m.role for m in prepared.plan.history] == ["user", "assistant"] * 2 + ["user"]


def test_a_changed_default_agent_answers_the_next_turn():
    user = make_user()
    agent = Agent.objects.create(name="Helper", slug="helper", model="m1", is_default=True,
                                 system_prompt="One.")
    first = answered(prepare(user))
    assert (first.plan.spec.system_prompt, first.plan.spec.targets[0][1]) == ("One.", "m1")
    agent.system_prompt, agent.model = "Two.", "m2"
    agent.save()  # as the admin does
    second = prepare(user, conversation=first.conversation_id)
    assert (second.plan.spec.system_prompt, second.plan.spec.targets[0][1]) == ("Two.", "m2")
