"""Long-history benchmark (issue 13, point 5): each read of a year of conversations, timed through
the project's own HTTP and WebSocket paths on one real Daphne process, median of several runs.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/history_bench .venv/bin/python bench/history.py
    DATABASE_URL=sqlite:////tmp/history.sqlite3 .venv/bin/python bench/history.py --runs 5

The database is one bench/fill_history.py filled (it is only read here, apart from the two
sessions this makes and the admin's records of who read what). Daphne is started on it with the
real settings (no REDIS_URL: the in-memory channel layer) and killed at the end. The reads, as
the heavy user (10,000 conversations) and as a superuser in the admin:

- the sidebar's first page, and the page after 90% of the conversations (9,000 of 10,000);
- the sidebar's search (its JSON endpoint): a rare word, a common word, a two-word phrase;
- opening the 2,000-message conversation over the WebSocket: from the "watch" frame to the
  first conversation state frame (its parts reassembled, when it is split);
- the admin's message list, then filtered by user (the heavy one and a light one), agent,
  model, status and a date range, and searched (rare and common word); the conversation list,
  filtered by a message's model and status; the long conversation's admin page.

Each read runs once to warm up, then --runs times; the table shows the median (and min, max,
bytes). Results go to stdout and bench/results/<timestamp>-history.json. Only 127.0.0.1 is
contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import httpx
from websockets.asyncio.client import connect as ws_connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.fill_history import (ADMIN_USER, COMMON_WORD, HEAVY_USER, LONG_TITLE,  # noqa: E402
                                PHRASE, RARE_WORD)
from bench.stream import (BIN, Processes, free_port, git_state, machine_speed_us,  # noqa: E402
                          tail, wait_http)

RESULTS = ROOT / "bench" / "results"
clock = time.perf_counter
# Issue 13, point 5 (PostgreSQL, 1,000,000 messages).
TARGETS_MS = {"search": 300.0, "open": 150.0, "admin": 300.0}


def prepare(secret_key: str) -> dict:
    """Sessions for the heavy user and the auditor, and the ids the reads need (Django set up
    in this process on the same database and SECRET_KEY as the Daphne it will start)."""
    os.environ["SECRET_KEY"] = secret_key
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    import django

    django.setup()
    from django.contrib.auth import (BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY,
                                     get_user_model)
    from django.contrib.sessions.backends.db import SessionStore
    from django.db import connection
    from django.utils import timezone

    from agents.models import Agent
    from conversations.models import Conversation, Message

    User = get_user_model()

    def session(user) -> str:
        store = SessionStore()
        store[SESSION_KEY] = str(user.pk)
        store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        store[HASH_SESSION_KEY] = user.get_session_auth_hash()
        store.create()
        return store.session_key

    heavy = User.objects.get(username=HEAVY_USER)
    auditor = User.objects.get(username=ADMIN_USER)
    light = (User.objects.exclude(pk__in=[heavy.pk, auditor.pk]).order_by("username")
             [User.objects.count() // 2])
    long = Conversation.objects.get(owner=heavy, title=LONG_TITLE)
    mine = Conversation.objects.filter(owner=heavy, is_deleted=False)
    total = mine.count()
    deep = int(total * 0.9)
    # The sidebar's cursor after `deep` conversations (the sidebar pages by (updated_at, id)).
    anchor = mine.order_by("-updated_at", "-pk")[deep - 1]
    try:
        from conversations.search import encode_cursor

        cursor = encode_cursor(anchor)
    except ImportError:
        cursor = None
    today = timezone.localdate()
    return {
        "vendor": connection.vendor,
        "messages": Message.objects.count(),
        "conversations": Conversation.objects.count(),
        "heavy_conversations": total,
        "deep": deep,
        "cursor": cursor,
        "long": str(long.pk),
        "long_messages": Message.objects.filter(conversation=long).count(),
        "heavy": heavy.pk,
        "light": light.pk,
        "agent": Agent.objects.get(slug="coder").pk,
        "from": (today - timedelta(days=40)).isoformat(),
        "to": (today - timedelta(days=31)).isoformat(),
        "sessions": {"heavy": session(heavy), "auditor": session(auditor)},
    }


def reads(ids: dict) -> list[tuple[str, str, str, str]]:
    """(group, name, who, URL path) of each HTTP read; the WebSocket open is added apart."""
    m = "/admin/conversations/message/"
    c = "/admin/conversations/conversation/"
    deep = (f"/api/conversations/?cursor={ids['cursor']}" if ids["cursor"] else None)
    rows = [
        ("sidebar", "first page", "heavy", "/api/conversations/"),
        ("sidebar", f"after {ids['deep']:,} conversations", "heavy", deep),
        ("search", f"rare word ({RARE_WORD})", "heavy", f"/api/conversations/?q={RARE_WORD}"),
        ("search", f"common word ({COMMON_WORD})", "heavy",
         f"/api/conversations/?q={COMMON_WORD}"),
        ("search", f"two-word phrase ({PHRASE})", "heavy",
         "/api/conversations/?q=" + PHRASE.replace(" ", "+")),
        ("admin", "message list", "auditor", m),
        ("admin", "messages by user (heavy)", "auditor",
         f"{m}?conversation__owner__id__exact={ids['heavy']}"),
        ("admin", "messages by user (light)", "auditor",
         f"{m}?conversation__owner__id__exact={ids['light']}"),
        ("admin", "messages by agent (8%)", "auditor",
         f"{m}?conversation__agent__id__exact={ids['agent']}"),
        ("admin", "messages by model (15%)", "auditor", f"{m}?model=claude-sonnet-4"),
        ("admin", "messages by status (failed)", "auditor", f"{m}?status__exact=failed"),
        ("admin", "messages by date (10 days)", "auditor",
         f"{m}?created_at__from={ids['from']}&created_at__to={ids['to']}"),
        ("admin", f"message search, rare ({RARE_WORD})", "auditor", f"{m}?q={RARE_WORD}"),
        ("admin", f"message search, common ({COMMON_WORD})", "auditor",
         f"{m}?q={COMMON_WORD}"),
        ("admin", "conversation list", "auditor", c),
        ("admin", "conversations by message model", "auditor",
         f"{c}?messages__model=claude-sonnet-4"),
        ("admin", "conversations by message status", "auditor", f"{c}?messages__status=failed"),
        ("admin", f"conversation search, rare ({RARE_WORD})", "auditor", f"{c}?q={RARE_WORD}"),
        ("admin", f"conversation search, common ({COMMON_WORD})", "auditor",
         f"{c}?q={COMMON_WORD}"),
        ("admin", "long conversation's page", "auditor", f"{c}{ids['long']}/change/"),
    ]
    return [row for row in rows if row[3] is not None]


def time_http(client: httpx.Client, path: str, runs: int) -> dict:
    samples, size, status = [], 0, None
    for i in range(runs + 1):
        started = clock()
        response = client.get(path)
        elapsed = (clock() - started) * 1000
        status, size = response.status_code, len(response.content)
        if i:  # the first warms up
            samples.append(elapsed)
    return {"median_ms": statistics.median(samples), "min_ms": min(samples),
            "max_ms": max(samples), "bytes": size, "status": status}


async def open_once(url: str, headers: dict, conversation: str) -> tuple[float, int, dict]:
    """Seconds from "watch" to the first conversation state frame, its size, and a summary."""
    async with ws_connect(url, additional_headers=headers, max_size=None) as ws:
        hello = json.loads(await ws.recv())
        assert hello["type"] == "hello", hello
        started = clock()
        await ws.send(json.dumps({"type": "watch", "conversation": conversation}))
        pieces: dict[int, list[str]] = {}
        while True:
            text = await asyncio.wait_for(ws.recv(), timeout=60)
            frame = json.loads(text)
            if frame["type"] == "part":
                pieces.setdefault(frame["id"], []).append(frame["data"])
                if not frame["last"]:
                    continue
                text = "".join(pieces.pop(frame["id"]))
                frame = json.loads(text)
            if frame["type"] == "conversation":
                elapsed = clock() - started
                summary = {"messages_in_frame": len(frame.get("messages", [])),
                           "keys": sorted(frame)}
                return elapsed, len(text.encode()), summary
            if frame["type"] == "error":
                raise RuntimeError(f"open failed: {frame}")


def time_open(port: int, session: str, conversation: str, runs: int) -> dict:
    url = f"ws://127.0.0.1:{port}/ws/chat/"
    headers = {"Cookie": f"sessionid={session}", "Origin": f"http://127.0.0.1:{port}"}
    samples, size, summary = [], 0, {}
    for i in range(runs + 1):
        elapsed, size, summary = asyncio.run(open_once(url, headers, conversation))
        if i:
            samples.append(elapsed * 1000)
    return {"median_ms": statistics.median(samples), "min_ms": min(samples),
            "max_ms": max(samples), "bytes": size, "status": 101, **summary}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/history.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7, help="timed runs of each read")
    parser.add_argument("--only", default="", help="run only reads whose name contains this")
    parser.add_argument("--keep-tmp", action="store_true")
    args = parser.parse_args(argv)
    if not os.environ.get("DATABASE_URL"):
        parser.error("set DATABASE_URL to a database bench/fill_history.py filled")
    secret_key = secrets.token_urlsafe(64)
    ids = prepare(secret_key)
    print(f"{ids['vendor']}: {ids['messages']:,} messages, {ids['conversations']:,} "
          f"conversations ({ids['heavy_conversations']:,} of the heavy user); the long one "
          f"has {ids['long_messages']:,} messages", flush=True)

    procs = Processes()
    tmp = Path(tempfile.mkdtemp(prefix="bench-history-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL",)}
        env.update({"PYTHONUNBUFFERED": "1", "DATA_DIR": str(tmp), "SECRET_KEY": secret_key,
                    "ALLOWED_HOSTS": "127.0.0.1", "LOG_LEVEL": "warning",
                    "DJANGO_SETTINGS_MODULE": "chatsite.settings"})
        port = free_port()
        log = tmp / "daphne.log"
        daphne = procs.start([str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port),
                              "chatsite.asgi:application"], env=env, log=log)
        wait_http(f"http://127.0.0.1:{port}/login/", daphne, log)
        print(f"daphne 127.0.0.1:{port} (pid {daphne.pid}); {args.runs} runs of each read "
              f"after one warm-up", flush=True)
        results = []
        clients = {who: httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120,
                                     cookies={"sessionid": key})
                   for who, key in ids["sessions"].items()}
        try:
            plan = reads(ids)
            plan.insert(5, ("open", "newest part of the 2,000-message conversation (WebSocket)",
                            "heavy", None))
            for group, name, who, path in plan:
                if args.only and args.only not in name:
                    continue
                if path is None:
                    figures = time_open(port, ids["sessions"][who], ids["long"], args.runs)
                else:
                    figures = time_http(clients[who], path, args.runs)
                row = {"group": group, "name": name, "path": path, **figures}
                results.append(row)
                print(f"  {group:8} {name:50} {figures['median_ms']:9.1f} ms "
                      f"({figures['bytes']:,} bytes, {figures['status']})", flush=True)
        finally:
            for client in clients.values():
                client.close()
        if daphne.poll() is not None:
            raise RuntimeError(f"daphne died:\n{tail(log)}")
        report = {"data": {k: v for k, v in ids.items() if k != "sessions"}, "runs": args.runs,
                  "targets_ms": TARGETS_MS, "results": results, "git": git_state(),
                  "machine_speed_us": machine_speed_us(), "cpus": os.cpu_count(),
                  "finished": time.time()}
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = RESULTS / f"{time.strftime('%Y%m%d-%H%M%S')}-history-{ids['vendor']}.json"
        out.write_text(json.dumps(report, indent=2))
        print_table(report, out)
        errors = [r for r in results if r["status"] not in (200, 101)]
        if errors:
            print(f"daphne log tail:\n{tail(log, 20)}")
        return 1 if errors else 0
    finally:
        procs.kill_all()
        if args.keep_tmp:
            print(f"temp dir kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def print_table(report: dict, out: Path) -> None:
    d = report["data"]
    print()
    print(f"{d['vendor']}, {d['messages']:,} messages, {d['conversations']:,} conversations; "
          f"median of {report['runs']} runs (ms)")
    print(f"{'read':62}{'median':>9}{'min':>8}{'max':>8}{'bytes':>11}  target")
    for r in report["results"]:
        target = TARGETS_MS.get(r["group"])
        verdict = "" if target is None else (
            f"< {target:g} {'PASS' if r['median_ms'] < target else 'MISS'}")
        print(f"{r['group'] + ': ' + r['name']:62}{r['median_ms']:9.1f}{r['min_ms']:8.1f}"
              f"{r['max_ms']:8.1f}{r['bytes']:11,}  {verdict}")
    g = report["git"]
    print(f"\ncode measured: {g['head']}" + (f" + uncommitted changes in {', '.join(g['dirty'])}"
                                            if g["dirty"] else ""))
    if d["vendor"] != "postgresql":
        print("(the targets are for PostgreSQL at 1,000,000 messages)")
    print(f"full results: {out}")


if __name__ == "__main__":
    sys.exit(main())
