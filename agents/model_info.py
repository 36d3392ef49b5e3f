"""What a turn knows of the model that answers it: its limits and its prices.

Prices are per million tokens. Input tokens include the cached ones (every provider adapter
reports them that way), so a cached token is billed at the cached price instead of the input
price, never on top of it. Reasoning tokens are part of the output tokens."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agents.events import ChatMessage
    from agents.tool_catalog import OfferedTool

MILLION = Decimal(1_000_000)
# Costs are stored with six decimals: a millionth of the currency.
COST_PLACES = Decimal("0.000001")


def model_label(server: str, model: str) -> str:
    """How a message names the model that wrote it: "model" on the environment's default
    server, "server:model" on a registered one."""
    return model if server == "default" else f"{server}:{model}"


@dataclass(frozen=True, slots=True)
class ModelInfo:
    label: str
    context_window: int
    # None: the admin set none, and requests name none (the server's own bound applies).
    max_output_tokens: int | None = None
    input_price: Decimal = Decimal(0)
    output_price: Decimal = Decimal(0)
    cached_input_price: Decimal = Decimal(0)

    @property
    def priced(self) -> bool:
        return bool(self.input_price or self.output_price or self.cached_input_price)

    def cost(self, *, input_tokens: int, output_tokens: int, cached_tokens: int) -> Decimal:
        cached = min(cached_tokens, input_tokens)
        total = ((input_tokens - cached) * self.input_price + cached * self.cached_input_price
                 + output_tokens * self.output_price) / MILLION
        return total.quantize(COST_PLACES)

    def most_cost(self, *, input_tokens: int, output_tokens: int) -> Decimal:
        """The dearest a round of this size can be, whatever of it is cached: budgets reserve
        it."""
        total = (input_tokens * max(self.input_price, self.cached_input_price)
                 + output_tokens * self.output_price) / MILLION
        return total.quantize(COST_PLACES)


def estimated_tokens(chars: int) -> int:
    """Tokens in `chars` characters of text, estimated high: about four characters a token in
    English, fewer in code and most other scripts; three errs on the side of more tokens."""
    return chars // 3 + 1


# What a chat template adds around each message (role markers, separators), estimated high.
MESSAGE_OVERHEAD_TOKENS = 8


def message_tokens(message: ChatMessage) -> int:
    """One message's tokens, estimated high: its text, reasoning and tool calls, and what a
    chat template adds around it."""
    chars = len(message.content) + len(message.reasoning) + sum(
        len(c.name) + len(c.arguments_raw or json.dumps(c.arguments)) for c in message.tool_calls)
    return estimated_tokens(chars) + MESSAGE_OVERHEAD_TOKENS


def tool_tokens(name: str, description: str, schema: dict) -> int:
    """One offered tool's tokens, estimated high (its schema is usually the larger part)."""
    return estimated_tokens(len(name) + len(description) + len(json.dumps(schema)))


def request_tokens(*, system: str, history: Iterable[ChatMessage],
                   tools: Iterable[OfferedTool] = ()) -> int:
    """A first request's input tokens, estimated high (budgets hold them back): the system
    prompt, the messages, and the tools offered with it."""
    return (estimated_tokens(len(system)) + MESSAGE_OVERHEAD_TOKENS
            + sum(message_tokens(m) for m in history)
            + sum(tool_tokens(t.exposed_name, t.description, t.input_schema) for t in tools))
