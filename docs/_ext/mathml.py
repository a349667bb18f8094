r"""Render TeX maths to MathML when the site is built, so pages need no maths script.

A Sphinx HTML maths renderer (``html_math_renderer = "mathml"``). Each
formula is converted by math-core, which writes MathML Core, the part of
MathML that Chromium, Firefox and Safari all draw natively. The TeX source
rides along in an ``<annotation encoding="application/x-tex">`` element:
browsers do not draw it, screen readers read the MathML itself.

TeX that math-core cannot convert (an unknown command, a missing brace) is a
Sphinx warning naming the page and line, so a ``-W`` build fails; the page
then shows the TeX source as code instead of a wrong formula.

Display formulas follow Sphinx's MathJax renderer: blank lines separate
equations, which are stacked and aligned, as is a formula that breaks lines
with ``\\``. Pages with maths also get ``mathml.css``: long display formulas
scroll sideways inside their block instead of widening a phone's page.

Browsers stretch brackets, radicals and sums only with an OpenType maths font,
which many systems lack. So every build writes ``_static/mathml-font.woff2``:
STIX Two Math (from the pinned ziamath wheel, under the SIL Open Font
License, ``_static/mathml-font-LICENSE.txt``) cut down to the characters the
site's formulas use, renamed "Attention Math" as a modified version should be.
"""

from __future__ import annotations

import html
import importlib.metadata
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from docutils import nodes
from font_subset import subset_woff2
from math_core import LatexError, LatexToMathML
from sphinx.application import Sphinx
from sphinx.locale import _
from sphinx.util import logging
from sphinx.util.math import get_node_equation_number
from sphinx.writers.html5 import HTML5Translator

logger = logging.getLogger(__name__)

_CONVERTER = LatexToMathML(annotation=True, fancy_error=False)
_ENVIRONMENT = re.compile(r"\\(begin|end)\{[^}]*\}")


def to_mathml(tex: str, *, display: bool) -> str:
    """Convert one formula to a ``<math>`` element.

    Args:
        tex: the TeX source, without delimiters.
        display: True for a display (block) formula, False for inline.

    Returns:
        The MathML, with the TeX kept as an annotation.

    Raises:
        LatexError: if math-core cannot convert ``tex``.
    """
    return _valid_tables(_CONVERTER.convert_with_local_state(tex, displaystyle=display))


_TABLE_TAG = re.compile(r"<mtable\b([^>]*)>|</mtable>")
_SCRIPTLEVEL = re.compile(r'\s+scriptlevel="([^"]*)"')


def _valid_tables(mathml: str) -> str:
    """Move ``scriptlevel`` from each ``<mtable>`` to an ``<mstyle>`` around it.

    math-core writes it on the table (MathML Core allows that), but the HTML
    checker follows MathML 3, where only ``mstyle`` takes the attribute; the
    wrapper draws the same and validates.
    """
    out: list[str] = []
    levels: list[str | None] = []  # per open table, the scriptlevel moved off it
    position = 0
    for match in _TABLE_TAG.finditer(mathml):
        out.append(mathml[position : match.start()])
        position = match.end()
        if match.group(0) == "</mtable>":
            level = levels.pop() if levels else None
            out.append("</mtable></mstyle>" if level is not None else "</mtable>")
            continue
        found = _SCRIPTLEVEL.search(match.group(1))
        if found is None:
            levels.append(None)
            out.append(match.group(0))
        else:
            levels.append(found.group(1))
            attributes = _SCRIPTLEVEL.sub("", match.group(1), count=1)
            out.append(f'<mstyle scriptlevel="{found.group(1)}"><mtable{attributes}>')
    out.append(mathml[position:])
    return "".join(out)


def _breaks_lines(tex: str) -> bool:
    r"""Whether ``tex`` has a ``\\`` outside every environment (cases, matrix, ...)."""
    depth = 0
    position = 0
    for match in _ENVIRONMENT.finditer(tex):
        if depth == 0 and "\\\\" in tex[position : match.start()]:
            return True
        depth += 1 if match.group(1) == "begin" else -1
        position = match.end()
    return depth == 0 and "\\\\" in tex[position:]


def display_tex(source: str) -> str:
    r"""The TeX of a display formula, its equations stacked as MathJax's renderer does.

    Args:
        source: the formula's text; blank lines separate equations.

    Returns:
        ``source`` itself if it is one equation on one line; otherwise its
        equations inside one ``aligned`` environment, one per line.
    """
    parts = [part.strip() for part in source.split("\n\n") if part.strip()]
    if len(parts) == 1 and not _breaks_lines(parts[0]):
        return parts[0]
    return "\\begin{aligned}" + " \\\\ ".join(parts) + "\\end{aligned}"


