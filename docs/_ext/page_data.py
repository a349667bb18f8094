"""Re-execute a page when a data file it reads changes, and no other page.

The execution cache keys a notebook on its code cells alone, so a page whose
cells read a file (the benchmarks appendix plots
``benchmarks/results/*.json``) would keep showing the old file's numbers.
Naming the whole cache after the files would re-execute every chapter
instead. This extension does neither: for each page
listed in ``page_data`` (docname -> paths relative to the configuration
directory) it

- tells Sphinx the page depends on the files, so a changed file makes Sphinx
  read that page again, and
- appends a hidden code cell holding the files' SHA-256 to the page as it is
  read, so the page's code, and with it its cache entry, changes exactly
  when a file's bytes do.

The cell is a comment (it runs in no time) tagged ``remove-cell``, and
``MARKER`` lets the notebook download leave it out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.errors import ConfigError

MARKER = "# page_data:"


def digest(root: Path, paths: Iterable[str]) -> str:
    """SHA-256 of the files' names and bytes, in the order given.

    Raises:
        ConfigError: A file does not exist (its path is named).
    """
    hasher = hashlib.sha256()
    for name in paths:
        path = root / name
        if not path.is_file():
            raise ConfigError(f"page_data: {name!r} is not a file under {root}")
        hasher.update(name.encode())
        hasher.update(path.read_bytes())
    return hasher.hexdigest()


def data_cell(paths: Iterable[str], sha256: str) -> str:
    """The hidden MyST code cell that carries the files' hash."""
    names = ", ".join(paths)
    return (
        "\n\n```{code-cell} ipython3\n:tags: [remove-cell]\n\n"
        f"{MARKER} this page reads {names} (sha256 {sha256})\n```\n"
    )


def _add_data_cell(app: Sphinx, docname: str, source: list[str]) -> None:
    paths = app.config.page_data.get(docname)
    if not paths:
        return
    root = Path(app.confdir)
    for name in paths:
        app.env.note_dependency(str(root / name))  # a newer file re-reads the page
    source[0] += data_cell(paths, digest(root, paths))


def setup(app: Sphinx) -> dict[str, Any]:
    """Register ``page_data`` and hook the page reading."""
    app.add_config_value("page_data", {}, "env", types=[dict])
    app.connect("source-read", _add_data_cell)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
