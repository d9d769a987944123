"""The demo page and the docs page in headless Chromium, against the real app over HTTP.

Uses Debian's ``/usr/bin/chromium`` through Playwright (never ``playwright install``). Skipped when
the browser or Playwright is missing, except under CI, where that is a failure. Every request a
page makes is routed through a guard that lets loopback through and aborts (and records) anything
else, so the pages are shown to work with no internet.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlparse

import pytest

from tests.live_server import start_server

try:
    from playwright.sync_api import Browser, Page, Route, expect, sync_playwright
except ImportError:  # checked by the `browser` fixture
    sync_playwright = None

pytestmark = [pytest.mark.browser, pytest.mark.timeout(60)]

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
MAX_TEXT_CHARS = 300
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
HARRY = "Harry Potter and Hermione Granger invented a new spell"
INJECTION = "<img src=x onerror=alert(1)>"
MILLISECONDS = re.compile(r"^\d+ ms$")


def _require(available: bool, reason: str) -> None:
    if not available:
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (required under CI)")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def base_url(shipped_models_dir: Path) -> Iterator[str]:
    """A real ``tagserve serve`` with the shipped models on a free loopback port."""
    server = start_server(shipped_models_dir, max_text_chars=str(MAX_TEXT_CHARS))
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    _require(sync_playwright is not None, "playwright is not installed")
    _require(CHROMIUM.is_file(), f"{CHROMIUM} not found (apt-get install chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Tab:
    """A page plus what happened on it: every request, blocked ones, JS errors, dialogs."""

    page: Page
    base_url: str
    requests: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def open(self, path: str = "/") -> None:
        self.page.goto(self.base_url + path)

    def open_demo(self, path: str = "/") -> None:
        """Open the demo page and wait until it has listed the models (and tagged, if asked)."""
        self.open(path)
        expect(self.page.locator("body")).to_have_attribute("data-ready", "true")

    def assert_clean(self) -> None:
        assert self.blocked == [], "requests left loopback"
        assert self.errors == [], "uncaught JavaScript errors"
        assert self.dialogs == [], "dialogs fired"
        assert self.requests, "no request was recorded"
        for url in self.requests:
            parts = urlparse(url)
            assert parts.scheme in {"data", "blob"} or parts.hostname in LOOPBACK, url


@pytest.fixture
def tab(browser: Browser, base_url: str) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    context.set_default_timeout(10_000)
    page = context.new_page()
    tab = Tab(page, base_url)

    def guard(route: Route) -> None:
        url = route.request.url
        tab.requests.append(url)
        if urlparse(url).hostname in LOOPBACK:
            route.continue_()
        else:
            tab.blocked.append(url)
            route.abort()

    def on_dialog(dialog: Any) -> None:
        tab.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.route("**/*", guard)
    page.on("pageerror", lambda error: tab.errors.append(str(error)))
    page.on("dialog", on_dialog)
    try:
        yield tab
    finally:
        context.close()


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def entity_marks(page: Page) -> list[list[str]]:
    """``[label, text]`` of each highlight; the text node comes before the label badge."""
    marks = page.locator("#doc mark.entity")
    result: list[list[str]] = marks.evaluate_all(
        "els => els.map(e => [e.dataset.label, e.firstChild.textContent])"
    )
    return result


def shown_text(page: Page) -> str:
    """The highlighted document as a reader sees it, without the label badges."""
    text: str = page.locator("#doc").evaluate(
        "el => { const c = el.cloneNode(true);"
        " c.querySelectorAll('.label').forEach(l => l.remove()); return c.textContent; }"
    )
    return text


def test_ner_highlights_two_people(tab: Tab) -> None:
    """Uses the shipped, trained `ner` model."""
    page = tab.page
    tab.open_demo()
    page.get_by_label("Model", exact=True).select_option("ner")
    page.get_by_label("Text", exact=True).fill(HARRY)
    page.get_by_role("button", name="Tag", exact=True).click()

    marks = page.locator("#doc mark.entity")
    expect(marks).to_have_count(2)
    assert entity_marks(page) == [["PER", "Harry Potter"], ["PER", "Hermione Granger"]]
    expect(page.locator("#intent")).to_be_hidden()
    assert shown_text(page) == HARRY
    expect(page.locator("#tokens tbody tr")).to_have_count(9)
    expect(page.locator("#stats .elapsed")).to_have_text(MILLISECONDS)
    colours = marks.evaluate_all("els => els.map(e => getComputedStyle(e).backgroundColor)")
    assert colours[0] == colours[1] != "rgba(0, 0, 0, 0)"
    screenshot(page, "demo.png")
    tab.assert_clean()


def test_user_text_is_shown_as_text_not_html(tab: Tab) -> None:
    page = tab.page
    tab.open_demo()
    page.get_by_label("Text", exact=True).fill(INJECTION)
    page.get_by_role("button", name="Tag", exact=True).click()

    expect(page.locator("#output")).to_be_visible()
    expect(page.locator("#tokens tbody tr").first).to_be_visible()
    # Shown as text (label badges of any entity the model finds in it aside).
    assert shown_text(page) == INJECTION
    expect(page.locator("#doc")).to_contain_text("onerror=")
    assert page.locator("img").count() == 0
    page.wait_for_timeout(200)  # time for an injected onerror to fire, were there one
    tab.assert_clean()


def test_link_with_query_tags_on_load(tab: Tab) -> None:
    text = "🙂 Angela Merkel visited Paris & Berlin"  # emoji: code-point offsets, not UTF-16
    page = tab.page
    tab.open_demo(f"/?model=ner&text={quote(text)}")

    expect(page.locator("#output")).to_be_visible()
    expect(page.get_by_label("Text", exact=True)).to_have_value(text)
    expect(page.get_by_label("Model", exact=True)).to_have_value("ner")
    assert shown_text(page) == text
    expect(page.locator("#tokens tbody tr")).to_have_count(7)
    assert ["PER", "Angela Merkel"] in entity_marks(page)
    tab.assert_clean()


def test_keyboard_submit_with_slots_updates_the_url(tab: Tab) -> None:
    text = "show me flights from boston to denver on november second"
    page = tab.page
    tab.open_demo()
    options = page.get_by_label("Model", exact=True).locator("option").all_inner_texts()
    assert options == ["ner", "ner-fast", "slots"]  # every shipped model, in /models order
    page.get_by_label("Model", exact=True).select_option("slots")
    page.get_by_label("Text", exact=True).fill(text)
    page.get_by_label("Text", exact=True).press("Control+Enter")

    expect(page.locator("#doc mark.entity").first).to_be_visible()
    labels = [label for label, _ in entity_marks(page)]
    assert {"fromloc.city_name", "toloc.city_name"} <= set(labels)
    # The slots model has an intent head: its intent is shown above the highlighted slots.
    expect(page.locator("#intent .intent-label")).to_have_text("atis_flight")
    intent_box = page.locator("#intent").bounding_box()
    doc_box = page.locator("#doc").bounding_box()
    assert intent_box is not None and doc_box is not None and intent_box["y"] < doc_box["y"]
    assert parse_qs(urlparse(page.url).query) == {"model": ["slots"], "text": [text]}
    colours = page.locator("#doc mark.entity").evaluate_all(
        "els => Object.fromEntries(els.map("
        "e => [e.dataset.label, e.style.getPropertyValue('--label-colour')]))"
    )
    assert colours["fromloc.city_name"] != colours["toloc.city_name"]
    screenshot(page, "demo-slots.png")

    # The shared link reproduces the same highlights, colours included.
    tab.open_demo(urlparse(page.url)._replace(scheme="", netloc="").geturl())
    assert [label for label, _ in entity_marks(page)] == labels
    tab.assert_clean()


def test_over_long_text_shows_the_service_message(tab: Tab) -> None:
    text = "word " * (MAX_TEXT_CHARS // 5 + 1)
    page = tab.page
    tab.open_demo()
    page.get_by_label("Text", exact=True).fill(text)
    page.get_by_role("button", name="Tag", exact=True).click()

    response = page.request.post(f"{tab.base_url}/tag", data={"text": text, "model": "ner"})
    assert response.status == 422
    detail = response.json()["detail"]
    assert detail.startswith("text: ") and f"limit of {MAX_TEXT_CHARS}" in detail
    error = page.get_by_role("alert")
    expect(error).to_be_visible()
    expect(error).to_have_text(detail)
    expect(page.locator("#output")).to_be_hidden()
    screenshot(page, "demo-error.png")
    tab.assert_clean()


def test_docs_render_offline(tab: Tab) -> None:
    page = tab.page
    tab.open("/docs")

    tag_operation = page.locator(".opblock.opblock-post", has=page.locator("[data-path='/tag']"))
    expect(tag_operation).to_be_visible()
    for path in ("/models", "/health"):
        get = page.locator(".opblock.opblock-get", has=page.locator(f"[data-path='{path}']"))
        expect(get).to_be_visible()
    screenshot(page, "docs.png")
    assert any(url.endswith("/openapi.json") for url in tab.requests)
    tab.assert_clean()


def test_the_demo_page_asks_for_a_key_when_the_server_needs_one(
    browser: Browser, shipped_models_dir: Path
) -> None:
    server = start_server(shipped_models_dir, api_keys="demo-key", models='["ner"]')
    context = browser.new_context()
    context.set_default_timeout(10_000)
    page = context.new_page()
    prompts: list[str] = []

    def answer(dialog: Any) -> None:
        prompts.append(dialog.message)
        dialog.accept("demo-key")

    page.on("dialog", answer)
    page.route(
        "**/*",
        lambda route: (
            route.continue_() if urlparse(route.request.url).hostname in LOOPBACK else route.abort()
        ),
    )
    try:
        page.goto(server.url + "/")
        expect(page.locator("body")).to_have_attribute("data-ready", "true")
        page.get_by_label("Text", exact=True).fill(HARRY)
        page.get_by_role("button", name="Tag", exact=True).click()
        expect(page.locator("#doc mark.entity")).to_have_count(2)
        assert prompts == ["This tagserve server needs an API key:"]
        assert page.evaluate("sessionStorage.getItem('tagserve-api-key')") == "demo-key"
    finally:
        context.close()
        server.stop()
