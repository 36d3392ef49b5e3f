"""The usage pages (conversations.usage, usage_views, usage_charts): the figures a person and
an admin read there equal what the stored answers add up to, computed here from the rows."""

from __future__ import annotations

import re
import zoneinfo
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from html import unescape
from html.parser import HTMLParser

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client

from agents.models import Agent, LanguageModel
from conversations import usage, usage_charts
from conversations.models import Conversation, Message
from conversations.payloads import conversation_payload
from tests.factories import make_conversation, make_message, make_user

pytestmark = pytest.mark.django_db

TZ = "America/New_York"
START, END = "2025-03-01", "2025-03-31"
EVIL = "<script>alert('x')</script>"


# --- reading the page's tables -------------------------------------------------------------------


class _Tables(HTMLParser):
    """Every table.usage-table of a page: {table id: {row heading: [cell texts]}} (the footer's
    row under "Total")."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, dict[str, list[str]]] = {}
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and "usage-table" in (attrs.get("class") or ""):
            self._table = attrs["id"]
            self.tables[self._table] = {}
        elif self._table and tag == "tr":
            self._row = []
        elif self._row is not None and tag in ("th", "td"):
            self._cell = []

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag):
        if tag in ("th", "td") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._row and self._row[0] and len(self._row) == 7 and self._row[1] != "Answers":
                self.tables[self._table][self._row[0]] = self._row[1:]
            self._row = None
        elif tag == "table":
            self._table = None


@dataclass(frozen=True)
class Figures:
    answers: int
    input: int
    cached: int
    output: int
    tokens: int
    cost: Decimal


def tables(response) -> dict[str, dict[str, Figures]]:
    parser = _Tables()
    parser.feed(response.content.decode())
    number = lambda text: int(text.replace(",", ""))  # noqa: E731
    return {
        table: {name: Figures(*(number(c) for c in cells[:5]), Decimal(cells[5].replace(",", "")))
                for name, cells in rows.items()}
        for table, rows in parser.tables.items()
    }


def expected(messages: list[Message]) -> Figures:
    """What a set of answers adds up to, from their rows."""
    return Figures(
        answers=len(messages), input=sum(m.input_tokens for m in messages),
        cached=sum(m.cached_tokens for m in messages),
        output=sum(m.output_tokens for m in messages),
        tokens=sum(m.input_tokens + m.output_tokens for m in messages),
        cost=sum((m.cost for m in messages), Decimal(0)))


# --- the data ------------------------------------------------------------------------------------


@pytest.fixture
def tz(settings):
    settings.TIME_ZONE = TZ
    settings.COST_CURRENCY = "EUR"
    return zoneinfo.ZoneInfo(TZ)


def answer(conversation: Conversation, *, at: datetime, model: str, input_tokens: int,
           output_tokens: int, cached: int = 0, cost: str = "0",
           status: str = Message.Status.COMPLETE) -> Message:
    message = make_message(conversation=conversation, role=Message.Role.ASSISTANT,
                           model=model, input_tokens=input_tokens, output_tokens=output_tokens,
                           cached_tokens=cached, reasoning_tokens=0, cost=Decimal(cost),
                           status=status)
    # An answer the model began (a refused turn has no first token: see the last test).
    first = at if input_tokens else None
    Message.objects.filter(pk=message.pk).update(created_at=at, first_token_at=first)
    message.refresh_from_db()
    return message


@pytest.fixture
def team(tz):
    """Four people, two groups (ada in both, dan in none), three models, answers across the
    month (one on each side of its edges, one near midnight), from the web and the API."""
    eng, ops = Group.objects.create(name="eng"), Group.objects.create(name="ops")
    ada, bob, cy, dan = (make_user(username=n) for n in ("ada", "bob", "cy", "dan"))
    ada.groups.add(eng, ops)
    bob.groups.add(eng)
    cy.groups.add(ops)
    web = {u: make_conversation(owner=u) for u in (ada, bob, cy, dan)}
    api = make_conversation(owner=ada, source=Conversation.Source.API)
    gone = make_conversation(owner=bob, is_deleted=True)
    at = lambda *a: datetime(*a, tzinfo=tz)  # noqa: E731
    rows = [
        answer(web[ada], at=at(2025, 3, 1, 0, 5), model="fake-model", input_tokens=1200,
               output_tokens=300, cached=200, cost="0.001234"),
        answer(web[ada], at=at(2025, 3, 1, 23, 59), model="vllm:llama", input_tokens=50,
               output_tokens=7, cost="0.000001"),
        answer(api, at=at(2025, 3, 2, 12), model="fake-model", input_tokens=9000,
               output_tokens=1000, cached=4000, cost="0.100001"),
        answer(web[bob], at=at(2025, 3, 2, 13), model="fake-model", input_tokens=700,
               output_tokens=100, cost="0.200002"),
        answer(gone, at=at(2025, 3, 15, 8), model="vllm:llama", input_tokens=333,
               output_tokens=33, cost="0.300003", status=Message.Status.STOPPED),
        answer(web[cy], at=at(2025, 3, 15, 9), model=EVIL, input_tokens=10, output_tokens=2,
               cost="1.234567"),
        answer(web[dan], at=at(2025, 3, 31, 23, 30), model="fake-model", input_tokens=400,
               output_tokens=40, cost="0", status=Message.Status.FAILED),
        answer(web[cy], at=at(2025, 3, 20, 7), model="fake-model", input_tokens=5,
               output_tokens=5, cost="123456.789012"),
    ]
    outside = [
        answer(web[ada], at=at(2025, 2, 28, 23, 59), model="fake-model", input_tokens=111,
               output_tokens=11, cost="9"),
        answer(web[bob], at=at(2025, 4, 1, 0, 0), model="fake-model", input_tokens=222,
               output_tokens=22, cost="9"),
    ]
    # User messages carry no usage; one that did would still not count.
    make_message(conversation=web[ada], role=Message.Role.USER, input_tokens=99999)
    return {"users": {u.username: u for u in (ada, bob, cy, dan)},
            "groups": {"eng": eng, "ops": ops}, "rows": rows, "outside": outside, "tz": tz}


def owner_of(message: Message):
    return message.conversation.owner


def by(rows, key) -> dict:
    found = defaultdict(list)
    for row in rows:
        for k in key(row):
            found[k].append(row)
    return found


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def admin_user(**kw):
    return make_user(is_staff=True, is_superuser=True, **kw)


RANGE = {"start": START, "end": END}


# --- a person's own page -------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["ada", "bob", "cy", "dan"])
def test_a_persons_page_adds_up_their_own_answers_per_day_and_model(team, who):
    person = team["users"][who]
    mine = [m for m in team["rows"] if owner_of(m) == person]
    response = logged_in(person).get("/usage/", RANGE)
    assert response.status_code == 200
    shown = tables(response)

    days = by(mine, lambda m: [m.created_at.astimezone(team["tz"]).date().isoformat()])
    assert {k: v for k, v in shown["usage-days"].items() if k != "Total"} == {
        day: expected(rows) for day, rows in days.items()}
    models = by(mine, lambda m: [m.model])
    assert {k: v for k, v in shown["usage-models"].items() if k != "Total"} == {
        model: expected(rows) for model, rows in models.items()}
    assert shown["usage-days"]["Total"] == shown["usage-models"]["Total"] == expected(mine)


def test_a_person_sees_nothing_of_anyone_elses_usage(team):
    response = logged_in(team["users"]["bob"]).get("/usage/", RANGE)
    html = response.content.decode()
    # Ada's and Cy's models, and their numbers, are nowhere on Bob's page.
    assert "llama" in html  # his deleted conversation's answer counts
    assert "&lt;script&gt;" not in html and "123,456" not in html and "9,000" not in html


def test_the_day_an_answer_counts_for_is_its_day_in_time_zone(team):
    shown = tables(logged_in(team["users"]["ada"]).get("/usage/", RANGE))["usage-days"]
    # 23:59 in New York on the 1st is the 2nd in UTC: still the 1st here. The 28 Feb answer
    # (1st of March in UTC) is outside the range.
    assert shown["2025-03-01"].answers == 2 and "2025-02-28" not in shown
    assert shown["Total"].answers == 3


def test_the_cost_sums_are_exact_decimals(team):
    shown = tables(logged_in(admin_user()).get("/usage/team/", RANGE))["usage-days"]
    assert shown["Total"].cost == Decimal("123458.624820")
    report = usage.team_usage(period=usage.usage_range(**RANGE))
    assert report.totals.cost == sum((m.cost for m in team["rows"]), Decimal(0))
    assert str(report.totals.cost) == "123458.624820"


def test_the_page_says_what_it_counts_and_in_which_currency(team):
    html = logged_in(team["users"]["ada"]).get("/usage/", RANGE).content.decode()
    assert "Cost (EUR)" in html and "through the API" in html and TZ in html


def test_without_dates_the_page_shows_the_last_30_days(tz):
    person = make_user()
    response = logged_in(person).get("/usage/")
    assert response.status_code == 200
    report = response.context["report"]
    assert (report.period.end - report.period.start).days == 29
    assert report.period.end == datetime.now(tz).date()
    assert "No answers in this range." in response.content.decode()


@pytest.mark.parametrize(("query", "says"), [
    ({"start": "2025-02-30"}, "must be a day written YYYY-MM-DD"),
    ({"start": "yesterday", "end": END}, "“yesterday” is not one"),
    ({"end": "20250301"}, "The end date must be a day written YYYY-MM-DD"),
    ({"start": "2025-03-02", "end": "2025-03-01"}, "must not be after the end date"),
    ({"start": "2024-01-01", "end": "2025-03-01"}, "at most 366 days long; this one is 426"),
])
def test_bad_dates_are_refused_with_a_clear_error(query, says):
    for user, url in ((make_user(), "/usage/"), (admin_user(), "/usage/team/")):
        response = logged_in(user).get(url, query)
        assert response.status_code == 400
        html = unescape(response.content.decode())
        assert says in html and 'role="alert"' in html


def test_a_year_is_the_longest_range():
    assert usage.usage_range(start="2024-01-01", end="2024-12-31").days[-1] == date(2024, 12, 31)
    assert usage.usage_range(start="2025-03-10", end=None, today=date(2025, 3, 20)) == \
        usage.DateRange(date(2025, 3, 10), date(2025, 3, 20))
    assert usage.usage_range(start=None, end="2025-03-10") == \
        usage.DateRange(date(2025, 2, 9), date(2025, 3, 10))


def test_the_usage_pages_need_a_login():
    for url in ("/usage/", "/usage/team/"):
        response = Client().get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/")


# --- the team page -------------------------------------------------------------------------------


def test_the_team_page_adds_up_everyone_by_day_model_person_and_group(team):
    rows = team["rows"]
    response = logged_in(admin_user()).get("/usage/team/", RANGE)
    assert response.status_code == 200
    shown = tables(response)
    total = expected(rows)

    days = by(rows, lambda m: [m.created_at.astimezone(team["tz"]).date().isoformat()])
    assert {k: v for k, v in shown["usage-days"].items() if k != "Total"} == {
        d: expected(r) for d, r in days.items()}
    assert {k: v for k, v in shown["usage-models"].items() if k != "Total"} == {
        m: expected(r) for m, r in by(rows, lambda m: [m.model]).items()}
    assert {k: v for k, v in shown["usage-users"].items() if k != "Total"} == {
        u: expected(r) for u, r in by(rows, lambda m: [owner_of(m).username]).items()}
    groups = by(rows, lambda m: [g.name for g in owner_of(m).groups.all()] or ["(in no group)"])
    assert shown["usage-groups"] == {g: expected(r) for g, r in groups.items()}
    for table in ("usage-days", "usage-models", "usage-users"):
        assert shown[table]["Total"] == total
    # Ada is in both groups: the groups add up to more than the total, as the page says.
    assert sum(f.answers for f in shown["usage-groups"].values()) > total.answers
    assert "counts for every group its owner belongs to" in response.content.decode()


@pytest.mark.parametrize(("query", "keep"), [
    ({"user": "ada"}, lambda m: owner_of(m).username == "ada"),
    ({"model": "vllm:llama"}, lambda m: m.model == "vllm:llama"),
    ("eng", lambda m: owner_of(m).groups.filter(name="eng").exists()),
    ("ops", lambda m: owner_of(m).groups.filter(name="ops").exists()),
])
def test_the_team_page_filters_by_person_group_and_model(team, query, keep):
    if isinstance(query, str):
        query = {"group": str(team["groups"][query].pk)}
    response = logged_in(admin_user()).get("/usage/team/", {**RANGE, **query})
    assert response.status_code == 200
    shown = tables(response)
    wanted = [m for m in team["rows"] if keep(m)]
    assert shown["usage-days"]["Total"] == expected(wanted)
    assert {k: v for k, v in shown["usage-users"].items() if k != "Total"} == {
        u: expected(r) for u, r in by(wanted, lambda m: [owner_of(m).username]).items()}


def test_an_unknown_person_in_the_filter_is_said_so(team):
    response = logged_in(admin_user()).get("/usage/team/", {**RANGE, "user": "nobody"})
    assert response.status_code == 400
    assert "There is no user named “nobody”." in response.content.decode()


def test_the_team_page_is_for_staff_who_may_view_messages(team):
    plain = make_user()
    staff = make_user(is_staff=True)
    viewer = make_user(is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_message",
                                                       content_type__app_label="conversations"))
    viewing_non_staff = make_user()
    viewing_non_staff.user_permissions.add(Permission.objects.get(
        codename="view_message", content_type__app_label="conversations"))
    for user in (plain, staff, viewing_non_staff):
        assert logged_in(user).get("/usage/team/", RANGE).status_code == 403
    for user in (viewer, admin_user()):
        assert logged_in(user).get("/usage/team/", RANGE).status_code == 200


def test_the_admin_links_to_the_team_page_for_those_who_may_see_it():
    staff = make_user(is_staff=True)
    assert "/usage/team/" not in logged_in(staff).get("/admin/").content.decode()
    assert "/usage/team/" in logged_in(admin_user()).get("/admin/").content.decode()


def test_the_by_person_table_is_capped_with_a_note(team, monkeypatch):
    monkeypatch.setattr(usage, "MAX_USER_ROWS", 2)
    period = usage.usage_range(**RANGE)
    users, more = usage.by_user(usage.usage_messages(period=period), limit=2)
    # The dearest first: Cy (123,458.02...), Bob (0.500005), Ada (0.101236), Dan (nothing).
    assert [u.username for u in users] == ["cy", "bob"] and more
    full, more = usage.by_user(usage.usage_messages(period=period), limit=4)
    assert len(full) == 4 and not more


def test_the_pages_cost_a_bounded_number_of_queries(team, django_assert_max_num_queries):
    ada, boss = team["users"]["ada"], admin_user()
    mine, theirs = logged_in(ada), logged_in(boss)
    # The session and the user, then two tables.
    with django_assert_max_num_queries(4):
        assert mine.get("/usage/", RANGE).status_code == 200
    # Session, user, the four tables, the two lists of choices, the user filter.
    with django_assert_max_num_queries(9):
        assert theirs.get("/usage/team/", {**RANGE, "user": "ada"}).status_code == 200


# --- charts --------------------------------------------------------------------------------------


def test_chart_labels_are_escaped_wherever_they_appear(team):
    html = logged_in(admin_user()).get("/usage/team/", RANGE).content.decode()
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    svg = usage_charts.tokens_by_name([(EVIL, usage.Totals(answers=1, input_tokens=5))],
                                      chart_id="x", title=f"t {EVIL}")
    assert "<script" not in svg and svg.count("&lt;script&gt;") == 3  # title, label, bar title


def test_each_bar_has_a_title_and_each_chart_a_title_and_description(team):
    html = logged_in(team["users"]["ada"]).get("/usage/", RANGE).content.decode()
    charts = re.findall(r'<svg [^>]*role="img"[^>]*>.*?</svg>', html, re.S)
    assert len(charts) == 3  # tokens and cost per day, tokens by model
    for chart in charts:
        assert re.search(r"<title id=\"[^\"]+-t\">", chart) and "<desc" in chart
    per_day = charts[0]
    assert per_day.count('<g class="bar"><title>') == 31
    assert ("2025-03-01: 1,557 tokens (1,250 input, of which 200 cached; 307 output), 2 answers"
            in per_day)


def test_costs_read_exactly():
    assert usage_charts.money_text(Decimal("0.001200")) == "0.0012"
    assert usage_charts.money_text(Decimal("123456.7")) == "123,456.70"
    assert usage_charts.money_text(Decimal(0)) == "0.00"


# --- the chat page's context meter and usage line ---------------------------------------------


def test_the_conversation_payload_carries_the_main_models_window(settings):
    settings.MODEL_CONTEXT_WINDOW = 32768
    plain = make_conversation()
    assert conversation_payload(plain)["context_window"] == 32768
    LanguageModel.objects.create(server=None, name="big", context_window=131072)
    agent = Agent.objects.create(name="Big", slug="big", model="big")
    assert conversation_payload(make_conversation(agent=agent))["context_window"] == 131072


def test_the_chat_page_is_told_the_cost_currency(settings):
    settings.COST_CURRENCY = "CHF"
    html = logged_in(make_user()).get("/").content.decode()
    assert '"currency": "CHF"' in html and 'href="/usage/"' in html


def test_a_turn_refused_by_a_budget_is_not_counted_as_an_answer(tz):
    person = make_user()
    conversation = make_conversation(owner=person)
    at = datetime(2025, 3, 5, 12, tzinfo=tz)
    answer(conversation, at=at, model="m", input_tokens=10, output_tokens=5, cost="0.5")
    # Refused before any round: failed, nothing held, no first token.
    answer(conversation, at=at, model="", input_tokens=0, output_tokens=0,
           status=Message.Status.FAILED)
    report = usage.personal_usage(user=person, period=usage.usage_range(**RANGE))
    assert (report.totals.answers, report.totals.tokens, report.totals.cost) == (
        1, 15, Decimal("0.5"))
