"""The chapters' figure settings: SVG output that is the same on every build.

Every chapter that draws starts with the same hidden cell. It must set the
inline backend's rc before ``%matplotlib inline`` starts the backend (set
after, the rc is silently ignored, and each build salts the SVG's ids at
random, so every figure gets a new file name).
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

DOCS = Path(__file__).resolve().parents[1] / "docs"
SETUP = re.compile(r"^```\{code-cell\} ipython3\n:tags: \[remove-cell\]\n\n(.*?)^```", re.S | re.M)
DRAWING = sorted(p for p in DOCS.glob("*.md") if "%matplotlib inline" in p.read_text("utf-8"))
PLOT = """
import matplotlib.pyplot as plt
fig, ax = plt.subplots(figsize=(3, 2))
ax.imshow([[0.1, 0.9], [0.5, 0.3]])
ax.plot([0, 1], [0, 1], marker="o")
ax.set_title("weights")
"""


def _setup(chapter: Path) -> str:
    match = SETUP.search(chapter.read_text(encoding="utf-8"))
    assert match is not None, f"{chapter.name} has no hidden setup cell"
    return match[1]


def test_the_chapters_that_draw_share_one_setup_cell():
    assert len(DRAWING) >= 13
    first = _setup(DRAWING[0])
    assert all(_setup(chapter) == first for chapter in DRAWING)
    lines = [line for line in first.splitlines() if line.startswith("%")]
    assert lines[-1] == "%matplotlib inline"  # after every %config of the backend
    assert any("svg.hashsalt" in line for line in lines)


def _svg_of_a_fresh_kernel(setup: str) -> str:
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(setup), nbformat.v4.new_code_cell(PLOT)]
    )
    NotebookClient(notebook, timeout=120, kernel_name="python3").execute()
    outputs = notebook.cells[1].outputs
    (svg,) = [o["data"]["image/svg+xml"] for o in outputs if "image/svg+xml" in o.get("data", {})]
    return str(svg)


@pytest.mark.slow
def test_a_figure_is_byte_for_byte_the_same_in_two_kernels():
    setup = _setup(DRAWING[0])
    first = _svg_of_a_fresh_kernel(setup)
    assert 'clip-path="url(#p' in first  # ids that the salt decides
    assert _svg_of_a_fresh_kernel(setup) == first
