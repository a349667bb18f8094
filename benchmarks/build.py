"""Time cold and incremental builds of the book (run by ``make bench-build``).

In a temporary copy of the project (the working tree is never touched), with
its own ``ATTENTION_BUILD_DIR``, the script runs the Makefile's ``make html``
command (passed after ``--``) nine times:

1. cold: empty execution cache, empty output; every chapter executes;
2. no change: nothing edited;
3. prose edit: a sentence added to one chapter's text;
4. code edit: a statement added to a code cell of that chapter;
5. results edit: ``benchmarks/results/imports.json`` written again (same
   numbers, new bytes); conf.py's ``page_data`` makes exactly the
   benchmarks appendix, which plots the results, execute again (left out
   when a ``--chapters`` run does not copy it);
6.-9. package edits, each a comment added to one module (or a new module),
   chosen to show the precise re-execution of docs/_ext/package_deps.py: a
   page re-executes when a package file its kernel loaded changes, and only
   then (the site never shows outputs of older code, and never pays for
   an edit that cannot change a page):

   6. a module one chapter loads (``rnn_training.py``, chapter 1's);
   7. a module several chapters load (``gpt.py``);
   8. a module no chapter imports by name, loaded only through another
      (``kv_cache.py``, which ``gpt.py`` imports);
   9. a new module that no chapter loads.

   Which chapters loaded which file is read from the records the cold
   build left in the execution cache.

With ``--fp-command`` (``make bench-build`` passes ``make html-fp``'s build)
two more builds follow, of the chapters on a second floating-point code path
as ``make test`` runs them, with their own build folder and cache:

10. fp cold: every chapter executes under the settings of ``--fp-settings``;
11. fp no change: nothing edited; executes nothing.

Before the builds and after them it times a fixed piece of work on one
thread (``REFERENCE``, torch alone): the machine's speed in this run, by
which runs at different times compare. For each build it records the wall
time, the CPU time of the build and the kernels it started, the pages
Sphinx read again and the notebooks that executed (MyST-NB's "Executing
notebook" log lines) with their execution seconds, and the ratios to the
cold build. It prints a table and the targets, writes
``benchmarks/results/build.json`` and exits with status 1 if a target fails:

- a no-change rebuild takes at most 10 % of a cold build's wall time;
- editing a code cell of one chapter executes exactly that chapter;
- editing its prose executes nothing;
- new benchmark results execute exactly the benchmarks appendix;
- a package edit executes exactly the chapters whose kernels loaded the
  edited file: one chapter, several, those that loaded it through another
  module, and none for a module no chapter loads;
- with ``--fp-command``: the second code path's no-change rebuild executes
  nothing (so ``make test`` pays for it only when the chapters or the package
  change) and its cold build executes every chapter.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import importlib.metadata
import json
import os
import platform
import re
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "build.json"
# The chapter the edits land in: small, so that re-executing it is cheap.
CHAPTER = "03-self-attention-without-weights"
# The page that plots benchmarks/results/*.json (conf.py's page_data).
RESULTS_CHAPTER = "benchmarks"
# The no-change rebuild may cost at most this share of the cold build.
NO_CHANGE_LIMIT = 0.10
CODE_CELL = "```{code-cell}"

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_EXECUTING = re.compile(r"^(?P<path>\S.*?)(?::\d+)?: Executing notebook using", re.M)
_EXECUTED = re.compile(
    r"^(?P<path>\S.*?)(?::\d+)?: Executed notebook in (?P<s>[0-9.]+) seconds", re.M
)
# Extensions may log between "updating environment: " and Sphinx's counts
# (package_deps names the pages it sends to execute again).
_UPDATING = re.compile(r"updating environment: (?:.*\n)*?.*?(\d+) added, (\d+) changed")


# The machine's speed during a run: a fixed piece of the kind of work the
# chapters do (a small model's training steps, on one thread), in a fresh
# interpreter, timed before the builds and after them. It uses torch alone,
# so that runs of different versions of the book compare by it: on this
# project's machine the same cold build has taken 66 s at one hour and 92 s
# at another, and only the build's share of the reference says whether a
# change made it faster.
REFERENCE_STEPS = 400
REFERENCE = """
import sys, time, torch
from torch import nn
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.Linear(256, 64))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
x = torch.randn(32, 64, 64)
start = time.perf_counter()
for _ in range(int(sys.argv[1])):
    loss = model(x).square().mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
