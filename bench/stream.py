"""Streaming benchmark: N concurrent turns over WebSockets through one Daphne process, beside a
direct connection to the fake LLM measured in the same run (issue 3, point 9).

    .venv/bin/python bench/stream.py              # the target run: 200 x 200 tokens, 20 ms apart
    .venv/bin/python bench/stream.py --quick      # 20 x 50 tokens, 10 s: a fast check
    .venv/bin/python bench/stream.py --profile    # also py-spy the Daphne process in the window

One run starts the fake LLM (its own process), a fresh SQLite database in a temp dir, N users with
session cookies and ONE Daphne process (bench/settings_bench.py: the real settings plus a write
counter), then runs three phases, each with N workers that replace every finished turn with a new
one (the first N spread over --ramp seconds) and measure only turns started in the window that
follows the ramp; load continues past the window until those turns have finished:

1. direct: httpx streams straight to the fake (the baseline);
2. server: the same turns over WebSockets, one new conversation per turn (--conversation same
   keeps sending in one conversation per socket instead); with --transport api, the same turns
   as streamed POST /v1/chat/completions requests instead, each user with a personal API key
   (every request is stored as an API conversation: the report counts the stored answers);
3. short (unless --no-short): shorter turns at the same turn rate, so server CPU can be split
   into a fixed cost per turn and a marginal cost per 1,000 tokens (two equations, two unknowns),
   and writes per assistant message can be compared across lengths.

The client is one asyncio loop in this process (bench/rawclients.py: a frame costs one
data_received call; --ws-client websockets / --direct-client httpx use the full libraries).
Server CPU comes from /proc/<pid>/stat over the window, peak memory from VmHWM, database writes
from bench.countwrites (an execute_wrapper in the Daphne process, per assistant message id).
--env KEY=VALUE passes settings to Daphne (e.g. TURN_FLUSH_INTERVAL=5, GENERATE_TITLES=false).
New conversations get a title from the model after their first answer: one extra upstream
request per turn here (8 tokens; "upstream requests per turn" in the report).

Results go to stdout and bench/results/<timestamp>.json. Every subprocess is killed at the end.
Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from array import array
from collections import Counter
from pathlib import Path

import httpx
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import rawclients  # noqa: E402
BIN = Path(sys.executable).parent
RESULTS = ROOT / "bench" / "results"
TICK = os.sysconf("SC_CLK_TCK")
clock = time.perf_counter

TARGETS = {  # issue 3, point 9: one Daphne process, 2 cores, 200 x 200 tokens 20 ms apart
    "token_rate_pct_min": 97.0,
    "added_ttft_p50_ms_max": 10.0,
    "added_ttft_p99_ms_max": 100.0,
    "added_gap_p99_ms_max": 20.0,
    "cpu_ms_per_1000_tokens_max": 50.0,
    "cpu_ms_per_turn_max": 5.0,
    "peak_rss_mb_max": 300.0,
    "db_writes_per_message_max": 5,
}
OPEN_WEBUI = (  # issue 3, point 9: Open WebUI 0.12 on its plain API path, which stores nothing
    "Open WebUI 0.12 (issue 3, same kind of machine and fake upstream, plain API path, stores "
    "nothing): +18 ms at 1 stream, ~+5 s at 200 concurrent streams, 44% of the direct token rate, "
    "18-24 ms CPU per request, ~200 ms CPU per 1,000 tokens, 930 MB memory."
)
TOKEN_RE = re.compile(rb'"content":"([^"]+)"')


# --- processes ------------------------------------------------------------------------------------


class Processes:
    """Every subprocess we start, each in its own session; `kill_all` ends exactly these."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, cmd: list[str], *, env: dict, log: Path, stdout=None) -> subprocess.Popen:
        out = open(log, "ab")
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=stdout or out, stderr=out,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        out.close()
        self.procs.append(proc)
        return proc

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 5
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    user, system = cpu_split(pid)
    return user + system


def cpu_split(pid: int) -> tuple[float, float]:
    """(utime, stime) of a process (all its threads), in seconds: stime is the kernel's share
    (socket reads and writes, epoll), which no Python change removes."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK


def status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def system_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, for its utilisation over a window."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --- one turn's record and the load loop ----------------------------------------------------------


class Turn:
    __slots__ = ("worker", "sent", "ack", "times", "texts", "status", "error", "message",
                 "seq_gaps", "done")

    def __init__(self, worker: int) -> None:
        self.worker = worker
        self.sent = 0.0
        self.ack = 0.0
        self.done = 0.0
        self.times = array("d")
        self.texts: list[str] = []
        self.status = "running"
        self.error = ""
        self.message: int | None = None
        self.seq_gaps = 0


class Phase:
    """Timing of one phase: turn i's first start at t0 + i*ramp/n; the window after the ramp."""

    def __init__(self, *, name: str, concurrency: int, tokens: int, gap_ms: float, ttft_ms: float,
                 ramp: float, duration: float) -> None:
        self.name, self.concurrency, self.tokens = name, concurrency, tokens
        self.gap_ms, self.ttft_ms, self.ramp, self.duration = gap_ms, ttft_ms, ramp, duration
        self.turn_seconds = (ttft_ms + tokens * gap_ms) / 1000
        # Generous: an overloaded server should show up as slow turns, not as aborted ones.
        self.turn_timeout = max(120.0, 10 * self.turn_seconds)
        self.turns: list[Turn] = []
        self.samples: dict[str, dict] = {}

    def schedule(self) -> None:
        self.t0 = clock() + 0.3
        self.window_start = self.t0 + self.ramp
        self.window_end = self.window_start + self.duration
        # Keep the load on until every turn started in the window has finished under it.
        self.launch_until = self.window_end + self.turn_seconds + 1.0

    def directive(self) -> str:
        return json.dumps({"tokens": self.tokens, "gap_ms": self.gap_ms, "ttft_ms": self.ttft_ms},
                          separators=(",", ":"))

    def text(self, worker: int, number: int) -> str:
        return f"bench {self.name} w{worker} t{number}\nfake: {self.directive()}"

    async def run(self, workers, *, pids: dict[str, int], profile=None) -> None:
        self.fake_stats_before = await fake_stats()
        self.schedule()
        sampler = asyncio.create_task(self._sample(pids, profile))
        try:
            await asyncio.gather(*workers)
        finally:
            if not sampler.done():
                sampler.cancel()
        for mark in ("start", "end"):  # every worker ended early (dead sockets): a short window
            if mark not in self.samples:
                self._take(mark, pids)
        self.fake_stats_after = await fake_stats()

    async def _sample(self, pids: dict[str, int], profile) -> None:
        for mark, at in (("start", self.window_start), ("end", self.window_end)):
            await asyncio.sleep(max(0.0, at - clock()))
            self._take(mark, pids)
            if mark == "start" and profile is not None:
                profile(self.duration)

    def _take(self, mark: str, pids: dict[str, int]) -> None:
        sample = {"t": clock(), "self": _self_cpu(), "system": system_busy()}
        for name, pid in pids.items():
            user, system = cpu_split(pid)
            sample[name], sample[name + "_sys"] = user + system, system
            sample[name + "_rss_kb"] = status_kb(pid, "VmRSS")
        self.samples[mark] = sample


