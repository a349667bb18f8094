"""Every page of the built site loads cleanly in a real browser."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page

from tests.site.conftest import SITE, site_pages

PAGES = site_pages()


def _open(browser: Browser, url: str) -> tuple[Page, dict[str, list[str]]]:
    """Open ``url`` and record everything that went wrong while it loaded."""
    page = browser.new_page()
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
    page, _ = _open(browser, f"{site_url}/{path}")
    try:
        page.wait_for_function(
            "() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=20_000
        )
        page.evaluate("() => MathJax.startup.promise")
        expected = page.locator(".math").count()
        assert expected > 0
        assert page.locator("mjx-container").count() >= expected
        assert page.locator("mjx-merror").count() == 0
        script = page.eval_on_selector("script[src*='tex-chtml']", "s => s.src")
        assert urlsplit(script).netloc == urlsplit(site_url).netloc
    finally:
        page.close()
