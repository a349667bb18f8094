"""A package edit re-executes exactly the pages whose kernels loaded the edited file.

docs/_ext/package_deps.py records, in each executed page, the package files
its kernel loaded, and drops a cached execution when one of them changes.
These tests build a small project whose pages import different modules of a
stand-in ``attention`` package, each page appending its name to a log when it
executes, and check which pages execute after which edits, and that no page
is left showing an output of the old code.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tests.conftest import EXTENSIONS, extension

package_deps = extension("package_deps")

_PAGE = """\
---
file_format: mystnb
kernelspec:
  name: python3
---
# {name}

```{{code-cell}} ipython3
with open({log!r}, "a") as log:
    print("{name}", file=log)
{code}
```
"""

# The stand-in package: ``two`` imports ``one``, and ``__init__`` imports ``base``.
_MODULES = {
    "__init__.py": "from attention.base import BASE\n",
    "base.py": "BASE = 'base-1'\n",
    "one.py": "ONE = 'one-1'\n",
    "two.py": "from attention.one import ONE\nTWO = 'two-1 after ' + ONE\n",
    "unused.py": "UNUSED = 'unused-1'\n",
    "table.txt": "a data file in the package\n",
}

_PAGES = {
    "first": "from attention.one import ONE\nprint(ONE)",
    "second": "from attention.two import TWO\nprint(TWO)",
    "plain": "print('no package here')",
}


def _project(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Three pages: "first" loads one.py, "second" two.py (and so one.py), "plain" none."""
    docs, src, log = tmp_path / "docs", tmp_path / "src", tmp_path / "executed.log"
    (src / "attention").mkdir(parents=True)
    for name, text in _MODULES.items():
        (src / "attention" / name).write_text(text, encoding="utf-8")
    docs.mkdir()
    toctree = "\n".join(_PAGES)
    (docs / "index.md").write_text(f"# Index\n\n```{{toctree}}\n{toctree}\n```\n", "utf-8")
    for name, code in _PAGES.items():
        page = _PAGE.format(name=name, log=str(log), code=code)
        (docs / f"{name}.md").write_text(page, encoding="utf-8")
    (docs / "conf.py").write_text(
        f"import os, sys\nsys.path.insert(0, {str(EXTENSIONS)!r})\n"
        f"os.environ['PYTHONPATH'] = {str(src)!r}\n"  # the kernels import the stand-in
        'extensions = ["myst_nb", "package_deps"]\n'
        'exclude_patterns = ["_build"]\n'
        f'nb_execution_mode = "cache"\nnb_execution_cache_path = {str(tmp_path / "cache")!r}\n'
        f"package_deps_src = {str(src)!r}\n",
        encoding="utf-8",
    )
    return docs, src / "attention", log


def _build(docs: Path, out: Path, log: Path) -> list[str]:
    """Build, return the pages that executed (sorted), and empty the log."""
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-W", str(docs), str(out)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    executed = sorted(log.read_text(encoding="utf-8").split()) if log.exists() else []
    log.unlink(missing_ok=True)
    return executed


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


@pytest.mark.slow
def test_an_edit_re_executes_exactly_the_pages_that_loaded_the_file(tmp_path):
    docs, package, log = _project(tmp_path)
    out = tmp_path / "html"
    assert _build(docs, out, log) == ["first", "plain", "second"]
    assert _build(docs, out, log) == []  # nothing changed: nothing executes

    # A module one page imports: that page alone.
    _edit(package / "two.py", "two-1", "two-2")
    assert _build(docs, out, log) == ["second"]
    assert "two-2 after one-1" in (out / "second.html").read_text(encoding="utf-8")

    # A module one page imports and the other loads through it (two.py
    # imports one.py): both, and neither shows the old value.
    _edit(package / "one.py", "one-1", "one-2")
    assert _build(docs, out, log) == ["first", "second"]
    assert "one-2" in (out / "first.html").read_text(encoding="utf-8")
    assert "two-2 after one-2" in (out / "second.html").read_text(encoding="utf-8")

    # A module the package's __init__ imports, so every page that imports
    # anything from the package: "plain" imports nothing and keeps its output.
    _edit(package / "base.py", "base-1", "base-2")
    assert _build(docs, out, log) == ["first", "second"]

    # A data file in the package: every page that loaded the package.
    _edit(package / "table.txt", "a data file", "an edited data file")
    assert _build(docs, out, log) == ["first", "second"]

    # A module no page imports, and a new module: nothing.
    _edit(package / "unused.py", "unused-1", "unused-2")
    (package / "new.py").write_text("NEW = 1\n", encoding="utf-8")
    assert _build(docs, out, log) == []


@pytest.mark.slow
def test_a_fresh_environment_beside_an_old_cache_takes_no_stale_output(tmp_path):
    """Pages Sphinx reads anyway (a deleted doctree folder) are checked too."""
    docs, package, log = _project(tmp_path)
    out = tmp_path / "html"
    assert _build(docs, out, log) == ["first", "plain", "second"]
    _edit(package / "one.py", "one-1", "one-2")
    subprocess.run(["rm", "-rf", str(out / ".doctrees")], check=True)
    assert _build(docs, out, log) == ["first", "second"]
    assert "one-2" in (out / "first.html").read_text(encoding="utf-8")


def test_the_record_lists_loaded_modules_and_data_files(tmp_path):
    """The record cell, run in a fresh interpreter, lists what it loaded."""
    _, package, _ = _project(tmp_path)
    script = "from attention.two import TWO\n" + package_deps.RECORD_SOURCE
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
        env={"PYTHONPATH": str(package.parent)}, timeout=60, check=True,
    )  # fmt: skip
    record = json.loads(result.stdout)
    assert sorted(record) == [
        "attention/__init__.py", "attention/base.py", "attention/one.py",
        "attention/table.txt", "attention/two.py",
    ]  # fmt: skip
    assert package_deps.stale_files(record, package.parent) == []
    _edit(package / "one.py", "one-1", "one-2")
    assert package_deps.stale_files(record, package.parent) == ["attention/one.py"]
    (package / "two.py").unlink()  # a loaded file that is gone counts as changed
    assert package_deps.stale_files(record, package.parent) == [
        "attention/one.py",
        "attention/two.py",
    ]


def test_a_page_that_loads_no_package_records_nothing(tmp_path):
    result = subprocess.run(
        [sys.executable, "-I", "-c", package_deps.RECORD_SOURCE],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert json.loads(result.stdout) == {}


def test_the_record_is_read_back_from_the_cell_output():
    cell = nbformat.v4.new_code_cell(package_deps.RECORD_SOURCE)
    printed = '{"attention/a.py": "ab"}\n'
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=printed)]
    other = nbformat.v4.new_code_cell("print(1)")
    notebook = nbformat.v4.new_notebook(cells=[other, cell])
    assert package_deps.read_record(notebook) == {"attention/a.py": "ab"}
    cell.outputs = []  # never printed: no record, so the page executes again
    assert package_deps.read_record(notebook) is None
    assert package_deps.read_record(nbformat.v4.new_notebook(cells=[other])) is None


def test_the_cell_is_hidden_marked_and_constant():
    cell = package_deps.record_cell()
    assert ":tags: [remove-cell]" in cell
    assert cell.split("\n\n", 2)[2].startswith(package_deps.MARKER)
    assert package_deps.record_cell() == cell  # the same on every build: no new cache key


def test_the_downloadable_notebook_leaves_the_record_cell_out():
    download = extension("notebook_download")
    cells = [
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell(package_deps.RECORD_SOURCE),
    ]
    assert [c.source for c in download.without_data_cells(cells)] == ["x = 1"]