FAKE_URL: list[str] = []


async def fake_stats() -> dict:
    if not FAKE_URL:
        return {}
    async with httpx.AsyncClient() as client:
        return (await client.get(FAKE_URL[0] + "/_fake/stats", timeout=10)).json()


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _until_ramp_slot(phase: Phase, worker: int) -> None:
    await asyncio.sleep(max(0.0, phase.t0 + worker * phase.ramp / phase.concurrency - clock()))


# --- direct: httpx straight to the fake -----------------------------------------------------------


async def direct_worker(phase: Phase, worker: int, client: httpx.AsyncClient, url: str) -> None:
    await _until_ramp_slot(phase, worker)
    number = 0
    while clock() < phase.launch_until:
        turn = Turn(worker)
        phase.turns.append(turn)
        body = direct_body(phase, worker, number)
        number += 1
        times, texts = turn.times, turn.texts
        try:
            async with asyncio.timeout(phase.turn_timeout):
                turn.sent = clock()
                async with client.stream("POST", url, content=body,
                                         headers={"content-type": "application/json"}) as response:
                    if response.status_code != 200:
                        await response.aread()
                        turn.status, turn.error = "failed", f"HTTP {response.status_code}"
                        continue
                    buffer = b""
                    done = False
                    async for chunk in response.aiter_raw():
                        now = clock()
                        buffer += chunk
                        cut = buffer.rfind(b"\n\n")
                        if cut < 0:
                            continue
                        block, buffer = buffer[:cut], buffer[cut + 2:]
                        for piece in TOKEN_RE.findall(block):
                            for _ in range(max(1, piece.count(b" "))):  # coalesced tokens
                                times.append(now)
                            texts.append(piece.decode())
                        if b"data: [DONE]" in block:
                            done = True
                    turn.done = clock()
                    turn.status = "complete" if done else "failed"
                    if not done:
                        turn.error = "stream ended without [DONE]"
        except TimeoutError:
            turn.status, turn.error = "failed", "timeout"
        except httpx.HTTPError as exc:
            turn.status, turn.error = "failed", f"{type(exc).__name__}: {exc}"


def direct_body(phase: Phase, worker: int, number: int, *, model: str = "fake-model") -> bytes:
    return json.dumps({
        "model": model, "stream": True, "stream_options": {"include_usage": True},
        "messages": [{"role": "system", "content": "You are a helpful assistant."},
                     {"role": "user", "content": phase.text(worker, number)}],
    }).encode()


async def raw_direct_worker(phase: Phase, worker: int, port: int, *, api_key: str = "") -> None:
    """Streams from the fake directly, or (with an API key) from our /v1 API: the same
    OpenAI-compatible requests and parsing, so the two compare like for like."""
    await _until_ramp_slot(phase, worker)
    number = 0
    conn = None
    while clock() < phase.launch_until:
        turn = Turn(worker)
        phase.turns.append(turn)
        # Our API's model id for the environment's agent, which streams from the fake.
        body = direct_body(phase, worker, number, model="default" if api_key else "fake-model")
        request = rawclients.sse_request(port=port, body=body, api_key=api_key)
        number += 1
        try:
            async with asyncio.timeout(phase.turn_timeout):
                if conn is None or conn.closed is not None:
                    conn = await rawclients.open_sse(port=port)
                await conn.start_turn(turn, request)
        except TimeoutError:
            turn.status, turn.error = "failed", "timeout"
            conn.close()
            conn = None
        except OSError as exc:
            if turn.status == "running":
                turn.status, turn.error = "failed", f"{type(exc).__name__}: {exc}"
            conn = None
    if conn is not None:
        conn.close()


async def run_direct(phase: Phase, base_url: str, pids: dict[str, int], *, client: str) -> None:
    if client == "raw":
        port = int(base_url.rsplit(":", 1)[1].split("/")[0])
        await phase.run([raw_direct_worker(phase, i, port) for i in range(phase.concurrency)],
                        pids=pids)
        return
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(None, connect=10)) as client:
        url = base_url + "/chat/completions"
        await phase.run([direct_worker(phase, i, client, url) for i in range(phase.concurrency)],
                        pids=pids)


