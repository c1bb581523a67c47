"""The widget end to end in headless Chromium (Debian's package) against uvicorn on 127.0.0.1.

Every page here is served with the demo's strict CSP; a fixture fails any test that logged a CSP violation.
Screenshots land in test-artifacts/ for a human to look at.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from kb.config import Settings
from service.widget.tokens import WidgetTokens
from tests.conftest import ROOT
from tests.service.support import UNANSWERABLE, serve

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = ROOT / "test-artifacts"
WIDGET = "kbq-widget"
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (make browser)"
    ),
]
HOSTILE = """<!doctype html><html lang="en"><head><title>hostile</title><style>
* { color: red !important; font-size: 40px !important; display: block; line-height: 3 !important;
    font-family: serif !important; letter-spacing: 4px !important; box-sizing: content-box !important;
    margin: 7px !important; padding: 9px !important; background: yellow !important; }
html { font-size: 40px !important; --accent: hotpink; --ink: lime; }
kbq-widget, div, section { transform: rotate(4deg) !important; opacity: 0.4 !important; display: none !important;
    filter: blur(2px) !important; position: static !important; }
button, textarea { border: 6px dotted purple !important; width: 30px !important; border-radius: 0 !important; }
</style></head><body><h1>Hostile wiki</h1><script src="/widget.js"></script></body></html>"""
STYLE_PROPS = [
    "color",
    "font-size",
    "font-family",
    "line-height",
    "letter-spacing",
    "display",
    "width",
    "height",
    "background-color",
    "border-top-width",
    "border-top-style",
    "padding-top",
    "opacity",
    "transform",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def site(private_settings: Settings) -> Iterator[str]:
    with serve(private_settings) as url:
        yield url


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page whose CSP violations and script errors fail the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.add_init_script(
        "window.__csp = []; document.addEventListener('securitypolicyviolation', "
        "e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"
    )
    problems: list[str] = []
    context.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
    context.on("weberror", lambda e: problems.append(str(e.error)))
    new = context.new_page()
    yield new
    for p in context.pages:
        if not p.is_closed():
            problems.extend(p.evaluate("window.__csp || []"))
    context.close()
    assert not problems, problems


def shadow(page: Any, script: str) -> Any:
    """Evaluate ``script`` (a function of the widget's shadow root) in the page."""
    return page.evaluate(
        f"(() => {{ const root = document.querySelector('{WIDGET}').shadowRoot; return ({script})(root); }})()"
    )


def ask(page: Any, question: str, nth: int = 0) -> Any:
    page.locator(f"{WIDGET} textarea").fill(question)
    page.keyboard.press("Enter")
    exchange = page.locator(f"{WIDGET} .qa.done").nth(nth)
    exchange.wait_for(timeout=20_000)
    return exchange


def open_widget(page: Any, url: str) -> None:
    page.goto(url)
    page.locator(f"{WIDGET} .launcher").click()
    page.locator(f"{WIDGET} textarea").wait_for()


def in_viewport(page: Any, selector: str) -> bool:
    return page.evaluate(
        "sel => { const r = document.querySelector(sel).getBoundingClientRect();"
        " return r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight; }",
        selector,
    )


def test_answer_streams_with_citations_that_open_the_marked_quote(site: str, page: Any) -> None:
    open_widget(page, site + "/")
    exchange = ask(page, "which regions have C5")
    answer = exchange.locator(".a")
    assert "US East" in answer.locator(".text").inner_text()
    markers = answer.locator(".text sup a")
    assert markers.count() >= 1 and markers.first.inner_text() == "[1]"
    assert "/docs/" in markers.first.get_attribute("href") and markers.first.get_attribute("href").endswith(
        "#kbq-quote"
    )
    sources = answer.locator(".sources li")
    assert answer.locator(".sources h3").inner_text().lower() == "sources" and sources.count() >= 1
    meta = sources.first.locator(".meta").inner_text()
    assert "FAQ" in meta and "2017" in meta and "official source" in meta
    assert answer.locator(".lang-tag").inner_text() == "EN"
    assert answer.get_attribute("aria-busy") == "false" and not answer.evaluate(
        "a => a.classList.contains('abstain')"
    )
    assert "US East" in shadow(page, "root => root.querySelector('[aria-live]').textContent")
    answer.locator(".vote.up").click()
    page.locator(f"{WIDGET} .feedback [role=status]").filter(has_text="Thanks").wait_for()
    page.screenshot(path=ARTIFACTS / "widget-answer.png")

    with page.context.expect_page() as opened:
        markers.first.click()
    source = opened.value
    source.wait_for_load_state()
    quote = source.locator("mark#kbq-quote")
    cited = sources.first.locator(".quote").text_content()  # [1]'s quote, as the sources list shows it
    assert quote.is_visible() and " ".join(quote.inner_text().split()) == " ".join(cited.split())
    assert in_viewport(source, "mark#kbq-quote")
    source.screenshot(path=ARTIFACTS / "widget-source-view.png")


def test_an_abstention_looks_different_from_an_answer(site: str, page: Any) -> None:
    open_widget(page, site + "/")
    answered = ask(page, "which regions have C5").locator(".a")
    abstained = ask(page, UNANSWERABLE, nth=1).locator(".a")
    assert abstained.evaluate("a => a.classList.contains('abstain')")
    assert abstained.locator(".badge").inner_text() == "Not covered"
    assert "does not cover" in abstained.locator(".text").inner_text()
    assert abstained.locator(".text sup").count() == 0
    assert abstained.locator(".sources h3").inner_text().lower() == "nearest passages (not an answer)"

    def look(locator: Any) -> tuple[str, str]:
        return locator.evaluate(
            "a => { const s = getComputedStyle(a); return [s.borderTopStyle, s.backgroundColor]; }"
        )

    assert look(answered)[0] == "solid" and look(abstained)[0] == "dashed"
    assert look(answered)[1] != look(abstained)[1]
    page.screenshot(path=ARTIFACTS / "widget-abstention.png")


def _focused(page: Any) -> str:
    """Which part of the page has focus: 'launcher', 'question', 'send', another class, or a page tag."""
    return page.evaluate(
        "(() => { const a = document.activeElement; if (!a || a.tagName !== 'KBQ-WIDGET') return a && a.tagName;"
        " const f = a.shadowRoot.activeElement; return f ? (f.id === 'kbq-question' ? 'question' : f.className) : '';"
        " })()"
    )


def test_a_question_can_be_asked_with_the_keyboard_alone(site: str, page: Any) -> None:
    page.goto(site + "/")
    for _ in range(80):
        page.keyboard.press("Tab")
        if _focused(page) == "launcher":
            break
    assert _focused(page) == "launcher", "Tab never reached the widget's launcher"
    outline = shadow(page, "root => getComputedStyle(root.querySelector('.launcher')).outlineStyle")
    assert outline == "solid"  # a visible focus ring
    page.keyboard.press("Enter")
    assert _focused(page) == "question"
    assert shadow(page, "root => root.querySelector('.launcher').getAttribute('aria-expanded')") == "true"
    page.keyboard.type("Why did AWS move from Xen to KVM?")
    page.keyboard.press("Enter")
    page.locator(f"{WIDGET} .qa.done").wait_for(timeout=20_000)
    assert _focused(page) == "question"
    page.keyboard.press("Tab")
    assert _focused(page) == "send"
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")  # back past the question into the conversation: the last vote button
    assert "vote" in _focused(page)
    page.screenshot(path=ARTIFACTS / "widget-keyboard.png")
    page.keyboard.press("Escape")
    assert _focused(page) == "launcher"
    assert shadow(page, "root => root.querySelector('.panel').hidden") is True


def _widget_styles(page: Any) -> Any:
    page.mouse.move(5, 400)  # no hover on the launcher
    selectors = [".kbq", ".launcher", ".panel", ".head h2", ".log", ".empty", ".example", "textarea", ".send"]
    return shadow(
        page,
        "root => " + repr(selectors) + ".map(sel => { const s = getComputedStyle(root.querySelector(sel));"
        " return [sel, " + repr(STYLE_PROPS) + ".map(p => s.getPropertyValue(p))]; })"
        ".concat([['host', [getComputedStyle(root.host).transform, getComputedStyle(root.host).opacity,"
        " getComputedStyle(root.host).display]]])",
    )


def _panel_pixels(page: Any) -> bytes:
    box = page.locator(f"{WIDGET} .panel").bounding_box()
    inset = {"x": box["x"] + 14, "y": box["y"] + 14, "width": box["width"] - 28, "height": box["height"] - 28}
    return page.screenshot(clip=inset)


def test_hostile_page_css_does_not_change_the_widget(site: str, page: Any) -> None:
    page.route(
        site + "/hostile", lambda route: route.fulfill(status=200, content_type="text/html", body=HOSTILE)
    )
    page.emulate_media(reduced_motion="reduce")  # no transitions caught half-way
    open_widget(page, site + "/")
    normal, normal_pixels = _widget_styles(page), _panel_pixels(page)
    page.locator(f"{WIDGET} .panel").screenshot(path=ARTIFACTS / "widget-normal-page.png")
    open_widget(page, site + "/hostile")
    assert page.evaluate("getComputedStyle(document.querySelector('h1')).color") == "rgb(255, 0, 0)"
    hostile = _widget_styles(page)
    assert hostile == normal
    page.screenshot(path=ARTIFACTS / "widget-hostile-page.png")
    assert _panel_pixels(page) == normal_pixels


def test_network_errors_and_429_offer_a_retry(site: str, page: Any) -> None:
    open_widget(page, site + "/")
    page.route("**/v1/ask/stream", lambda route: route.abort())
    page.locator(f"{WIDGET} textarea").fill("which regions have C5")
    page.keyboard.press("Enter")
    failed = page.locator(f"{WIDGET} .a.failed")
    failed.wait_for()
    assert "could not be reached" in failed.inner_text()
    page.unroute("**/v1/ask/stream")
    busy = '{"error": {"code": "rate_limited", "message": "too many requests; try again in 3 s"}}'
    page.route(
        "**/v1/ask/stream",
        lambda route: route.fulfill(status=429, body=busy, content_type="application/json"),
    )
    failed.locator(".retry").click()
    page.locator(f"{WIDGET} .a.failed").filter(has_text="Please wait a moment").wait_for()
    page.screenshot(path=ARTIFACTS / "widget-rate-limited.png")
    page.unroute("**/v1/ask/stream")
    page.locator(f"{WIDGET} .retry").click()
    page.locator(f"{WIDGET} .qa.done").wait_for(timeout=20_000)
    assert page.locator(f"{WIDGET} .qa").count() == 1  # the retry replaced the failed exchange


def test_the_chinese_page_gets_chinese_ui_strings(site: str, page: Any) -> None:
    open_widget(page, site + "/zh")
    assert page.locator(f"{WIDGET} .launcher").inner_text() == "问 kbq"
    ask(page, "C5 在哪些区域可用?")
    assert page.locator(f"{WIDGET} .sources h3").first.inner_text() == "来源"
    page.screenshot(path=ARTIFACTS / "widget-zh.png")


def _asked_bodies(page: Any) -> list[dict]:
    bodies: list[dict] = []
    page.on(
        "request", lambda r: bodies.append(r.post_data_json) if r.url.endswith("/v1/ask/stream") else None
    )
    return bodies


def test_the_answer_comes_in_the_pages_language_and_says_which(site: str, page: Any) -> None:
    bodies = _asked_bodies(page)
    open_widget(page, site + "/zh")
    answer = ask(page, "Which regions had C5 at launch?").locator(".a")
    assert bodies[-1]["lang"] == "zh" and bodies[-1]["client"] == "widget"
    tag = answer.locator(".lang-tag")
    assert tag.inner_text() == "中文" and tag.get_attribute("aria-label") == "回答语言: 中文"
    assert answer.locator(".text").get_attribute("lang") == "zh"
    open_widget(page, site + "/")
    ask(page, "C5 在哪些区域可用?")
    assert bodies[-1]["lang"] == "en"
    assert page.locator(f"{WIDGET} .lang-tag").first.inner_text() == "EN"
    page.screenshot(path=ARTIFACTS / "widget-answer-language.png")


def _sse(*events: tuple[str, dict]) -> str:
    return "".join(
        f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n" for name, data in events
    )


def _cited(n: int, source: str, label: str, corrects: dict | None = None) -> dict:
    return {
        "n": n, "chunk_id": f"c{n}", "doc_id": "faq/c5-migration.en", "source": source, "title": f"Title {n}",
        "section": "", "url": None, "author": None, "date": "2017-11-06", "lang": "en", "quote": f"quote {n}",
        "start": 0, "end": 5, "score": 0.5, "community": label != "official", "label": label, "corrects": corrects,
    }  # fmt: skip


def test_sources_are_labelled_official_community_or_correction(site: str, page: Any) -> None:
    wrong = {"chunk_id": "c0", "author": "alice", "url": "https://www.reddit.com/r/aws/comments/x/y/c0/"}
    stream = _sse(
        ("meta", {"id": "x1", "question": "q", "lang": "en"}),
        ("citation", _cited(1, "faq", "official")),
        ("citation", _cited(2, "thread", "community")),
        ("citation", _cited(3, "thread", "correction", wrong)),
        ("citation", _cited(4, "thread", "correction", {**wrong, "url": None})),
        ("delta", {"text": "An answer [1][2][3][4]."}),
        ("done", {"id": "x1", "confidence": 0.9, "abstained": False}),
    )
    page.route("**/v1/ask/stream", lambda route: route.fulfill(body=stream, content_type="text/event-stream"))
    bare = '<!doctype html><html><body><script src="/widget.js"></script></body></html>'  # no language
    page.route(site + "/bare", lambda route: route.fulfill(body=bare, content_type="text/html"))
    bodies = _asked_bodies(page)
    open_widget(page, site + "/bare")
    sources = ask(page, "which regions?").locator(".sources li")
    assert "lang" not in bodies[-1]  # no page language: kb answers in the question's
    trust = [sources.nth(i).locator(".trust").inner_text() for i in range(4)]
    assert trust == [
        "official source",
        "community report",
        "community correction (corrects alice’s comment)",
        "community correction (corrects alice’s comment)",
    ]
    link = sources.nth(2).locator(".trust a")
    assert link.get_attribute("href") == wrong["url"] and link.get_attribute("rel") == "noopener"
    assert sources.nth(3).locator(".trust a").count() == 0
    page.screenshot(path=ARTIFACTS / "widget-source-labels.png")


def test_the_question_box_takes_the_services_limit(private_settings: Settings, page: Any) -> None:
    with serve(replace(private_settings, max_question_chars=120)) as url:
        open_widget(page, url + "/")
        assert shadow(page, "root => root.querySelector('textarea').maxLength") == 120


def serve_as_own_origin(make: Callable[[str], Settings]):  # type: ignore[no-untyped-def]
    """Like ``serve``, but the settings may name the server's own URL (for a token bound to its origin)."""
    return serve(make)


def test_with_api_keys_the_browser_uses_only_the_signed_token(private_settings: Settings, page: Any) -> None:
    def keyed(url: str) -> Settings:
        return replace(
            private_settings,
            api_keys=("server-side-key",),
            cors_origins=(url,),
            public_url=url,
            widget_secret="w",
        )

    with serve_as_own_origin(keyed) as url:
        open_widget(page, url + "/")
        assert "server-side-key" not in page.content()
        ask(page, "which regions have C5")
        link = page.locator(f"{WIDGET} .sources a").first
        assert "t=kbqw1." in link.get_attribute("href")
        with page.context.expect_page() as opened:
            link.click()
        assert opened.value.locator("mark#kbq-quote").is_visible()

        # A wiki page whose token has expired: the widget fetches a new one from the wiki's token endpoint.
        tokens = WidgetTokens(b"w", frozenset({url}))
        stale = tokens.issue(url, now=time.time() - 3600)
        wiki = f'<!doctype html><html lang="en"><body><script src="/widget.js" data-kbq-token="{stale}" '
        wiki += 'data-kbq-token-endpoint="/wiki/kbq-token"></script></body></html>'
        fresh = json.dumps({"token": tokens.issue(url), "expires_in": tokens.ttl})
        page.route(url + "/wiki", lambda route: route.fulfill(body=wiki, content_type="text/html"))
        page.route(
            url + "/wiki/kbq-token", lambda route: route.fulfill(body=fresh, content_type="application/json")
        )
        open_widget(page, url + "/wiki")
        ask(page, "which regions have C5")
        assert page.locator(f"{WIDGET} .a.failed").count() == 0
