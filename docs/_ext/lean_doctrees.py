"""Keep every stored doctree to its own page: no copy of the build environment inside.

Sphinx pickles each page's doctree after reading it and loads it again to
write the page. Before pickling it detaches the build environment from the
page's document, but not from other documents that some of the page's nodes
still point to: sphinx-autodoc2 parses each docstring into a document of its
own and moves the resulting nodes into the page, and each such node keeps a
reference (``node.document``) to the document it was parsed in, whose
settings hold the whole environment. Every API page's doctree then carries a
copy of the environment, package database and all: about 1.2 MB each, where
the page itself needs about 0.1 MB. The build writes and reads those copies
once per page (about 40 of them), and the serial step that resolves the
doctrees before the parallel writers start spends most of its time
unpickling them.

When a page has been read (``doctree-read``), this extension points every
node that still refers to another document at the page's own document, the
one it now belongs to. The nodes and their content are unchanged.
"""

from __future__ import annotations

from typing import Any

from docutils import nodes


def adopt_nodes(doctree: nodes.document) -> int:
    """Make every node of ``doctree`` refer to ``doctree`` as its document.

    Returns:
        How many nodes referred to another document.
    """
    moved = 0
    for node in doctree.findall(include_self=False):
        # The stored reference, not the property: the property falls back to
        # the parent's document when a node has none of its own.
        own = getattr(node, "_document", None)
        if own is not None and own is not doctree:
            node.document = doctree
            moved += 1
    return moved


def _doctree_read(app: Any, doctree: nodes.document) -> None:
    adopt_nodes(doctree)


def setup(app: Any) -> dict[str, bool]:
    """Adopt foreign nodes in every page as it is read."""
    app.connect("doctree-read", _doctree_read)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