async def run_api(phase: Phase, port: int, api_keys: list[str], pids: dict[str, int], *,
                  profile=None) -> None:
    await phase.run([raw_direct_worker(phase, i, port, api_key=api_keys[i % len(api_keys)])
                     for i in range(phase.concurrency)], pids=pids, profile=profile)


def stored_api_answers(db: Path) -> dict:
    """The API's answers as stored (each request is a conversation with source "api")."""
    import sqlite3

    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT m.status, COUNT(*) FROM conversations_message m JOIN "
            "conversations_conversation c ON c.id = m.conversation_id WHERE c.source = 'api' "
            "AND m.role = 'assistant' GROUP BY m.status").fetchall()
    return dict(rows)


# --- server: WebSockets through Daphne ------------------------------------------------------------


async def open_sockets(port: int, sessions: list[str], count: int) -> list:
    uri = f"ws://127.0.0.1:{port}/ws/chat/"
    gate = asyncio.Semaphore(16)

    async def one(i: int):
        async with gate:
            ws = await ws_connect(
                uri, origin=f"http://127.0.0.1:{port}", compression=None, ping_interval=None,
                open_timeout=30, close_timeout=2, max_size=2 ** 24,
                additional_headers=[("Cookie", f"sessionid={sessions[i % len(sessions)]}")],
            )
            hello = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if hello.get("type") != "hello":
                raise RuntimeError(f"expected hello, got {hello}")
            return ws

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def server_worker(phase: Phase, worker: int, ws, *, same_conversation: bool) -> None:
    loads = json.loads
    await _until_ramp_slot(phase, worker)
    number = 0
    conversation = None
    while clock() < phase.launch_until:
        turn = Turn(worker)
        phase.turns.append(turn)
        frame = json.dumps({
            "type": "send", "conversation": conversation if same_conversation else None,
            "text": phase.text(worker, number), "client_key": f"{phase.name}-{worker}-{number}",
        })
        number += 1
        times, texts = turn.times, turn.texts
        message = None
        last_seq = 0
        try:
            async with asyncio.timeout(phase.turn_timeout):
                turn.sent = clock()
                await ws.send(frame)
                while True:
                    raw = await ws.recv()
                    now = clock()
                    data = loads(raw)
                    kind = data["type"]
                    if kind == "turn":
                        if data["message"] != message:
                            continue
                        seq = data["seq"]
                        if seq != last_seq + 1:
                            turn.seq_gaps += 1
                        last_seq = seq
                        event = data["event"]
                        if event["kind"] == "text":
                            # One frame may carry several coalesced tokens ("tokN " each).
                            for _ in range(max(1, event["text"].count(" "))):
                                times.append(now)
                            texts.append(event["text"])
                        elif event["kind"] == "finished":
                            turn.done = now
                            turn.status = event["message"]["status"]
                            turn.error = event["message"].get("error") or ""
                            break
                    elif kind == "ack":
                        turn.ack = now
                        message = turn.message = data["assistant_message"]["id"]
                        conversation = data["conversation"]["id"]
                    elif kind == "error":
                        turn.status = "failed"
                        turn.error = f"{data.get('code')}: {data.get('message')}"
                        break
        except TimeoutError:
            turn.status, turn.error = "failed", "timeout"
        except ConnectionClosed as exc:
            turn.status, turn.error = "failed", f"socket closed: {exc}"
            return


async def raw_server_worker(phase: Phase, worker: int, ws: rawclients.WSClient, *,
                            same_conversation: bool) -> None:
    await _until_ramp_slot(phase, worker)
    number = 0
    while clock() < phase.launch_until:
        turn = Turn(worker)
        phase.turns.append(turn)
        frame = json.dumps({
            "type": "send", "conversation": ws.conversation if same_conversation else None,
            "text": phase.text(worker, number), "client_key": f"{phase.name}-{worker}-{number}",
        })
        number += 1
        try:
            async with asyncio.timeout(phase.turn_timeout):
                await ws.start_turn(turn, frame)
        except TimeoutError:
            turn.status, turn.error = "failed", "timeout"
            ws.abandon()
        except OSError as exc:
            turn.status, turn.error = "failed", f"socket closed: {exc}"
            return


async def run_server(phase: Phase, port: int, sessions: list[str], pids: dict[str, int], *,
                     same_conversation: bool, client: str, profile=None) -> None:
    if client == "raw":
        gate = asyncio.Semaphore(16)

        async def one(i: int) -> rawclients.WSClient:
            async with gate:
                return await rawclients.open_ws(port=port,
                                                cookie=f"sessionid={sessions[i % len(sessions)]}")

        sockets = list(await asyncio.gather(*(one(i) for i in range(phase.concurrency))))
        try:
            await phase.run(
                [raw_server_worker(phase, i, ws, same_conversation=same_conversation)
                 for i, ws in enumerate(sockets)], pids=pids, profile=profile)
        finally:
            for ws in sockets:
                await ws.aclose()
        return
    sockets = await open_sockets(port, sessions, phase.concurrency)
    try:
        await phase.run(
            [server_worker(phase, i, ws, same_conversation=same_conversation)
             for i, ws in enumerate(sockets)], pids=pids, profile=profile)
    finally:
        await asyncio.wait_for(
            asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True), 15)


# --- analysis -------------------------------------------------------------------------------------


