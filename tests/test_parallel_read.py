"""Parallel reading: the cache database exists before the fork, work is spread.

docs/_ext/parallel_read.py is a Sphinx extension conf.py loads; these tests
check that conf.py loads it, that a real ``sphinx-build -j 2`` calls it on a
fresh cache folder (creating the database the readers would otherwise race
to create), and that its ordering balances the notebooks over the readers.
"""

from __future__ import annotations

import json
import os
import runpy
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
from jupyter_cache import get_cache
from jupyter_cache.base import CacheBundleIn
from sphinx.util.parallel import make_chunks

import attention
from tests.conftest import EXTENSIONS, extension

ROOT = Path(__file__).resolve().parents[1]

parallel_read = extension("parallel_read")

# Execution seconds of the chapters as measured on this machine: two long
# trainings and a benchmark dominate, as in the book.
SECONDS = {
    "01-rnn": 23.0, "02-lookup": 3.3, "03-self": 3.1, "04-trainable": 4.5, "05-causal": 3.6,
    "06-dropout": 10.0, "07-batches": 4.2, "08-multi": 4.3, "09-logits": 6.2, "10-norm": 3.3,
    "11-block": 6.0, "12-why": 19.6, "13-scale": 18.8, "playground": 2.5,
}  # fmt: skip
PAGES = sorted([*SECONDS, "api", *(f"api/attention.m{i}" for i in range(15)), "index", "notation"])


def _tables(folder: Path) -> set[str]:
    with sqlite3.connect(folder / "global.db") as db:
        return {row[0] for row in db.execute("select name from sqlite_master where type='table'")}


def test_conf_loads_the_extension_and_reads_the_version_without_torch(tmp_path, monkeypatch):
    # conf.py changes the environment and sys.path: both are restored after the test.
    monkeypatch.setenv("ATTENTION_BUILD_DIR", str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    monkeypatch.setattr(sys, "path", list(sys.path))
    conf = runpy.run_path(str(ROOT / "conf.py"))
    assert "parallel_read" in conf["extensions"]
    assert conf["parallel_read_timings"] == str(ROOT / "benchmarks" / "results" / "build.json")
    assert conf["version"] == attention.__version__
    assert Path(conf["nb_execution_cache_path"]).parent == tmp_path / ".jupyter_cache"


def test_a_parallel_build_creates_the_cache_database_before_reading(tmp_path):
    docs, cache = tmp_path / "docs", tmp_path / "cache" / "fresh"
    docs.mkdir()
    (docs / "index.md").write_text("# A page\n\nNo notebook here.\n", encoding="utf-8")
    (docs / "conf.py").write_text(
        f"import sys\nsys.path.insert(0, {str(EXTENSIONS)!r})\n"
        'extensions = ["myst_nb", "parallel_read"]\n'
        f'nb_execution_mode = "cache"\nnb_execution_cache_path = {str(cache)!r}\n',
        encoding="utf-8",
    )
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-j", "2", "-W",
         str(docs), str(tmp_path / "html")],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    # No notebook executed, so nothing but the extension opened the cache.
    assert {"nbcache", "nbproject", "settings"} <= _tables(cache)


def test_sphinx_order_leaves_the_notebooks_in_one_chunk():
    """Why the extension exists: sorted pages put the chapters together.

    One chunk gets over three quarters of the work, so -j 2 alone could save
    at most a quarter of the time.
    """
    chunks = make_chunks(PAGES, 2)
    loads = [sum(SECONDS.get(doc, 0.0) for doc in chunk) for chunk in chunks]
    assert max(loads) > 0.75 * sum(SECONDS.values())


def test_balanced_order_spreads_the_notebooks_over_the_first_chunks():
    costs = {doc: SECONDS[doc] for doc in PAGES if doc in SECONDS}
    order = parallel_read.balanced_order(PAGES, costs, 2)
    assert sorted(order) == PAGES
    chunks = make_chunks(order, 2)
    loads = [sum(costs.get(doc, 0.0) for doc in chunk) for chunk in chunks]
    assert loads[2:] == [0.0] * (len(chunks) - 2)  # later chunks start later: no notebooks
    assert abs(loads[0] - loads[1]) <= max(costs.values())
    assert max(loads) < 0.52 * sum(costs.values())  # these costs split almost evenly


def test_balanced_order_keeps_the_free_pages_in_order():
    order = parallel_read.balanced_order(PAGES, {"12-why": 5.0, "13-scale": 4.0}, 3)
    assert [doc for doc in order if doc not in ("12-why", "13-scale")] == [
        doc for doc in PAGES if doc not in ("12-why", "13-scale")
    ]


