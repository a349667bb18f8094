"""Offer every executed page's notebook for download, ready to run elsewhere.

MyST-NB writes each page it executes to ``_build/jupyter_execute/<page>.ipynb``,
but in cache mode without its outputs (myst-nb 1.4 writes the notebook it
read, not the one it merged the cached outputs into). This extension merges
the outputs from the execution cache, as the page's rendering did, and
publishes the result as ``_sources/<page>.ipynb``, named in the page context
as ``ipynb_source``, which is how sphinx-book-theme's download menu learns
that a page has a notebook (the theme only sets it itself when launch
buttons are configured, and this book has none). Two edits on the way make
the copy runnable on a reader's machine:

- a markdown cell after the title says what to install and how;
- ``from myst_nb import glue`` lines give way to one setup cell that imports
  glue if myst-nb is there and otherwise defines a stand-in, so the notebook
  needs the package and Jupyter, not the site's build tools.

The menu's link to the page's source file goes: ``html_copy_source`` is off,
so it would point at a file the site does not have.
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path
from typing import Any

import nbformat
from jupyter_cache import get_cache
from myst_nb.sphinx_ import NbMetadataCollector
from package_deps import MARKER as RECORD_MARKER
from page_data import MARKER
from sphinx.application import Sphinx

#: Where the download lands, relative to the site root (the theme's choice).
FOLDER = "_sources"

#: The import the chapters use; the setup cell replaces it.
GLUE_IMPORT = re.compile(r"^from myst_nb import glue[ \t]*\n?", re.MULTILINE)

RUN_YOURSELF = """\
**Run this page yourself.** This notebook is the page as the site built it,
outputs included (package `attention` {release}, torch {torch}). Every cell
runs again, top to bottom, on your own machine.

It needs Python 3.11 or newer, a Jupyter front end, and the book's package:
the distribution `attention-from-scratch` with its `viz` extra (matplotlib,
for the figures). From a clone of the book's repository:

```bash
pip install torch        # first, so that you choose the build (CPU or CUDA)
pip install -e ".[viz]"  # in the clone's folder
pip install jupyterlab   # or any other Jupyter front end
```

Without a clone, `pip install "attention-from-scratch[viz] @ git+URL"`, with
the repository's URL, installs the same package. The site's build tool,
myst-nb, is not needed: the next cell stands in for its `glue`, which hands
numbers from the code to the page's text. Cells tagged `remove-cell` are
hidden on the site (figure settings, checks, numbers for the text) and run
here too. Each interactive figure carries the script that draws it: once
the notebook is trusted (or its cells are run again), Jupyter draws them as
the site does; until then it shows a static table of the same numbers.
"""

GLUE_STAND_IN = '''\
# The site's build hands numbers from the code to the text with myst_nb.glue.
# Without myst-nb installed, this stand-in shows a value only when asked to.
try:
    from myst_nb import glue
except ImportError:
    from IPython.display import display as _display

    def glue(name, variable, display=True):
        """Stand-in for myst_nb.glue: show the value if display is true."""
        if display:
            _display(variable)
'''


def without_data_cells(cells: list[Any]) -> list[Any]:
    """The cells but page_data's hash cells and package_deps' record cell.

    Both are build details, of no use to a reader.
    """
    return [
        c
        for c in cells
        if not (c.cell_type == "code" and c.source.startswith((MARKER, RECORD_MARKER)))
    ]


def runnable_notebook(source: Path, *, cache: Path | None, release: str) -> nbformat.NotebookNode:
    """The executed notebook at ``source``, with the install note and glue stand-in.

    Args:
        source: A notebook MyST-NB wrote to its ``jupyter_execute`` folder.
        cache: The jupyter-cache folder to take the outputs from, or None if
            the notebook at ``source`` already holds them (execution modes
            other than cache).
        release: The package version the outputs came from.

    Returns:
        The notebook to publish; its cells and outputs are those of the
        execution, apart from the removed glue imports, page_data and package_deps cells.

    Raises:
        KeyError: The cache holds no execution of this notebook.
    """
    notebook = nbformat.read(source, as_version=4)
    if cache is not None:
        _, notebook = get_cache(cache).merge_match_into_notebook(notebook)
    notebook.cells = without_data_cells(notebook.cells)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.source = GLUE_IMPORT.sub("", cell.source)
    note = nbformat.v4.new_markdown_cell(
        RUN_YOURSELF.format(release=release, torch=importlib.metadata.version("torch")),
        id="run-this-page-yourself",
    )
    stand_in = nbformat.v4.new_code_cell(GLUE_STAND_IN, id="glue-stand-in")
    # After the title, so that the notebook still opens with the page's name.
    cells = notebook.cells
    first_is_title = bool(cells) and cells[0].cell_type == "markdown"
    at = 1 if first_is_title and cells[0].source.startswith("# ") else 0
    notebook.cells = [*cells[:at], note, stand_in, *cells[at:]]
    nbformat.validate(notebook)
    return notebook


def _offer_notebook(
    app: Sphinx, pagename: str, templatename: str, context: dict[str, Any], doctree: Any
) -> None:
    """Publish the page's executed notebook and name it for the download menu."""
    if NbMetadataCollector.get_exec_data(app.env, pagename) is None:
        return  # not an executed notebook page
    config = app.env.mystnb_config
    source = Path(config.output_folder) / f"{pagename}.ipynb"
    cache = Path(config.execution_cache_path) if config.execution_mode == "cache" else None
    target = Path(app.outdir) / FOLDER / f"{pagename}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(runnable_notebook(source, cache=cache, release=app.config.release), target)
    context["ipynb_source"] = f"{pagename}.ipynb"


def _drop_source_link(
    app: Sphinx, pagename: str, templatename: str, context: dict[str, Any], doctree: Any
) -> None:
    """Remove the download menu's link to the page source, which is not copied."""
    if app.config.html_copy_source:
        return
    for group in context.get("header_buttons", []):
        if group.get("label") == "download-buttons":
            group["buttons"] = [
                b for b in group["buttons"] if b.get("label") != "download-source-button"
            ]


def setup(app: Sphinx) -> dict[str, Any]:
    """Hook in around sphinx-book-theme's header buttons (priority 501)."""
    app.connect("html-page-context", _offer_notebook, priority=500)
    app.connect("html-page-context", _drop_source_link, priority=502)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