print(time.perf_counter() - start)
"""


def reference_seconds(steps: int = REFERENCE_STEPS, python: str = sys.executable) -> float:
    """Wall seconds of the reference work (:data:`REFERENCE`) on one thread."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [python, "-c", REFERENCE, str(steps)], env=env, capture_output=True, text=True, check=True
    )
    return float(done.stdout)


@dataclass
class Step:
    """One timed build."""

    name: str  # short label: cold, no change, ...
    what: str  # what was edited before the build
    wall_s: float  # wall-clock seconds of the build
    cpu_s: float  # user + system CPU seconds of the build and its kernels
    pages_outdated: tuple[int, int]  # Sphinx's count of pages to read: (added, changed)
    executed: dict[str, float]  # notebook -> execution seconds, in log order
    load_before: float  # 1-minute load average before the build
    load_after: float  # and after it
    wall_ratio: float = 0.0  # wall_s relative to the cold build
    cpu_ratio: float = 0.0  # cpu_s relative to the cold build


@dataclass
class Target:
    """A promise about the builds, and whether this run kept it."""

    name: str
    holds: bool
    detail: str


@dataclass
class Report:
    """Everything a run measured, as written to build.json."""

    date: str
    machine: dict[str, Any]
    command: list[str]
    chapter: str
    notebooks: list[str]
    steps: list[Step] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    # After the cold build: each package file -> the notebooks that loaded it.
    loaded_by: dict[str, list[str]] = field(default_factory=dict)
    # Seconds of the reference work (REFERENCE) before the builds and after.
    reference_s: list[float] = field(default_factory=list)


def executed_notebooks(log: str, docs: Path) -> dict[str, float]:
    """The notebooks a build executed, from MyST-NB's log lines.

    A notebook that executes logs "<source>: Executing notebook using ... CWD"
    and, when it succeeds, "<source>: Executed notebook in <s> seconds"; one
    taken from the cache logs "Using cached notebook" instead. In a parallel
    build the lines of different reader processes arrive chunk by chunk, each
    still prefixed with its source file.

    Args:
        log: the build's combined output.
        docs: the source folder, to name notebooks as Sphinx does
            (``03-self-attention-without-weights``, ``sub/page``).

    Returns:
        Each executed notebook's name mapped to its execution seconds (0.0 if
        the log has no "Executed" line for it), in the order they started.
    """
    log = _ANSI.sub("", log)
    seconds = {_docname(m["path"], docs): float(m["s"]) for m in _EXECUTED.finditer(log)}
    names = (_docname(m["path"], docs) for m in _EXECUTING.finditer(log))
    return {name: seconds.get(name, 0.0) for name in names}


def _docname(path: str, docs: Path) -> str:
    source = Path(path)
    try:
        return source.relative_to(docs).with_suffix("").as_posix()
    except ValueError:  # a path outside docs/: name it by its file alone
        return source.stem


def pages_outdated(log: str) -> tuple[int, int]:
    """Sphinx's count of pages to read, (added, changed), from its log.

    A page can be in both (a page with a globbed toctree is "changed" whenever
    pages are added), so the two are reported as Sphinx gives them.
    """
    match = _UPDATING.search(_ANSI.sub("", log))
    if match is None:
        raise ValueError("no 'updating environment' line in the build log")
    return int(match[1]), int(match[2])


def notebooks(docs: Path) -> list[str]:
    """The pages that are notebooks (they have code cells), by name."""
    return sorted(
        p.relative_to(docs).with_suffix("").as_posix()
        for p in docs.rglob("*.md")
        if CODE_CELL in p.read_text(encoding="utf-8")
    )


def copy_project(dest: Path, chapters: Collection[str] | None = None) -> None:
    """Copy what a build needs (conf.py, src/, docs/, benchmark results) into ``dest``.

    Generated pages (``docs/api``), caches and build output stay behind, so
    the copy builds cold.

    Args:
        dest: an empty or missing folder.
        chapters: if given, copy only these notebooks (by name) and no other
            notebook, for a quicker build; pages linking to the others then
            warn about missing documents.
    """
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / "conf.py", dest)
    # As in a fresh clone: the benchmarks appendix plots the results, and
    # build.json's timings order the parallel readers.
    results = dest / RESULTS.parent.relative_to(ROOT)
    results.mkdir(parents=True)
    for path in RESULTS.parent.glob("*.json"):
        shutil.copy2(path, results)
    shutil.copytree(ROOT / "src", dest / "src", ignore=shutil.ignore_patterns("__pycache__"))
    skip = ["api", "__pycache__", ".ipynb_checkpoints"]
    if chapters is not None:
        unknown = set(chapters) - set(notebooks(ROOT / "docs"))
        if unknown:
            raise ValueError(f"not notebooks in docs/: {sorted(unknown)}")
        skip += [f"{name}.md" for name in notebooks(ROOT / "docs") if name not in chapters]
    shutil.copytree(ROOT / "docs", dest / "docs", ignore=shutil.ignore_patterns(*skip))


