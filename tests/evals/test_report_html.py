"""The eval report page: one self-contained file, escaped, with its plots; it loads in headless Chromium with
no console error and no request at all."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from evals.report_html import EvalReport, metric_columns, overfit, render_report, write_report
from tests.conftest import ROOT

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
GROUPS = {"all": 162, "en": 78, "zh": 84, "cross-lingual": 38}


def _rows() -> list[dict[str, Any]]:
    rows = []
    for split, shift in (("tune", 0.0), ("test", 0.03)):
        for group, n in GROUPS.items():
            rows.append(
                {
                    "split": split,
                    "group": group,
                    "n": n // 2,
                    "support": 0.92 - shift,
                    "abstain_p": 1.0,
                    "abstain_r": 0.95 - shift,
                    "lang_match": 0.97,
                    "forbidden": 0.0,
                    "citation_validity": 1.0,
                    "recall@1": 0.7,
                }
            )
    rows[-1]["support"] = 0.60  # test cross-lingual: far below tune, flagged
    rows[-1]["abstain_p"] = None  # no unanswerable cross-lingual questions
    return rows


REPORT: dict[str, Any] = {
    "title": "kbq golden set <tune/test>",
    "generated": "2026-05-01T12:00:00Z",
    "notes": ["calibration fitted on tune only"],
    "rows": _rows(),
    "reliability": [
        {"split": split, "lo": b / 5, "hi": (b + 1) / 5, "n": n, "supported": share}
        for split in ("tune", "test")
        for b, (n, share) in enumerate([(10, 0.0), (3, 0.1), (0, None), (4, 0.75), (60, 0.9)])
    ],
    "misses": [
        {
            "id": "en-014",
            "split": "test",
            "question": "What wildcard did InfoQ name?",
            "answer": "变数就是 [1]",
        },
        {
            "id": "zh-077",
            "split": "tune",
            "question": "<script>alert(1)</script> 哪天上线?",
            "answer": "The material does not cover this question.",
            "lang": "zh",
            "confidence": 0.31,
            "abstained": True,
            "expected": "2017 年 11 月 6 日",
        },
    ],
}


def test_the_page_is_one_escaped_file(tmp_path: Path) -> None:
    path = write_report(tmp_path / "out" / "report.html", REPORT)
    html = path.read_text(encoding="utf-8")
    assert "<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert not re.search(r'(?:src|href)="(?!data:)', html)  # nothing to fetch
    assert html.count("<svg") == 4  # support, lang_match and abstain_r bars; the reliability diagram
    assert html.count('<tr class="test">') == 4 and html.count('<tr class="tune">') == 4
    assert html.count("⚠") == 1 and "60.0% ⚠" in html
    assert "Misses (2)" in html and "2017 年 11 月 6 日" in html


def test_columns_flags_and_bucket_forms() -> None:
    rows = REPORT["rows"]
    assert metric_columns(rows)[:6] == [
        "support",
        "abstain_p",
        "abstain_r",
        "lang_match",
        "forbidden",
        "citation_validity",
    ]
    assert metric_columns(rows)[6:] == ["recall@1"]
    assert overfit(rows, rows[-1], "support") and not overfit(rows, rows[4], "support")
    worse = {**rows[4], "forbidden": 0.2}
    assert overfit([*rows[:4], worse], worse, "forbidden")  # lower is better there
    as_dataclass = EvalReport(
        rows=rows, reliability=[{"split": "all", "bucket": "0.8-1.0", "n": 5, "supported": 1}]
    )
    assert 'class="other"' in render_report(as_dataclass)  # a split with no colour of its own still draws
    assert "No misses." in render_report({"rows": []})


@pytest.mark.e2e
@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (make browser)"
)
def test_the_report_in_headless_chromium(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    path = write_report(tmp_path / "report.html", REPORT)
    ARTIFACTS.mkdir(exist_ok=True)
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("request", lambda r: problems.append(f"request {r.url}") if r.url != path.as_uri() else None)
        page.goto(path.as_uri())
        assert page.locator("#results tbody tr").count() == 8
        assert page.locator("#reliability rect").count() == 8  # empty buckets draw nothing
        assert page.locator("svg rect.test").count() > 0 and page.locator("#misses > li").count() == 2
        fill = page.eval_on_selector("svg rect.test", "r => getComputedStyle(r).fill")
        assert fill == "rgb(31, 79, 209)"  # the inline styles apply under the page's own CSP
        page.screenshot(path=ARTIFACTS / "eval-report.png", full_page=True)
        browser.close()
    assert not problems, problems
