"""A page that reads a data file re-executes when the file changes, alone.

docs/_ext/page_data.py ties the benchmarks appendix to benchmarks/results/*.json. These
tests build a two-page project in cache mode, each page appending a line to a
log when it executes, and check which pages execute after which edits.
"""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from sphinx.errors import ConfigError

from tests.conftest import EXTENSIONS, extension

ROOT = Path(__file__).resolve().parents[1]

page_data = extension("page_data")

_PAGE = """\
---
file_format: mystnb
kernelspec:
  name: python3
---
# {title}

```{{code-cell}} ipython3
from pathlib import Path

with open({log!r}, "a") as log:
    print("{name}", file=log)
print(Path({data!r}).read_text().strip())
```
"""


def _project(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Pages "reads" (listed in page_data) and "other", both reading data.txt."""
    docs, log, data = tmp_path / "docs", tmp_path / "executed.log", tmp_path / "docs" / "data.txt"
    docs.mkdir()
    data.write_text("first\n", encoding="utf-8")
    (docs / "index.md").write_text("# Index\n\n```{toctree}\nreads\nother\n```\n", encoding="utf-8")
    for name in ("reads", "other"):
        page = _PAGE.format(title=name.title(), log=str(log), name=name, data=str(data))
        (docs / f"{name}.md").write_text(page, encoding="utf-8")
    (docs / "conf.py").write_text(
        f"import sys\nsys.path.insert(0, {str(EXTENSIONS)!r})\n"
        'extensions = ["myst_nb", "page_data"]\n'
        'exclude_patterns = ["_build"]\n'
        f'nb_execution_mode = "cache"\nnb_execution_cache_path = {str(tmp_path / "cache")!r}\n'
        'page_data = {"reads": ["data.txt"]}\n',
        encoding="utf-8",
    )
    return docs, log, data


def _build(docs: Path, out: Path, log: Path) -> list[str]:
    """Build, return the pages that executed (in order), and empty the log."""
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-W", str(docs), str(out)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    executed = log.read_text(encoding="utf-8").split() if log.exists() else []
    log.unlink(missing_ok=True)
    return executed


@pytest.mark.slow
def test_a_changed_data_file_re_executes_only_the_page_that_lists_it(tmp_path):
    docs, log, data = _project(tmp_path)
    out = tmp_path / "html"
    assert sorted(_build(docs, out, log)) == ["other", "reads"]
    assert _build(docs, out, log) == []  # nothing changed: nothing executes

    data.write_text("second\n", encoding="utf-8")
    assert _build(docs, out, log) == ["reads"]
    assert "second" in (out / "reads.html").read_text(encoding="utf-8")
    # The page that does not list the file keeps its cached output: the
    # reason a page must list what it reads.
    assert "first" in (out / "other.html").read_text(encoding="utf-8")

    data.write_text("first\n", encoding="utf-8")  # back: the old entry is found again
    assert _build(docs, out, log) == []
    assert "first" in (out / "reads.html").read_text(encoding="utf-8")


def test_the_hash_follows_the_bytes_and_the_names(tmp_path):
    (tmp_path / "a.json").write_text("1", encoding="utf-8")
    (tmp_path / "b.json").write_text("1", encoding="utf-8")
    first = page_data.digest(tmp_path, ["a.json"])
    assert page_data.digest(tmp_path, ["a.json"]) == first
    assert page_data.digest(tmp_path, ["b.json"]) != first  # same bytes, another file
    (tmp_path / "a.json").write_text("2", encoding="utf-8")
    assert page_data.digest(tmp_path, ["a.json"]) != first


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"'missing\.json' is not a file"):
        page_data.digest(tmp_path, ["missing.json"])


def test_the_cell_is_hidden_and_marked():
    cell = page_data.data_cell(["x.json"], "ab" * 32)
    assert ":tags: [remove-cell]" in cell
    assert f"{page_data.MARKER} this page reads x.json (sha256 {'ab' * 32})" in cell


def test_the_benchmarks_page_lists_every_results_file_it_reads(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTENTION_BUILD_DIR", str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    monkeypatch.setattr(sys, "path", list(sys.path))
    conf = runpy.run_path(str(ROOT / "conf.py"))
    assert "page_data" in conf["extensions"]
    listed = conf["page_data"]["benchmarks"]
    chapter = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    for suite in ("layers", "kernels", "generation", "imports"):
        assert f'"{suite}"' in chapter  # the chapter reads it ...
        assert f"benchmarks/results/{suite}.json" in listed  # ... so it is listed
    assert all((ROOT / path).is_file() for path in listed)


def test_the_downloadable_notebook_leaves_the_hash_cell_out():
    download = extension("notebook_download")
    cells = [
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell(f"{page_data.MARKER} this page reads x.json (sha256 00)"),
    ]
    assert [c.source for c in download.without_data_cells(cells)] == ["x = 1"]
