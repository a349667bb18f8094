"""Repairs to the HTML that the theme, docutils and myst-nb write for us.

Two kinds of markup on every page fail axe-core's serious or critical rules,
and neither can be fixed from a template or a stylesheet:

- The theme's navigation (pydata-sphinx-theme's ``generate_toctree_html``)
  gives each expandable entry a ``<summary>`` holding only a decorative
  chevron, so the disclosure button has no accessible name (rule
  ``summary-name``). We name each one after the entry it expands.
- docutils marks the bibliography as ``role="list"`` but each entry as
  ``role="doc-biblioentry"``, a role ARIA has deprecated and that does not
  count as a list item (rule ``aria-required-children``). We give entries
  the ``listitem`` role their list expects.

One repair for narrow screens (a phone, or a desktop zoomed in): a figure a
cell outputs sits bare in the cell's output box and shrinks with the column
until its labels are a few pixels tall. We put each such image in its own
``div.output``, the box the theme already makes scroll sideways (and
reachable by keyboard when it scrolls), so that attention-site.css can keep
figures at a readable width there.

One for print: the theme's dark mode is a set of colours chosen for a dark
background, and paper is white (browsers drop backgrounds when they print).
A small inline script switches the page to the light palette while it is
printed and back afterwards.

And one for the keyboard: the same script makes display maths that scroll
sideways focusable, as the theme does for code blocks and outputs.

One for valid HTML: myst-nb writes the toggle of a cell whose input is hidden
(``hide-input``, the exercises' checked solutions) as ``<p>`` elements inside a
``<summary>``, where HTML allows only phrasing content. We write ``<span>``
elements with the same classes, and attention-site.css gives them the rules
that mystnb.css gives the paragraphs.
"""

from __future__ import annotations

import functools
import html
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bs4 import BeautifulSoup, Tag
from docutils import nodes
from sphinx.application import Sphinx

# After pydata-sphinx-theme's own html-page-context handlers (priority 500),
# which put generate_toctree_html into the context.
_AFTER_THEME = 900


def name_disclosures(tree: Tag) -> Tag:
    """Give every unnamed navigation ``<summary>`` the name of its entry.

    Args:
        tree: A navigation tree as the theme builds it (a BeautifulSoup tree,
            which the theme caches and renders into the page). It is changed
            in place; already named summaries are left alone.

    Returns:
        The same tree, each empty ``<summary>`` now carrying an ``aria-label``
        such as "Pages under API reference".
    """
    for summary in tree.select("li.has-children > details > summary"):
        if summary.get_text(strip=True) or summary.get("aria-label"):
            continue
        entry = summary.find_parent("li")
        link = entry.find("a", recursive=False) if entry else None
        title = " ".join(link.get_text().split()) if isinstance(link, Tag) else ""
        summary["aria-label"] = f"Pages under {title}" if title else "Pages in this section"
    return tree


def _wrap_toctree(generate: Callable[..., Any]) -> Callable[..., Any]:
    """The theme's navigation generator, with its disclosure buttons named."""

    @functools.wraps(generate)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        out = generate(*args, **kwargs)
        if isinstance(out, str):
            return str(name_disclosures(BeautifulSoup(out, "html.parser")))
        return name_disclosures(out) if isinstance(out, Tag) else out

    return wrapped


def _repair_page(
    app: Sphinx, pagename: str, templatename: str, context: dict[str, Any], doctree: Any
) -> None:
    generate = context.get("generate_toctree_html")
    if callable(generate):
        context["generate_toctree_html"] = _wrap_toctree(generate)
    body = context.get("body")
    if isinstance(body, str):
        context["body"] = body.replace('role="doc-biblioentry"', 'role="listitem"')


_SVG = "{http://www.w3.org/2000/svg}"
_NUMBER = re.compile(r"[−+-]?(\d[\d,]*\.?\d*|\.\d+)([eE×][−+-]?\d+)?%?|[−+-]?∞|nan")


def _texts(group: ET.Element) -> list[str]:
    """The strings of a group's own text children (``<g id="text_N">``).

    matplotlib writes each text as a group holding a comment with the string,
    then the glyphs (or a ``<text>`` element), so the comment is the string
    whether or not fonts were embedded as paths.
    """
    out = []
    for child in group.findall(f"{_SVG}g"):
        if not child.get("id", "").startswith("text_"):
            continue
        for node in child.iter():
            if node.tag is ET.Comment and node.text and node.text.strip():
                out.append(node.text.strip())
                break
    return out


