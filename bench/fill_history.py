"""Fill a database with a year of a company's conversations (issue 13, point 5): one heavy user
with 10,000 conversations among 100 users, 1,000,000 messages in all, one conversation of 2,000
messages, answers with models, tokens and costs, some failed or stopped, some tool calls.

    createdb -h 127.0.0.1 -U postgres history_bench
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/history_bench .venv/bin/python bench/fill_history.py
    DATABASE_URL=sqlite:////tmp/history.sqlite3 .venv/bin/python bench/fill_history.py   # 100,000

Runs the migrations first, then refuses a database that already holds conversations unless
--force. The schema is left whole (every index, the search index and SQLite's FTS triggers), so
the rows are found by the real search path; rows go in by COPY on PostgreSQL and by batched
INSERTs on SQLite, with ids chosen here so a message's parent is known before it is written.
On PostgreSQL, VACUUM ANALYZE at the end gives the planner (and the admin's estimates) the
statistics a year-old database has. Sizes other than the default scale the conversation counts
with the messages (--messages 100000: 1,000 conversations of the heavy user, 10 of each other).

Text is drawn from a word list with a Zipf-like spread (a few words in most messages, most words
rare), so searches for common words, rare words and phrases behave as on real text. Words the
benchmark searches for (bench/history.py) are planted at known rates: RARE_WORD in a dozen of
the heavy user's messages, PHRASE in about 0.5% of messages, COMMON_WORD by its rank.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent

HEAVY_USER = "heavy"
ADMIN_USER = "auditor"
LONG_TITLE = "The long conversation"
RARE_WORD = "zanzibarite"
RARE_COUNT = 12
COMMON_WORD = "report"
PHRASE = "quarterly budget"
PHRASE_RATE = 0.005
MODELS = [("gpt-oss-120b", 50, Decimal("0.15"), Decimal("0.60")),
          ("vllm:qwen3-32b", 30, Decimal("0.10"), Decimal("0.30")),
          ("claude-sonnet-4", 15, Decimal("3.00"), Decimal("15.00")),
          ("llama-3.3-70b", 5, Decimal("0.20"), Decimal("0.20"))]
TOOLS = [("search_docs", "docs"), ("sales_report", "erp"), ("get_time", ""),
         ("read_file", "files"), ("run_sql", "erp"), ("send_email", "mail")]
AGENTS = [("Assistant", "assistant", 70), ("Sales analyst", "sales", 20), ("Coder", "coder", 8)]

COMMON = """the a to of and in is it you that for on with this be are as can i we have not your
at or if will from by an do was so what but all there one how my use they which about would
should more time need like here just data report also make any could our get when new team
project please file code then their customer into know update first see them other some work
thanks meeting check sales number help email issue question plan review week send budget model
change server test list table query users error version support price order account value
quarterly month year share draft summary point next last call note release design
document""".split()


def synthetic_words(rng: random.Random, count: int, syllables: tuple[int, int]) -> list[str]:
    parts = ["ka", "lo", "mi", "ra", "ven", "tor", "sel", "qui", "dar", "pen", "zo", "bri",
             "fal", "gon", "hex", "jun", "mor", "nel", "pla", "rux", "sta", "tri", "vel", "wyn"]
    words: set[str] = set()
    while len(words) < count:
        words.add("".join(rng.choice(parts) for _ in range(rng.randint(*syllables))))
    words.discard(RARE_WORD)
    return sorted(words)


class Text:
    """Messages from a pool of sentences over a Zipf-weighted vocabulary, plus rare words."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        vocabulary = COMMON + synthetic_words(rng, 1500, (2, 3))
        weights = [1 / (rank + 1) ** 1.05 for rank in range(len(vocabulary))]
        self.sentences = []
        for _ in range(5000):
            words = rng.choices(vocabulary, weights=weights, k=rng.randint(6, 14))
            self.sentences.append(" ".join(words).capitalize() + ".")
        self.rare = synthetic_words(rng, 100_000, (3, 5))

    def message(self, *, sentences: int) -> str:
        rng = self.rng
        parts = rng.choices(self.sentences, k=sentences)
        if rng.random() < 0.3:
            parts.insert(rng.randrange(len(parts) + 1), rng.choice(self.rare) + ".")
        if rng.random() < PHRASE_RATE:
            parts.append(f"The {PHRASE} is due next week.")
        return " ".join(parts)


