"""Every page of the built site loads cleanly in a real browser."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page

from tests.site.conftest import SITE, new_page, site_pages

PAGES = site_pages()


def _open(browser: Browser, url: str) -> tuple[Page, dict[str, list[str]]]:
    """Open ``url`` and record everything that went wrong while it loaded."""
    page = new_page(browser)
    problems: dict[str, list[str]] = {"console": [], "errors": [], "failed": [], "foreign": []}
    host = urlsplit(url).netloc
    page.on(
        "console",
        lambda m: (
            problems["console"].append(f"{m.type}: {m.text}")
            if m.type in ("error", "warning")
            else None
        ),
    )
    page.on("pageerror", lambda e: problems["errors"].append(str(e)))
    page.on("requestfailed", lambda r: problems["failed"].append(f"{r.url} ({r.failure})"))
    page.on(
        "response",
        lambda r: (
            problems["failed"].append(f"{r.url} (HTTP {r.status})") if r.status >= 400 else None
        ),
    )
    page.on(
        "request",
        lambda r: (
            problems["foreign"].append(r.url)
            if urlsplit(r.url).scheme in ("http", "https") and urlsplit(r.url).netloc != host
            else None
        ),
    )
    page.goto(url, wait_until="networkidle")
    return page, problems


def test_the_site_has_its_pages():
    assert "index.html" in PAGES
    assert "03-self-attention-without-weights.html" in PAGES
    assert any(p.startswith("api/") for p in PAGES)


@pytest.mark.parametrize("path", PAGES)
def test_page_loads_without_errors_or_foreign_requests(browser, site_url, path):
    page, problems = _open(browser, f"{site_url}/{path}")
    try:
        assert problems == {"console": [], "errors": [], "failed": [], "foreign": []}
        assert page.title()
    finally:
        page.close()


@pytest.mark.parametrize("path", PAGES)
def test_every_image_loads(browser, site_url, path):
    page, _ = _open(browser, f"{site_url}/{path}")
    try:
        broken = page.eval_on_selector_all(
            "img", "imgs => imgs.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)"
        )
        assert broken == []
    finally:
        page.close()


MATH_PAGES = [p for p in PAGES if 'class="math' in (SITE / p).read_text(encoding="utf-8")]


def test_there_is_math_to_render():
    assert "03-self-attention-without-weights.html" in MATH_PAGES


@pytest.mark.parametrize("path", MATH_PAGES)
def test_math_renders(browser, site_url, path):
    """Every formula is MathML drawn in the site's maths font, its TeX kept for
    readers and no maths script loaded."""
    page, _ = _open(browser, f"{site_url}/{path}")
    try:
        spans = page.locator(".math").count()
        assert spans > 0
        assert page.locator(".math > math").count() == spans
        assert page.locator(".math-error").count() == 0
        tex = page.locator("math annotation[encoding='application/x-tex']")
        assert tex.count() == spans
        assert all(t.strip() for t in tex.all_text_contents())
        # Formulas inside closed solutions are not drawn; every other one has a size.
        sizes = page.locator(".math > math").evaluate_all(
            "ms => ms.filter(m => m.checkVisibility())"
            ".map(m => m.getBoundingClientRect()).map(r => [r.width, r.height])"
        )
        assert sizes
        assert all(w > 0 and h > 0 for w, h in sizes)
        assert page.evaluate(
            "[...document.fonts].some(f => f.family.includes('Attention Math')"
            " && f.status === 'loaded')"
        )
        assert page.locator("script[src*='mathjax'], script[src*='tex-']").count() == 0
    finally:
        page.close()