def percentile(values, p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    if k == lo or ordered[hi] == float("inf"):
        return ordered[hi] if k > lo else ordered[lo]
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def dist(values) -> dict:
    return {"n": len(values), "p50": percentile(values, 50), "p90": percentile(values, 90),
            "p99": percentile(values, 99), "max": max(values) if values else None}


def expected_words(tokens: int) -> list[str]:
    return [f"tok{i}" for i in range(tokens)]


def analyse(phase: Phase, pids: dict[str, int]) -> dict:
    start, end = phase.samples["start"], phase.samples["end"]
    ws, we = start["t"], end["t"]
    elapsed = we - ws
    expected = "".join(f"tok{i} " for i in range(phase.tokens))
    words = expected_words(phase.tokens)
    measured = [t for t in phase.turns if ws <= t.sent < we]
    # When no turn started in the window (the first ones never ended), judge the ones that ran.
    judged = measured or phase.turns
    ttft, gaps = [], []
    lost = duplicated = corrupt = seq_gaps = 0
    errors: Counter[str] = Counter()
    for turn in judged:
        # A turn that never got a token has an infinite time to first token, not none.
        ttft.append((turn.times[0] - turn.sent) * 1000 if turn.times else float("inf"))
        if turn.times:
            times = turn.times
            gaps.extend((times[i] - times[i - 1]) * 1000 for i in range(1, len(times)))
    timed_out = undelivered = 0
    for turn in phase.turns:
        if turn.status != "complete":
            errors[f"{turn.status}: {turn.error}"[:160]] += 1
        seq_gaps += turn.seq_gaps
        text = "".join(turn.texts)
        if turn.error == "timeout":
            # The client gave up waiting: a failed turn, its missing tokens are not "lost".
            timed_out += 1
            undelivered += phase.tokens - len(set(text.split()))
            continue
        if text != expected:
            got = text.split()
            missing = set(words) - set(got)
            lost += len(missing)
            duplicated += len(got) - len(set(got))
            corrupt += 1
    tokens_in_window = sum(1 for t in phase.turns for x in t.times if ws <= x < we)
    before, after = getattr(phase, "fake_stats_before", {}), getattr(phase, "fake_stats_after", {})
    upstream = {k: after.get(k, 0) - before.get(k, 0)
                for k in ("requests", "streams_completed", "streams_abandoned", "tokens_sent")}
    result = {
        "phase": phase.name, "concurrency": phase.concurrency, "tokens": phase.tokens,
        "gap_ms_configured": phase.gap_ms, "ttft_ms_configured": phase.ttft_ms, "ramp_s": phase.ramp,
        "window_s": elapsed,
        "turns_started": len(phase.turns), "turns_measured": len(measured),
        "latency_population": "turns started in the window" if measured else "all turns",
        "turns_failed": sum(1 for t in phase.turns if t.status != "complete"),
        "turns_failed_measured": sum(1 for t in measured if t.status != "complete"),
        "errors": dict(errors.most_common(10)),
        "tokens_in_window": tokens_in_window,
        "tokens_per_s": tokens_in_window / elapsed,
        "tokens_lost": lost, "tokens_duplicated": duplicated, "turns_with_wrong_text": corrupt,
        "turns_timed_out": timed_out, "turn_timeout_s": phase.turn_timeout,
        "tokens_undelivered_in_timed_out_turns": undelivered,
        "seq_gaps": seq_gaps,
        # Upstream requests per turn: 1 + title requests (new conversations) + retries.
        "upstream": upstream,
        "upstream_requests_per_turn": upstream["requests"] / max(1, len(phase.turns)),
        "ttft_ms": dist(ttft), "gap_ms": dist(gaps),
        "client_cpu_pct": 100 * (end["self"] - start["self"]) / elapsed,
        "machine_busy_pct": 100 * (end["system"][0] - start["system"][0])
        / max(1, end["system"][1] - start["system"][1]),
    }
    ours = result["client_cpu_pct"]
    for name in pids:
        ours += 100 * (end[name] - start[name]) / elapsed
        result[f"{name}_cpu_s"] = end[name] - start[name]
        result[f"{name}_cpu_pct"] = 100 * (end[name] - start[name]) / elapsed
        result[f"{name}_rss_mb_end"] = end[name + "_rss_kb"] / 1024
    # Anything else on the machine (other people's tests, py-spy), in % of one core.
    result["other_cpu_pct"] = (os.cpu_count() or 1) * result["machine_busy_pct"] - ours
    if "daphne" in pids:
        cpu = end["daphne"] - start["daphne"]
        # None when the window saw (almost) nothing: a ratio over ~0 turns means nothing.
        result["daphne_cpu_ms_per_turn_allin"] = 1000 * cpu / len(measured) if measured else None
        result["daphne_sys_pct_of_cpu"] = (
            100 * (end["daphne_sys"] - start["daphne_sys"]) / cpu if cpu else None)
        result["daphne_cpu_ms_per_1000_tokens_allin"] = (
            1e6 * cpu / tokens_in_window if tokens_in_window >= 100 else None)
        acks = [(t.ack - t.sent) * 1000 for t in measured if t.ack]
        result["ack_ms"] = dist(acks)
    return result


def writes_per_message(writes: dict, phase: Phase) -> dict:
    """Each assistant message: its INSERT plus the UPDATEs of its row by primary key."""
    by_message = writes.get("updates_by_message", {})
    counts = [1 + by_message.get(str(t.message), 0) for t in phase.turns
              if t.message is not None and t.status == "complete"]
    if not any(t.message is not None for t in phase.turns):
        # The API's clients are not told message ids: every answer of the run counts (each is
        # written at least once after its INSERT, at its end).
        counts = [1 + n for n in by_message.values()]
    return {"n": len(counts), "mean": sum(counts) / len(counts) if counts else None,
            "max": max(counts) if counts else None, "histogram": dict(sorted(Counter(counts).items()))}


def split_cpu(long: dict, short: dict) -> dict | None:
    """Solve cpu = a*turns + b*tokens over the two server windows: a fixed cost per turn and a
    marginal cost per token."""
    if long["turns_failed"] or short["turns_failed"] or not long["turns_measured"]:
        return None  # an overloaded run has no steady state to split
    t1, k1, c1 = long["turns_measured"], long["tokens_in_window"], long["daphne_cpu_s"]
    t2, k2, c2 = short["turns_measured"], short["tokens_in_window"], short["daphne_cpu_s"]
    det = t1 * k2 - t2 * k1
    if not det:
        return None
    a = (c1 * k2 - c2 * k1) / det
    b = (t1 * c2 - t2 * c1) / det
    return {"fixed_ms_per_turn": 1000 * a, "marginal_ms_per_1000_tokens": 1e6 * b}


# Where Daphne's CPU goes, by the first rule whose frames appear in a sampled stack (py-spy --gil
# samples only the thread holding the GIL, so shares are shares of Python CPU).
PROFILE_BUCKETS = (
    ("database thread: sync_to_async / ORM / SQLite", ("Thread._bootstrap",)),
    ("channel layer expiry sweep (_clean_expired, per message)", ("_clean_expired",)),
    ("publish: runner -> broker -> joiner -> frame -> socket",
     ("_publish", "BrokerSink", "Broker.deliver", "Joiner.deliver", "socket_writer.py",
      "turn_json")),
    ("upstream read: our HTTP client, SSE parsing, provider, loop generators",
     ("_stream", "_wire.py", "_sse.py", "complete_text")),
    ("consumer: frames in, channel-layer messages",
     ("InMemoryChannelLayer.receive", "await_many_dispatch")),
    ("daphne -> autobahn -> twisted socket write",
     ("handle_reply", "autobahn", "untilConcludes", "WebSocketProtocol", "doWrite")),
    ("periodic flush / finish", ("_flush_periodically", "_finish")),
    ("waiting in epoll", ("EpollSelector.select",)),
)


def summarise_profile(path: Path, top: int = 25) -> dict:
    """py-spy raw (collapsed) stacks: buckets (PROFILE_BUCKETS), and self and inclusive sample
    shares per function."""
    buckets: Counter[str] = Counter()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    strip = re.compile(r":\d+\)$")
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        for name, keys in PROFILE_BUCKETS:
            if any(k in stack for k in keys):
                buckets[name] += n
                break
        else:
            buckets["asyncio event loop, task wake-ups, other"] += n
        frames = [strip.sub(")", f) for f in stack.split(";")[1:]]
        if not frames:
            continue
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    pct = lambda c: round(100 * c / max(1, total), 1)  # noqa: E731
    return {"samples": total,
            "buckets": [(b, pct(c)) for b, c in buckets.most_common()],
            "self": [(f, pct(c)) for f, c in own.most_common(top)],
            "inclusive": [(f, pct(c)) for f, c in inclusive.most_common(top * 2)]}


# --- orchestration --------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--turns-concurrent", type=int, default=None, help="N (default 200; quick 20)")
    p.add_argument("--tokens", type=int, default=None, help="tokens per answer (200; quick 50)")
    p.add_argument("--gap-ms", type=float, default=20.0)
    p.add_argument("--ttft-ms", type=float, default=100.0, help="the fake's time to first token")
    p.add_argument("--duration", type=float, default=None, help="measured seconds (30; quick 10)")
    p.add_argument("--ramp", type=float, default=None, help="first N turns over this (4; quick 1)")
    p.add_argument("--users", type=int, default=None, help="distinct users (default: one per socket)")
    p.add_argument("--transport", choices=("ws", "api"), default="ws",
                   help="the server phases over WebSockets (the chat page's path, default) or "
                        "as streamed POST /v1/chat/completions with personal API keys")
    p.add_argument("--conversation", choices=("new", "same"), default="new",
                   help="each turn in a new conversation (default) or all of a socket's in one")
    p.add_argument("--no-short", action="store_true", help="skip the short-turn phase")
    p.add_argument("--short-tokens", type=int, default=None, help="tokens in the short phase")
    p.add_argument("--no-direct", action="store_true", help="skip the direct baseline")
    p.add_argument("--profile", action="store_true", help="py-spy the Daphne process (window)")
    p.add_argument("--quick", action="store_true", help="20 concurrent, 50 tokens, 10 s, no short")
    p.add_argument("--ws-client", choices=("raw", "websockets"), default="raw",
                   help="raw: bench/rawclients.py (cheap); websockets: the websockets package")
    p.add_argument("--direct-client", choices=("raw", "httpx"), default="raw")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment for Daphne, e.g. TURN_FLUSH_INTERVAL=5")
    p.add_argument("--settings", default="bench.settings_bench",
                   help="DJANGO_SETTINGS_MODULE for Daphne (experiments; must include "
                        "bench.countwrites)")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (db, logs)")
    args = p.parse_args(argv)
    quick = args.quick
    args.turns_concurrent = args.turns_concurrent or (20 if quick else 200)
    args.tokens = args.tokens or (50 if quick else 200)
    args.duration = args.duration or (10.0 if quick else 30.0)
    args.ramp = args.ramp if args.ramp is not None else (1.0 if quick else 4.0)
    args.users = args.users or args.turns_concurrent
    if quick and "--short-tokens" not in (argv or sys.argv):
        args.no_short = True
    return args


def start_fake(procs: Processes, env: dict, tmp: Path, args) -> tuple[subprocess.Popen, str]:
    proc = procs.start(
        [str(BIN / "python"), "-m", "fakellm", "--port", "0", "--ttft-ms", str(args.ttft_ms),
         # Requests without a directive (conversation titles) get a title-sized answer.
         "--gap-ms", str(args.gap_ms), "--tokens", "8", "--log-level", "warning"],
        env=env, log=tmp / "fakellm.log", stdout=subprocess.PIPE)
    ready, _, _ = select.select([proc.stdout], [], [], 20)
    line = proc.stdout.readline().decode() if ready else ""
    match = re.search(r"(http://127\.0\.0\.1:\d+/v1)", line)
    if not match:
        raise RuntimeError(f"the fake LLM did not start: {line!r}\n{tail(tmp / 'fakellm.log')}")
    return proc, match.group(1)


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} process exited ({proc.returncode}):\n{tail(log)}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s:\n{tail(log)}")


