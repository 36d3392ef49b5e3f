"""The audit admin with many messages (issue 13, point 3): lists, filters and a long
conversation's page cost a bounded number of queries, none counting the whole table or taking a
DISTINCT over the messages, and the transcript comes a page at a time."""

import re

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents.models import Agent, LanguageModel
from conversations import admin_counts
from conversations.admin_counts import count_of
from conversations.models import AdminRead, Conversation, Message, ToolCall
from tests.factories import make_conversation, make_user

pytestmark = pytest.mark.django_db

LONG = 2000


@pytest.fixture
def auditor(client):
    user = make_user(is_staff=True, username="auditor")
    user.user_permissions.set(Permission.objects.filter(
        codename__in=["view_conversation", "view_message", "view_toolcall"]))
    client.force_login(user)
    return client


@pytest.fixture
def history():
    """2,600 messages: 24 conversations of 25 (bob's), then one of 2,000 (alice's, the newest
    messages), every fifth answer failed, answers by two models, a tool call on some."""
    alice, bob = make_user(username="alice"), make_user(username="bob")
    make_user(username="carol")  # no messages: still a choice in the user filter
    agent = Agent.objects.create(name="Sales", slug="sales")
    conversations = [make_conversation(owner=bob, title=f"Short {i}") for i in range(24)]
    long = make_conversation(owner=alice, title="The long one", agent=agent)
    conversations.append(long)
    rows = []
    for conversation in conversations:
        for i in range(LONG if conversation is long else 25):
            answer = i % 2 == 1
            rows.append(Message(
                conversation=conversation, role="assistant" if answer else "user",
                content=f"{conversation.title} message {i}",
                model=("gpt-oss-120b" if i % 4 == 1 else "vllm:qwen3") if answer else "",
                status="failed" if answer and i % 10 == 9 else "complete"))
    Message.objects.bulk_create(rows, batch_size=500)
    answers = Message.objects.filter(role="assistant", conversation=conversations[0])
    ToolCall.objects.bulk_create([ToolCall(message=m, call_id=f"c{m.pk}", tool_name="sales_report")
                                  for m in answers[:3]])
    return {"long": long, "alice": alice, "bob": bob, "agent": agent}


def _captured(client, url):
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return response, [q["sql"] for q in queries.captured_queries]


def _assert_cheap(sqls, *, most=20):
    assert len(sqls) <= most, "\n".join(sqls)
    for sql in sqls:
        assert "DISTINCT" not in sql.upper(), sql
        if re.search(r"COUNT\(\*\)", sql, re.I):
            # Counting is bounded: a LIMIT inside the count, never the whole table.
            assert "LIMIT" in sql.upper(), sql


def test_the_message_list_counts_no_table_and_takes_no_distinct(auditor, history):
    response, sqls = _captured(auditor, "/admin/conversations/message/")
    _assert_cheap(sqls)
    assert 'result-count">2600</span> messages' in response.text  # small enough to be counted exactly
    assert 'href="?p=2"' in response.text


def test_past_the_cap_the_count_is_an_estimate_and_pages_still_open(auditor, history,
                                                                    monkeypatch):
    monkeypatch.setattr(admin_counts, "COUNT_CAP", 1000)
    response, sqls = _captured(auditor, "/admin/conversations/message/")
    _assert_cheap(sqls)
    said = "about" if connection.vendor == "postgresql" else "more than 1,000"
    assert f'<span class="result-count">{said}' in response.text
    # A page past what was counted still opens, with its rows.
    page = auditor.get("/admin/conversations/message/?p=20")
    assert page.status_code == 200
    assert page.text.count('name="_selected_action"') + page.text.count("field-id") > 0


@pytest.mark.parametrize("query, shown, hidden", [
    ("conversation__owner__id__exact={bob}", "Short 23 message", "The long one message"),
    ("conversation__owner_username=bob", "Short 23 message", "The long one message"),
    ("conversation__agent__id__exact={agent}", "The long one message", "Short 23 message"),
    ("model=gpt-oss-120b", "message 1997", "message 1999"),
    ("status__exact=failed", "message 1989", "message 1997"),
    ("role__exact=user", "message 1998", "message 1999"),
    ("conversation__id__exact={long}", "The long one message 1999", "Short"),
    ("created_at__from={today}&created_at__to={today}", "message 1999", "nothing-else"),
])
def test_each_message_filter_is_cheap_and_filters(auditor, history, query, shown, hidden):
    from django.utils import timezone

    url = "/admin/conversations/message/?" + query.format(
        bob=history["bob"].pk, agent=history["agent"].pk, long=history["long"].pk,
        today=timezone.localdate().isoformat())
    response, sqls = _captured(auditor, url)
    _assert_cheap(sqls)
    assert shown in response.text and hidden not in response.text, url


