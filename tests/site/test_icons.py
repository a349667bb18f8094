"""The theme's icons come from its webfont, cut down, and none is missing from the cut."""

from __future__ import annotations

import pytest
from fontTools.ttLib import TTFont

from tests.site.conftest import SITE, new_page

WEBFONTS = SITE / "_static" / "vendor" / "fontawesome" / "webfonts"
FONTS = {"900": "fa-solid-900.woff2", "400": "fa-regular-400.woff2"}
PAGES = ["index.html", "05-causal-attention.html", "search.html", "api/attention/attention.html"]

# Every icon the page draws from a FontAwesome font: the character of each
# ::before and ::after box set in one, with the weight that picks the font file.
ICONS = """() => [...document.querySelectorAll('*')].flatMap(e => ['::before', '::after'].map(p => {
    const s = getComputedStyle(e, p);
    const c = s.content.replace(/^"|"$/g, '');
    return s.fontFamily.includes('Font Awesome') && c && c !== 'none'
        ? [c.codePointAt(0), s.fontWeight, e.className] : null;
})).filter(Boolean)"""


def _cmap(name: str) -> set[int]:
    return set(TTFont(WEBFONTS / name).getBestCmap())


def test_the_solid_icon_font_is_cut_down():
    assert (WEBFONTS / FONTS["900"]).stat().st_size < 10_000
    assert len(_cmap(FONTS["900"])) < 60


@pytest.mark.parametrize("path", PAGES)
def test_every_icon_a_page_draws_is_in_its_font(browser, site_url, path):
    page = new_page(browser)
    try:
        page.goto(f"{site_url}/{path}", wait_until="networkidle")
        icons = page.evaluate(ICONS)
        assert page.locator("script[src*='fontawesome']").count() == 0
        assert page.locator("svg.svg-inline--fa").count() == 0
    finally:
        page.close()
    assert len(icons) >= 5, icons
    cmaps = {weight: _cmap(name) for weight, name in FONTS.items()}
    missing = [icon for icon in icons if icon[0] not in cmaps[icon[1]]]
    assert missing == []
