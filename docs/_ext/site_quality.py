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

And one for print: the theme's dark mode is a set of colours chosen for a
dark background, and paper is white (browsers drop backgrounds when they
print). A small inline script switches the page to the light palette while
it is printed and back afterwards.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
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


def box_output_images(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    """Put every image that sits directly in a cell's output into a ``div.output``.

    Runs once myst-nb has picked which of an output's formats to show (a
    post-transform), the point from which the image is a child of the output.
    """
    for output in doctree.findall(nodes.container):
        if "cell_output" not in output["classes"]:
            continue
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


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the page repairs and the print script."""
    app.add_js_file(None, body=PRINT_IN_LIGHT)
    app.connect("doctree-resolved", box_output_images)
    app.connect("html-page-context", _repair_page, priority=_AFTER_THEME)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
