import pytest
from django.db import IntegrityError, transaction

from conversations.models import Message
from tests.factories import make_conversation, make_message, make_tool_call

pytestmark = pytest.mark.django_db


def test_client_key_is_unique_per_conversation():
    conversation = make_conversation()
    make_message(conversation=conversation, client_key="k1")
    with pytest.raises(IntegrityError), transaction.atomic():
        make_message(conversation=conversation, client_key="k1")
    # The same key in another conversation is another message; no key at all never collides.
    make_message(conversation=make_conversation(), client_key="k1")
    make_message(conversation=conversation)
    make_message(conversation=conversation)
    assert Message.objects.filter(client_key="k1").count() == 2


def test_status_and_role_must_be_known_values():
    with pytest.raises(IntegrityError), transaction.atomic():
        make_message(status="done")
    with pytest.raises(IntegrityError), transaction.atomic():
        make_message(role="wizard")
    for status in Message.Status.values:
        assert make_message(status=status).status == status


def test_edits_and_regenerations_make_branches():
    conversation = make_conversation()
    question = make_message(conversation=conversation, content="Q")
    first = make_message(conversation=conversation, role="assistant", parent=question, content="A1")
    second = make_message(conversation=conversation, role="assistant", parent=question, content="A2")
    assert list(question.children.order_by("id")) == [first, second]
    # A message that has answers cannot be deleted from under them.
    with pytest.raises(IntegrityError), transaction.atomic():
        question.delete()


def test_tool_call_ids_are_unique_per_message():
    call = make_tool_call(call_id="call_1")
    with pytest.raises(IntegrityError), transaction.atomic():
        make_tool_call(message=call.message, call_id="call_1")
    assert make_tool_call(call_id="call_1").message != call.message
