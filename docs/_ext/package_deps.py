"""Re-execute a page when a package module it loaded changes, and no other page.

The execution cache keys a page on its own code cells alone, so an edit to
``src/attention`` would leave the page showing outputs of the old code.
Naming the whole cache by a hash of ``src/`` (as this project once did)
re-executes every chapter for any edit, even a comment in a module that no
chapter imports. This extension records, when a page executes, exactly which
package files its kernel loaded, and invalidates that page's cached execution
when one of them changes:

- Each executed page gets a hidden last cell (tagged ``remove-cell``; the
  notebook download leaves it out, see ``MARKER``). It prints, as JSON, the
  SHA-256 of every ``attention`` module in the kernel's ``sys.modules``
  (whether the page imported it or another module did) and of every data file
  in the package (those are few, and a module may read any of them). The
  printed record is stored with the page's outputs in the execution cache,
  so it always describes the execution it sits beside.
- Before Sphinx reads the pages (``env-get-outdated``), every cached
  execution whose record no longer matches the files on disk (a file changed,
  was deleted, or the record is missing) is removed from the cache, and its
  page is read again, so it executes afresh. Nothing else re-executes.

Changes the record cannot see are covered elsewhere: the versions of torch
and of the other numeric libraries and the floating-point settings name the
cache folder (``conf.py``), data files outside the package are listed per page
in ``page_data``. The cell is constant, so adding it changes no cache key
between builds.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from jupyter_cache import get_cache
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util import logging

logger = logging.getLogger(__name__)

MARKER = "# package_deps:"

# The hidden cell. It defines nothing that outlives it (the names it binds are
# deleted), so it cannot change what a reader of the page could rely on.
RECORD_SOURCE = f"""{MARKER} the package files this page's kernel loaded, with their SHA-256
def _package_files():
    import hashlib, json, pathlib, sys

    def sha(path):
        return hashlib.sha256(path.read_bytes()).hexdigest()

    package = sys.modules.get("attention")
    files = {{}}
    if package is not None and getattr(package, "__file__", None):
        root = pathlib.Path(package.__file__).resolve().parent
        for name, module in list(sys.modules.items()):
            path = getattr(module, "__file__", None)
            if (name == "attention" or name.startswith("attention.")) and path:
                path = pathlib.Path(path).resolve()
                files[path.relative_to(root.parent).as_posix()] = sha(path)
        for path in sorted(root.rglob("*")):
            if path.is_file() and path.suffix != ".py" and "__pycache__" not in path.parts:
                files[path.relative_to(root.parent).as_posix()] = sha(path)
    print(json.dumps(files, sort_keys=True))
_package_files()
del _package_files"""


def record_cell() -> str:
    """The hidden MyST code cell appended to every executed page."""
    return f"\n\n```{{code-cell}} ipython3\n:tags: [remove-cell]\n\n{RECORD_SOURCE}\n```\n"


def is_record_cell(cell: Any) -> bool:
    """Whether a notebook cell is the record cell (a build detail, no use to a reader)."""
    return bool(cell.cell_type == "code" and cell.source.startswith(MARKER))


def read_record(notebook: Any) -> dict[str, str] | None:
    """The files and hashes an executed notebook's record cell printed, if any."""
    for cell in notebook.cells:
        if not is_record_cell(cell):
            continue
        text = "".join(
            output.get("text", "")
            for output in cell.get("outputs", [])
            if output.get("output_type") == "stream"
        )
        try:
            record = json.loads(text)
        except ValueError:
            return None
        return record if isinstance(record, dict) else None
    return None


def stale_files(record: Mapping[str, str], src: Path) -> list[str]:
    """The recorded files (paths relative to ``src``) whose bytes differ now, or are gone."""
    stale = []
    for name, digest in record.items():
        path = src / name
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            stale.append(name)
    return stale


def _is_executed(app: Sphinx, docname: str) -> bool:
    """Whether the page is a notebook MyST-NB executes (it has a kernelspec)."""
    path = Path(app.env.doc2path(docname))
    if path.suffix != ".md" or not path.is_file():
        return False
    head = path.read_text(encoding="utf-8")[:2000]
    return head.startswith("---") and "kernelspec:" in head.split("\n---", 1)[0]


def _add_record_cell(app: Sphinx, docname: str, source: list[str]) -> None:
    if _is_executed(app, docname):
        source[0] += record_cell()


def invalidate(cache_path: str | Path, src: Path, docs: Iterable[Path]) -> list[Path]:
    """Remove every cached execution of ``docs`` whose record is stale.

    Returns:
        The sources whose cached executions were removed.
    """
    wanted = {Path(doc).resolve() for doc in docs}
    cache = get_cache(str(cache_path))
    removed: set[Path] = set()
    for record in cache.list_cache_records():
        uri = Path(record.uri).resolve()
        if uri not in wanted:
            continue
        notebook = cache.get_cache_bundle(record.pk).nb
        recorded = read_record(notebook)
        changed = ["its record is missing"] if recorded is None else stale_files(recorded, src)
        if changed:
            cache.remove_cache(record.pk)
            removed.add(uri)
            logger.info(
                "package_deps: %s executes again (%s changed)",
                uri.name,
                ", ".join(changed[:5]) + (", ..." if len(changed) > 5 else ""),
            )
    return sorted(removed)


def _outdated(
    app: Sphinx, env: BuildEnvironment, added: set[str], changed: set[str], removed: set[str]
) -> list[str]:
    if app.config.nb_execution_mode != "cache":
        return []
    src = Path(app.confdir) / app.config.package_deps_src
    # Every page, also those Sphinx reads anyway (new to this environment, or
    # changed): a fresh environment beside an old execution cache would
    # otherwise take stale outputs from it.
    candidates = {
        Path(env.doc2path(docname)).resolve(): docname
        for docname in env.found_docs
        if _is_executed(app, docname)
    }
    again = invalidate(app.config.nb_execution_cache_path, src, candidates)
    return [candidates[path] for path in again if candidates[path] not in added | changed]


def setup(app: Sphinx) -> dict[str, Any]:
    """Register ``package_deps_src`` and hook the page reading."""
    app.add_config_value("package_deps_src", "src", "env", types=[str])
    app.connect("source-read", _add_record_cell)
    app.connect("env-get-outdated", _outdated)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