def edit_prose(page: Path) -> None:
    """Add a sentence at the end of a page: text only, no code cell changes."""
    with page.open("a", encoding="utf-8") as f:
        f.write("\nThis sentence was added by the build benchmark.\n")


def edit_code(page: Path) -> None:
    """Add a statement to the first code cell that has no options.

    The statement is the cell's first line, so the cell's displayed result (its
    last expression) stays the same; any change to a cell's source misses the
    execution cache.
    """
    lines = page.read_text(encoding="utf-8").splitlines(keepends=True)
    for i, line in enumerate(lines[:-1]):
        if line.startswith(CODE_CELL) and not lines[i + 1].startswith((":", "---")):
            lines.insert(i + 1, "benchmark_edit = 1\n")
            page.write_text("".join(lines), encoding="utf-8")
            return
    raise ValueError(f"{page} has no code cell without options")


def edit_results(project: Path) -> None:
    """Write the import benchmark's results again, indented differently.

    The numbers stay the same, the bytes change: to the build, a new run.
    """
    path = project / "benchmarks" / "results" / "imports.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


@dataclass(frozen=True)
class ModuleEdit:
    """A package edit: a comment added to ``module`` (created if it does not exist)."""

    name: str  # the step's label
    module: str  # path under src/, "attention/gpt.py"
    loaded_by: str  # which chapters load it: "one", "several", "indirectly" or "none"
    what: str  # the same in words, for the target


MODULE_EDITS = (
    ModuleEdit("module: one", "attention/rnn_training.py", "one", "a module one chapter loads"),
    ModuleEdit("module: several", "attention/gpt.py", "several", "a module several chapters load"),
    ModuleEdit(
        "module: indirect",
        "attention/kv_cache.py",
        "indirectly",
        "a module loaded only through another",
    ),
    ModuleEdit(
        "module: none",
        "attention/_added_by_the_build_benchmark.py",
        "none",
        "a new module no chapter loads",
    ),
)


def edit_module(project: Path, module: str) -> None:
    """Add a comment to a package module, or create it holding only the comment."""
    with (project / "src" / module).open("a", encoding="utf-8") as f:
        f.write("# A comment added by the build benchmark.\n")


def loaded_modules(project: Path, build_dir: str = "_build") -> dict[str, list[str]]:
    """Each package file mapped to the notebooks whose kernels loaded it.

    Read from the records docs/_ext/package_deps.py leaves beside each cached
    execution, in the newest execution cache of ``project``'s build folder.
    """
    sys.path.insert(0, str(project / "docs" / "_ext"))
    try:  # by name: docs/_ext is no package, and jupyter-cache has no types
        package_deps = importlib.import_module("package_deps")
        get_cache = importlib.import_module("jupyter_cache").get_cache
    finally:
        sys.path.pop(0)
    caches = sorted(
        (project / build_dir / ".jupyter_cache").iterdir(), key=lambda p: p.stat().st_mtime
    )
    cache = get_cache(str(caches[-1]))
    loaded: dict[str, set[str]] = {}
    for record in cache.list_cache_records():
        files = package_deps.read_record(cache.get_cache_bundle(record.pk).nb) or {}
        for name in files:
            loaded.setdefault(name, set()).add(_docname(record.uri, project / "docs"))
    return {name: sorted(pages) for name, pages in sorted(loaded.items())}


