"""A branch a page at a time: a conversation of thousands of messages opens with its newest
page, small and fast, and pages back to its first message; the path is found from ids and
parents alone."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from conversations import branch_pages, frames
from conversations.joining import read_state
from conversations.models import Message
from tests.factories import make_branch, make_conversation, make_message, make_tool_call, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def long_conversation():
    """2,000 messages in one branch, the answers a few hundred characters each."""
    user = make_user()
    conversation = make_conversation(owner=user, title="Long")
    made = make_branch(conversation=conversation, messages=2000,
                       text="message {n} " + "lorem ipsum " * 30)
    return user, conversation, [m.pk for m in made]


def page_back(user, conversation, state) -> list[int]:
    """Every message id from the first page back to the first message, oldest first."""
    seen = [m["id"] for m in state.messages]
    older = state.older
    while older:
        page = branch_pages.read_older(user=user, conversation_id=str(conversation.pk),
                                       before=seen[0])
        assert page.messages, "a page with older messages before it is never empty"
        seen = [m["id"] for m in page.messages] + seen
        older = page.older
    return seen


def test_a_2000_message_conversation_opens_with_its_newest_page_in_one_small_frame(
        long_conversation, settings):
    user, conversation, ids = long_conversation
    state = read_state(user=user, conversation_id=str(conversation.pk))
    assert [m["id"] for m in state.messages] == ids[-branch_pages.PAGE_MESSAGES:]
    assert state.older is True
    frame = frames.dumps(state.frame())
    assert len(frame.encode()) <= branch_pages.page_bytes() + 2048 < settings.WS_MAX_SEND_BYTES
    assert json.loads(frame)["older"] is True


def test_paging_back_reaches_the_first_message_with_every_message_once_in_order(
        long_conversation):
    user, conversation, ids = long_conversation
    state = read_state(user=user, conversation_id=str(conversation.pk))
    assert page_back(user, conversation, state) == ids


def test_the_path_is_found_without_reading_any_messages_text(long_conversation,
                                                             django_assert_max_num_queries):
    user, conversation, _ = long_conversation
    with CaptureQueriesContext(connection) as queries:
        read_state(user=user, conversation_id=str(conversation.pk))
    reads = [q["sql"] for q in queries.captured_queries
             if 'FROM "conversations_message"' in q["sql"]]
    # The stale-turn check (status, partial index), the shape, then the page's rows.
    shape = [sql for sql in reads if '"parent_id"' in sql.split(" FROM ")[0]
             and '"content"' not in sql]
    assert len(shape) == 1
    assert '"reasoning"' not in shape[0] and " IN (" not in shape[0]
    [rows] = [sql for sql in reads if '"content"' in sql.split(" FROM ")[0]]
    assert rows.split(" IN (")[1].split(")")[0].count(",") + 1 == branch_pages.PAGE_MESSAGES
    # The conversation, the stale turns, the shape, the page's messages, their tool calls.
    with django_assert_max_num_queries(5):
        read_state(user=user, conversation_id=str(conversation.pk))


def test_a_page_stops_at_its_byte_budget_but_always_carries_the_newest_message(settings):
    settings.WS_MAX_SEND_BYTES = 128 * 1024  # a budget of 64 KB
    user = make_user()
    conversation = make_conversation(owner=user)
    made = make_branch(conversation=conversation, messages=6, text="{n} " + "x" * 25_000)
    state = read_state(user=user, conversation_id=str(conversation.pk))
    assert [m["id"] for m in state.messages] == [m.pk for m in made[-2:]]
    assert state.older is True
    assert page_back(user, conversation, state) == [m.pk for m in made]
    # One message larger than the budget alone still goes (in parts, as frames.parts cuts it).
    huge = make_message(conversation=conversation, parent=made[-1], content="y" * 200_000)
    state = read_state(user=user, conversation_id=str(conversation.pk))
    assert [m["id"] for m in state.messages] == [huge.pk]


def test_a_pages_messages_come_whole_with_their_tool_calls(long_conversation):
    user, conversation, ids = long_conversation
    answer = Message.objects.get(pk=ids[-1])
    make_tool_call(message=answer, tool_name="get_time", result="12:00")
    old_answer = Message.objects.get(pk=ids[101])
    make_tool_call(message=old_answer, tool_name="search", result="found")
    state = read_state(user=user, conversation_id=str(conversation.pk))
    assert [c["name"] for c in state.messages[-1]["tool_calls"]] == ["get_time"]
    page = branch_pages.read_older(user=user, conversation_id=str(conversation.pk),
                                   before=ids[102])
    assert page.messages[-1]["id"] == ids[101]
    assert [c["result"] for c in page.messages[-1]["tool_calls"]] == ["found"]
    assert page.messages[-1]["content"].startswith("message 101 ")


def test_versions_are_right_on_every_page_and_an_old_branch_point_can_be_shown():
    """An old question edited (far back, on an older page) and the newest answer regenerated:
    every shown message's versions are counted, and showing the old version follows it."""
    user = make_user()
    conversation = make_conversation(owner=user)
    main = make_branch(conversation=conversation, messages=100)
    # Message 10 (a question) edited: a second version, answered.
    edit = make_message(conversation=conversation, parent=main[9], content="edited 10")
    edit_answer = make_message(conversation=conversation, role="assistant", parent=edit,
                               content="answer to the edit")
    # The newest answer regenerated: the main branch ends in a second version of it.
    again = make_message(conversation=conversation, role="assistant", parent=main[-2],
                         content="second version")
    state = read_state(user=user, conversation_id=str(conversation.pk))
    assert state.messages[-1]["id"] == again.pk
    assert state.siblings[again.pk] == [main[-1].pk, again.pk]
    seen = page_back(user, conversation, state)
    assert seen == [m.pk for m in main[:-1]] + [again.pk]
    page = branch_pages.read_older(user=user, conversation_id=str(conversation.pk),
                                   before=main[20].pk)
    assert page.siblings[main[10].pk] == [main[10].pk, edit.pk]
    assert page.siblings[main[0].pk] == [main[0].pk]
    # The arrows on message 10 show the edit: its branch, from the first message.
    state = read_state(user=user, conversation_id=str(conversation.pk), leaf_id=edit.pk)
    assert [m["id"] for m in state.messages] == [m.pk for m in main[:10]] + [edit.pk,
                                                                             edit_answer.pk]
    assert state.older is False
    assert state.siblings[edit.pk] == [main[10].pk, edit.pk]


def test_a_message_of_another_conversation_is_not_found():
    user = make_user()
    mine, other = make_conversation(owner=user), make_conversation(owner=user)
    make_branch(conversation=mine, messages=4)
    [elsewhere] = make_branch(conversation=other, messages=1)
    with pytest.raises(branch_pages.MessageNotFound):
        branch_pages.read_older(user=user, conversation_id=str(mine.pk), before=elsewhere.pk)
