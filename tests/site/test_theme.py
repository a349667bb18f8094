"""A page is drawn in the reader's colours from the start.

The theme's own script decides between light and dark only after the page
has been styled; until docs/_templates/layout.html settled the theme in the
head, a dark-mode reader's first visit styled the page light and the
navbar's buttons then faded to dark (CSS transitions). Every transition
that starts is an event, so this is checked by counting events, not by
timing anything.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser

from tests.site.conftest import new_context
from tests.site.modes import settle

PAGES = ["index.html", "03-self-attention-without-weights.html", "playground.html"]

# Record every transition that starts, and the theme when <body> first appears.
_RECORD = """
window.__transitions = [];
document.addEventListener("transitionrun", (e) => window.__transitions.push(
  `${e.propertyName} on ${e.target.className || e.target.tagName}`), true);
new MutationObserver((changes, observer) => {
  if (document.body) {
    window.__themeAtBody = document.documentElement.dataset.theme;
    observer.disconnect();
  }
}).observe(document, { childList: true, subtree: true });
"""

# (what the reader stored with the theme's switcher, the system's scheme, the theme to expect)
CASES = [
    (None, "dark", "dark"),
    (None, "light", "light"),
    ("auto", "dark", "dark"),
    ("dark", "light", "dark"),
    ("light", "dark", "light"),
]


@pytest.mark.parametrize(("stored", "system", "theme"), CASES)
@pytest.mark.parametrize("path", PAGES)
def test_no_colour_fades_in_while_a_page_loads(
    browser: Browser, site_url, path, stored, system, theme
):
    context = new_context(browser, color_scheme=system)
    if stored:
        context.add_init_script(f"localStorage.setItem('mode', '{stored}')")
    context.add_init_script(_RECORD)
    page = context.new_page()
    try:
        page.goto(f"{site_url}/{path}", wait_until="load")
        settle(page)
        assert page.evaluate("window.__themeAtBody") == theme
        assert page.evaluate("document.documentElement.dataset.theme") == theme
        assert page.evaluate("window.__transitions") == []
    finally:
        context.close()
