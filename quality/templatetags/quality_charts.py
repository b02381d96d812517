"""Server-rendered SVG charts of the quality dashboard: {% load quality_charts %}.

No JavaScript library: each tag returns a <figure> holding an inline SVG (role="img", with a
<title> and a <desc> that sums it up) and the same numbers as a table in a <details>, so the
chart has a text alternative. Colours meet WCAG AA on white, and series differ by dash
pattern as well as colour. Tags only format the numbers the selectors prepared.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import count
from typing import Any

from django import template
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

register = template.Library()

WIDTH, HEIGHT = 520, 250
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 16, 56
SERIES_STYLES = [  # (stroke colour, dash pattern): distinguishable without colour
    ("#1f5fbf", ""),
    ("#b04a00", "6 4"),
    ("#1d7a46", "2 3"),
]
EXPECTED_COLOUR = "#5a6270"
TEXT_COLOUR = "#1b1f24"
GRID_COLOUR = "#d6dae1"
MAX_X_LABELS = 6
_ids = count(1)


def _num(value: Any) -> float | None:
    """A finite float, or None for missing, non-numeric and NaN values."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _get(row: Any, key: str) -> Any:
    """A field of a chart row: a mapping's key or an object's attribute (None when absent)."""
    if isinstance(row, Mapping):
        return row.get(key)
    return getattr(row, key, None)


def _fmt(value: Any, digits: int = 3) -> str:
    number = _num(value)
    return "—" if number is None else f"{number:.{digits}f}"


def _pct(value: Any) -> str:
    number = _num(value)
    return "—" if number is None else f"{100 * number:.0f}%"


def _chart_id(prefix: str, given: str) -> str:
    return given or f"{prefix}-{next(_ids)}"


@register.filter
def pct(value: Any) -> str:
    """0.834 → '83%'; '—' when unknown."""
    return _pct(value)


@register.simple_tag
def estimate(value: Any, low: Any = None, high: Any = None, digits: int = 3) -> str:
    """'0.812 (95% CI 0.751–0.866)', or just the value when the interval is unknown."""
    if _num(value) is None:
        return "—"
    if _num(low) is None or _num(high) is None:
        return _fmt(value, digits)
    return f"{_fmt(value, digits)} (95% CI {_fmt(low, digits)}–{_fmt(high, digits)})"


def _figure(chart_id: str, title: str, svg: str, table: str, legend: str = "") -> SafeString:
    return mark_safe(  # noqa: S308 - every interpolated string was escaped or is a number
        f'<figure class="qc-chart" id="{chart_id}">'
        f'<figcaption class="qc-title" id="{chart_id}-caption">{escape(title)}</figcaption>'
        f"{legend}{svg}"
        f'<details class="qc-data"><summary>{escape(title)}: data table</summary>{table}</details>'
        "</figure>"
    )


def _svg_open(chart_id: str, title: str, summary: str, width: int, height: int) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="qc-svg" viewBox="0 0 {width} {height}" '
        f'width="100%" style="max-width: {width}px" preserveAspectRatio="xMidYMid meet" role="img" '
        f'aria-labelledby="{chart_id}-t {chart_id}-d" font-family="system-ui, sans-serif" '
        f'font-size="12" fill="{TEXT_COLOUR}">'
        f'<title id="{chart_id}-t">{escape(title)}</title>'
        f'<desc id="{chart_id}-d">{escape(summary)}</desc>'
    )


def _empty_svg(chart_id: str, title: str, message: str, width: int = WIDTH) -> str:
    height = 90
    return (
        _svg_open(chart_id, title, message, width, height)
        + f'<rect x="0.5" y="0.5" width="{width - 1}" height="{height - 1}" fill="#f6f7f9" '
        f'stroke="{GRID_COLOUR}" rx="6"/>'
        f'<text x="{width / 2}" y="{height / 2 + 4}" text-anchor="middle" fill="#5a6270" '
        f'font-size="14">{escape(message)}</text></svg>'
    )


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<th scope="row">{escape(cell)}</th>'
            if i == 0
            else f'<td class="num">{escape(cell)}</td>'
            for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f'<table class="qc-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _legend(entries: Sequence[tuple[str, str, str]]) -> str:
    """HTML legend: (name, colour, dash) per series, the swatch drawn as a short SVG line."""
    items = "".join(
        '<li><svg width="28" height="10" aria-hidden="true" focusable="false">'
        f'<line x1="1" y1="5" x2="27" y2="5" stroke="{colour}" stroke-width="3" '
        f'stroke-dasharray="{dash}"/></svg>{escape(name)}</li>'
        for name, colour, dash in entries
    )
    return f'<ul class="qc-legend">{items}</ul>'


