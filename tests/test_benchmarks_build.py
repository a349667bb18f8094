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
    MODULE_EDITS,
    REFERENCE,
    RESULTS_CHAPTER,
    Report,
    Step,
    chapter_table,
    check_targets,
    copy_project,
    edit_code,
    edit_module,
    edit_results,
    executed_notebooks,
    imported_by_name,
    module_targets,
    pages_outdated,
    reference_line,
    reference_seconds,
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
    between = (
        "updating environment: package_deps: 01-a.md executes again (attention/x.py changed)\n"
        "package_deps: 02-b.md executes again (attention/x.py changed)\n"
        "0 added, 2 changed, 0 removed\n"
    )
    assert pages_outdated(between) == (0, 2)
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
    ]


def test_the_results_target_checks_that_only_chapter_13_executes():
    books = [CHAPTER, RESULTS_CHAPTER, "01-other"]
    for executed, holds in [([RESULTS_CHAPTER], True), (books, False), ([], False)]:
        steps = [*_steps(), _step("results edit", 12.0, executed)]
        steps[0] = _step("cold", 100.0, books)
        targets = check_targets(steps, CHAPTER, books)
        assert [t.holds for t in targets] == [True, True, True, holds]
        assert "results" in targets[3].name


def test_targets_hold_for_a_good_run():
    targets = check_targets(_steps(), CHAPTER, [CHAPTER, "01-other"])
    assert [t.holds for t in targets] == [True, True, True]
    assert "5.0% of the cold build" in targets[0].detail


def test_targets_fail_for_a_slow_no_change_rebuild_or_extra_executions():
    slow = check_targets(_steps(no_change=10.5), CHAPTER, [CHAPTER, "01-other"])
    assert [t.holds for t in slow] == [False, True, True]
    extra = check_targets(_steps(code=(CHAPTER, "01-other")), CHAPTER, [CHAPTER, "01-other"])
    assert [t.holds for t in extra] == [True, False, True]


# Which chapters loaded each edited file, as the cold build's records say.
LOADED_BY = {
    "attention/rnn_training.py": ["01-long"],
    "attention/gpt.py": ["05-causal", "09-logits"],
    "attention/kv_cache.py": ["05-causal", "09-logits"],
}


def _module_steps(**executed: list[str]) -> list[Step]:
    default = {e.name: LOADED_BY.get(e.module, []) for e in MODULE_EDITS}
    return [_step(e.name, 5.0, executed.get(e.loaded_by, default[e.name])) for e in MODULE_EDITS]


def test_package_edits_must_execute_exactly_the_chapters_that_loaded_the_file():
    good = module_targets(_module_steps(), LOADED_BY, {})
    assert [t.holds for t in good] == [True, True, True, True]
    assert "loaded by ['01-long']; executed ['01-long']" in good[0].detail
    # One chapter too many, one too few, any chapter for an unused module.
    for kind, executed in [
        ("one", ["01-long", "05-causal"]),
        ("several", ["05-causal"]),
        ("indirectly", []),
        ("none", ["01-long"]),
    ]:
        targets = module_targets(_module_steps(**{kind: executed}), LOADED_BY, {})
        failed = [e.loaded_by for e, t in zip(MODULE_EDITS, targets, strict=True) if not t.holds]
        assert failed == [kind]


def test_each_package_edit_must_show_what_it_claims_on_the_whole_book():
    # kv_cache.py named in an import: not an indirect load, whatever executes.
    named = {"attention/kv_cache.py": ["09-logits"]}
    targets = module_targets(_module_steps(), LOADED_BY, named)
    assert [t.holds for t in targets] == [True, True, False, True]
    assert "imported by name in ['09-logits']" in targets[2].detail
    # gpt.py loaded by one chapter only: the "several" step shows nothing.
    one = {**LOADED_BY, "attention/gpt.py": ["05-causal"]}
    steps = _module_steps(several=["05-causal"])
    assert [t.holds for t in module_targets(steps, one, {})] == [True, False, True, True]
    # A --chapters run copies few chapters: only exactness is checked.
    assert all(t.holds for t in module_targets(steps, one, named, whole_book=False))


def test_imports_by_name_are_found_in_their_forms(tmp_path):
    pages = {
        "a": "```{code-cell} ipython3\nfrom attention.gpt import GPTModel\n```\n",
        "b": "```{code-cell} ipython3\nimport attention.gpt as g\n```\n",
        "c": "```{code-cell} ipython3\nfrom attention import gpt, toy\n```\n",
        "d": "```{code-cell} ipython3\nfrom attention.gpt_extra import x\n```\n",
        "e": "```{code-cell} ipython3\nfrom attention import toy\n```\n",
    }
    for name, text in pages.items():
        (tmp_path / f"{name}.md").write_text(text, encoding="utf-8")
    assert imported_by_name(tmp_path, "attention/gpt.py") == ["a", "b", "c"]


def test_edit_module_appends_a_comment_or_creates_the_module(tmp_path):
    package = tmp_path / "src" / "attention"
    package.mkdir(parents=True)
    (package / "gpt.py").write_text("X = 1\n", encoding="utf-8")
    edit_module(tmp_path, "attention/gpt.py")
    edit_module(tmp_path, "attention/new.py")
    assert (package / "gpt.py").read_text(encoding="utf-8").startswith("X = 1\n# ")
    assert (package / "new.py").read_text(encoding="utf-8").startswith("# ")


def test_the_second_floating_point_path_executes_all_once_then_nothing():
    books = [CHAPTER, "01-other"]
    for cold, again, holds in [
        (books, [], [True, True]),
        ([CHAPTER], [], [False, True]),
        (books, [CHAPTER], [True, False]),
    ]:
        steps = [*_steps(), _step("fp cold", 80.0, cold), _step("fp no change", 3.0, again)]
        targets = check_targets(steps, CHAPTER, books)
        assert [t.holds for t in targets[3:]] == holds
        assert "floating-point" in targets[3].name
        assert "80% of the cold build" in targets[3].detail


def test_the_chapter_table_shows_each_notebooks_seconds_in_each_cold_build():
    cold = Step("cold", "", 9.0, 9.0, (2, 0), {"01-a": 2.0, "02-b": 5.0}, 0.0, 0.0)
    fp = Step("fp cold", "", 9.0, 9.0, (2, 0), {"02-b": 6.0}, 0.0, 0.0)
    rows = chapter_table([cold, _step("no change", 1.0, []), fp]).splitlines()
    assert rows[0].split() == ["cold", "s", "fp", "cold", "s", "notebook"]
    assert rows[2].split() == ["5.0", "6.0", "02-b"]  # slowest first
    assert rows[3].split() == ["2.0", "-", "01-a"]  # not executed by the fp build
    assert rows[4].split() == ["7.0", "6.0", "sum"]


def test_the_reference_work_runs_torch_alone_in_a_fresh_interpreter():
    assert "attention" not in REFERENCE  # the same work for every version of the book
    seconds = reference_seconds(steps=3)
    assert 0 < seconds < 600


def test_the_cold_build_is_reported_in_units_of_the_reference():
    report = Report("", {}, [], CHAPTER, [], steps=[_step("cold", 63.0, [])])
    report.reference_s = [2.0, 2.2]
    line = reference_line(report)
    assert "2.00 s before the builds, 2.20 s after" in line
    assert line.endswith("the cold build took 30.0 times it")