def read_writes(path: Path) -> dict:
    before = path.stat().st_mtime if path.exists() else 0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # a fresh dump, written after every turn finished
        if path.exists() and path.stat().st_mtime > before:
            break
        time.sleep(0.1)
    return json.loads(path.read_text()) if path.exists() else {}


def _interrupted(signum, frame):
    raise KeyboardInterrupt  # so `finally` kills the subprocesses


def git_state() -> dict:
    """The code measured: HEAD and the files changed in the working tree (others edit it)."""
    def git(*a):
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout
    return {"head": git("rev-parse", "--short", "HEAD").strip(),
            "dirty": [line[3:] for line in git("status", "--porcelain").splitlines()
                      if not line[3:].startswith("bench/")]}


def machine_speed_us() -> float:
    """CPU microseconds for sum(range(1000)) in this interpreter (best of 5): compare runs across
    machines with it (about 6-8 us on a current desktop core)."""
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        for _ in range(2000):
            sum(range(1000))
        best = min(best, (time.process_time() - start) / 2000 * 1e6)
    return best


def main(argv=None) -> int:
    args = parse_args(argv)
    procs = Processes()
    tmp = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    signal.signal(signal.SIGTERM, _interrupted)
    try:
        return _run(args, procs, tmp)
    finally:
        procs.kill_all()
        if args.keep_tmp:
            print(f"temp dir kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _run(args, procs: Processes, tmp: Path) -> int:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DJANGO_SETTINGS_MODULE")}
    env.update({
        "PYTHONUNBUFFERED": "1", "DATA_DIR": str(tmp), "DATABASE_URL": f"sqlite:///{tmp}/db.sqlite3",
        "SECRET_KEY": secrets.token_urlsafe(64), "ALLOWED_HOSTS": "127.0.0.1",
        "LOG_LEVEL": "warning", "LLM_MODEL": "fake-model",
        "LLM_MAX_CONCURRENCY": str(max(1000, 2 * args.turns_concurrent)),
    })
    fake, base_url = start_fake(procs, env, tmp, args)
    env["LLM_BASE_URL"] = base_url
    FAKE_URL.append(base_url.removesuffix("/v1"))
    print(f"fake LLM {base_url} (pid {fake.pid}); temp dir {tmp}", flush=True)

    django_env = {**env, "DJANGO_SETTINGS_MODULE": "chatsite.settings"}
    subprocess.run([str(BIN / "python"), "manage.py", "migrate", "--no-input", "-v", "0"],
                   cwd=ROOT, env=django_env, check=True, timeout=300)
    setup = subprocess.run([str(BIN / "python"), "-m", "bench._setup", str(args.users)],
                           cwd=ROOT, env=django_env, check=True, timeout=300,
                           capture_output=True, text=True)
    made = json.loads(setup.stdout.strip().splitlines()[-1])
    sessions, api_keys = made["sessions"], made["api_keys"]

    port = free_port()
    writes_file = tmp / "writes.json"
    daphne_log = tmp / "daphne.log"
    daphne = procs.start(
        [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "chatsite.asgi:application"],
        env={**env, "DJANGO_SETTINGS_MODULE": args.settings,
             "BENCH_WRITES_FILE": str(writes_file),
             **dict(item.split("=", 1) for item in args.env)},
        log=daphne_log)
    wait_http(f"http://127.0.0.1:{port}/login/", daphne, daphne_log)
    print(f"daphne 127.0.0.1:{port} (pid {daphne.pid}); {len(sessions)} users"
          + (f"; env {' '.join(args.env)}" if args.env else ""), flush=True)

    profile_out = RESULTS / f"{time.strftime('%Y%m%d-%H%M%S')}-daphne.pyspy.txt"
    spy_holder: list[subprocess.Popen] = []

    def start_profile(seconds: float) -> None:
        spy = shutil.which("py-spy", path=str(BIN)) or shutil.which("py-spy")
        if not spy:
            print("py-spy not found: .venv/bin/pip install py-spy", flush=True)
            return
        RESULTS.mkdir(parents=True, exist_ok=True)
        spy_holder.append(procs.start(
            [spy, "record", "--pid", str(daphne.pid), "--duration", str(int(seconds)),
             "--rate", "200", "--gil", "--format", "raw", "--nonblocking", "--output", str(profile_out)],
            env=env, log=tmp / "py-spy.log"))

    def phase(name: str, concurrency: int, tokens: int, duration: float, ramp: float) -> Phase:
        return Phase(name=name, concurrency=concurrency, tokens=tokens, gap_ms=args.gap_ms,
                     ttft_ms=args.ttft_ms, ramp=ramp, duration=duration)

    n, tokens = args.turns_concurrent, args.tokens
    results: dict = {"args": vars(args), "targets": TARGETS, "started": time.time(),
                     "machine_speed_us": machine_speed_us(), "cpus": os.cpu_count(),
                     "git": git_state()}
    phases: dict[str, Phase] = {}

    async def run_all() -> None:
        if not args.no_direct:
            p = phases["direct"] = phase("direct", n, tokens, args.duration, args.ramp)
            print(f"direct: {n} concurrent x {tokens} tokens, {args.duration:g} s ...", flush=True)
            await run_direct(p, base_url, {"fake": fake.pid}, client=args.direct_client)
        p = phases["server"] = phase("server", n, tokens, args.duration, args.ramp)
        print(f"server ({args.transport}): {n} concurrent x {tokens} tokens, "
              f"{args.duration:g} s ...", flush=True)
        await run_through(p, profile=start_profile if args.profile else None)
        if not args.no_short:
            short_tokens = args.short_tokens or max(1, tokens // 10)
            # The same turn rate with shorter turns: concurrency scales with the turn's length.
            scale = (args.ttft_ms + short_tokens * args.gap_ms) / (args.ttft_ms + tokens * args.gap_ms)
            short_n = max(1, round(n * scale))
            p = phases["short"] = phase("short", short_n, short_tokens,
                                        min(args.duration, 15.0), max(0.5, args.ramp * scale))
            print(f"short: {short_n} concurrent x {short_tokens} tokens, "
                  f"{p.duration:g} s ...", flush=True)
            await run_through(p)

    async def run_through(p: Phase, profile=None) -> None:
        pids = {"daphne": daphne.pid, "fake": fake.pid}
        if args.transport == "api":
            await run_api(p, port, api_keys, pids, profile=profile)
        else:
            await run_server(p, port, sessions, pids, profile=profile,
                             same_conversation=args.conversation == "same", client=args.ws_client)

    asyncio.run(run_all())
    for spy in spy_holder:
        try:
            spy.wait(timeout=args.duration + 30)
        except subprocess.TimeoutExpired:
            pass
    time.sleep(0.6)
    writes = read_writes(writes_file)
    peak_rss_mb = status_kb(daphne.pid, "VmHWM") / 1024
    if daphne.poll() is not None:
        raise RuntimeError(f"daphne died:\n{tail(daphne_log)}")

    for name, p in phases.items():
        pids = {"fake": fake.pid} if name == "direct" else {"daphne": daphne.pid, "fake": fake.pid}
        results[name] = analyse(p, pids)
        if name != "direct":
            results[name]["db_writes_per_assistant_message"] = writes_per_message(writes, p)
    results["db_writes"] = {k: v for k, v in writes.items() if k != "updates_by_message"}
    results["transport"] = args.transport
    if args.transport == "api":
        results["api_answers_stored"] = stored_api_answers(tmp / "db.sqlite3")
    results["daphne_peak_rss_mb"] = peak_rss_mb
    if "short" in results:
        results["cpu_split"] = split_cpu(results["server"], results["short"])
    if spy_holder and profile_out.exists():
        results["profile"] = summarise_profile(profile_out)
        results["profile"]["file"] = str(profile_out)
    results["verdicts"] = verdicts(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2, default=str))
    print_report(results, out)
    errors = [f"{n}: {e}" for n in phases for e in results[n]["errors"]]
    if errors:
        print("errors:", *errors[:10], sep="\n  ")
        print(f"daphne log tail:\n{tail(daphne_log, 15)}")
    return 0