def _nice_range(
    values: Sequence[float], low: float | None, high: float | None
) -> tuple[float, float]:
    lo = min([*values, 0.0]) if low is None else low
    hi = max([*values, 1.0]) if high is None else high
    lo, hi = math.floor(lo * 5) / 5, math.ceil(hi * 5) / 5
    return (lo, hi) if hi > lo else (lo, lo + 1)


@register.simple_tag
def trend_chart(
    series: Sequence[Mapping[str, Any]],
    title: str,
    y_label: str,
    x_label: str = "Period",
    y_min: Any = None,
    y_max: Any = None,
    chart_id: str = "",
) -> SafeString:
    """Lines with 95% interval bands over shared periods.

    `series`: [{"name", "points": [{"x": period label, "value", "low", "high"}]}]; every
    series has the same periods in the same order. Missing values break the line.
    """
    chart_id = _chart_id("trend", chart_id)
    series = [s for s in series if s.get("points")]
    periods = [str(p.get("x", "")) for p in series[0]["points"]] if series else []
    if not periods:
        return _figure(chart_id, title, _empty_svg(chart_id, title, "No data yet."), "")
    numbers = [
        v
        for s in series
        for p in s["points"]
        for v in (_num(p.get("value")), _num(p.get("low")), _num(p.get("high")))
        if v is not None
    ]
    lo, hi = _nice_range(numbers, _num(y_min), _num(y_max))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    n = len(periods)

    def x_at(i: int) -> float:
        return LEFT + (plot_w / 2 if n == 1 else plot_w * i / (n - 1))

    def y_at(v: float) -> float:
        return TOP + plot_h * (1 - (min(max(v, lo), hi) - lo) / (hi - lo))

    parts = [_axes(lo, hi, y_at, x_label, y_label)]
    step = max(1, math.ceil(n / MAX_X_LABELS))
    for i, period in enumerate(periods):
        if i % step == 0:
            parts.append(
                f'<text x="{x_at(i):.1f}" y="{TOP + plot_h + 16}" text-anchor="middle" '
                f'font-size="11">{escape(period[:10])}</text>'
            )
    legend, summary = [], []
    for k, s in enumerate(series):
        colour, dash = SERIES_STYLES[k % len(SERIES_STYLES)]
        parts.extend(_series_svg(s["points"], x_at, y_at, colour, dash))
        legend.append((str(s.get("name", "")), colour, dash))
        last = s["points"][-1]
        latest = estimate(last.get("value"), last.get("low"), last.get("high"))
        summary.append(f"{s.get('name', '')}: latest {latest}")
    text = f"{n} period{'s' if n != 1 else ''}. " + "; ".join(summary) + "."
    svg = _svg_open(chart_id, title, text, WIDTH, HEIGHT) + "".join(parts) + "</svg>"
    headers = [x_label] + [str(s.get("name", "")) for s in series]
    rows = [
        [period]
        + [
            estimate(
                s["points"][i].get("value"), s["points"][i].get("low"), s["points"][i].get("high")
            )
            if i < len(s["points"])
            else "—"
            for s in series
        ]
        for i, period in enumerate(periods)
    ]
    return _figure(chart_id, title, svg, _table(headers, rows), _legend(legend))


def _axes(lo: float, hi: float, y_at: Any, x_label: str, y_label: str) -> str:
    plot_bottom = HEIGHT - BOTTOM
    parts = []
    for k in range(6):
        value = lo + (hi - lo) * k / 5
        y = y_at(value)
        parts.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" '
            f'stroke="{GRID_COLOUR}" stroke-width="1"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">'
            f"{value:.1f}</text>"
        )
    parts.append(
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{plot_bottom}" stroke="{TEXT_COLOUR}"/>'
        f'<line x1="{LEFT}" y1="{plot_bottom}" x2="{WIDTH - RIGHT}" y2="{plot_bottom}" '
        f'stroke="{TEXT_COLOUR}"/>'
        f'<text x="{(LEFT + WIDTH - RIGHT) / 2}" y="{HEIGHT - 10}" text-anchor="middle" '
        f'font-size="12" font-weight="600">{escape(x_label)}</text>'
        f'<text x="14" y="{(TOP + plot_bottom) / 2}" text-anchor="middle" font-size="12" '
        f'font-weight="600" transform="rotate(-90 14 {(TOP + plot_bottom) / 2})">'
        f"{escape(y_label)}</text>"
    )
    return "".join(parts)