def test_a_date_range_before_anything_is_empty(auditor, history):
    response = auditor.get("/admin/conversations/message/?created_at__from=2001-01-01"
                           "&created_at__to=2001-12-31")
    assert response.status_code == 200 and 'result-count">0</span> messages' in response.text
    assert auditor.get("/admin/conversations/message/?created_at__from=soon").status_code == 302


def test_filter_choices_come_from_the_small_tables(auditor, history):
    LanguageModel.objects.create(name="configured-but-unused")
    response, sqls = _captured(auditor, "/admin/conversations/message/")
    page = response.text
    # carol has no message: a choice from the users table, not from the messages.
    for choice in ("carol", "alice", "bob", "configured-but-unused", "gpt-oss-120b", "vllm:qwen3",
                   "Sales", "Failed"):
        assert f">{choice}</a>" in page, choice
    assert 'name="conversation__owner_username"' in page
    assert 'name="created_at__from"' in page and 'name="created_at__to"' in page
    assert not any("GROUP BY" in sql.upper() for sql in sqls)


@pytest.mark.parametrize("query, shown, hidden", [
    ("owner__id__exact={alice}", "The long one", "Short 3"),
    ("owner_username=bob", "Short 3", "The long one"),
    ("agent__id__exact={agent}", "The long one", "Short 3"),
    ("messages__model=gpt-oss-120b", "Short 3", "nothing-else"),
    ("messages__tool_calls__tool_name=sales_report", "Short 0", "Short 3"),
    ("messages__status=failed", "The long one", "nothing-else"),
    ("", "The long one", "nothing-else"),
])
def test_each_conversation_filter_is_cheap_and_rows_are_not_repeated(auditor, history, query,
                                                                      shown, hidden):
    url = "/admin/conversations/conversation/?" + query.format(
        alice=history["alice"].pk, agent=history["agent"].pk)
    response, sqls = _captured(auditor, url)
    _assert_cheap(sqls)
    assert shown in response.text and hidden not in response.text, url
    # A conversation with many matching messages is listed once (EXISTS, not a join).
    assert response.text.count(f'{history["long"].pk}/change/') <= 1


def test_the_tool_call_list_is_cheap(auditor, history):
    response, sqls = _captured(auditor, "/admin/conversations/toolcall/?tool_name=sales_report")
    _assert_cheap(sqls)
    assert ">sales_report</a>" in response.text


def test_a_long_conversations_page_shows_one_page_of_its_transcript(auditor, history):
    long = history["long"]
    url = f"/admin/conversations/conversation/{long.pk}/change/"
    response, sqls = _captured(auditor, url)
    assert len(sqls) <= 30, "\n".join(sqls)
    page = response.text
    assert page.count("The long one message ") == 50
    assert "The long one message 0<" in page and "The long one message 49<" in page
    assert "Messages 1–50 of 2000" in page and 'href="?page=2"' in page
    assert f'href="/admin/conversations/message/?conversation__id__exact={long.pk}"' in page
    assert len(response.content) < 400_000
    # The last page holds the newest; every message is on some page.
    last = auditor.get(url + "?page=40").text
    assert "The long one message 1999<" in last and "Messages 1951–2000 of 2000" in last
    assert "The long one message 1950<" in last and "The long one message 1949<" not in last
    assert auditor.get(url + "?page=nonsense").status_code == 200
    # Each opening is recorded.
    assert AdminRead.objects.filter(conversation_ref=str(long.pk),
                                    what="the conversation").count() == 3


def test_count_of_is_exact_below_the_cap_and_bounded_above(history):
    # (PostgreSQL guesses a never-analysed table's size from its pages: over a hundred here.)
    small = count_of(Conversation.objects.all(), cap=1000)
    assert (small.value, small.exact) == (25, True)
    large = count_of(Message.objects.all(), cap=100)
    assert not large.exact and large.value >= 100
    if connection.vendor != "postgresql":
        assert large.at_least and large.value == 100
    filtered = count_of(Message.objects.filter(status="failed"), cap=1000)
    assert (filtered.value, filtered.exact) == (Message.objects.filter(status="failed").count(),
                                                True)