def test_reading_costs_guess_the_mean_for_a_new_notebook():
    seconds = {"/src/docs/a": 4.0, "/src/docs/b": 8.0, "/src/docs/sub/c": 1.0}
    costs = parallel_read.reading_costs(
        ["a", "b", "new", "sub/c", "api"], ["a", "b", "new"], seconds
    )
    assert costs == {"a": 4.0, "b": 8.0, "new": 6.0}  # the mean of those being read


def test_the_first_timing_that_knows_a_page_wins():
    caches = {"/elsewhere/docs/a": 4.0}
    hints = {"a": 40.0, "b": 8.0}
    assert parallel_read.reading_costs(["a", "b"], ["a", "b"], caches, hints) == {
        "a": 4.0,
        "b": 8.0,
    }


def test_benchmark_results_give_the_cold_build_timings(tmp_path):
    results = tmp_path / "build.json"
    steps = [
        {"name": "cold", "executed": {"01-rnn": 23.0, "sub/page": 2.0}},
        {"name": "code edit", "executed": {"01-rnn": 99.0}},
    ]
    results.write_text(json.dumps({"steps": steps}), encoding="utf-8")
    assert parallel_read.benchmark_seconds(results) == {"01-rnn": 23.0, "sub/page": 2.0}
    assert parallel_read.benchmark_seconds(tmp_path / "missing.json") == {}


def _app(cache: Path, parallel: int) -> SimpleNamespace:
    config = SimpleNamespace(
        nb_execution_mode="cache", nb_execution_cache_path=str(cache), parallel_read_timings=""
    )
    return SimpleNamespace(config=config, parallel=parallel)


@pytest.mark.parametrize(
    ("parallel", "preset", "threads"),
    [(2, None, "2"), (4, None, "1"), (1, None, None), (2, "3", "3")],
)
def test_parallel_kernels_share_the_cores(tmp_path, monkeypatch, parallel, preset, threads):
    environ = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if preset is not None:
        environ["OMP_NUM_THREADS"] = preset
    monkeypatch.setattr(os, "environ", environ)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    parallel_read.share_cores(_app(tmp_path / "cache", parallel))
    assert os.environ.get("OMP_NUM_THREADS") == threads


def test_kernel_threads_never_drop_below_one():
    assert parallel_read.kernel_threads(3, 2) == 1
    assert parallel_read.kernel_threads(2, None) == 1


def _cache_with(folder: Path, seconds: dict[str, float]) -> None:
    cache = get_cache(str(folder))
    for uri, s in seconds.items():
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(f"x = {s!r}")])
        cache.cache_notebook_bundle(
            CacheBundleIn(nb, uri, data={"execution_seconds": s}), check_validity=False
        )


def test_known_seconds_prefer_the_current_cache_over_its_siblings(tmp_path):
    _cache_with(tmp_path / "old", {"/p/docs/a.md": 5.0, "/p/docs/b.md": 7.0})
    _cache_with(tmp_path / "new", {"/p/docs/a.md": 2.0})
    assert parallel_read.known_seconds(tmp_path / "new") == {"/p/docs/a": 2.0, "/p/docs/b": 7.0}


@pytest.mark.parametrize(("parallel", "after"), [(2, 3), (4, 5), (1, 1)])
def test_pages_are_written_with_one_writer_per_reader(tmp_path, parallel, after):
    # Sphinx writes with app.parallel - 1 forked writers (the main process
    # resolves references meanwhile); after reading, one more.
    app = _app(tmp_path / "cache", parallel)
    assert parallel_read.write_with_every_core(app, None) == []  # no page to rewrite
    assert app.parallel == after


def test_what_was_read_is_frozen_out_of_the_collectors_walks(tmp_path):
    import gc

    read = [[i] for i in range(1000)]  # stands for the environment's objects
    assert all(gc.is_tracked(r) for r in read)  # lists are: the collector walks them
    app = _app(tmp_path / "cache", 2)
    try:
        before = gc.get_freeze_count()
        assert parallel_read.freeze_what_was_read(app, None) == []  # no page to rewrite
        assert gc.get_freeze_count() >= before + len(read)
        walked = {id(o) for generation in range(3) for o in gc.get_objects(generation)}
        assert not walked & {id(r) for r in read}  # in no generation the collector walks
    finally:
        gc.unfreeze()  # the rest of the suite keeps an ordinary collector
