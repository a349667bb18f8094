"""The site's search box finds the chapter a reader is looking for."""

from __future__ import annotations

import html
import re

import pytest
from playwright.sync_api import expect
from sphinx.search.en import SearchEnglish

from tests.site.conftest import SITE, new_page, site_pages

# A query a reader might type, and the page title of the chapter it should find.
QUERIES = [
    ("causal mask", "05-causal-attention.html", "5. Causal attention"),
    ("layer normalisation", "10-layer-normalisation.html", "10. Layer normalisation"),
    ("online softmax", "13-attention-at-scale.html", "13. Attention at scale"),
    ("models today", "14-attention-in-todays-models.html", "14. Attention in today’s models"),
]


@pytest.mark.parametrize(("query", "page", "title"), QUERIES)
def test_search_box_finds_the_chapter(browser, site_url, query, page, title):
    tab = new_page(browser)
    try:
        tab.goto(f"{site_url}/index.html")
        tab.locator("button.search-button__button").first.click()
        box = tab.locator("#pst-search-dialog input[name='q']")
        expect(box).to_be_focused()
        box.press_sequentially(query)
        box.press("Enter")
        tab.wait_for_url("**/search.html?q=*")
        summary = tab.locator("#search-results .search-summary")
        expect(summary).to_contain_text("Search finished")
        results = tab.locator("#search-results ul.search li > a")
        found = {
            link.get_attribute("href").split("#")[0].split("?")[0]: link.inner_text()
            for link in results.all()
        }
        assert found.get(page) == title, found
    finally:
        tab.close()


def test_the_index_and_the_search_box_stem_every_word_alike(browser, site_url):
    """The build stems the index's words in Python (PyStemmer, else
    snowballstemmer: requirements/dev.txt pins both); the search page stems
    the reader's query in JavaScript. A word of the site that the two stem
    differently could not be found by typing it."""
    words = set()
    for page in site_pages():
        text = re.sub(r"<[^>]+>", " ", (SITE / page).read_text(encoding="utf-8"))
        words |= set(re.findall(r"[a-z]+", html.unescape(text).lower()))
    assert len(words) > 5000, len(words)  # the site's whole vocabulary
    ordered = sorted(words)
    build = SearchEnglish({})  # the language the build's index uses
    tab = new_page(browser)
    try:
        tab.goto(f"{site_url}/search.html")
        typed = tab.evaluate(
            "words => { const s = new Stemmer(); return words.map(w => s.stemWord(w)); }", ordered
        )
    finally:
        tab.close()
    indexed = [build.stem(w) for w in ordered]
    differ = [(w, i, t) for w, i, t in zip(ordered, indexed, typed, strict=True) if i != t]
    assert not differ, differ[:20]  # (word, stem in the index, stem of the query)
