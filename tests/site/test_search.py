"""The site's search box finds the chapter a reader is looking for."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.site.conftest import new_page

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