def _series_svg(
    points: Sequence[Mapping[str, Any]], x_at: Any, y_at: Any, colour: str, dash: str
) -> list[str]:
    """One series: its interval band and line per unbroken run of points, and a dot per point."""
    parts: list[str] = []
    runs: list[list[tuple[int, float, float | None, float | None]]] = [[]]
    for i, p in enumerate(points):
        value = _num(p.get("value"))
        if value is None:
            runs.append([])
            continue
        runs[-1].append((i, value, _num(p.get("low")), _num(p.get("high"))))
    for run in runs:
        banded = [r for r in run if r[2] is not None and r[3] is not None]
        if len(banded) >= 2:
            upper = " ".join(f"{x_at(i):.1f},{y_at(h):.1f}" for i, _v, _l, h in banded)
            lower = " ".join(f"{x_at(i):.1f},{y_at(lw):.1f}" for i, _v, lw, _h in reversed(banded))
            parts.append(f'<polygon points="{upper} {lower}" fill="{colour}" fill-opacity="0.15"/>')
        for i, _v, low, high in banded if len(banded) == 1 else []:
            parts.append(  # a lone point: its interval as an error bar
                f'<line x1="{x_at(i):.1f}" y1="{y_at(low):.1f}" x2="{x_at(i):.1f}" '
                f'y2="{y_at(high):.1f}" stroke="{colour}" stroke-width="2" stroke-opacity="0.5"/>'
            )
        if len(run) >= 2:
            line = " ".join(f"{x_at(i):.1f},{y_at(v):.1f}" for i, v, _l, _h in run)
            parts.append(
                f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="2.5" '
                f'stroke-dasharray="{dash}"/>'
            )
        parts.extend(
            f'<circle cx="{x_at(i):.1f}" cy="{y_at(v):.1f}" r="3.5" fill="{colour}"/>'
            for i, v, _l, _h in run
        )
    return parts


@register.simple_tag
def paired_bar_chart(
    rows: Sequence[Any],
    title: str,
    observed_name: str = "Consensus share",
    expected_name: str = "Expected share",
    chart_id: str = "",
) -> SafeString:
    """Per label, the observed share next to the expected share (class balance).

    `rows`: [{"label", "count", "share", "expected_share" (None when unknown)}].
    """
    chart_id = _chart_id("bars", chart_id)
    if not rows:
        return _figure(chart_id, title, _empty_svg(chart_id, title, "No labels yet."), "")
    has_expected = any(_num(_get(r, "expected_share")) is not None for r in rows)
    label_w, value_w, row_h = 110, 48, 44 if has_expected else 28
    height = TOP + row_h * len(rows) + 30
    bar_w = WIDTH - label_w - value_w - RIGHT
    top = max(
        [_num(_get(r, "share")) or 0.0 for r in rows]
        + [_num(_get(r, "expected_share")) or 0.0 for r in rows]
    )
    scale = max(top, 0.05)
    parts = []
    for k, r in enumerate(rows):
        y = TOP + row_h * k
        observed, expected = _num(_get(r, "share")) or 0.0, _num(_get(r, "expected_share"))
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end" font-weight="600">'
            f"{escape(str(_get(r, 'label') or '')[:18])}</text>"
            f'<rect x="{label_w}" y="{y + 4}" width="{bar_w * observed / scale:.1f}" height="14" '
            f'fill="{SERIES_STYLES[0][0]}" rx="2"/>'
            f'<text x="{label_w + bar_w * observed / scale + 6:.1f}" y="{y + 15}">'
            f"{_pct(observed)}</text>"
        )
        if expected is not None:
            parts.append(
                f'<rect x="{label_w}" y="{y + 21}" width="{bar_w * expected / scale:.1f}" '
                f'height="14" fill="#ffffff" stroke="{EXPECTED_COLOUR}" stroke-width="1.5" '
                f'stroke-dasharray="4 2" rx="2"/>'
                f'<text x="{label_w + bar_w * expected / scale + 6:.1f}" y="{y + 32}" '
                f'fill="{EXPECTED_COLOUR}">{_pct(expected)}</text>'
            )
    axis_y = TOP + row_h * len(rows) + 4
    parts.append(
        f'<line x1="{label_w}" y1="{TOP}" x2="{label_w}" y2="{axis_y}" stroke="{TEXT_COLOUR}"/>'
        f'<text x="{label_w + bar_w / 2}" y="{height - 6}" text-anchor="middle" font-weight="600">'
        "Share of regular items</text>"
    )
    summary = "; ".join(
        f"{_get(r, 'label')}: {_pct(_get(r, 'share'))}"
        + (f" (expected {_pct(_get(r, 'expected_share'))})" if has_expected else "")
        for r in rows
    )
    svg = _svg_open(chart_id, title, summary + ".", WIDTH, height) + "".join(parts) + "</svg>"
    legend = [(observed_name, SERIES_STYLES[0][0], "")]
    if has_expected:
        legend.append((expected_name, EXPECTED_COLOUR, "4 2"))
    table = _table(
        ["Label", "Items", observed_name, expected_name],
        [
            [
                str(_get(r, "label")),
                str(_get(r, "count")),
                _pct(_get(r, "share")),
                _pct(_get(r, "expected_share")),
            ]
            for r in rows
        ],
    )
    return _figure(chart_id, title, svg, table, _legend(legend))


