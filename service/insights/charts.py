"""Inline SVG charts drawn on the server: no script, no CDN, no inline style, so they render under the
page's strict CSP. Colours come from classes in /static/insights.css (``.s-<surface>``, ``.l-<lang>``)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

WIDTH, HEIGHT = 760, 230
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 12, 30
MAX_LABELS = 10  # date labels under the x axis, at most


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 5 × 10^k at or above ``value`` (1 for nothing), for a readable axis."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    return next(m * magnitude for m in (1, 2, 5, 10) if value <= m * magnitude)


def _svg(chart_id: str, title: str, desc: str, body: list[str], height: int = HEIGHT) -> str:
    return (
        f'<svg id="{chart_id}" class="chart" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-labelledby="{chart_id}-t {chart_id}-d" xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{chart_id}-t">{escape(title)}</title><desc id="{chart_id}-d">{escape(desc)}</desc>'
        + "".join(body)
        + "</svg>"
    )


def _rect(x: float, y: float, w: float, h: float, css: str, tip: str) -> str:
    return (
        f'<rect class="{css}" x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{max(h, 0):.1f}">'
        f"<title>{escape(tip)}</title></rect>"
    )


def _text(x: float, y: float, text: str, css: str = "tick", anchor: str = "middle") -> str:
    return f'<text class="{css}" x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}">{escape(text)}</text>'


def _axes(days: Sequence[str], top: float, label: Any) -> list[str]:
    """Horizontal grid lines with their values (``label`` formats a 0..1 fraction of ``top``), date labels."""
    plot_h, plot_w = HEIGHT - TOP - BOTTOM, WIDTH - LEFT - RIGHT
    parts = []
    for i in range(5):
        y = TOP + plot_h * (1 - i / 4)
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(_text(LEFT - 6, y + 4, label(top * i / 4), anchor="end"))
    step = max(1, math.ceil(len(days) / MAX_LABELS))
    slot = plot_w / max(1, len(days))
    for i in range(0, len(days), step):
        parts.append(_text(LEFT + slot * (i + 0.5), HEIGHT - 10, days[i][5:]))
    return parts


def volume_chart(daily: Sequence[Mapping[str, Any]], surfaces: Sequence[str]) -> str:
    """Questions per day, one stacked bar per day, a segment per surface."""
    days = [d["day"] for d in daily]
    top = nice_ceiling(max((d["questions"] for d in daily), default=0))
    plot_h, slot = HEIGHT - TOP - BOTTOM, (WIDTH - LEFT - RIGHT) / max(1, len(daily))
    parts = _axes(days, top, lambda v: f"{v:g}")
    for i, day in enumerate(daily):
        y = TOP + plot_h
        for s in surfaces:
            n = day["by_surface"].get(s, 0)
            if n:
                h = plot_h * n / top
                y -= h
                parts.append(
                    _rect(LEFT + slot * i + slot * 0.15, y, slot * 0.7, h, f"s-{s}", f"{day['day']} {s}: {n}")
                )
    total = sum(d["questions"] for d in daily)
    desc = f"{total} questions over {len(daily)} days, by surface"
    return _svg("chart-volume", "Questions per day", desc, parts)


def abstention_chart(daily: Sequence[Mapping[str, Any]]) -> str:
    """The share of each day's questions the material did not cover; days without questions are empty."""
    days = [d["day"] for d in daily]
    plot_h, slot = HEIGHT - TOP - BOTTOM, (WIDTH - LEFT - RIGHT) / max(1, len(daily))
    parts = _axes(days, 1.0, lambda v: f"{v:.0%}")
    for i, day in enumerate(daily):
        share = day["abstention_rate"]
        if share is None:
            continue
        h = plot_h * share
        tip = f"{day['day']}: {share:.0%} not covered ({day['abstained']} of {day['questions']})"
        parts.append(_rect(LEFT + slot * i + slot * 0.15, TOP + plot_h - h, slot * 0.7, h, "abstain", tip))
    return _svg(
        "chart-abstention", "Abstention rate per day", "Share of questions not covered, per day", parts
    )


def language_chart(by_lang: Mapping[str, int]) -> str:
    """One bar split by the questions' languages, each part labelled with its share."""
    total = sum(by_lang.values())
    height, y, bar_h = 74, 8, 34
    parts: list[str] = []
    x = float(LEFT)
    width = WIDTH - LEFT - RIGHT
    for lang, n in by_lang.items():
        w = width * n / total if total else 0
        parts.append(_rect(x, y, w, bar_h, f"l-{lang if lang in ('en', 'zh') else 'other'}", f"{lang}: {n}"))
        if w > 60:
            parts.append(_text(x + w / 2, y + bar_h / 2 + 5, f"{lang} {n / total:.0%}", "bar-label"))
        x += w
    if not total:
        parts.append(_text(WIDTH / 2, y + bar_h / 2 + 5, "no questions in this period"))
    desc = ", ".join(f"{lang}: {n}" for lang, n in by_lang.items()) or "no questions"
    return _svg("chart-langs", "Questions by language", desc, parts, height)


def legend(surfaces: Sequence[str]) -> str:
    items = "".join(f'<li><span class="swatch s-{s}"></span>{escape(s)}</li>' for s in surfaces)
    return f'<ul class="legend">{items}</ul>'
