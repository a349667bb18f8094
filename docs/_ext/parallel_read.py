"""Make Sphinx's parallel reading (``sphinx-build -j``) safe and worth it.

With ``-j N`` Sphinx forks reader processes, and each executes the notebooks
of its pages. Three things go wrong without this extension:

- On a fresh execution cache, every reader finds no database and creates its
  tables at the same moment; sqlite then fails with "table settings already
  exists". Opening the cache once in the main process, before the fork,
  creates the database so the readers only ever open it.
- Sphinx cuts the sorted list of pages into a few contiguous chunks, one per
  reader process. The chapters sort first, so nearly all of them land in one
  chunk and execute one after another. Reordering the list (which the
  ``env-before-read-docs`` event allows) spreads the notebooks over the
  chunks that start first, balanced by how long each one took when it last
  executed: in this build folder's execution caches or, for a fresh clone,
  in the results of ``make bench-build`` (``parallel_read_timings``).
- Each kernel's torch starts one thread per core, so N kernels run N times
  as many threads as there are cores, and a multi-threaded operation waits
  for whichever of its threads is not running. In a parallel build on a
  busy machine, chapter 7 once measured its batched product slower than the
  loop it replaces; every timing the chapters show suffers. The kernels therefore get
  ``OMP_NUM_THREADS`` = cores / N (unless it is already set), set as the
  build starts; serial builds
  keep torch's default. The chapters' numbers are the same with one thread
  or two (two whole builds compared); only their timings differ.

Once the pages are read, two more hooks speed up the writing: one writer
process per core (``write_with_every_core``), and the environment moved out
of the garbage collector's way before the writers fork (``freeze_what_was_read``).
"""

from __future__ import annotations

import gc
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from jupyter_cache import get_cache
from sphinx.util.parallel import make_chunks

# Seconds assumed for a notebook that has never executed here.
DEFAULT_SECONDS = 10.0


def open_execution_cache(folder: str | Path) -> dict[str, float]:
    """Create or open the execution cache's database and read its timings.

    Args:
        folder: the ``nb_execution_cache_path`` folder.

    Returns:
        The execution seconds of each cached notebook, keyed by its source
        path without the suffix (``/.../docs/03-self-attention``).
    """
    records = get_cache(str(folder)).list_cache_records()
    newest = sorted(records, key=lambda record: record.created)
    return {
        Path(record.uri).with_suffix("").as_posix(): float(record.data["execution_seconds"])
        for record in newest
        if isinstance(record.data, dict) and "execution_seconds" in record.data
    }


def known_seconds(folder: Path) -> dict[str, float]:
    """Execution seconds recorded in this cache and its sibling caches.

    conf.py keeps a few caches, one per version of the package; a cache that
    is new because the package changed has no timings yet, but its siblings
    have the same notebooks' timings from before the change. The current
    folder's database is opened (and created) first, and its timings win.
    """
    seconds: dict[str, float] = {}
    siblings = [p for p in folder.parent.iterdir() if p != folder and (p / "global.db").is_file()]
    for sibling in sorted(siblings, key=lambda p: p.stat().st_mtime):
        seconds.update(open_execution_cache(sibling))
    seconds.update(open_execution_cache(folder))
    return seconds


def benchmark_seconds(results: Path) -> dict[str, float]:
    """Execution seconds of the cold build in a ``benchmarks/build.py`` results file.

    Returns:
        Seconds keyed by page name; empty if the file does not exist.
    """
    if not results.is_file():
        return {}
    steps = json.loads(results.read_text(encoding="utf-8")).get("steps", [])
    cold = next((step for step in steps if step.get("name") == "cold"), {})
    return {doc: float(s) for doc, s in cold.get("executed", {}).items()}


def _lookup(seconds: Mapping[str, float], doc: str) -> float | None:
    """The seconds of a page, keyed by its name or by its source path."""
    return next((s for key, s in seconds.items() if key == doc or key.endswith("/" + doc)), None)


def reading_costs(
    docnames: Iterable[str], notebooks: Iterable[str], *timings: Mapping[str, float]
) -> dict[str, float]:
    """Expected reading cost of each page: its notebook's last execution time.

    Args:
        docnames: the pages Sphinx is about to read.
        notebooks: those of them that are notebooks (the others cost nothing).
        *timings: execution seconds keyed by source path without suffix (as
            from :func:`known_seconds`) or by page name (as from
            :func:`benchmark_seconds`); the first that knows a page wins.

    Returns:
        Seconds per notebook page; a notebook with no timing gets the mean of
        the known ones (or ``DEFAULT_SECONDS`` when there are none).
    """
    notebooks = set(notebooks)
    by_page: dict[str, float | None] = {}
    for doc in docnames:
        if doc in notebooks:
            found = (_lookup(seconds, doc) for seconds in timings)
            by_page[doc] = next((s for s in found if s is not None), None)
    known = [s for s in by_page.values() if s is not None]
    default = sum(known) / len(known) if known else DEFAULT_SECONDS
    return {doc: default if s is None else s for doc, s in by_page.items()}