def imported_by_name(docs: Path, module: str) -> list[str]:
    """The notebooks whose source names ``module`` ("attention/gpt.py") in an import."""
    dotted = module.removesuffix(".py").replace("/", ".")
    package, _, leaf = dotted.rpartition(".")
    pattern = re.compile(
        rf"^\s*(?:from\s+{re.escape(dotted)}\s+import|import\s+{re.escape(dotted)}\b"
        rf"|from\s+{re.escape(package)}\s+import\s+.*\b{re.escape(leaf)}\b)",
        re.M,
    )
    return [
        name
        for name in notebooks(docs)
        if pattern.search((docs / f"{name}.md").read_text(encoding="utf-8"))
    ]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def build(
    command: Sequence[str],
    project: Path,
    name: str,
    what: str,
    settings: dict[str, str] | None = None,
    build_dir: str = "_build",
) -> Step:
    """Run the build command in ``project`` and measure it.

    Args:
        command: the build command.
        project: the copy to build, the command's working folder.
        name: the step's short label.
        what: what was edited before the build.
        settings: extra environment variables for the build.
        build_dir: its ``ATTENTION_BUILD_DIR`` (execution cache), in ``project``.

    Raises:
        RuntimeError: if the build fails (its output's end is in the message).
    """
    env = {**os.environ, **(settings or {}), "ATTENTION_BUILD_DIR": str(project / build_dir)}
    load_before = os.getloadavg()[0]
    cpu = _children_cpu()
    start = time.perf_counter()
    result = subprocess.run(
        command, cwd=project, env=env, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - start
    cpu = _children_cpu() - cpu
    log = result.stdout + result.stderr
    if result.returncode != 0:
        raise RuntimeError(f"{name} build failed ({result.returncode}):\n{log[-4000:]}")
    return Step(
        name=name,
        what=what,
        wall_s=wall,
        cpu_s=cpu,
        pages_outdated=pages_outdated(log),
        executed=executed_notebooks(log, project / "docs"),
        load_before=load_before,
        load_after=os.getloadavg()[0],
    )


def module_targets(
    steps: Sequence[Step],
    loaded_by: dict[str, list[str]],
    by_name_imports: dict[str, list[str]],
    whole_book: bool = True,
) -> list[Target]:
    """The targets of the package edits (:data:`MODULE_EDITS`) among ``steps``.

    Each edit must execute exactly the notebooks that loaded the file. On the
    whole book (not a ``--chapters`` run), the files must also be loaded as
    :attr:`ModuleEdit.loaded_by` says, so that each step shows what it claims.
    """
    by_step = {step.name: step for step in steps}
    targets = []
    for edit in MODULE_EDITS:
        if edit.name not in by_step:
            continue
        expected = loaded_by.get(edit.module, [])
        executed = sorted(by_step[edit.name].executed)
        named = by_name_imports.get(edit.module, [])
        shape = {
            "one": len(expected) == 1,
            "several": len(expected) >= 2,
            "indirectly": bool(expected) and not named,
            "none": not expected,
        }[edit.loaded_by]
        targets.append(
            Target(
                f"edit to {edit.what} ({edit.module}) executes exactly the chapters that loaded it",
                executed == expected and (shape or not whole_book),
                f"loaded by {expected or 'no chapter'}"
                + (f" (imported by name in {named})" if named else "")
                + f"; executed {executed or 'nothing'}",
            )
        )
    return targets


def check_targets(
    steps: Sequence[Step],
    chapter: str,
    all_notebooks: Sequence[str],
    loaded_by: dict[str, list[str]] | None = None,
    by_name_imports: dict[str, list[str]] | None = None,
    whole_book: bool = True,
) -> list[Target]:
    """Compare the builds with the promises in this module's docstring."""
    by_name = {step.name: step for step in steps}
    cold, unchanged = by_name["cold"], by_name["no change"]
    prose, code = by_name["prose edit"], by_name["code edit"]
    share = unchanged.wall_s / cold.wall_s
    return [
        Target(
            "no-change rebuild <= 10% of cold",
            share <= NO_CHANGE_LIMIT and not unchanged.executed,
            f"{share:.1%} of the cold build's wall time "
            f"({unchanged.wall_s:.1f} s / {cold.wall_s:.1f} s); "
            f"executed {sorted(unchanged.executed) or 'nothing'}",
        ),
        Target(
            "code edit in one chapter executes exactly that chapter",
            list(code.executed) == [chapter],
            f"executed {list(code.executed) or 'nothing'}",
        ),
        Target(
            "prose edit executes nothing",
            not prose.executed,
            f"executed {list(prose.executed) or 'nothing'}; "
            f"{prose.pages_outdated[1]} page(s) changed",
        ),
        *(
            [
                Target(
                    "new benchmark results execute exactly the chapter that plots them",
                    list(by_name["results edit"].executed) == [RESULTS_CHAPTER],
                    f"executed {list(by_name['results edit'].executed) or 'nothing'}",
                )
            ]
            if "results edit" in by_name
            else []
        ),
        *module_targets(steps, loaded_by or {}, by_name_imports or {}, whole_book),
        *(
            [
                Target(
                    "second floating-point code path: cold executes every chapter",
                    sorted(by_name["fp cold"].executed) == sorted(all_notebooks),
                    f"executed {len(by_name['fp cold'].executed)} of {len(all_notebooks)}"
                    f" notebooks; {by_name['fp cold'].wall_s / cold.wall_s:.0%} of the cold"
                    " build's wall time",
                ),
                Target(
                    "second floating-point code path: no change executes nothing",
                    not by_name["fp no change"].executed,
                    f"{by_name['fp no change'].wall_s:.1f} s; executed "
                    f"{sorted(by_name['fp no change'].executed) or 'nothing'}",
                ),
            ]
            if "fp cold" in by_name
            else []
        ),
    ]


def _machine() -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for dist in ("sphinx", "myst-nb", "torch"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        **versions,
    }


def table(steps: Sequence[Step]) -> str:
    """The steps as a plain-text table."""
    head = (
        f"{'build':<16} {'wall s':>7} {'x cold':>7} {'cpu s':>7} {'x cold':>7} "
        f"{'added+changed':>13} {'load':>10}  executed"
    )
    rows = [head, "-" * len(head)]
    for s in steps:
        ran = ", ".join(s.executed) if len(s.executed) <= 2 else f"{len(s.executed)} notebooks"
        pages = "{}+{}".format(*s.pages_outdated)
        rows.append(
            f"{s.name:<16} {s.wall_s:7.1f} {s.wall_ratio:7.3f} {s.cpu_s:7.1f} {s.cpu_ratio:7.3f} "
            f"{pages:>13} {s.load_before:4.1f}-{s.load_after:<5.1f}  {ran or '-'}"
        )
    return "\n".join(rows)


def reference_line(report: Report) -> str:
    """The machine's speed in this run, and the cold build in units of it."""
    before, after = report.reference_s
    cold = report.steps[0].wall_s / ((before + after) / 2)
    return (
        f"reference work ({REFERENCE_STEPS} small training steps, one thread): {before:.2f} s "
        f"before the builds, {after:.2f} s after; the cold build took {cold:.1f} times it"
    )


def chapter_table(steps: Sequence[Step]) -> str:
    """Each notebook's execution seconds in the builds that executed every notebook.

    One column per cold build ("cold", and "fp cold" when it ran), notebooks
    slowest first, and their sum: the kernels' share of a cold build (with
    ``-j N`` N kernels run at once, so the sum exceeds the wall time).
    """
    colds = [s for s in steps if s.name in ("cold", "fp cold")]
    names = sorted(
        {n for s in colds for n in s.executed}, key=lambda n: -colds[0].executed.get(n, 0)
    )
    head = "".join(f"{s.name + ' s':>10}" for s in colds) + "  notebook"
    rows = [head, "-" * len(head)]
    for name in names:
        cells = "".join(
            f"{s.executed[name]:10.1f}" if name in s.executed else f"{'-':>10}" for s in colds
        )
        rows.append(f"{cells}  {name}")
    rows.append("".join(f"{sum(s.executed.values()):10.1f}" for s in colds) + "  sum")
    return "\n".join(rows)


def run(
    command: Sequence[str],
    project: Path,
    chapter: str = CHAPTER,
    log: Callable[..., None] = print,
    fp_command: Sequence[str] | None = None,
    fp_settings: dict[str, str] | None = None,
) -> Report:
    """Run the builds in a copy made by :func:`copy_project`; check the targets.

    ``fp_command``, with the environment ``fp_settings``, adds the two builds
    on the second floating-point code path (steps 7 and 8).
    """
    docs = project / "docs"
    page = docs / f"{chapter}.md"
    report = Report(
        date=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        machine=_machine(),
        command=list(command),
        chapter=chapter,
        notebooks=notebooks(docs),
    )
    plan: list[tuple[str, str, Callable[[], None]]] = [
        ("cold", "nothing: empty cache and output", lambda: None),
        ("no change", "nothing", lambda: None),
        ("prose edit", f"a sentence added to {chapter}", lambda: edit_prose(page)),
        ("code edit", f"a statement added to a code cell of {chapter}", lambda: edit_code(page)),
        (
            "results edit",
            "benchmarks/results/imports.json written again",
            lambda: edit_results(project),
        ),
        *(
            (
                edit.name,
                f"a comment added to src/{edit.module}",
                partial(edit_module, project, edit.module),
            )
            for edit in MODULE_EDITS
        ),
    ]
    if RESULTS_CHAPTER not in report.notebooks:  # a --chapters run without it
        plan = [step for step in plan if step[0] != "results edit"]
    no_settings: dict[str, str] = {}
    builds = [(name, what, edit, command, no_settings, "_build") for name, what, edit in plan]
    if fp_command is not None:
        on = " ".join(f"{k}={v}" for k, v in (fp_settings or {}).items())
        builds += [
            (name, f"{what}, {on}", lambda: None, fp_command, fp_settings or {}, "_build/fp")
            for name, what in (("fp cold", "nothing: empty cache"), ("fp no change", "nothing"))
        ]
    report.reference_s.append(reference_seconds())
    for name, what, edit, cmd, settings, build_dir in builds:
        edit()
        log(f"{name} build ({what}) ...", flush=True)
        step = build(cmd, project, name, what, settings, build_dir)
        log(f"  {step.wall_s:.1f} s, executed {len(step.executed)}", flush=True)
        report.steps.append(step)
        if name == "cold":
            report.loaded_by = loaded_modules(project)
    report.reference_s.append(reference_seconds())
    cold = report.steps[0]
    for step in report.steps:
        step.wall_ratio = step.wall_s / cold.wall_s
        step.cpu_ratio = step.cpu_s / cold.cpu_s if cold.cpu_s else 0.0
    by_name_imports = {e.module: imported_by_name(docs, e.module) for e in MODULE_EDITS}
    report.targets = check_targets(
        report.steps,
        chapter,
        report.notebooks,
        report.loaded_by,
        by_name_imports,
        whole_book=report.notebooks == notebooks(ROOT / "docs"),
    )
    return report


def _resolve(command: Sequence[str]) -> list[str]:
    """Make a program path relative to the project (``.venv/bin/...``) absolute."""
    program = Path(command[0])
    if not program.is_absolute() and len(program.parts) > 1:
        program = ROOT / program
    return [str(program), *command[1:]]


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run the builds, print and save the results."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("command", nargs="+", help="the build command, after --")
    parser.add_argument("--workdir", type=Path, help="build here and keep it (default: a temp dir)")
    parser.add_argument("--chapters", nargs="+", help="copy only these notebooks (a quick run)")
    parser.add_argument("--chapter", default=CHAPTER, help="the chapter to edit")
    parser.add_argument(
        "--output", type=Path, help=f"results file (default: {RESULTS}; none with --chapters)"
    )
    parser.add_argument(
        "--fp-command",
        help="the build on a second floating-point code path, one string (make html-fp's)",
    )
    parser.add_argument(
        "--fp-settings",
        default="",
        help="its environment, as VAR=value words (make html-fp's FP_SETTINGS)",
    )
    args = parser.parse_args(argv)
    output = args.output or (None if args.chapters else RESULTS)
    command = _resolve(args.command)
    fp_command = _resolve(shlex.split(args.fp_command)) if args.fp_command else None
    fp_settings = dict(word.split("=", 1) for word in shlex.split(args.fp_settings))

    with tempfile.TemporaryDirectory(prefix="attention-bench-") as tmp:
        project = args.workdir.resolve() if args.workdir else Path(tmp) / "book"
        if project.exists() and any(project.iterdir()):
            parser.error(f"{project} is not empty")
        copy_project(project, args.chapters)
        print(f"building a copy in {project} with: {' '.join(command)}", flush=True)
        report = run(command, project, args.chapter, print, fp_command, fp_settings)

    print()
    print(table(report.steps))
    print("\nexecution seconds of each notebook in the cold builds:")
    print(chapter_table(report.steps))
    print(f"\n{report.machine['cpus']} CPUs, {report.date}; load = 1-minute load average")
    print(reference_line(report))
    print("\ntargets:")
    for target in report.targets:
        print(f"  [{'ok' if target.holds else 'FAILED'}] {target.name}: {target.detail}")
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(asdict(report), indent=2) + "\n", encoding="utf-8")
        print(f"\nwrote {output}")
    return 0 if all(target.holds for target in report.targets) else 1


if __name__ == "__main__":
    sys.exit(main())
