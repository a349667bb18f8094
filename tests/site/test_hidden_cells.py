"""A cell whose input is hidden (an exercise's checked solution) opens and closes.

docs/_ext/site_quality.py writes the toggle with spans instead of myst-nb's
paragraphs (which make the HTML invalid), and attention-site.css carries
myst-nb's rules over to them: one label shows at a time, and the code shows
only when the reader opens the toggle.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.site.modes import MODES, open_in_mode, settle

PAGE = "05-causal-attention.html"


@pytest.mark.parametrize("mode", MODES)
def test_a_hidden_solution_opens_on_request(browser, site_url, mode) -> None:
    page = open_in_mode(browser, f"{site_url}/{PAGE}", mode)
    try:
        toggle = page.locator("div.cell details.hide").last
        summary = toggle.locator("summary")
        code = toggle.locator("div.cell_input, div.highlight").first
        expect(summary.locator("span.collapsed")).to_be_visible()
        expect(summary.locator("span.expanded")).to_be_hidden()
        expect(code).to_be_hidden()
        assert summary.locator("p").count() == 0  # spans, which a summary may hold

        summary.click()
        settle(page)
        expect(toggle).to_have_attribute("open", "")
        expect(summary.locator("span.expanded")).to_be_visible()
        expect(summary.locator("span.collapsed")).to_be_hidden()
        expect(code).to_be_visible()
        expect(code).to_contain_text("def my_causal_mask")
    finally:
        page.close()
