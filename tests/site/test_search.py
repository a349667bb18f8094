"""The site's search box finds the chapter a reader is looking for."""

from __future__ import annotations

import html
import re

import pytest
import snowballstemmer
from playwright.sync_api import expect
from snowballstemmer.english_stemmer import EnglishStemmer

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


def test_the_fast_stemmer_indexes_every_word_as_snowball_does():
    """The build stems the index's words with PyStemmer's C stemmer
    (requirements/dev.txt) where installed: it must give every word of the
    site the stem of the pure-Python Snowball stemmer it replaces."""
    words = set()
    for page in site_pages():
        text = re.sub(r"<[^>]+>", " ", (SITE / page).read_text(encoding="utf-8"))
        words |= set(re.findall(r"[a-z]+", html.unescape(text).lower()))
    assert len(words) > 5000, len(words)  # the chapters' whole vocabulary
    build = snowballstemmer.stemmer("english")  # what Sphinx's English indexer calls
    reference = EnglishStemmer()  # snowballstemmer's own, in Python
    differ = [w for w in sorted(words) if build.stemWord(w) != reference.stemWord(w)]
    assert not differ, differ[:20]
