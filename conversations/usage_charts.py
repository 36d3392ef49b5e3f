"""The usage pages' charts, drawn on the server as inline SVG (no script, no library), and the
numbers as text.

Every label is escaped here: model names and usernames are anyone's text. Each bar carries a
<title> (a tooltip, and what a screen reader says), each chart a title and a description, and
the pages show the same numbers in a table. Colours come from classes (usage.css): the CSP
allows no inline style.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from agents.model_info import COST_PLACES
from conversations.usage import DayRow, Totals

# Geometry of the vertical (per-day) charts, in the viewBox's units.
WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 64, 8, 10, 28
# The horizontal (per-name) charts: one row a name, labels cut to this many characters (the
# whole name is in the bar's title).
ROW, LABEL_CHARS, LABEL_WIDTH = 22, 28, 200
MAX_NAME_BARS = 25


def tokens_text(n: int) -> str:
    return f"{n:,}"


def money_text(amount: Decimal) -> str:
    """Exact, with at least two decimals and no trailing zeros beyond: 0.0012, 12.50."""
    whole, _, frac = f"{amount.quantize(COST_PLACES):,f}".partition(".")
    frac = frac.rstrip("0").ljust(2, "0")
    return f"{whole}.{frac}"


def _n(x: float) -> str:
    return f"{x:.2f}"


def _short(n: float) -> str:
    """An axis label: 950, 1.2k, 34k, 1.5M."""
    for size, suffix in ((1_000_000, "M"), (1_000, "k")):
        if n >= size:
            value = n / size
            shown = f"{value:.1f}".rstrip("0").rstrip(".") if value < 10 else f"{value:.0f}"
            return shown + suffix
    return f"{n:.0f}" if n == int(n) else f"{n:.2g}"


@dataclass(frozen=True, slots=True)
class Segment:
    value: float
    # A class of usage.css: the segment's colour.
    kind: str


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    segments: tuple[Segment, ...]
    # The bar's whole story, as its tooltip: "2025-03-01: 1,234 tokens (1,000 in, 234 out)".
    title: str

    @property
    def value(self) -> float:
        return sum(s.value for s in self.segments)


def _frame(*, chart_id: str, title: str, description: str, width: int, height: int,
           body: SafeString, legend: Sequence[tuple[str, str]]) -> SafeString:
    legend_html = format_html_join(
        "", '<li><span class="swatch {}" aria-hidden="true"></span>{}</li>', legend)
    return format_html(
        '<figure class="usage-chart">'
        '<svg viewBox="0 0 {w} {h}" role="img" aria-labelledby="{id}-t {id}-d"'
        ' preserveAspectRatio="xMinYMin meet" class="chart">'
        '<title id="{id}-t">{title}</title><desc id="{id}-d">{desc}</desc>{body}</svg>'
        '{legend}</figure>',
        w=width, h=height, id=chart_id, title=title, desc=description, body=body,
        legend=format_html('<ul class="legend">{}</ul>', legend_html) if legend else "")


def column_chart(*, chart_id: str, title: str, description: str, bars: Sequence[Bar],
                 legend: Sequence[tuple[str, str]] = (), unit=_short) -> SafeString:
    """Bars side by side, bottom up: one per day. A day every week or few weeks is labelled
    under the axis (and the last), so a year's chart stays readable."""
    top = max((b.value for b in bars), default=0) or 1
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / max(len(bars), 1)
    gap = min(step * 0.2, 4)
    parts = [
        format_html('<line class="axis" x1="{}" y1="{}" x2="{}" y2="{}"/>',
                    LEFT, TOP + plot_h, WIDTH - RIGHT, TOP + plot_h),
        format_html('<text class="tick" x="{}" y="{}" text-anchor="end">{}</text>',
                    LEFT - 6, TOP + 10, unit(top)),
        format_html('<text class="tick" x="{}" y="{}" text-anchor="end">0</text>',
                    LEFT - 6, TOP + plot_h),
    ]
    # Whole weeks between labels, at most about ten of them.
    every = 7 * -(-len(bars) // 70) if len(bars) > 14 else 1
    for i, bar in enumerate(bars):
        x = LEFT + i * step + gap / 2
        y = TOP + plot_h
        rects = []
        for segment in bar.segments:
            h = plot_h * segment.value / top
            if h <= 0:
                continue
            y -= h
            rects.append(format_html(
                '<rect class="{}" x="{}" y="{}" width="{}" height="{}"/>',
                segment.kind, _n(x), _n(y), _n(max(step - gap, 0.5)), _n(h)))
        # An empty day still gets its title (on a transparent strip): hovering says "nothing".
        parts.append(format_html(
            '<g class="bar"><title>{}</title>'
            '<rect class="hit" x="{}" y="{}" width="{}" height="{}"/>{}</g>',
            bar.title, _n(LEFT + i * step), TOP, _n(step), plot_h, mark_safe("".join(rects))))
        last = len(bars) - 1
        # The last day always; a weekly label too close before it would overlap it.
        if i == last or (i % every == 0 and last - i >= max(every // 2, 1)):
            parts.append(format_html(
                '<text class="tick" x="{}" y="{}" text-anchor="middle">{}</text>',
                _n(x + (step - gap) / 2), HEIGHT - 8, bar.label))
    return _frame(chart_id=chart_id, title=title, description=description, width=WIDTH,
                  height=HEIGHT, body=mark_safe("".join(parts)), legend=legend)


def row_chart(*, chart_id: str, title: str, description: str, bars: Sequence[Bar],
              legend: Sequence[tuple[str, str]] = ()) -> SafeString:
    """One horizontal bar a name (a model, a person, a group), longest first as given."""
    top = max((b.value for b in bars), default=0) or 1
    height = TOP + ROW * max(len(bars), 1) + 4
    plot_w = WIDTH - LABEL_WIDTH - RIGHT - 8
    parts = []
    for i, bar in enumerate(bars):
        y = TOP + i * ROW
        label = bar.label if len(bar.label) <= LABEL_CHARS else bar.label[:LABEL_CHARS - 1] + "…"
        x = LABEL_WIDTH
        rects = []
        for segment in bar.segments:
            w = plot_w * segment.value / top
            if w <= 0:
                continue
            rects.append(format_html(
                '<rect class="{}" x="{}" y="{}" width="{}" height="{}"/>',
                segment.kind, _n(x), y + 3, _n(w), ROW - 6))
            x += w
        parts.append(format_html(
            '<g class="bar"><title>{}</title>'
            '<text class="label" x="{}" y="{}" text-anchor="end">{}</text>{}</g>',
            bar.title, LABEL_WIDTH - 8, y + ROW - 7, label, mark_safe("".join(rects))))
    return _frame(chart_id=chart_id, title=title, description=description, width=WIDTH,
                  height=height, body=mark_safe("".join(parts)), legend=legend)


# --- the pages' charts -----------------------------------------------------------------------

TOKEN_LEGEND = (("input", "Input (not cached)"), ("cached", "Cached input"),
                ("output", "Output"))


def _token_segments(t: Totals) -> tuple[Segment, ...]:
    cached = min(t.cached_tokens, t.input_tokens)
    return (Segment(t.input_tokens - cached, "input"), Segment(cached, "cached"),
            Segment(t.output_tokens, "output"))


def _token_title(name: str, t: Totals) -> str:
    return (f"{name}: {tokens_text(t.tokens)} tokens ({tokens_text(t.input_tokens)} input, "
            f"of which {tokens_text(t.cached_tokens)} cached; {tokens_text(t.output_tokens)} "
            f"output), {t.answers:,} answers")


def tokens_per_day(days: Sequence[DayRow], *, chart_id: str = "tokens-day") -> SafeString:
    return column_chart(
        chart_id=chart_id, title="Tokens per day",
        description=f"{len(days)} days; the table below has the same numbers.",
        bars=[Bar(d.day.strftime("%d %b"), _token_segments(d.totals),
                  _token_title(d.day.isoformat(), d.totals)) for d in days],
        legend=TOKEN_LEGEND)


def cost_per_day(days: Sequence[DayRow], *, currency: str,
                 chart_id: str = "cost-day") -> SafeString:
    return column_chart(
        chart_id=chart_id, title=f"Cost per day ({currency})",
        description=f"{len(days)} days; the table below has the same numbers.",
        bars=[Bar(d.day.strftime("%d %b"), (Segment(float(d.totals.cost), "cost"),),
                  f"{d.day.isoformat()}: {money_text(d.totals.cost)} {currency}")
              for d in days],
        unit=lambda v: f"{v:.4g}")


def tokens_by_name(rows: Sequence[tuple[str, Totals]], *, chart_id: str,
                   title: str) -> SafeString:
    """A per-model, per-person or per-group chart of tokens; `rows` as (name, totals), in the
    order shown, at most MAX_NAME_BARS of them (a chart of hundreds of people helps no one;
    the table has them all)."""
    shown = rows[:MAX_NAME_BARS]
    more = f"the first {len(shown)} of {len(rows)}" if len(rows) > len(shown) else f"{len(rows)}"
    return row_chart(
        chart_id=chart_id, title=title,
        description=f"{more} rows; the table below has the same numbers.",
        bars=[Bar(name, _token_segments(t), _token_title(name, t)) for name, t in shown],
        legend=TOKEN_LEGEND)
