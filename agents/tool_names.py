"""The names models see tools under: `<server>__<tool>`, within every provider's rules.

OpenAI and Anthropic both accept `^[a-zA-Z0-9_-]{1,64}$` for a function name. A name is built
from the server's and the tool's own names (so a model, and a person reading the record, sees
which tool it is), sanitized, cut to fit, and made unique across servers with a short suffix.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Container

MAX_LENGTH = 64
_INVALID = re.compile(r"[^A-Za-z0-9_-]+")
SEPARATOR = "__"


def sanitize(part: str) -> str:
    return _INVALID.sub("_", part).strip("_") or "tool"


def exposed_name(*, server: str, tool: str, taken: Container[str] = ()) -> str:
    """A name for `tool` of `server` that is valid, at most 64 characters, not in `taken`, and
    contains the tool's own (sanitized) name whenever that fits at all. The server part is cut
    first: the tool's name is what the model chooses by."""
    server_part, tool_part = sanitize(server), sanitize(tool)
    name = _fit(server_part, tool_part, suffix="")
    if name not in taken:
        return name
    # Two servers whose names sanitize alike ("a.b" and "a_b"), or a name cut to fit: a suffix
    # derived from the originals keeps the result stable from one listing to the next.
    digest = hashlib.sha256(f"{server}\0{tool}".encode()).hexdigest()
    for length in (6, 10, 16, 64):
        name = _fit(server_part, tool_part, suffix="_" + digest[:length])
        if name not in taken:
            return name
    raise ValueError(f"no free name for {server}/{tool}")


def _fit(server_part: str, tool_part: str, *, suffix: str) -> str:
    room = MAX_LENGTH - len(suffix)
    tool_part = tool_part[:room]
    server_room = room - len(tool_part) - len(SEPARATOR)
    if server_room <= 0:
        return tool_part + suffix
    return server_part[:server_room] + SEPARATOR + tool_part + suffix
