"""The theme's icons from a webfont cut down to the icons the site shows.

pydata-sphinx-theme draws its icons (menu, search, dark mode, download,
previous and next, admonitions) with FontAwesome. Its 1.5 MB script, which
turns ``<i class="fa-solid fa-bars">`` into inline SVG, is left out of every
page (``docs/_templates/layout.html``); the theme's stylesheet then draws the
same icons from FontAwesome's solid webfont (115 KB). This extension replaces
that font in the built site with a cut holding only the icons in use: those
named by an ``fa-*`` class in a page or in the theme's scripts, and those the
theme's stylesheets spell out themselves. ``icons.css`` mends the one place
where the theme's rules for the webfont's icons differ from those for the SVG.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from font_subset import subset_woff2
from sphinx.application import Sphinx

FONT = Path("vendor", "fontawesome", "webfonts", "fa-solid-900.woff2")
_NAMES = {1: "Site Icons", 3: "Site Icons", 4: "Site Icons", 6: "SiteIcons"}
# FontAwesome's stylesheet gives each icon class its character, as in
# .fa-bars,.fa-navicon{--fa:"\f0c9"}
_ICON_RULE = re.compile(r'((?:\.fa-[\w-]+,?)+)\{--fa:"((?:[^"\\]|\\.)*)"')
_CSS_ESCAPE = re.compile(r"\\([0-9a-fA-F]{1,6}) ?|\\(.)")
_CLASS = re.compile(r"\bfa-[\w-]+")


def _unescape(css: str) -> str:
    """A CSS string's characters, its backslash escapes decoded."""
    return _CSS_ESCAPE.sub(lambda m: chr(int(m[1], 16)) if m[1] else m[2], css)


def icon_characters(stylesheet: str) -> dict[str, str]:
    """Each FontAwesome icon class in ``stylesheet`` and its character."""
    icons: dict[str, str] = {}
    for selectors, value in _ICON_RULE.findall(stylesheet):
        for name in selectors.split(","):
            icons[name.lstrip(".")] = _unescape(value)
    return icons


def used_codepoints(stylesheets: Iterable[str], pages: Iterable[str]) -> set[int]:
    """The icon characters some pages can show.

    Args:
        stylesheets: the site's CSS files' text.
        pages: the HTML pages and the scripts that add icons to them.

    Returns:
        The characters of every ``fa-*`` class the pages name, and every
        private-use character (where icon fonts keep their icons) that a
        stylesheet spells out beyond FontAwesome's own class list.
    """
    icons: dict[str, str] = {}
    found: set[int] = set()
    for css in stylesheets:
        icons.update(icon_characters(css))
        rest = _unescape(_ICON_RULE.sub("", css))
        found.update(ord(c) for c in rest if 0xE000 <= ord(c) <= 0xF8FF)
    for page in pages:
        for name in set(_CLASS.findall(page)):
            found.update(map(ord, icons.get(name, "")))
    return found


def _write_font(app: Sphinx, exception: Exception | None) -> None:
    """Replace the copied solid webfont with its cut."""
    if exception is not None or app.builder.format != "html":
        return
    theme = app.builder.theme  # type: ignore[attr-defined]
    sources = [Path(d, "static", FONT) for d in theme.get_theme_dirs()]
    source = next(p for p in sources if p.is_file())
    outdir = Path(app.outdir)
    static = outdir / "_static"
    stylesheets = [p.read_text(encoding="utf-8") for p in static.rglob("*.css")]
    scripts = [p for p in static.rglob("*.js") if "fontawesome" not in p.name]
    pages = [p.read_text(encoding="utf-8") for p in [*outdir.rglob("*.html"), *scripts]]
    cut = subset_woff2(
        source.read_bytes(),
        used_codepoints(stylesheets, pages),
        _NAMES,
        Path(app.doctreedir) / "fonts",
    )
    (static / FONT).write_bytes(cut)


def setup(app: Sphinx) -> dict[str, Any]:
    """Add ``icons.css`` to every page; cut the icon font after every HTML build."""
    app.add_css_file("icons.css")
    app.connect("build-finished", _write_font)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
