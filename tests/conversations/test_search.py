"""Search (conversations/search.py and the rule and indexes of conversations/fulltext.py).

The suite runs on SQLite and on PostgreSQL (CI runs both): the same expectations hold on
each, so passing on both is what "the same results on both databases" means."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from conversations import fulltext
from conversations.models import Conversation, Message
from conversations.search import conversation_page
from tests.factories import make_conversation, make_message, make_user

pytestmark = pytest.mark.django_db

on_postgresql = pytest.mark.skipif("connection.vendor != 'postgresql'")
on_sqlite = pytest.mark.skipif("connection.vendor != 'sqlite'")


@pytest.fixture
def user():
    return make_user()


@pytest.fixture
def corpus(user) -> dict[str, Conversation]:
    """A person's conversations, each there for one query or two, and the same words in
    places that must never match: another person's conversation and a deleted one."""
    texts = {
        "kube": ("Cluster work", ["How do I drain a KUBERNETES node safely?",
                                  "Use kubectl drain with the ignore flag."]),
        "title": ("Quarterly Kubernetes review", []),
        "greet": ("Letters", ["Viele Grüße aus München"]),
        "jp": ("旅行", ["私は日本に住んでいます。東京は大きいです。"]),
        "phrase": ("Staging", ["The release notes mention a deploy error in staging."]),
        "reverse": ("Rollback", ["Error while deploying: then the deploy failed."]),
        "split": ("Two messages", ["The deploy went fine.", "An error in the logs."]),
        "code": ("Build", ["Set version to 1.5 in foo-bar.toml, mail bob@example.com; "
                           "C++ and x86_64 builds; it's 100% done (really) & more"]),
        "rare": ("Music", ["A xylophone solo."]),
    }
    made = {}
    for minutes, (key, (title, messages)) in enumerate(texts.items()):
        conversation = make_conversation(owner=user, title=title)
        for content in messages:
            make_message(conversation=conversation, content=content)
        Conversation.objects.filter(pk=conversation.pk).update(
            updated_at=timezone.now() - timedelta(minutes=minutes))
        made[key] = conversation
    gone = make_conversation(owner=user, title="Kubernetes xylophone", is_deleted=True)
    make_message(conversation=gone, content="kubernetes xylophone deploy error 日本")
    theirs = make_conversation(title="Kubernetes xylophone")
    make_message(conversation=theirs, content="kubernetes xylophone deploy error 日本")
    return made


def found(user, query: str) -> set[str]:
    page = conversation_page(user=user, query=query, limit=100)
    return {item["title"] for item in page.items}


QUERIES = {
    # One word, in text and in titles, case ignored; a word's beginning finds it.
    "kubernetes": {"Cluster work", "Quarterly Kubernetes review"},
    "kube": {"Cluster work", "Quarterly Kubernetes review"},
    "KUBECTL": {"Cluster work"},
    # A rare word: only this person's live conversation, not the deleted one, not theirs.
    "xylophone": {"Music"},
    # A common word (and what it begins: "then").
    "the": {"Cluster work", "Staging", "Rollback", "Two messages"},
    # Two words: both, anywhere in one message ("deploying" begins with "deploy").
    "deploy error": {"Staging", "Rollback"},
    "error deploy": {"Staging", "Rollback"},
    # A phrase: together and in order.
    '"deploy error"': {"Staging"},
    '"error deploy"': set(),
    '"quarterly kubernetes"': {"Quarterly Kubernetes review"},
    # Beyond the Latin alphabet: accents kept, case folded.
    "Grüße": {"Letters"},
    "MÜNCHEN": {"Letters"},
    "Grusse": set(),
    # Scripts without spaces: substrings.
    "日本": {"旅行"},
    "東京": {"旅行"},
    "旅": {"旅行"},
    "日本 kubernetes": set(),
    # Punctuation splits words the same way in the text and in the query.
    "1.5": {"Build"},
    "foo-bar": {"Build"},
    "foo_bar": {"Build"},
    "bob@example.com": {"Build"},
    "example": {"Build"},
    "x86_64": {"Build"},
    "C++": {"Build"},
    "it's": {"Build"},
    # Operators are text: none is syntax, on either database.
    "xylophone*": {"Music"},
    "xylophone OR kubernetes": set(),
    "NOT xylophone": set(),
    "AND": {"Build"},
    "(really) & more": {"Build"},
    "kube:*": {"Cluster work", "Quarterly Kubernetes review"},
    '"unclosed quote': set(),
    '"done': {"Build"},
    "NEAR(deploy error)": set(),  # "NEAR(deploy" is one token: near, deploy together
    "deploy <-> error": {"Staging", "Rollback"},
    "a | !b": set(),
    "100%": {"Build"},
    "%": set(),
    "_": set(),
    "'": set(),
    "\\": set(),
    '"': set(),
    "^xylophone$": {"Music"},
    "{xylophone}": {"Music"},
    "-xylophone": {"Music"},
    "content:xylophone": set(),
}


