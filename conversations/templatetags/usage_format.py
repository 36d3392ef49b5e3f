"""The usage pages' numbers as text: {{ n|tokens }} (1,234) and {{ amount|money }} (0.0012),
exact, with no locale guesswork (the figures are compared against invoices)."""

from __future__ import annotations

from decimal import Decimal

from django import template

from conversations.usage_charts import money_text, tokens_text

register = template.Library()


@register.filter
def tokens(value: int) -> str:
    return tokens_text(int(value or 0))


@register.filter
def money(value: Decimal) -> str:
    return money_text(Decimal(value or 0))