def balanced_order(docnames: list[str], costs: Mapping[str, float], nproc: int) -> list[str]:
    """Order pages so that Sphinx's chunks share the notebook work evenly.

    Sphinx cuts the list into chunks of sizes fixed by the number of pages and
    processes (``make_chunks``) and starts the first ``nproc`` chunks at once.
    The costly pages, most costly first, go to the least loaded of those first
    chunks that still has room (to a later chunk only when they are full);
    the free pages fill the remaining places in their original order.

    Args:
        docnames: the pages to read, in Sphinx's order.
        costs: expected seconds per page; a page not listed costs nothing.
        nproc: the number of reader processes (``-j``).

    Returns:
        The same pages, reordered.
    """
    sizes = [len(chunk) for chunk in make_chunks(docnames, nproc)]
    chunks: list[list[str]] = [[] for _ in sizes]
    loads = [0.0] * len(sizes)
    costly = sorted((d for d in docnames if costs.get(d, 0.0) > 0), key=lambda d: (-costs[d], d))
    free = iter(d for d in docnames if costs.get(d, 0.0) <= 0)
    for doc in costly:
        room = [i for i, size in enumerate(sizes) if len(chunks[i]) < size]
        first = [i for i in room if i < nproc] or room
        target = min(first, key=lambda i: (loads[i], i))
        chunks[target].append(doc)
        loads[target] += costs[doc]
    for chunk, size in zip(chunks, sizes, strict=True):
        chunk.extend(next(free) for _ in range(size - len(chunk)))
    return [doc for chunk in chunks for doc in chunk]


def kernel_threads(nproc: int, cores: int | None) -> int:
    """Torch threads per kernel so that ``nproc`` kernels share the cores.

    Args:
        nproc: the number of reader processes (``-j``).
        cores: the number of CPU cores (``os.cpu_count()``; None if unknown).

    Returns:
        At least one thread.
    """
    return max(1, (cores or 1) // nproc)


def share_cores(app: Any) -> None:
    """Set the kernels' thread count, as the extension is set up.

    Kernels start in the readers, forked later, and inherit the variable; so
    does the warm kernel server (docs/_ext/warm_kernels.py), which conf.py
    sets up after this extension and which starts at once. Sphinx knows
    ``-j`` before it sets up any extension, and myst-nb, set up first, has
    registered ``nb_execution_mode`` (read from conf.py or ``-D`` when asked).
    """
    mode = getattr(app.config, "nb_execution_mode", None)  # None without myst-nb
    if mode == "cache" and app.parallel > 1:
        threads = kernel_threads(app.parallel, os.cpu_count())
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))


def _before_reading(app: Any, env: Any, docnames: list[str]) -> None:
    """Before the readers fork: open the cache, reorder the pages."""
    if app.config.nb_execution_mode != "cache":
        return
    folder = Path(app.config.nb_execution_cache_path)
    open_execution_cache(folder)  # creates the database if it is new
    if app.parallel <= 1 or not docnames:
        return
    notebooks = [d for d in docnames if "```{code-cell}" in env.doc2path(d).read_text("utf-8")]
    hints = benchmark_seconds(Path(app.config.parallel_read_timings))
    costs = reading_costs(docnames, notebooks, known_seconds(folder), hints)
    docnames[:] = balanced_order(docnames, costs, app.parallel)


def write_with_every_core(app: Any, env: Any) -> list[str]:
    """After reading (``env-updated``): as many writer processes as there were readers.

    Sphinx writes pages with ``app.parallel - 1`` forked writers while the
    main process resolves each page's references, so ``-j 2`` writes with
    one: the main process finishes its part early and one core idles through
    most of the writing (4 of its 9 seconds in a cold build of the book).
    Raising ``app.parallel`` by one once the pages are read gives the writing
    one writer per core, and changes nothing else: reading is over, and the
    pages come out the same.
    """
    if app.parallel > 1:
        app.parallel += 1
    return []


def freeze_what_was_read(app: Any, env: Any) -> list[str]:
    """After reading (``env-updated``): keep the collector away from what was read.

    By the end of reading, the main process holds the whole environment,
    about 600,000 objects that live until the build ends. Each full
    collection walks all of them again: in the main process as it resolves
    every page's references, and in every writer it forks, where the walk
    also copies the pages it touches. ``gc.freeze()`` moves them into the
    collector's permanent generation, which it never walks. In a full
    rewrite of the book (``-E`` with every notebook cached) the writing took
    0.9 s less, of 10 s. Objects made later are collected as before.
    """
    gc.freeze()
    return []


def setup(app: Any) -> dict[str, bool]:
    """Register the hook that runs in the main process before the readers fork."""
    # A benchmarks/build.py results file whose timings order a fresh build.
    app.add_config_value("parallel_read_timings", "", "", types=frozenset({str}))
    share_cores(app)
    app.connect("env-before-read-docs", _before_reading)
    app.connect("env-updated", write_with_every_core)
    app.connect("env-updated", freeze_what_was_read)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