@pytest.mark.parametrize("query", QUERIES)
def test_the_query_set_finds_the_same_conversations_on_either_database(user, corpus, query):
    assert found(user, query) == QUERIES[query]


def test_the_snippet_shows_where_the_match_is(user, corpus):
    page = conversation_page(user=user, query="kube")
    snippets = {item["title"]: item["snippet"] for item in page.items}
    assert "KUBERNETES node" in snippets["Cluster work"]
    # Found by its title only: no message to show.
    assert snippets["Quarterly Kubernetes review"] == ""
    long = make_conversation(owner=user, title="Long")
    make_message(conversation=long, content="filler " * 100 + "the <b>marimba</b> part\nends")
    (item,) = conversation_page(user=user, query="marimba").items
    assert item["snippet"].startswith("…") and "<b>marimba</b> part ends" in item["snippet"]
    (item,) = conversation_page(user=user, query="日本").items
    assert "日本に住んで" in item["snippet"]


def test_a_search_pages_by_cursor_and_costs_three_queries(user):
    for i in range(7):
        c = make_conversation(owner=user, title=f"c{i}")
        make_message(conversation=c, content=f"the marimba, part {i}")
        Conversation.objects.filter(pk=c.pk).update(
            updated_at=timezone.now() - timedelta(minutes=i))
    seen, cursor = [], None
    while True:
        with CaptureQueriesContext(connection) as queries:
            page = conversation_page(user=user, query="marimba part", cursor=cursor, limit=3)
        assert len(queries) == 3
        seen += [item["title"] for item in page.items]
        cursor = page.next_cursor
        if not cursor:
            break
    assert seen == [f"c{i}" for i in range(7)]


def test_the_sidebar_endpoint_searches_through_the_same_rule(user, corpus):
    client = Client()
    client.force_login(user)
    data = client.get("/api/conversations/", {"q": '"deploy error" ( +'}).json()
    assert [item["title"] for item in data["items"]] == ["Staging"]


def test_parse_makes_every_word_plain_text():
    assert fulltext.parse('Deploy "the error"  x86_64 日本 "" !!') == [
        fulltext.Term(words=("Deploy",)), fulltext.Term(words=("the", "error")),
        fulltext.Term(words=("x86", "64")), fulltext.Term(substring="日本")]
    terms = fulltext.parse('a" OR b* NEAR(c)')
    assert fulltext.fts5_expression(terms) == '"a" AND "OR" * AND "b" AND "NEAR" * + "c"'
    assert fulltext.tsquery_text(terms) == "('a') & ('OR':*) & ('b') & ('NEAR':* <-> 'c')"


# --- the indexes -------------------------------------------------------------------------------


@on_postgresql
def test_postgresql_answers_a_search_from_its_gin_index(user, corpus):
    rows = Message.objects.filter(fulltext.message_filter(fulltext.parse('kube "deploy error"')))
    sql, params = rows.query.sql_with_params()
    with connection.cursor() as cursor:
        # The test's few rows would be read whole; the question is whether the index serves
        # the query's expression at all (the function, the configuration, the text).
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "msg_content_search" in plan, plan


