"""Counts every database write statement of this process, for the streaming benchmark.

Installed only through bench/settings_bench.py. Each new database connection (one per thread of
database_sync_to_async) gets an execute_wrapper; writes are counted by verb and table, and
UPDATEs of one conversations_message row by primary key are counted per message id, so the
benchmark can tell exactly how many writes each assistant message cost. A daemon thread writes
the counts as JSON to $BENCH_WRITES_FILE twice a second (atomic rename).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections import Counter

from django.apps import AppConfig

_WRITE = re.compile(r'^\s*(INSERT\s+INTO|UPDATE|DELETE\s+FROM|REPLACE\s+INTO)\s+"?(\w+)"?', re.I)
_BY_PK = re.compile(r'WHERE\s+"conversations_message"\."id"\s*=\s*%s\s*$', re.I)

_lock = threading.Lock()
_by_table: Counter[str] = Counter()
_rows_by_table: Counter[str] = Counter()
_updates_by_message: Counter[int] = Counter()
_assistant_inserts = 0
_user_inserts = 0
_other_message_updates = 0


def _count(execute, sql, params, many, context):
    match = _WRITE.match(sql)
    if match is None:
        return execute(sql, params, many, context)
    result = execute(sql, params, many, context)
    global _assistant_inserts, _user_inserts, _other_message_updates
    verb = match.group(1).split()[0].upper()
    table = match.group(2)
    try:
        rows = context["cursor"].cursor.rowcount
    except Exception:  # noqa: BLE001 - a counter must never break a write
        rows = -1
    with _lock:
        key = f"{verb} {table}"
        _by_table[key] += 1
        _rows_by_table[key] += max(rows, 0)
        if table == "conversations_message" and not many:
            if verb == "UPDATE":
                if _BY_PK.search(sql) and params:
                    _updates_by_message[int(params[-1])] += 1
                else:
                    _other_message_updates += 1
            elif verb == "INSERT" and params:
                if "assistant" in params:
                    _assistant_inserts += 1
                elif "user" in params:
                    _user_inserts += 1
    return result


def _install(sender, connection, **kwargs):
    if _count not in connection.execute_wrappers:
        connection.execute_wrappers.append(_count)


def _snapshot() -> dict:
    with _lock:
        return {
            "at": time.time(),
            "by_table": dict(_by_table),
            "rows_by_table": dict(_rows_by_table),
            "updates_by_message": {str(k): v for k, v in _updates_by_message.items()},
            "assistant_inserts": _assistant_inserts,
            "user_inserts": _user_inserts,
            "other_message_updates": _other_message_updates,
        }


def _dump_forever(path: str) -> None:
    tmp = path + ".tmp"
    while True:
        time.sleep(0.5)
        try:
            with open(tmp, "w") as f:
                json.dump(_snapshot(), f)
            os.replace(tmp, path)
        except OSError:
            pass


class CountWritesConfig(AppConfig):
    name = "bench.countwrites"
    label = "bench_countwrites"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        connection_created.connect(_install, dispatch_uid="bench.countwrites")
        path = os.environ.get("BENCH_WRITES_FILE")
        if path:
            threading.Thread(target=_dump_forever, args=(path,), daemon=True,
                             name="bench-countwrites").start()
