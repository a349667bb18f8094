"""The built book never shows outputs of older code.

The notebook execution cache keys a page on its own cells only, so without
docs/_ext/package_deps.py an edit to ``src/`` would leave a chapter showing
numbers computed by the previous code. This test edits the package in a copy
of the project, rebuilds, and checks the page changed (tests/test_package_deps.py
checks which pages execute after which edits).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.build import copy_project

CHAPTER = "03-self-attention-without-weights"


def _build(project: Path) -> str:
    """Build the copy's site and return the chapter's HTML."""
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-b", "html", "-c", ".", "-d", "_build/doctrees",
         "-q", "docs", "_build/html"],
        cwd=project, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return (project / "_build" / "html" / f"{CHAPTER}.html").read_text(encoding="utf-8")


def _first_score(html: str) -> str:
    match = re.search(r'The first score is\s*<span class="pasted-text">([0-9.]+)</span>', html)
    assert match, "the glued first score is missing from the chapter"
    return match.group(1)


@pytest.mark.slow
def test_editing_the_package_re_executes_the_chapters(tmp_path):
    project = tmp_path / "book"
    # Only the chapter under test executes: the others would double the cost.
    copy_project(project, chapters=[CHAPTER])

    assert _first_score(_build(project)) == "0.9544"

    toy = project / "src" / "attention" / "toy.py"
    source = toy.read_text(encoding="utf-8")
    assert "(0.43, 0.15, 0.89),  # Your" in source
    toy.write_text(source.replace("(0.43, 0.15, 0.89),  # Your", "(0.53, 0.15, 0.89),  # Your"))

    # "Your" . "journey" grows by 0.10 * 0.55: the page must show the new number.
    assert _first_score(_build(project)) == "1.0094"


_CACHE_FOLDERS = """
import pathlib, runpy, sys
conf, result = sys.argv[1], pathlib.Path(sys.argv[2])
original = result.read_text()
folders = [runpy.run_path(conf)["nb_execution_cache_path"]]
result.write_text(original.replace("0.5", "0.25"))  # a new measurement
folders.append(runpy.run_path(conf)["nb_execution_cache_path"])
result.write_text(original)
folders.append(runpy.run_path(conf)["nb_execution_cache_path"])
print("\\n".join(folders))
"""


def test_new_benchmark_results_keep_the_execution_cache(tmp_path):
    """New benchmark results re-execute chapter 13 alone (docs/_ext/page_data.py).

    The cache folder, named by what every chapter depends on, stays the same,
    so the other chapters keep their cached outputs.
    """
    project = tmp_path / "book"
    copy_project(project, chapters=[CHAPTER])
    results = project / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "kernels.json").write_text('{"time_ratio": 0.5}\n', encoding="utf-8")
    env = {**os.environ, "ATTENTION_BUILD_DIR": str(tmp_path / "build")}
    command = [sys.executable, "-c", _CACHE_FOLDERS, "conf.py", "benchmarks/results/kernels.json"]
    done = subprocess.run(
        command, cwd=project, env=env, capture_output=True, text=True, timeout=300, check=True
    )
    before, changed, reverted = done.stdout.split()
    assert changed == before
    assert reverted == before


_FP_CACHE_FOLDERS = """
import os, runpy, sys
conf = sys.argv[1]
folders = [runpy.run_path(conf)["nb_execution_cache_path"]]
os.environ["MKL_CBWR"] = "COMPATIBLE"
folders.append(runpy.run_path(conf)["nb_execution_cache_path"])
os.environ["ATEN_CPU_CAPABILITY"] = "default"
folders.append(runpy.run_path(conf)["nb_execution_cache_path"])
del os.environ["MKL_CBWR"], os.environ["ATEN_CPU_CAPABILITY"]
folders.append(runpy.run_path(conf)["nb_execution_cache_path"])
print("\\n".join(folders))
"""


def test_each_floating_point_setting_has_its_own_execution_cache(tmp_path):
    """make html-fp's outputs never stand in for the default build's, or back."""
    project = tmp_path / "book"
    copy_project(project, chapters=[CHAPTER])
    env = {k: v for k, v in os.environ.items() if k not in ("MKL_CBWR", "ATEN_CPU_CAPABILITY")} | {
        "ATTENTION_BUILD_DIR": str(tmp_path / "build")
    }
    done = subprocess.run(
        [sys.executable, "-c", _FP_CACHE_FOLDERS, "conf.py"],
        cwd=project, env=env, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    plain, mkl, both, back = done.stdout.split()
    assert len({plain, mkl, both}) == 3
    assert back == plain