def plan_lengths(rng: random.Random, *, conversations: int, messages: int) -> list[int]:
    """Lengths (user and assistant turns, so mostly even) summing to `messages`."""
    mean = messages / conversations
    lengths = [max(2, 2 * round(rng.expovariate(1 / mean) / 2)) for _ in range(conversations)]
    diff = messages - sum(lengths)
    while diff:
        i = rng.randrange(conversations)
        step = max(-(lengths[i] - 2), min(diff, 2 if diff > 0 else -2))
        if diff in (1, -1):
            step = diff if lengths[i] + diff >= 1 else 0
        lengths[i] += step
        diff -= step
    return lengths


class Sink:
    """Rows into tables: COPY on PostgreSQL, executemany on SQLite."""

    def __init__(self, connection) -> None:
        self.connection = connection
        self.pg = connection.vendor == "postgresql"

    def stamp(self, moment: datetime) -> str:
        # Django keeps SQLite datetimes as naive UTC text and compares them as text.
        return (moment.isoformat() if self.pg
                else moment.replace(tzinfo=None).isoformat(sep=" "))

    def uuid(self, value: uuid.UUID) -> str:
        return str(value) if self.pg else value.hex

    def write(self, table: str, columns: list[str], rows) -> int:
        count = 0
        if self.pg:
            with self.connection.cursor() as cursor:
                with cursor.cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                        count += 1
            return count
        raw = self.connection.connection
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        batch = []
        for row in rows:
            batch.append(row)
            if len(batch) == 5000:
                raw.executemany(sql, batch)
                count += len(batch)
                batch.clear()
        if batch:
            raw.executemany(sql, batch)
            count += len(batch)
        return count


MESSAGE_COLUMNS = ["id", "conversation_id", "role", "content", "reasoning", "reasoning_signature",
                   "reasoning_ms", "status", "model", "error", "parent_id", "client_key",
                   "input_tokens", "output_tokens", "reasoning_tokens", "cached_tokens", "cost",
                   "reserved_tokens", "reserved_cost", "created_at", "first_token_at",
                   "finished_at", "updated_at", "last_seq"]
CONVERSATION_COLUMNS = ["id", "owner_id", "title", "agent_id", "source", "api_key_id",
                        "created_at", "updated_at", "legal_hold", "is_deleted", "deleted_at"]
TOOL_CALL_COLUMNS = ["id", "message_id", "call_id", "server", "tool_name", "arguments", "round",
                     "text_offset", "definition_hash", "result", "result_truncated",
                     "result_chars", "is_error", "status", "approval", "decided_by_id",
                     "decided_at", "created_at", "started_at", "finished_at"]


