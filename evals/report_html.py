"""`kbq eval --report PATH.html`: one self-contained HTML page of an evaluation, with inline SVG plots.

``write_report(path, report)`` takes a plain mapping (or an ``EvalReport`` dataclass) of this shape; every
key but ``rows`` may be missing, and rows may carry more metrics than listed (they get a column too):

    {
      "title": "kbq golden set",                    # optional page title
      "generated": "2026-05-01T12:00:00Z",          # optional
      "notes": ["calibration fitted on tune"],      # optional lines under the title
      "rows": [                                     # one row per (split, group)
        {"split": "tune", "group": "all", "n": 130,  # split: tune | test | all…; group: all | en | zh | …
         "support": 0.91, "abstain_p": 1.0, "abstain_r": 0.97, "lang_match": 0.98,
         "forbidden": 0.0, "citation_validity": 1.0, "recall@1": 0.73, ...},   # fractions in 0..1
      ],
      "reliability": [                              # confidence bucket -> share of answers supported
        {"split": "test", "lo": 0.8, "hi": 1.0, "n": 60, "supported": 0.9},
      ],
      "misses": [                                   # answerable questions not answered with support
        {"id": "en-014", "split": "test", "question": "...", "answer": "...",
         "lang": "en", "confidence": 0.41, "abstained": false, "expected": "..."},  # the last four optional
      ],
    }

A metric missing from a row shows as "–". Fractions print as percentages except ``n``. A test figure more
than ``GAP`` below its tune figure is flagged: by the project's evaluation discipline that is overfitting.
The page loads nothing: its styles are inline and its own CSP forbids every fetch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from html import escape
from pathlib import Path
from typing import Any

GAP = 0.05  # test below tune by more than this is flagged
METRICS = ("support", "abstain_p", "abstain_r", "lang_match", "forbidden", "citation_validity")
LOWER_IS_BETTER = {"forbidden"}
LANGUAGE_BARS = ("support", "lang_match", "abstain_r")  # per-language bar charts, when rows have them
SPLIT_CLASSES = {"tune": "tune", "test": "test"}
W, H, LEFT, BOTTOM, TOP = 640, 240, 44, 34, 18
SMALL_W = 360  # the per-language charts, three to a row
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
STYLE = """
body { margin: 0 auto; max-width: 1000px; padding: 16px 24px 60px; color: #1a1d23; background: #fff;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, Arial, "Noto Sans", "PingFang SC", sans-serif; }
h1 { font-size: 24px; margin: 8px 0; } h2 { font-size: 18px; margin: 28px 0 8px; }
.meta { color: #596170; font-size: 13px; margin: 2px 0; }
table { border-collapse: collapse; width: 100%; font-size: 14px; font-variant-numeric: tabular-nums; }
th, td { text-align: right; padding: 4px 8px; border-bottom: 1px solid #e4e7ee; }
th:first-child, td:first-child, th:nth-child(2), td:nth-child(2) { text-align: left; }
thead th { background: #f1f3f7; }
tr.test td { background: #f7f9ff; }
td.flag { color: #b91c1c; font-weight: 700; }
figure { margin: 0; } figcaption { font-size: 13px; color: #596170; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr)); gap: 16px; }
svg { width: 100%; height: auto; display: block; }
svg .grid { stroke: #e4e7ee; } svg .axis { stroke: #596170; } svg text { fill: #596170; font-size: 11px; }
svg .tune { fill: #9db4f0; } svg .test { fill: #1f4fd1; } svg .other { fill: #6b7280; }
svg .ideal { stroke: #b91c1c; stroke-dasharray: 4 3; fill: none; }
.legend span { display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 12px; vertical-align: -1px; }
.legend .tune { background: #9db4f0; } .legend .test { background: #1f4fd1; } .legend .other { background: #6b7280; }
.misses li { margin-bottom: 12px; } .misses .q { font-weight: 600; }
.misses .a { white-space: pre-wrap; margin: 2px 0; }
"""


@dataclass
class EvalReport:
    rows: list[dict[str, Any]]
    reliability: list[dict[str, Any]] = field(default_factory=list)
    misses: list[dict[str, Any]] = field(default_factory=list)
    title: str = "kbq evaluation"
    generated: str = ""
    notes: list[str] = field(default_factory=list)


def _as_mapping(report: Mapping[str, Any] | EvalReport) -> Mapping[str, Any]:
    if is_dataclass(report) and not isinstance(report, type):
        return asdict(report)
    return report  # type: ignore[return-value]


def _num(value: Any, metric: str) -> str:
    if value is None:
        return "–"
    if metric == "n" or isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return f"{float(value):.1%}"


def metric_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The known metrics first, in their order, then any other numeric keys the rows carry."""
    present = {
        k for r in rows for k, v in r.items() if isinstance(v, int | float) and not isinstance(v, bool)
    }
    present -= {"n"}
    return [m for m in METRICS if m in present] + sorted(present - set(METRICS))


def overfit(rows: Sequence[Mapping[str, Any]], row: Mapping[str, Any], metric: str) -> bool:
    """A test figure more than GAP worse than the tune figure of the same group."""
    if row.get("split") != "test" or row.get(metric) is None:
        return False
    tune = next((r for r in rows if r.get("split") == "tune" and r.get("group") == row.get("group")), None)
    if tune is None or tune.get(metric) is None:
        return False
    worse = row[metric] - tune[metric] if metric in LOWER_IS_BETTER else tune[metric] - row[metric]
    return bool(worse > GAP)


def results_table(rows: Sequence[Mapping[str, Any]]) -> str:
    columns = metric_columns(rows)
    head = "".join(f"<th>{escape(c)}</th>" for c in ["split", "group", "n", *columns])
    body = []
    for r in rows:
        cells = [f"<td>{escape(str(r.get('split', '')))}</td><td>{escape(str(r.get('group', '')))}</td>"]
        cells.append(f"<td>{_num(r.get('n'), 'n')}</td>")
        for c in columns:
            flag = overfit(rows, r, c)
            mark = ' class="flag" title="more than 5 points below tune"' if flag else ""
            cells.append(f"<td{mark}>{_num(r.get(c), c)}{' ⚠' if flag else ''}</td>")
        css = SPLIT_CLASSES.get(str(r.get("split")), "")
        body.append(f'<tr class="{css}">{"".join(cells)}</tr>')
    return f'<table id="results"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _frame(title: str, parts: list[str], x_labels: Sequence[tuple[float, str]], width: int = W) -> str:
    plot_h = H - TOP - BOTTOM
    grid = []
    for i in range(5):
        y = TOP + plot_h * (1 - i / 4)
        grid.append(f'<line class="grid" x1="{LEFT}" x2="{width - 8}" y1="{y:.1f}" y2="{y:.1f}"/>')
        grid.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{i * 25}%</text>')
    labels = [f'<text x="{x:.1f}" y="{H - 12}" text-anchor="middle">{escape(t)}</text>' for x, t in x_labels]
    return (
        f'<svg viewBox="0 0 {width} {H}" role="img" xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
        + "".join(grid + parts + labels)
        + "</svg>"
    )


def _bar(x: float, width: float, share: float, css: str, tip: str, label: str = "") -> str:
    """A bar of height ``share`` (0..1), with ``label`` above it (so a 0% bar still shows)."""
    plot_h = H - TOP - BOTTOM
    h = plot_h * max(0.0, min(1.0, share))
    top = TOP + plot_h - h
    text = f'<text x="{x + width / 2:.1f}" y="{top - 4:.1f}" text-anchor="middle">{escape(label)}</text>'
    return (
        f'<rect class="{css}" x="{x:.1f}" y="{top:.1f}" width="{width:.1f}" height="{h:.1f}">'
        f"<title>{escape(tip)}</title></rect>" + (text if label else "")
    )


def language_bars(rows: Sequence[Mapping[str, Any]], metric: str) -> str:
    """One group of bars per row group (all, en, zh…), one bar per split."""
    groups = list(dict.fromkeys(str(r.get("group")) for r in rows if r.get(metric) is not None))
    splits = list(dict.fromkeys(str(r.get("split")) for r in rows if r.get(metric) is not None))
    slot = (SMALL_W - LEFT - 8) / max(1, len(groups))
    bar = slot * 0.8 / max(1, len(splits))
    parts = []
    for g, group in enumerate(groups):
        for s, split in enumerate(splits):
            row = next(
                (r for r in rows if str(r.get("group")) == group and str(r.get("split")) == split), None
            )
            if row is None or row.get(metric) is None:
                continue
            tip = f"{split} {group}: {metric} {_num(row[metric], metric)} (n={row.get('n', '?')})"
            x = LEFT + slot * g + slot * 0.1 + bar * s
            parts.append(_bar(x, bar * 0.92, float(row[metric]), SPLIT_CLASSES.get(split, "other"), tip))
    labels = [(LEFT + slot * (g + 0.5), group) for g, group in enumerate(groups)]
    chart = _frame(metric, parts, labels, SMALL_W)
    return f"<figure><figcaption>{escape(metric)} by group</figcaption>{chart}</figure>"


def _bucket(row: Mapping[str, Any]) -> tuple[float, float]:
    if "lo" in row and "hi" in row:
        return float(row["lo"]), float(row["hi"])
    lo, _, hi = str(row.get("bucket", "0-1")).replace("–", "-").partition("-")
    return float(lo), float(hi or 1)


def reliability_diagram(buckets: Sequence[Mapping[str, Any]]) -> str:
    """Confidence bucket (x) against the share of its answers that were supported (y), per split; the
    dashed diagonal is perfect calibration. Empty buckets draw nothing."""
    splits = list(dict.fromkeys(str(b.get("split", "all")) for b in buckets))
    plot_w = W - LEFT - 8
    parts = [f'<polyline class="ideal" points="{LEFT},{H - BOTTOM} {W - 8},{TOP}"/>']
    for b in buckets:
        lo, hi = _bucket(b)
        if not b.get("n") or b.get("supported") is None:
            continue
        s = splits.index(str(b.get("split", "all")))
        width = plot_w * (hi - lo) * 0.8 / len(splits)
        x = LEFT + plot_w * lo + plot_w * (hi - lo) * 0.1 + width * s
        css = SPLIT_CLASSES.get(str(b.get("split")), "other")
        tip = f"{b.get('split', 'all')} {lo:.1f}–{hi:.1f}: {b['n']} answers, {float(b['supported']):.0%} supported"
        parts.append(_bar(x, width * 0.92, float(b["supported"]), css, tip, f"n={b['n']}"))
    ticks = [(LEFT + plot_w * t / 5, f"{t / 5:.1f}") for t in range(6)]
    return f'<figure id="reliability"><figcaption>confidence → share supported</figcaption>{_frame("reliability", parts, ticks)}</figure>'


def misses_list(misses: Sequence[Mapping[str, Any]]) -> str:
    if not misses:
        return "<p>No misses.</p>"
    items = []
    for m in misses:
        extra = [f"{k} {escape(str(m[k]))}" for k in ("lang", "confidence", "abstained") if k in m]
        expected = f'<p class="meta">expected: {escape(str(m["expected"]))}</p>' if m.get("expected") else ""
        items.append(
            f'<li><p class="q">{escape(str(m.get("id", "")))} [{escape(str(m.get("split", "")))}] '
            f"{escape(str(m.get('question', '')))}</p>"
            f'<p class="meta">{" · ".join(extra)}</p><p class="a">{escape(str(m.get("answer", "")))}</p>{expected}</li>'
        )
    return f'<ol class="misses" id="misses">{"".join(items)}</ol>'


def render_report(report: Mapping[str, Any] | EvalReport) -> str:
    data = _as_mapping(report)
    rows, title = list(data.get("rows", [])), str(data.get("title") or "kbq evaluation")
    notes = "".join(f'<p class="meta">{escape(str(n))}</p>' for n in data.get("notes", []))
    when = f'<p class="meta">generated {escape(str(data["generated"]))}</p>' if data.get("generated") else ""
    splits = dict.fromkeys(str(r.get("split")) for r in rows)
    legend = (
        '<p class="legend">'
        + "".join(f'<span class="{SPLIT_CLASSES.get(s, "other")}"></span>{escape(s)}' for s in splits)
        + "</p>"
    )
    bars = "".join(language_bars(rows, m) for m in LANGUAGE_BARS if any(r.get(m) is not None for r in rows))
    misses = list(data.get("misses", []))
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="Content-Security-Policy" '
        f'content="{CSP}"><meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{escape(title)}</title><link rel="icon" href="data:,"><style>{STYLE}</style></head><body>'
        f"<h1>{escape(title)}</h1>{when}{notes}<h2>Results by split and group</h2>{results_table(rows)}"
        f'<h2>Per language</h2>{legend}<div class="charts">{bars}</div>'
        f"<h2>Reliability</h2>{reliability_diagram(list(data.get('reliability', [])))}"
        f"<h2>Misses ({len(misses)})</h2>{misses_list(misses)}</body></html>"
    )


def write_report(path: Path | str, report: Mapping[str, Any] | EvalReport) -> Path:
    """Write the report as one self-contained HTML file; returns its path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_report(report), encoding="utf-8")
    return target
