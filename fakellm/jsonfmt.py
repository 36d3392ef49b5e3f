"""Compact JSON as both real servers write it, with a fast path for plain token strings."""

from __future__ import annotations

import json
from typing import Any


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def json_string(text: str) -> str:
    """`dumps(text)` for a str; skips the encoder for printable ASCII without quotes/backslashes
    (every deterministic token), since the benchmark formats tens of thousands of them."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    return dumps(text)
