"""Every page is light and offline: what a first visit downloads, and from where.

A page's first-load weight is the bytes of every response the browser gets
while opening it with an empty cache: the HTML, scripts, stylesheets, fonts
and anything else, except the chapter's own images (Sphinx copies every
figure and notebook image to ``_images/``). Run with ``pytest -s`` to see the
table of weights.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Request

from tests.site.conftest import SITE, new_context, new_page, site_pages

PAGES = site_pages()
KB = 1000
MEDIAN_LIMIT = 1000 * KB
CHAPTER_IMAGES = "/_images/"


@dataclass
class PageLoad:
    """What the browser fetched while a page loaded for the first time."""

    urls: list[str] = field(default_factory=list)  # every request, in order
    sizes: dict[str, int] = field(default_factory=dict)  # body bytes per counted URL

    @property
    def weight(self) -> int:
        """Bytes of every response except the chapter's own images."""
        return sum(self.sizes.values())


def site_path(url: str, site_url: str) -> str:
    """The path of ``url`` inside the site, from ``/``, wherever the site is served."""
    return urlsplit(url).path.removeprefix(urlsplit(site_url).path)


def first_load(browser: Browser, site_url: str, path: str) -> PageLoad:
    """Open page ``path`` in a fresh browser context (empty cache); record its requests."""
    load = PageLoad()
    context = new_context(browser)
    page = context.new_page()

    def finished(request: Request) -> None:
        if not site_path(request.url, site_url).startswith(CHAPTER_IMAGES):
            load.sizes[request.url] = request.sizes()["responseBodySize"]

    page.on("request", lambda request: load.urls.append(request.url))
    page.on("requestfinished", finished)
    try:
        page.goto(f"{site_url}/{path}", wait_until="networkidle")
    finally:
        context.close()
    return load


def weight_table(weights: dict[str, int]) -> str:
    """Pages and their weights in KB, heaviest first."""
    rows = sorted(weights.items(), key=lambda item: -item[1])
    return "\n".join(f"{weight / KB:8.0f} KB  {path}" for path, weight in rows)


@pytest.fixture(scope="module")
def loads(browser: Browser, site_url: str) -> dict[str, PageLoad]:
    """Every page of the site, loaded once with an empty cache."""
    return {path: first_load(browser, site_url, path) for path in PAGES}


def test_the_median_page_weighs_at_most_1000_kb(loads):
    assert len(loads) > 10
    weights = {path: load.weight for path, load in loads.items()}
    median = statistics.median(weights.values())
    print(f"\nfirst-load weight (no chapter images), median {median / KB:.0f} KB:")
    print(weight_table(weights))
    heaviest = weight_table(dict(sorted(weights.items(), key=lambda item: -item[1])[:5]))
    assert median <= MEDIAN_LIMIT, f"median {median / KB:.0f} KB; heaviest:\n{heaviest}"


def test_each_weight_counts_the_page_and_its_theme(loads, site_url):
    for path, load in loads.items():
        counted = {site_path(url, site_url) for url in load.sizes}
        assert f"/{path}" in counted, path
        assert not any(p.startswith(CHAPTER_IMAGES) for p in counted), path
        assert any(p.endswith(".css") for p in counted), path
        assert any(p.endswith(".js") for p in counted), path


def test_no_page_requests_anything_from_another_host(loads, site_url):
    host = urlsplit(site_url).netloc
    foreign = {
        path: [
            url
            for url in load.urls
            if urlsplit(url).scheme != "data" and urlsplit(url).netloc != host
        ]
        for path, load in loads.items()
    }
    assert {path: urls for path, urls in foreign.items() if urls} == {}
    assert all(load.urls for load in loads.values())


def test_no_page_loads_fontawesome_and_only_search_loads_the_index(loads):
    for path, load in loads.items():
        files = {urlsplit(url).path.rsplit("/", 1)[-1] for url in load.sizes}
        assert "fontawesome.js" not in files, path
        assert ("searchindex.js" in files) == (path == "search.html"), path


def test_the_search_page_still_finds_chapters(browser, site_url):
    page = new_page(browser)
    try:
        page.goto(f"{site_url}/search.html?q=softmax", wait_until="networkidle")
        page.wait_for_selector("ul.search li")
        found = page.locator("ul.search li a").all_text_contents()
    finally:
        page.close()
    assert any("Self-attention" in title for title in found), found


def test_figures_are_svg_with_a_size_or_sized_png():
    figures = sorted((SITE / "_images").iterdir())
    assert figures
    pages = "".join((SITE / path).read_text(encoding="utf-8") for path in PAGES)
    for figure in figures:
        if figure.suffix == ".svg":
            root = re.search(r"<svg\b[^>]*>", figure.read_text(encoding="utf-8"))
            assert root, figure.name
            assert all(f"{a}=" in root[0] for a in ("width", "height", "viewBox")), figure.name
        else:
            assert figure.suffix == ".png", figure.name
            tags = re.findall(rf"<img\b[^>]*{re.escape(figure.name)}[^>]*>", pages)
            assert tags, figure.name
            assert all("width=" in tag and "height=" in tag for tag in tags), figure.name