def describe_figure(svg: bytes) -> str | None:
    """Alternative text for a matplotlib SVG figure, from its own words.

    Each plot is named by its title, the labels of its axes and the entries
    of its legend, for example "Figure: Attention while copying 10 digits
    (digit written against digit read)". Numbers (tick labels, annotations)
    are left out. A colour bar without a label adds nothing.

    Args:
        svg: The file, as matplotlib's SVG backend writes it.

    Returns:
        The text, or None if the file is not a matplotlib figure or says nothing.
    """
    try:
        root = ET.fromstring(svg, parser=ET.XMLParser(target=ET.TreeBuilder(insert_comments=True)))
    except ET.ParseError:
        return None
    figure = root.find(f"{_SVG}g[@id='figure_1']")
    if figure is None:
        return None

    def words(texts: list[str]) -> list[str]:
        return [t for t in texts if not _NUMBER.fullmatch(t.replace(" ", ""))]

    parts = words(_texts(figure))  # a suptitle
    for axes in figure.findall(f"{_SVG}g"):
        if not axes.get("id", "").startswith("axes_"):
            continue
        title = "; ".join(words(_texts(axes)))
        axis = {
            a.get("id"): words(_texts(a))
            for a in axes.findall(f"{_SVG}g")
            if a.get("id", "").startswith("matplotlib.axis_")
        }
        x, y = axis.get("matplotlib.axis_1", []), axis.get("matplotlib.axis_2", [])
        legend = axes.find(f".//{_SVG}g[@id='legend_1']")
        entries = words(_texts(legend)) if legend is not None else []
        detail = f"{y[0]} against {x[0]}" if x and y else ", ".join(x + y)
        if entries:
            detail = "; ".join(filter(None, [detail, "lines: " + ", ".join(entries)]))
        if title and detail:
            parts.append(f"{title} ({detail})")
        elif title or (detail and len(x + y) > 1) or entries:
            parts.append(title or detail)
    return "Figure: " + "; ".join(parts) if parts else None


def _describe_images(app: Sphinx, output: nodes.Element) -> None:
    """Give a cell's figures alternative text in place of their file names."""
    for image in output.findall(nodes.image):
        if image.get("alt") or not image["uri"].endswith(".svg"):
            continue
        path = Path(app.srcdir, image.get("candidates", {}).get("*", image["uri"]))
        text = describe_figure(path.read_bytes()) if path.is_file() else None
        image["alt"] = text or "A figure drawn by the code above"


def box_output_images(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    """Box and describe the images that sit directly in a cell's output.

    Each goes into a ``div.output`` (see the module's docstring) and gets
    alternative text from its own title and axis labels, in place of the
    file name that would otherwise be read out.

    Runs once myst-nb has picked which of an output's formats to show (a
    post-transform), the point from which the image is a child of the output.
    """
    for output in doctree.findall(nodes.container):
        if "cell_output" not in output["classes"]:
            continue
        _describe_images(app, output)
        for image in [c for c in output.children if isinstance(c, nodes.image)]:
            box = nodes.container(classes=["output", "image_output"])
            image.replace_self(box)
            box += image


# Inline on every page. The theme writes data-theme only when the reader
# switches modes (or, in "auto" mode, the system's preference changes), so
# nothing undoes the switch while the page prints.
PRINT_IN_LIGHT = """(() => {
  const root = document.documentElement;
  let screen = null;
  addEventListener("beforeprint", () => {
    screen = root.dataset.theme;
    root.dataset.theme = "light";
  });
  addEventListener("afterprint", () => {
    if (screen) root.dataset.theme = screen;
    screen = null;
  });
})();"""


# The theme makes code blocks and cell outputs focusable when they scroll
# sideways, so that the keyboard can scroll them; a display formula wider
# than the column scrolls too (in div.math, or in the <math> inside it) and
# gets the same treatment here.
FOCUSABLE_SCROLLING_MATHS = """(() => {
  const boxes = ".bd-article div.math, .bd-article div.math > math";
  const update = () => {
    for (const e of document.querySelectorAll(boxes)) {
      if (e.scrollWidth > e.clientWidth + 1) e.tabIndex = 0;
      else e.removeAttribute("tabindex");
    }
  };
  addEventListener("DOMContentLoaded", update);
  addEventListener("resize", update);
})();"""


def visit_hidden_cell(translator: Any, node: nodes.Element) -> None:
    """Open a hidden cell's ``<details>``: myst-nb's markup, with spans in the summary."""
    classes = " ".join(node["classes"])
    translator.body.append(
        f'<details class="admonition hide {classes}">\n'
        '<summary aria-label="Toggle hidden content">\n'
        f'<span class="collapsed admonition-title">{html.escape(node["prompt_show"])}</span>\n'
        f'<span class="expanded admonition-title">{html.escape(node["prompt_hide"])}</span>\n'
        "</summary>\n"
    )


def depart_hidden_cell(translator: Any, node: nodes.Element) -> None:
    """Close a hidden cell's ``<details>``."""
    translator.body.append("</details>\n")


def _write_hidden_cells_validly(app: Sphinx) -> None:
    """Replace myst-nb's visitors for hidden cells (once every extension is set up)."""
    from myst_nb.sphinx_ import HideCodeCellNode

    app.add_node(HideCodeCellNode, override=True, html=(visit_hidden_cell, depart_hidden_cell))


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the page repairs and the page scripts."""
    app.connect("builder-inited", _write_hidden_cells_validly)
    app.add_js_file(None, body=PRINT_IN_LIGHT + "\n" + FOCUSABLE_SCROLLING_MATHS)
    app.connect("doctree-resolved", box_output_images)
    app.connect("html-page-context", _repair_page, priority=_AFTER_THEME)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
