"""Stored messages → the history the model sees."""

from __future__ import annotations

import pytest
from django.utils import timezone

from conversations.history import upstream_history
from conversations.selectors import branch, tool_calls_by_message
from tests.factories import make_conversation, make_message, make_tool_call

pytestmark = pytest.mark.django_db


def test_an_answer_is_split_at_its_tool_calls_whichever_way_they_are_loaded():
    conversation = make_conversation()
    question = make_message(conversation=conversation, content="Q")
    answer = make_message(conversation=conversation, role="assistant", parent=question,
                          status="complete", content="Looking. Found it. Done.")
    # Two rounds; the second's call never finished. Made out of order on purpose.
    make_tool_call(message=answer, call_id="b", round=1, text_offset=len("Looking. Found it. "))
    make_tool_call(message=answer, call_id="a", round=0, text_offset=len("Looking. "),
                   result="42", finished_at=timezone.now())
    follow_up = make_message(conversation=conversation, content="Thanks", parent=answer)

    prefetched = upstream_history(branch(conversation=conversation, leaf_id=follow_up.pk))
    messages = branch(conversation=conversation, leaf_id=follow_up.pk, with_tool_calls=False)
    by_message = upstream_history(messages, tool_calls=tool_calls_by_message(
        message_ids=[m.pk for m in messages if m.role == "assistant"]))

    assert by_message == prefetched
    assert [(m.role, m.content) for m in by_message] == [
        ("user", "Q"),
        ("assistant", "Looking. "), ("tool", "42"),
        ("assistant", "Found it. "), ("tool", "The tool call did not finish."),
        ("assistant", "Done."),
        ("user", "Thanks"),
    ]
    assert [c.id for c in by_message[1].tool_calls] == ["a"]
    assert by_message[4].is_error
