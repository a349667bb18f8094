"""benchmarks/build.py reads build logs and judges its targets correctly.

The benchmark itself takes minutes and measures times; none of that runs
here. These tests check the parts whose mistakes would make its report lie:
which notebooks a log says executed, how many pages were read, the edits,
and the targets.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.build import (
    CHAPTER,
    RESULTS_CHAPTER,
    Step,
    check_targets,
    copy_project,
    edit_code,
    edit_results,
    executed_notebooks,
    pages_outdated,
)

DOCS = Path("/tmp/book/docs")

# A parallel build's log: the reader processes' lines arrive chunk by chunk,
# Sphinx may colour them, and cached notebooks log a different line.
LOG = """\
updating environment: [new config] 33 added, 0 changed, 0 removed
/tmp/book/docs/13-attention-at-scale.md: Executing notebook using local CWD [mystnb]
\x1b[01m/tmp/book/docs/13-attention-at-scale.md: Executed notebook in 18.80 seconds\x1b[39;49;00m
/tmp/book/docs/01-the-trouble.md: Using cached notebook: ID=1 [mystnb]
reading sources... [ 33%] 12-why-attention-works .. api/attention/attention.flash
/tmp/book/docs/sub/page.md:3: Executing notebook using local CWD [mystnb]
\x1b[01m/tmp/book/docs/sub/page.md\x1b[39;49;00m:3: Executed notebook in 2.50 seconds
/tmp/book/docs/12-why.md: Executing notebook using temporary CWD [mystnb]
"""


def test_executed_notebooks_are_read_from_the_log_in_order():
    assert executed_notebooks(LOG, DOCS) == {
        "13-attention-at-scale": 18.8,
        "sub/page": 2.5,
        "12-why": 0.0,  # started, no "Executed" line (the build failed there)
    }


def test_cached_notebooks_and_other_lines_are_not_executions():
    log = "/tmp/book/docs/a.md: Using cached notebook: ID=3 [mystnb]\nExecuting notebooks...\n"
    assert executed_notebooks(log, DOCS) == {}


def test_a_notebook_outside_docs_is_named_by_its_file():
    log = "/elsewhere/x.md: Executing notebook using local CWD [mystnb]\n"
    assert executed_notebooks(log, DOCS) == {"x": 0.0}


def test_pages_outdated_are_added_and_changed():
    assert pages_outdated(LOG) == (33, 0)
    assert pages_outdated("updating environment: 0 added, 2 changed, 1 removed\n") == (0, 2)
    with pytest.raises(ValueError, match="updating environment"):
        pages_outdated("build succeeded.\n")


def test_edit_code_changes_the_first_cell_without_options(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "```{code-cell} ipython3\n:tags: [remove-cell]\n%matplotlib inline\n```\n\nText.\n\n"
        "```{code-cell} ipython3\nimport torch\nx = 1\nx\n```\n",
        encoding="utf-8",
    )
    edit_code(page)
    cells = page.read_text(encoding="utf-8").split("```{code-cell} ipython3\n")
    assert cells[1].startswith(":tags: [remove-cell]\n%matplotlib inline\n")
    assert cells[2] == "benchmark_edit = 1\nimport torch\nx = 1\nx\n```\n"  # x still displayed


def test_edit_code_refuses_a_page_without_a_plain_cell(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Only prose\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no code cell"):
        edit_code(page)


def test_copy_project_copies_only_the_chosen_chapter(tmp_path):
    copy_project(tmp_path / "book", chapters=[CHAPTER])
    docs = tmp_path / "book" / "docs"
    copied = {p.stem for p in docs.glob("*.md") if "```{code-cell}" in p.read_text("utf-8")}
    assert copied == {CHAPTER}
    assert (docs / "index.md").is_file()
    assert not (docs / "api").exists()
    assert (tmp_path / "book" / "src" / "attention" / "toy.py").is_file()
    assert (tmp_path / "book" / "conf.py").is_file()
    # The timings of the last benchmark order a fresh clone's parallel build,
    # and the benchmarks appendix plots the suites' results.
    results = tmp_path / "book" / "benchmarks" / "results"
    for suite in ("build", "imports", "kernels", "layers", "generation"):
        assert (results / f"{suite}.json").is_file()


def test_edit_results_changes_the_bytes_not_the_numbers(tmp_path):
    copy_project(tmp_path / "book", chapters=[CHAPTER])
    path = tmp_path / "book" / "benchmarks" / "results" / "imports.json"
    before = path.read_bytes()
    edit_results(tmp_path / "book")
    assert path.read_bytes() != before
    assert json.loads(path.read_bytes()) == json.loads(before)


def _step(name: str, wall: float, executed: list[str]) -> Step:
    return Step(name, "", wall, wall, (0, 1), dict.fromkeys(executed, 1.0), 0.0, 0.0)


def _steps(no_change: float = 5.0, code: tuple[str, ...] = (CHAPTER,)) -> list[Step]:
    books = [CHAPTER, "01-other"]
    return [
        _step("cold", 100.0, books),
        _step("no change", no_change, []),
        _step("prose edit", 6.0, []),
        _step("code edit", 9.0, list(code)),
        _step("package edit", 95.0, books),
    ]


def test_the_results_target_checks_that_only_chapter_13_executes():
    books = [CHAPTER, RESULTS_CHAPTER, "01-other"]
    for executed, holds in [([RESULTS_CHAPTER], True), (books, False), ([], False)]:
        steps = [*_steps(), _step("results edit", 12.0, executed)]
        steps[0] = _step("cold", 100.0, books)
        steps[4] = _step("package edit", 95.0, books)
        targets = check_targets(steps, CHAPTER, books)
        assert [t.holds for t in targets] == [True, True, True, holds, True]
        assert "results" in targets[3].name


def test_targets_hold_for_a_good_run():
    targets = check_targets(_steps(), CHAPTER, [CHAPTER, "01-other"])
    assert [t.holds for t in targets] == [True, True, True, True]
    assert "5.0% of the cold build" in targets[0].detail


def test_targets_fail_for_a_slow_no_change_rebuild_or_extra_executions():
    slow = check_targets(_steps(no_change=10.5), CHAPTER, [CHAPTER, "01-other"])
    assert [t.holds for t in slow] == [False, True, True, True]
    extra = check_targets(_steps(code=(CHAPTER, "01-other")), CHAPTER, [CHAPTER, "01-other"])
    assert [t.holds for t in extra] == [True, False, True, True]
    missing = check_targets(_steps(), CHAPTER, [CHAPTER, "01-other", "02-stale"])
    assert [t.holds for t in missing] == [True, True, True, False]


def test_the_second_floating_point_path_executes_all_once_then_nothing():
    books = [CHAPTER, "01-other"]
    for cold, again, holds in [
        (books, [], [True, True]),
        ([CHAPTER], [], [False, True]),
        (books, [CHAPTER], [True, False]),
    ]:
        steps = [*_steps(), _step("fp cold", 80.0, cold), _step("fp no change", 3.0, again)]
        targets = check_targets(steps, CHAPTER, books)
        assert [t.holds for t in targets[4:]] == holds
        assert "floating-point" in targets[4].name
        assert "80% of the cold build" in targets[4].detail