def fill(args, connection) -> dict:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.db import transaction

    from agents.models import Agent, LanguageModel
    from conversations.models import Conversation, Message, ToolCall

    rng = random.Random(args.seed)
    sink = Sink(connection)
    scale = args.messages / 1_000_000
    heavy_conversations = args.heavy_conversations or max(10, round(10_000 * scale))
    per_other = args.other_conversations or max(1, round(100 * scale))
    started = time.perf_counter()

    User = get_user_model()
    unusable = make_password(None)
    with transaction.atomic():
        users = User.objects.bulk_create(
            [User(username=HEAVY_USER, password=unusable)]
            + [User(username=f"user{i:03d}", password=unusable) for i in range(1, args.users)]
            + [User(username=ADMIN_USER, password=unusable, is_staff=True, is_superuser=True)])
        agents = [Agent.objects.get_or_create(slug=slug, defaults={"name": name})[0]
                  for name, slug, _ in AGENTS]
        for name, *_ in MODELS:
            if ":" not in name:  # a model of the default server, named bare as messages do
                LanguageModel.objects.get_or_create(server=None, name=name)
    owners = [u for u in users if u.username != ADMIN_USER]
    heavy = owners[0]
    text = Text(rng)
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    year = timedelta(days=365)

    # Conversations: the heavy user's, then each other user's; the long one is among the heavy
    # user's most recent (fifth from the top of the sidebar).
    plan = [(heavy.pk) for _ in range(heavy_conversations)]
    for owner in owners[1:]:
        plan += [owner.pk] * per_other
    lengths = plan_lengths(rng, conversations=len(plan) - 1,
                           messages=args.messages - args.long)
    long_index = 0
    lengths.insert(long_index, args.long)
    agent_weights = [w for *_, w in AGENTS] + [2]
    agent_choices = [a.pk for a in agents] + [None]
    conversations = []
    for index, (owner_id, length) in enumerate(zip(plan, lengths)):
        if index == long_index:
            start = now - timedelta(days=14)
            spacing = timedelta(days=14) / (length + 4)
        else:
            spacing = timedelta(seconds=rng.randint(20, 600))
            start = now - year + timedelta(seconds=rng.random() * (year.total_seconds()
                                                                    - 86400))
        conversations.append({"id": uuid.UUID(int=rng.getrandbits(128), version=4),
                              "owner": owner_id, "length": length, "start": start,
                              "spacing": spacing,
                              "agent": rng.choices(agent_choices, weights=agent_weights)[0]})
    # Four of the heavy user's conversations are newer than the long one.
    for c in conversations[1:5]:
        c["start"] = now - timedelta(hours=rng.randint(1, 48))
    long_id = conversations[long_index]["id"]

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {Message._meta.db_table}")
        next_message = cursor.fetchone()[0] + 1
        cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {ToolCall._meta.db_table}")
        next_call = cursor.fetchone()[0] + 1
    first_message = next_message
    tool_calls: list[tuple] = []
    rare_at = set(rng.sample(range(heavy_conversations), min(RARE_COUNT, heavy_conversations)))
    model_names = [m[0] for m in MODELS]
    model_weights = [m[1] for m in MODELS]
    prices = {m[0]: (m[2], m[3]) for m in MODELS}
    million = Decimal(1_000_000)

    def message_rows():
        nonlocal next_message, next_call
        for index, c in enumerate(conversations):
            parent = None
            moment = c["start"]
            context = 0
            for position in range(c["length"]):
                answer = position % 2 == 1
                mid = next_message
                next_message += 1
                content = text.message(sentences=rng.randint(3, 9) if answer
                                       else rng.randint(1, 3))
                if not answer and position == 0:
                    if index in rare_at:
                        content += f" Where is the {RARE_WORD} sample?"
                    c["title"] = " ".join(content.split()[:5]).rstrip(".")[:200]
                moment = moment + c["spacing"]
                status, model, error, cost = "complete", "", "", Decimal(0)
                input_tokens = output_tokens = 0
                first_token = finished = None
                if answer:
                    model = rng.choices(model_names, weights=model_weights)[0]
                    roll = rng.random()
                    status = ("failed" if roll < 0.01 else "stopped" if roll < 0.015
                              else "interrupted" if roll < 0.017 else "complete")
                    if status == "failed":
                        error = "The model server answered 503: overloaded."
                    input_tokens = min(context + 200, 120_000)
                    output_tokens = len(content) // 4
                    price_in, price_out = prices[model]
                    cost = ((price_in * input_tokens + price_out * output_tokens) / million
                            ).quantize(Decimal("0.000001"))
                    first_token = sink.stamp(moment + timedelta(milliseconds=400))
                    finished = sink.stamp(moment + timedelta(seconds=3))
                    if rng.random() < 0.04:
                        tool, server = rng.choice(TOOLS)
                        stamp = sink.stamp(moment + timedelta(seconds=1))
                        tool_calls.append((
                            next_call, mid, f"call_{next_call}", server, tool,
                            json.dumps({"query": content.split()[0]}), 0, 0, "",
                            text.message(sentences=1), False, 60, False, "complete", "policy",
                            None, None, stamp, stamp, stamp))
                        next_call += 1
                context += len(content) // 4
                stamp = sink.stamp(moment)
                yield (mid, sink.uuid(c["id"]), "assistant" if answer else "user", content, "",
                       "", None, status, model, error, parent, None, input_tokens,
                       output_tokens, 0, 0, str(cost), 0, "0", stamp, first_token, finished,
                       finished or stamp, 0)
                parent = mid
            c["end"] = moment

    with transaction.atomic():
        # Messages reference conversations: those go in first, titled afterwards.
        sink.write(Conversation._meta.db_table, CONVERSATION_COLUMNS, (
            (sink.uuid(c["id"]), c["owner"], "", c["agent"],
             "api" if rng.random() < 0.05 else "web", None, sink.stamp(c["start"]),
             sink.stamp(c["start"]), False, False, None) for c in conversations))
        messages = sink.write(Message._meta.db_table, MESSAGE_COLUMNS, message_rows())
        calls = sink.write(ToolCall._meta.db_table, TOOL_CALL_COLUMNS, tool_calls)
        # Titles and last activity, now that every conversation's messages are known.
        with connection.cursor() as cursor:
            for i in range(0, len(conversations), 2000):
                chunk = conversations[i:i + 2000]
                params: list = []
                for c in chunk:
                    title = LONG_TITLE if c["id"] == long_id else c["title"]
                    params += [sink.uuid(c["id"]), title, sink.stamp(c["end"])]
                values = ", ".join(["(%s, %s, %s)"] * len(chunk))
                if sink.pg:
                    cursor.execute(
                        f"UPDATE {Conversation._meta.db_table} AS c SET title = v.title, "
                        f"updated_at = v.updated_at::timestamptz FROM (VALUES {values}) "
                        f"AS v(id, title, updated_at) WHERE c.id = v.id::uuid", params)
                else:
                    cursor.execute(
                        f"WITH v(id, title, updated_at) AS (VALUES {values}) "
                        f"UPDATE {Conversation._meta.db_table} SET "
                        f"title = (SELECT title FROM v WHERE v.id = "
                        f"{Conversation._meta.db_table}.id), "
                        f"updated_at = (SELECT updated_at FROM v WHERE v.id = "
                        f"{Conversation._meta.db_table}.id) "
                        f"WHERE id IN (SELECT id FROM v)", params)
        if sink.pg:
            with connection.cursor() as cursor:
                for model in (Message, ToolCall):
                    table = model._meta.db_table
                    cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                   f"(SELECT MAX(id) FROM {table}))")
    written = time.perf_counter() - started
    if sink.pg:
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
    else:
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    return {"users": len(owners), "conversations": len(conversations),
            "heavy_conversations": heavy_conversations, "messages": messages,
            "tool_calls": calls, "long_conversation": str(long_id),
            "first_message_id": first_message, "write_s": round(written, 1),
            "total_s": round(time.perf_counter() - started, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/fill_history.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int,
                        help="messages in all (default: 1,000,000 on PostgreSQL, 100,000 on "
                             "SQLite)")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--heavy-conversations", type=int,
                        help="the heavy user's conversations (default 10,000 per 1M messages)")
    parser.add_argument("--other-conversations", type=int,
                        help="each other user's conversations (default 100 per 1M messages)")
    parser.add_argument("--long", type=int, default=2000,
                        help="messages in the long conversation")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--force", action="store_true",
                        help="add to a database that already holds conversations")
    args = parser.parse_args(argv)
    if not os.environ.get("DATABASE_URL"):
        parser.error("set DATABASE_URL to the database to fill (never the tests' one)")
    os.environ["DJANGO_SETTINGS_MODULE"] = "chatsite.settings"
    env = {k: v for k, v in os.environ.items()}
    env.setdefault("DATA_DIR", str(ROOT / "var"))
    print("migrating ...", flush=True)
    subprocess.run([str(BIN / "python"), "manage.py", "migrate", "--no-input", "-v", "0"],
                   cwd=ROOT, env=env, check=True)
    import django

    django.setup()
    from django.db import connection

    from conversations.models import Conversation

    if Conversation.objects.exists() and not args.force:
        print("this database already holds conversations: refusing (use --force to add)",
              file=sys.stderr)
        return 2
    if args.messages is None:
        args.messages = 1_000_000 if connection.vendor == "postgresql" else 100_000
    print(f"filling {connection.vendor} with {args.messages:,} messages ...", flush=True)
    result = fill(args, connection)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