def verdicts(r: dict) -> list[tuple[str, str, str, bool | None]]:
    """(target, required, measured, passed) rows; passed None when it could not be measured."""
    s, d = r["server"], r.get("direct")
    rows = []

    def row(name, need, value, ok, fmt="{:.1f}"):
        shown = "n/a" if value is None else fmt.format(value)
        rows.append((name, need, shown, None if value is None else ok(value)))

    if d:
        row("token rate vs direct", ">= 97 %", 100 * s["tokens_per_s"] / d["tokens_per_s"],
            lambda v: v >= TARGETS["token_rate_pct_min"], "{:.1f} %")
        for key, label, limit in (("p50", "added TTFT p50", "added_ttft_p50_ms_max"),
                                  ("p99", "added TTFT p99", "added_ttft_p99_ms_max")):
            value = _sub(s["ttft_ms"][key], d["ttft_ms"][key])
            row(label, f"<= {TARGETS[limit]:g} ms", value, lambda v, l=limit: v <= TARGETS[l],
                "{:.1f} ms")
        row("added gap p99", "<= 20 ms", _sub(s["gap_ms"]["p99"], d["gap_ms"]["p99"]),
            lambda v: v <= TARGETS["added_gap_p99_ms_max"], "{:.1f} ms")
    lost = s["tokens_lost"] + s["tokens_duplicated"] + (r["short"]["tokens_lost"] if "short" in r else 0)
    row("tokens lost (+dup)", "0", lost, lambda v: v == 0, "{:d}")
    failed = s["turns_failed"] + (r["short"]["turns_failed"] if "short" in r else 0)
    row("failed turns", "0", failed, lambda v: v == 0, "{:d}")
    split = r.get("cpu_split")
    row("CPU per 1,000 tokens (marginal)", "<= 50 ms",
        split and split["marginal_ms_per_1000_tokens"], lambda v: v <= 50, "{:.1f} ms")
    row("CPU per turn (fixed)", "<= 5 ms", split and split["fixed_ms_per_turn"],
        lambda v: v <= 5, "{:.2f} ms")
    row("CPU per 1,000 tokens (all-in)", "<= 50 ms", s["daphne_cpu_ms_per_1000_tokens_allin"],
        lambda v: v <= 50, "{:.1f} ms")
    row("peak memory (VmHWM)", "< 300 MB", r["daphne_peak_rss_mb"], lambda v: v < 300, "{:.0f} MB")
    worst = max((r[p]["db_writes_per_assistant_message"]["max"] or 0)
                for p in ("server", "short") if p in r)
    row("DB writes per assistant message (max)", "<= 5", worst, lambda v: v <= 5, "{:d}")
    return rows


