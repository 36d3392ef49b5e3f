"""Fitting a history into the model's window (agents.context_window): the rule, step by step,
and its estimate corrected by what the model server reports."""

from __future__ import annotations

import pytest

from agents import context_window
from agents.context_window import ContextTooLong, fit, observe, too_long
from agents.events import ChatMessage, ToolCall
from agents.model_info import ModelInfo


@pytest.fixture(autouse=True)
def fresh_ratios(monkeypatch):
    monkeypatch.setattr(context_window, "_ratios", {})


def model(window: int, output: int | None = 100) -> ModelInfo:
    return ModelInfo(label="m", context_window=window, max_output_tokens=output)


def exchange(n: int, size: int = 300) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=f"question {n} " + "q" * size),
            ChatMessage(role="assistant", content=f"answer {n} " + "a" * size)]


def with_tool(n: int, result_chars: int) -> list[ChatMessage]:
    call = ToolCall(id=f"c{n}", name="lookup", arguments={"q": n})
    return [ChatMessage(role="user", content=f"look {n} up"),
            ChatMessage(role="assistant", tool_calls=(call,)),
            ChatMessage(role="tool", tool_call_id=f"c{n}", content="r" * result_chars),
            ChatMessage(role="assistant", content=f"found {n}")]


def test_a_history_that_fits_is_sent_as_it_is():
    history = exchange(1) + exchange(2)
    fitted = fit(model(10_000), system="Be brief.", messages=history)
    assert fitted.messages == tuple(history)
    assert (fitted.system, fitted.left_out, fitted.shortened) == ("Be brief.", 0, 0)


def test_older_tool_results_are_shortened_before_any_turn_is_left_out():
    # Each result is about 3,300 tokens; the window holds one of them and the rest.
    history = with_tool(1, 10_000) + with_tool(2, 10_000) + exchange(3)
    fitted = fit(model(6_000), system="", messages=history)
    assert fitted.left_out == 0 and fitted.shortened >= 1
    first = fitted.messages[2].content
    assert first.startswith("r" * 600) and first.endswith("r" * 200)
    assert "characters of this tool result left out to fit the context window" in first
    # The newest turn is whole.
    assert fitted.messages[-2:] == tuple(exchange(3))


def test_then_the_oldest_turns_are_left_out_whole_and_the_model_is_told():
    history = [m for n in range(40) for m in exchange(n)]  # about 8,400 tokens
    fitted = fit(model(2_000), system="Be brief.", messages=history)
    assert fitted.left_out > 0 and fitted.left_out % 2 == 0  # whole exchanges
    assert fitted.messages == tuple(history[fitted.left_out:])
    assert fitted.messages[0].role == "user"
    assert fitted.system.startswith("Be brief.\n\n(Earlier messages of this conversation, "
                                    f"{fitted.left_out} of them, were left out")
    assert fitted.estimate <= 2_000 - 100


def test_a_newest_message_too_long_alone_is_refused_with_its_size():
    history = exchange(1) + [ChatMessage(role="user", content="x" * 30_000)]
    with pytest.raises(ContextTooLong) as caught:
        fit(model(4_000), system="", messages=history)
    assert "about 10,0" in caught.value.message and "Shorten it" in caught.value.message
    assert too_long(model(4_000), system="", text="x" * 30_000).startswith(
        "This message is too long for the model: about 10,0")
    assert too_long(model(4_000), system="", text="short") is None


def test_room_is_left_for_the_answer():
    """Without a max output of its own, a quarter of the window (up to 4,096 tokens)."""
    history = [m for n in range(20) for m in exchange(n)]
    with_room = fit(model(4_000, output=None), system="", messages=history)
    assert with_room.estimate <= 4_000 * 0.97 - 1_000


def test_the_estimate_is_corrected_by_the_reported_prompt_tokens():
    history = [m for n in range(40) for m in exchange(n)]
    before = fit(model(3_000), system="", messages=history)
    # The server counted half the estimate (English is about four characters a token): the
    # same window then holds more of the history.
    for _ in range(10):
        observe("m", estimate=before.estimate, reported=before.estimate // 2)
    after = fit(model(3_000), system="", messages=history)
    assert after.left_out < before.left_out
    assert 0.45 < context_window.ratio_of("m") < 0.6