def _blend(share: float) -> str:
    """White to the primary blue (#1f5fbf) by `share` (0..1)."""
    r, g, b = (round(255 + (c - 255) * share) for c in (0x1F, 0x5F, 0xBF))
    return f"#{r:02x}{g:02x}{b:02x}"


@register.simple_tag
def heatmap_chart(
    labels: Sequence[str],
    matrix: Sequence[Sequence[Any]],
    title: str,
    row_name: str = "Gold label",
    column_name: str = "Crowd answer",
    chart_id: str = "",
) -> SafeString:
    """A confusion matrix: counts in cells, shaded by the share of their row."""
    chart_id = _chart_id("heatmap", chart_id)
    n = len(labels)
    if not n or len(matrix) != n or sum(_num(v) or 0 for row in matrix for v in row) == 0:
        return _figure(chart_id, title, _empty_svg(chart_id, title, "No answers on gold yet."), "")
    cell = max(34, min(64, 420 // n))
    left, top = 130, 56
    width, height = left + cell * n + 16, top + cell * n + 16
    parts = [
        f'<text x="{left + cell * n / 2}" y="16" text-anchor="middle" font-weight="600">'
        f"{escape(column_name)}</text>",
        f'<text x="14" y="{top + cell * n / 2}" text-anchor="middle" font-weight="600" '
        f'transform="rotate(-90 14 {top + cell * n / 2})">{escape(row_name)}</text>',
    ]
    for j, label in enumerate(labels):
        parts.append(
            f'<text x="{left + cell * j + cell / 2}" y="{top - 8}" text-anchor="middle" '
            f'font-size="11">{escape(str(label)[:8])}</text>'
        )
    summary = []
    for i, label in enumerate(labels):
        row = [int(_num(v) or 0) for v in matrix[i]][:n] + [0] * max(0, n - len(matrix[i]))
        total = sum(row)
        parts.append(
            f'<text x="{left - 8}" y="{top + cell * i + cell / 2 + 4}" text-anchor="end" '
            f'font-size="11">{escape(str(label)[:16])}</text>'
        )
        for j, value in enumerate(row):
            share = value / total if total else 0.0
            x, y = left + cell * j, top + cell * i
            diagonal = (
                ' stroke="#1b1f24" stroke-width="2"' if i == j else f' stroke="{GRID_COLOUR}"'
            )
            ink = "#ffffff" if share > 0.5 else TEXT_COLOUR
            parts.append(
                f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" '
                f'fill="{_blend(share)}"{diagonal}/>'
                f'<text x="{x + cell / 2}" y="{y + cell / 2 + 4}" text-anchor="middle" '
                f'fill="{ink}" font-weight="600">{value}</text>'
            )
        summary.append(f"gold {label}: {row[i] if i < len(row) else 0} of {total} answered {label}")
    svg = (
        _svg_open(chart_id, title, "; ".join(summary) + ".", width, height)
        + "".join(parts)
        + "</svg>"
    )
    table = _table(
        [f"{row_name} \\ {column_name}", *map(str, labels), "Total"],
        [
            [
                str(label),
                *(str(int(_num(v) or 0)) for v in matrix[i]),
                str(sum(int(_num(v) or 0) for v in matrix[i])),
            ]
            for i, label in enumerate(labels)
        ],
    )
    return _figure(chart_id, title, svg, table)