def _sub(a, b):
    return None if a is None or b is None else a - b


def print_report(r: dict, out: Path) -> None:
    def f(v, fmt="{:.1f}"):
        return "n/a" if v is None else fmt.format(v)

    print()
    cols = [p for p in ("direct", "server", "short") if p in r]
    print(f"{'':36}" + "".join(f"{c:>16}" for c in cols))
    lines = [
        ("concurrent x tokens", lambda x: f"{x['concurrency']}x{x['tokens']}"),
        ("window s / turns measured", lambda x: f"{x['window_s']:.1f}/{x['turns_measured']}"),
        ("tokens/s", lambda x: f(x["tokens_per_s"], "{:.0f}")),
        ("TTFT p50 / p99 ms", lambda x: f"{f(x['ttft_ms']['p50'])}/{f(x['ttft_ms']['p99'])}"),
        ("TTFT max ms", lambda x: f(x["ttft_ms"]["max"])),
        ("gap p50 / p99 ms", lambda x: f"{f(x['gap_ms']['p50'])}/{f(x['gap_ms']['p99'])}"),
        ("gap max ms", lambda x: f(x["gap_ms"]["max"])),
        ("ack p50 / p99 ms", lambda x: f"{f(x['ack_ms']['p50'])}/{f(x['ack_ms']['p99'])}"
         if "ack_ms" in x else "-"),
        ("failed(timed out)/lost/dup/seq gaps", lambda x: f"{x['turns_failed']}"
         f"({x['turns_timed_out']})/{x['tokens_lost']}/{x['tokens_duplicated']}/{x['seq_gaps']}"),
        ("daphne CPU %", lambda x: f(x.get("daphne_cpu_pct"), "{:.0f}")),
        ("daphne CPU in the kernel %", lambda x: f(x.get("daphne_sys_pct_of_cpu"), "{:.0f}")),
        ("daphne CPU ms/turn (all-in)", lambda x: f(x.get("daphne_cpu_ms_per_turn_allin"), "{:.2f}")),
        ("daphne CPU ms/1k tok (all-in)", lambda x: f(x.get("daphne_cpu_ms_per_1000_tokens_allin"))),
        ("fake / client CPU %", lambda x: f"{x['fake_cpu_pct']:.0f}/{x['client_cpu_pct']:.0f}"),
        ("machine busy % (all cores=100)", lambda x: f(x["machine_busy_pct"], "{:.0f}")),
        ("other processes CPU % (1 core=100)", lambda x: f(x["other_cpu_pct"], "{:.0f}")),
        ("upstream requests per turn", lambda x: f(x.get("upstream_requests_per_turn"), "{:.2f}")),
        ("writes/assistant msg mean/max", lambda x: (
            f"{x['db_writes_per_assistant_message']['mean']:.2f}/"
            f"{x['db_writes_per_assistant_message']['max']}"
            if x.get("db_writes_per_assistant_message", {}).get("n") else "-")),
    ]
    for label, fn in lines:
        print(f"{label:36}" + "".join(f"{fn(r[c]):>16}" for c in cols))
    if r.get("cpu_split"):
        s = r["cpu_split"]
        print(f"daphne CPU split (server+short windows): {s['fixed_ms_per_turn']:.2f} ms per turn "
              f"+ {s['marginal_ms_per_1000_tokens']:.1f} ms per 1,000 tokens")
    print(f"daphne peak RSS (VmHWM): {r['daphne_peak_rss_mb']:.0f} MB; machine speed: "
          f"sum(range(1000)) = {r['machine_speed_us']:.1f} us CPU (current desktop: ~7)")
    w = r.get("db_writes", {}).get("by_table", {})
    turns = sum(r[p]["turns_started"] for p in ("server", "short") if p in r)
    if w and turns:
        print("DB write statements per turn, all tables: " + ", ".join(
            f"{k} {v / turns:.2f}" for k, v in sorted(w.items())))
    if r.get("transport") == "api":
        done = sum(r[p]["turns_started"] - r[p]["turns_failed"] for p in ("server", "short")
                   if p in r)
        print(f"server phases over the /v1 API: {done} requests answered in full, answers "
              f"stored by status: {r['api_answers_stored']}")
    print()
    print(f"{'target':40}{'required':>12}{'measured':>14}  verdict")
    for name, need, shown, ok in r["verdicts"]:
        verdict = "n/a" if ok is None else ("PASS" if ok else "MISS")
        print(f"{name:40}{need:>12}{shown:>14}  {verdict}")
    print()
    print("For scale: " + OPEN_WEBUI)
    if "profile" in r:
        print(f"\nDaphne profile, py-spy --gil ({r['profile']['samples']} samples, "
              f"{r['profile']['file']}); share of Daphne's Python CPU:")
        cpu = r["server"].get("daphne_cpu_ms_per_1000_tokens_allin")
        for name, pct in r["profile"]["buckets"]:
            per = f"  ~{cpu * pct / 100:6.0f} ms/1k tokens" if cpu else ""
            print(f"  {pct:5.1f} %{per}  {name}")
        print("  top self time:")
        for frame, pct in r["profile"]["self"][:10]:
            print(f"  {pct:5.1f} %  {frame}")
    g = r["git"]
    print(f"\ncode measured: {g['head']}" + (f" + uncommitted changes in {', '.join(g['dirty'])}"
                                            if g["dirty"] else ""))
    print(f"full results: {out}")


if __name__ == "__main__":
    sys.exit(main())
