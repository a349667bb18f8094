"""A chapter prints well: just the article, across the paper, in dark ink.

The layout is checked with print media emulated; the PDF that chromium
prints is written to ``tests/site/artifacts/print/`` and its page count
checked against the length of the chapter.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page

from tests.site.modes import MODES, Mode, open_in_mode, settle

ARTIFACTS = Path(__file__).parent / "artifacts" / "print"
CHAPTER = "03-self-attention-without-weights.html"
PLAYGROUND = "playground.html"
CHROME = [
    ".bd-header",
    ".bd-sidebar-primary",
    ".bd-sidebar-secondary",
    ".bd-header-article",
    ".prev-next-area",
    ".search-button-field",
    "#pst-back-to-top",
    "button.copybtn",
]
# An A4 page at Chromium's default margins is 718 CSS pixels wide.
A4_WIDTH = 718

_VISIBLE = "e => e.checkVisibility()"
_LUMINANCE = """(e) => {
  const [r, g, b] = getComputedStyle(e).color.match(/[\\d.]+/g).map(Number)
    .map((c) => ((c /= 255) <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4));
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}"""


def _print(page: Page) -> None:
    """What a browser does when the reader prints: the event, then print media.

    Printing switches the theme to light; the page is settled again before
    anything is measured.
    """
    page.evaluate("dispatchEvent(new Event('beforeprint'))")
    page.emulate_media(media="print")
    page.set_viewport_size({"width": A4_WIDTH, "height": 1000})
    settle(page)


def pdf_pages(pdf: bytes) -> int:
    """The number of pages of a PDF as chromium writes it (page objects are plain)."""
    return len(re.findall(rb"/Type\s*/Page\b(?!s)", pdf))


@pytest.mark.parametrize("mode", MODES)
def test_only_the_article_prints_across_the_page(browser, site_url, mode: Mode):
    page = open_in_mode(browser, f"{site_url}/{CHAPTER}", mode)
    try:
        _print(page)
        for selector in CHROME:
            shown = [e.evaluate(_VISIBLE) for e in page.query_selector_all(selector)]
            assert not any(shown), f"{selector} prints"
        article = page.locator("article.bd-article").bounding_box()
        assert article is not None
        assert article["width"] >= A4_WIDTH - 2, article
        text = page.locator("article.bd-article p").first
        assert text.evaluate(_LUMINANCE) < 0.05, "body text is not dark on paper"
        assert page.evaluate("document.documentElement.dataset.theme") == "light"
        page.evaluate("dispatchEvent(new Event('afterprint'))")
        assert page.evaluate("document.documentElement.dataset.theme") == mode
    finally:
        page.context.close()


def test_code_wraps_instead_of_being_cut(browser, site_url):
    page = open_in_mode(browser, f"{site_url}/{CHAPTER}", "light")
    try:
        _print(page)
        cut = page.eval_on_selector_all(
            ".bd-article pre",
            "pres => pres.filter(p => p.scrollWidth > p.clientWidth + 1).length",
        )
        assert page.locator(".bd-article pre").count() > 10
        assert cut == 0
    finally:
        page.context.close()


def test_interactive_figures_print_their_state_without_buttons(browser, site_url):
    page = open_in_mode(browser, f"{site_url}/{CHAPTER}", "light")
    try:
        _print(page)
        widget = ".attn-widget[data-attn-kind='steps']"
        assert page.locator(f"{widget} .attn-step-title").evaluate(_VISIBLE)
        assert page.locator(f"{widget} table").evaluate(_VISIBLE)
        for selector in (".attn-step-tabs", ".attn-button", ".attn-readout"):
            shown = page.eval_on_selector_all(
                f".attn-widget {selector}", "es => es.filter(e => e.checkVisibility()).length"
            )
            assert shown == 0, f"{selector} prints"
        adjust = page.locator(".attn-grid td").first.evaluate(
            "e => getComputedStyle(e).printColorAdjust"
        )
        assert adjust == "exact"
    finally:
        page.context.close()


@pytest.mark.parametrize("mode", MODES)
def test_the_chapter_prints_to_a_sane_number_of_pages(browser, site_url, mode: Mode):
    page = open_in_mode(browser, f"{site_url}/{CHAPTER}", mode)
    try:
        page.emulate_media(media="print")
        pdf = page.pdf(format="A4")
        # page.pdf fires beforeprint and afterprint, like a reader's print.
        assert page.evaluate("document.documentElement.dataset.theme") == mode
        words = page.locator("article.bd-article").inner_text().split()
    finally:
        page.context.close()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"{Path(CHAPTER).stem}-{mode}.pdf").write_bytes(pdf)
    pages = pdf_pages(pdf)
    # Prose, code and figures: between 150 and 700 words a page.
    assert len(words) / 700 <= pages <= len(words) / 150, (pages, len(words))


def test_the_playground_prints_its_numbers_without_buttons(browser, site_url):
    page = open_in_mode(browser, f"{site_url}/{PLAYGROUND}", "light")
    try:
        _print(page)
        buttons = page.eval_on_selector_all(
            ".attn-pg button", "bs => bs.filter(b => b.checkVisibility()).length"
        )
        tables = page.eval_on_selector_all(
            ".attn-pg table", "ts => ts.filter(t => t.checkVisibility()).length"
        )
        assert page.locator(".attn-pg button").count() > 0
        assert buttons == 0
        assert tables > 3
    finally:
        page.context.close()