def _render(translator: HTML5Translator, node: nodes.Element, tex: str, display: bool) -> str:
    """The MathML of ``tex``, or on failure a warning and the TeX shown as code."""
    try:
        return to_mathml(tex, display=display)
    except LatexError as error:
        logger.warning(
            "cannot render this TeX as MathML: %s (%s)", tex, error, location=node, type="mathml"
        )
        return f'<code class="math-error">{html.escape(tex)}</code>'


def visit_math(translator: HTML5Translator, node: nodes.math) -> None:
    """Write an inline formula as ``<span class="math"><math>...</math></span>``."""
    translator.body.append(translator.starttag(node, "span", "", CLASS="math notranslate"))
    translator.body.append(_render(translator, node, node.astext(), display=False))
    translator.body.append("</span>")
    raise nodes.SkipNode


def visit_math_block(translator: HTML5Translator, node: nodes.math_block) -> None:
    """Write a display formula, with its number and permalink if it has one."""
    translator.body.append(translator.starttag(node, "div", CLASS="math notranslate"))
    if node.get("no-wrap", node.get("nowrap", False)):
        tex = node.astext()
    else:
        tex = display_tex(node.astext())
    if node["number"]:
        number = get_node_equation_number(translator, node)
        translator.body.append(f'<span class="eqno">({number})')
        translator.add_permalink_ref(node, _("Link to this equation"))
        translator.body.append("</span>")
    translator.body.append(_render(translator, node, tex, display=True))
    translator.body.append("</div>\n")
    raise nodes.SkipNode


def _add_stylesheet(
    app: Sphinx, pagename: str, templatename: str, context: dict[str, Any], doctree: Any
) -> None:
    """Load ``mathml.css`` on the pages that have maths."""
    if context.get("has_maths_elements"):
        app.builder.add_css_file("mathml.css")  # type: ignore[attr-defined]


FONT = "mathml-font.woff2"
# Found without importing ziamath, which would load its whole renderer.
_FONT_SOURCE = Path(
    str(
        importlib.metadata.distribution("ziamath").locate_file(
            "ziamath/fonts/STIXTwoMath-Regular.ttf"
        )
    )
)
_FONT_NAMES = {1: "Attention Math", 3: "Attention Math", 4: "Attention Math", 6: "AttentionMath"}
_MATH = re.compile(r"<math\b.*?</math>", flags=re.S)
_ANNOTATION = re.compile(r"<annotation\b.*?</annotation>", flags=re.S)
_TAG = re.compile(r"<[^>]*>")
# Besides the characters written in the formulas: printable ASCII, the radical
# sign that browsers draw for <msqrt>, and the mathematical italic letters
# (Latin, dotless i and j, Greek) in which they draw a one-letter <mi>; the
# HTML spells none of those.
_ALWAYS = {
    *range(0x20, 0x7F),
    0x221A,
    *range(0x1D434, 0x1D468),
    0x210E,
    0x1D6A4,
    0x1D6A5,
    *range(0x1D6E2, 0x1D71C),
}


def math_characters(pages: Iterable[str]) -> set[int]:
    """Code points drawn inside the ``<math>`` elements of some HTML pages.

    Args:
        pages: the HTML of each page.

    Returns:
        Every code point of the formulas' text (not of their TeX annotations);
        empty if the pages have no maths.
    """
    found: set[int] = set()
    for page in pages:
        for formula in _MATH.findall(page):
            text = html.unescape(_TAG.sub("", _ANNOTATION.sub("", formula)))
            found.update(map(ord, text))
    return found


def _write_font(app: Sphinx, exception: Exception | None) -> None:
    """Write the maths font, cut to the characters of every page's formulas."""
    if exception is not None or app.builder.format != "html":
        return
    outdir = Path(app.outdir)
    found = math_characters(p.read_text(encoding="utf-8") for p in outdir.rglob("*.html"))
    if not found:
        return
    cut = subset_woff2(
        _FONT_SOURCE.read_bytes(), found | _ALWAYS, _FONT_NAMES, Path(app.doctreedir) / "fonts"
    )
    (outdir / "_static" / FONT).write_bytes(cut)


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the ``mathml`` renderer, its stylesheet and its font."""
    app.add_html_math_renderer(
        "mathml",
        inline_renderers=(visit_math, None),
        block_renderers=(visit_math_block, None),
    )
    app.connect("html-page-context", _add_stylesheet)
    app.connect("build-finished", _write_font)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