def _fts_rows(expression: str) -> set[int]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT rowid FROM {fulltext.FTS_TABLE} "
                       f"WHERE {fulltext.FTS_TABLE} MATCH %s", [expression])
        return {row[0] for row in cursor.fetchall()}


@on_sqlite
def test_sqlite_keeps_its_fts5_table_in_step_with_the_messages(user):
    conversation = make_conversation(owner=user)
    message = make_message(conversation=conversation, content="a marimba solo")
    assert _fts_rows('"marimba"') == {message.pk}
    message.content = "a vibraphone solo"
    message.save()
    assert _fts_rows('"marimba"') == set() and _fts_rows('"vibraphone"') == {message.pk}
    # A save that leaves the text alone (a status change) leaves the index alone too.
    message.status = Message.Status.STOPPED
    message.save()
    Message.objects.filter(pk=message.pk).update(content="a glockenspiel solo")
    assert _fts_rows('"vibraphone"') == set() and _fts_rows('"glockenspiel"') == {message.pk}
    message.delete()
    assert _fts_rows('"glockenspiel"') == set() and _fts_rows('"solo"') == set()
    with connection.cursor() as cursor:
        # Contentless: the index holds the words, not a second copy of the text.
        cursor.execute(f"INSERT INTO {fulltext.FTS_TABLE}({fulltext.FTS_TABLE}, rank) "
                       "VALUES ('integrity-check', 0)")


def test_only_the_first_hundred_thousand_characters_are_indexed(user):
    conversation = make_conversation(owner=user, title="Huge")
    make_message(conversation=conversation,
                 content="early " + "x " * (fulltext.INDEXED_CHARS // 2) + "late")
    assert found(user, "early") == {"Huge"} and found(user, "late") == set()


# --- the audit ---------------------------------------------------------------------------------


@pytest.fixture
def auditor():
    from django.contrib.auth.models import Permission

    staff = make_user(is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(
        codename__in=["view_conversation", "view_message"]))
    client = Client()
    client.force_login(staff)
    return client


def _listed(page) -> set[str]:
    import re

    return set(re.findall(r'<td class="field-short_content">([^<]*)</td>', page.text))


def test_the_audit_searches_message_text_through_the_index(auditor, corpus):
    page = auditor.get("/admin/conversations/message/", {"q": "xylophone"})
    assert page.status_code == 200
    # The audit sees everyone's messages, deleted conversations' included.
    assert _listed(page) == {"A xylophone solo.", "kubernetes xylophone deploy error 日本"}
    page = auditor.get("/admin/conversations/message/", {"q": '"deploy error" (OR'})
    assert page.status_code == 200 and _listed(page) == set()
    page = auditor.get("/admin/conversations/message/", {"q": '"deploy error"'})
    assert _listed(page) == {"The release notes mention a deploy error in staging.",
                             "kubernetes xylophone deploy error 日本"}
    # The message list searches text only (a conversation's title is the conversation list's).
    page = auditor.get("/admin/conversations/message/", {"q": "Letters"})
    assert _listed(page) == set()
    page = auditor.get("/admin/conversations/conversation/", {"q": "xylophone"})
    assert page.status_code == 200 and "Music" in page.text and "Cluster work" not in page.text
    page = auditor.get("/admin/conversations/conversation/", {"q": "Cluster"})
    assert "Cluster work" in page.text and "Music" not in page.text


def test_the_audit_finds_the_same_conversations_for_a_common_word(auditor, corpus, monkeypatch):
    """Past ConversationAdmin.COMMON_MATCHES matching messages a word is looked for, on
    PostgreSQL, by reading each conversation's messages rather than through the index: the
    same conversations (on SQLite, the same path as a rare word)."""
    from conversations.admin import ConversationAdmin

    monkeypatch.setattr(ConversationAdmin, "COMMON_MATCHES", 1)
    page = auditor.get("/admin/conversations/conversation/", {"q": "xylophone"})
    assert page.status_code == 200 and "Music" in page.text and "Cluster work" not in page.text
    # A title match still counts on this path.
    page = auditor.get("/admin/conversations/conversation/", {"q": "Cluster"})
    assert "Cluster work" in page.text and "Music" not in page.text
