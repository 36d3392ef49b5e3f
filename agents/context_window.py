"""Fitting a turn's history into its model's context window, before each model round.

The rule:

1. Room is left for the answer: the model's max_output_tokens, or a quarter of the window up
   to ANSWER_ROOM tokens when it sets none. The system prompt and the tools offered come next.
2. The newest turn (the person's last message and what this answer did since: its rounds, their
   tool calls and results) is kept whole. If it does not fit alone, nothing is sent and the
   person is told (ContextTooLong; a send checks the message itself first, see `too_long`).
3. If the whole history fits, it is sent as it is. Otherwise, older tool results are shortened
   first, oldest first, to their beginning and end with a marker between;
4. then the oldest turns are left out, whole, until the rest fits; the system prompt then
   tells the model that earlier messages were left out.

Tokens are estimated from characters (agents.model_info.estimated_tokens: nothing to download)
and each model's estimate is corrected by what its server reports: the ratio of the prompt
tokens a round was billed to the estimate of that request, learned per process and per model.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace

from agents.events import ChatMessage, ToolSpec
from agents.model_info import (
    MESSAGE_OVERHEAD_TOKENS,
    ModelInfo,
    estimated_tokens,
    message_tokens,
    tool_tokens,
)

ANSWER_ROOM = 4096
# Kept from a shortened tool result: its beginning and its end.
KEEP_HEAD, KEEP_TAIL = 600, 200
# A slack on the estimate, a share of the window, for what it cannot see (chat templates).
SLACK = 0.03
LEFT_OUT = ("\n\n(Earlier messages of this conversation, {count} of them, were left out to fit "
            "the model's context window: ask the person if you need what they said.)")

# label -> reported / estimated, per process (a ratio under 1: the estimate was high).
_ratios: dict[str, float] = {}
_ratios_lock = threading.Lock()


class ContextTooLong(Exception):
    """The newest turn alone does not fit the model's window."""

    def __init__(self, *, needed: int, room: int) -> None:
        self.needed, self.room = needed, room
        self.message = (f"This message is too long for the model: about {needed:,} tokens, and "
                        f"it takes {room:,} at most besides its answer. Shorten it, or split it "
                        "into several messages.")
        super().__init__(self.message)


@dataclass(frozen=True, slots=True)
class Fitted:
    system: str
    messages: tuple[ChatMessage, ...]
    # The request's estimated input tokens (uncorrected), for `observe`.
    estimate: int
    left_out: int = 0
    shortened: int = 0


def ratio_of(label: str) -> float:
    return _ratios.get(label, 1.0)


def observe(label: str, *, estimate: int, reported: int) -> None:
    """A round's reported prompt tokens against its request's estimate: the next estimates for
    this model are corrected by their ratio (moved gradually: one odd report counts little)."""
    if estimate <= 0 or reported <= 0:
        return
    seen = min(max(reported / estimate, 0.2), 3.0)
    with _ratios_lock:
        old = _ratios.get(label)
        _ratios[label] = seen if old is None else old * 0.7 + seen * 0.3


def answer_room(info: ModelInfo) -> int:
    return info.max_output_tokens or min(ANSWER_ROOM, info.context_window // 4)


def _tools_tokens(tools: Sequence[ToolSpec]) -> int:
    return sum(tool_tokens(t.name, t.description, t.input_schema) for t in tools)


def _room(info: ModelInfo, ratio: float, *, system: str, tools: Sequence[ToolSpec]) -> float:
    """Tokens of the window left for the messages, in estimate units."""
    fixed = (estimated_tokens(len(system)) + MESSAGE_OVERHEAD_TOKENS + _tools_tokens(tools))
    return ((info.context_window * (1 - SLACK) - answer_room(info)) / ratio) - fixed


def too_long(info: ModelInfo, *, system: str, text: str) -> str | None:
    """Why a new message cannot be sent to this model at all, or None: checked by a send before
    anything is stored."""
    ratio = ratio_of(info.label)
    needed = estimated_tokens(len(text)) + MESSAGE_OVERHEAD_TOKENS
    room = _room(info, ratio, system=system, tools=())
    if needed <= room:
        return None
    return ContextTooLong(needed=int(needed * ratio), room=max(0, int(room * ratio))).message


def _turns(messages: Sequence[ChatMessage]) -> list[list[ChatMessage]]:
    """The history cut before each person's message (what comes before the first stays with it)."""
    turns: list[list[ChatMessage]] = []
    for message in messages:
        if message.role == "user" or not turns:
            turns.append([message])
        else:
            turns[-1].append(message)
    return turns


def _shortened(message: ChatMessage) -> ChatMessage:
    text = message.content
    cut = len(text) - KEEP_HEAD - KEEP_TAIL
    return replace(message, content=(f"{text[:KEEP_HEAD]}\n[… {cut:,} characters of this tool "
                                     f"result left out to fit the context window …]\n"
                                     f"{text[-KEEP_TAIL:]}"))


def fit(info: ModelInfo, *, system: str, messages: Sequence[ChatMessage],
        tools: Sequence[ToolSpec] = ()) -> Fitted:
    """The request's system prompt and messages, fitted by the module's rule; raises
    ContextTooLong when the newest turn alone does not fit."""
    ratio = ratio_of(info.label)
    room = _room(info, ratio, system=system, tools=tools)
    turns = _turns(messages)
    sizes = [[message_tokens(m) for m in turn] for turn in turns]
    total = sum(map(sum, sizes))
    fixed = estimated_tokens(len(system)) + MESSAGE_OVERHEAD_TOKENS + _tools_tokens(tools)
    if total <= room:
        return Fitted(system=system, messages=tuple(messages), estimate=total + fixed)
    newest = sum(sizes[-1]) if sizes else 0
    if newest > room:
        raise ContextTooLong(needed=int((newest + fixed) * ratio),
                             room=max(0, int((room + fixed) * ratio)))
    shortened = 0
    for turn, turn_sizes in zip(turns[:-1], sizes[:-1], strict=True):
        for i, message in enumerate(turn):
            if total <= room:
                break
            if message.role == "tool" and len(message.content) > 2 * (KEEP_HEAD + KEEP_TAIL):
                turn[i] = _shortened(message)
                new_size = message_tokens(turn[i])
                total -= turn_sizes[i] - new_size
                turn_sizes[i] = new_size
                shortened += 1
    left_out = 0
    while total > room and len(turns) > 1:
        dropped = turns.pop(0)
        total -= sum(sizes.pop(0))
        left_out += len(dropped)
        # The note itself takes room.
        if left_out == len(dropped):
            total += estimated_tokens(len(LEFT_OUT)) + 2
    if left_out:
        system = system + LEFT_OUT.format(count=left_out)
    kept = tuple(m for turn in turns for m in turn)
    return Fitted(system=system, messages=kept, estimate=total + fixed, left_out=left_out,
                  shortened=shortened)
