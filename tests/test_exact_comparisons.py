"""Float comparisons say how exact they are (issue 13).

Two computations of the same real number (a batched product and a loop of
products, a fused kernel and the readable code) may round differently, and by
how much depends on the CPU. So the project compares floats in two ways only:

* ``torch.equal`` where the operations themselves guarantee equality (a copy or
  a view, the same function run twice on the same input, a masked entry that
  is exactly 0, integer ids). Each such line carries a comment containing
  ``exact:`` that says why, on the line itself or on a comment line above it
  (one comment may head a group of consecutive ``torch.equal`` lines).
* a tolerance comparison (``torch.allclose``, ``torch.isclose``,
  ``torch.testing.assert_close``, ``pytest.approx``, ``math.isclose``) that
  states its tolerance instead of taking the library default by accident.

Chapter 7 explains why. Comparisons with ``==`` cannot be told apart from
integer comparisons by reading the text; the audit of issue 13 covered them by
hand.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED = sorted(
    [
        *(ROOT / "docs").glob("*.md"),
        *(ROOT / "src").rglob("*.py"),
        *(ROOT / "benchmarks").rglob("*.py"),
        *(p for p in (ROOT / "tests").rglob("*.py") if p != Path(__file__).resolve()),
    ]
)

EQUAL = "torch.equal("
TOLERANCE_CALL = re.compile(
    r"\b(torch\.allclose|torch\.isclose|assert_close|pytest\.approx|math\.isclose)\("
)
# A keyword, or a named set of them unpacked (``**F32``).
TOLERANCE_ARGUMENT = re.compile(r"\b(atol|rtol|abs|rel|abs_tol|rel_tol)\s*=|\*\*\w+")


def _is_comment(line: str) -> bool:
    """A comment line of Python, of a doctest (``>>> # ...``) or of a notebook cell."""
    return re.sub(r"^\s*(>>>|\.\.\.)?\s*", "", line).startswith("#")


def _says_exact(line: str) -> bool:
    return "#" in line and "exact:" in line[line.index("#") :]


def _explained(lines: list[str], i: int) -> bool:
    """Whether line i, or a comment line above it, says ``exact:``.

    The walk up passes comment lines and other ``torch.equal`` lines only, so
    one comment can head a group of checks but not reach past other code.
    """
    j = i
    while j >= 0 and (j == i or _is_comment(lines[j]) or EQUAL in lines[j]):
        if _says_exact(lines[j]):
            return True
        j -= 1
    return False


def unexplained_equals(text: str) -> list[int]:
    """Line numbers (1-based) of ``torch.equal`` calls without an ``exact:`` comment."""
    lines = text.splitlines()
    return [i + 1 for i, line in enumerate(lines) if EQUAL in line and not _explained(lines, i)]


def _arguments(text: str, start: int) -> str:
    """The text between the parenthesis that opens at ``start`` and its partner."""
    depth = 0
    for end in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[end], 0)
        if depth == 0:
            return text[start + 1 : end]
    return text[start + 1 :]


def unstated_tolerances(text: str) -> list[int]:
    """Line numbers (1-based) of tolerance comparisons that leave the tolerance unsaid."""
    missing = []
    for match in TOLERANCE_CALL.finditer(text):
        if not TOLERANCE_ARGUMENT.search(_arguments(text, match.end() - 1)):
            missing.append(text.count("\n", 0, match.start()) + 1)
    return missing


def test_the_scan_sees_the_files_that_compare_floats():
    names = {p.relative_to(ROOT).as_posix() for p in SCANNED}
    assert {"docs/07-batches.md", "tests/test_properties.py", "src/attention/tracing.py"} <= names
    assert "benchmarks/generation.py" in names


@pytest.mark.parametrize("path", SCANNED, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_torch_equal_says_why_it_is_exact(path):
    assert unexplained_equals(path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("path", SCANNED, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_tolerance_is_stated(path):
    assert unstated_tolerances(path.read_text(encoding="utf-8")) == []


def test_the_checks_can_fail():
    bare = "x = 1\nassert torch.equal(a, b)\n"
    assert unexplained_equals(bare) == [2]
    assert unexplained_equals("assert torch.equal(a, b)  # the same\n") == [1]
    assert unexplained_equals("# exact: a copy\nassert torch.equal(a, b)\n") == []
    assert unexplained_equals("assert torch.equal(a, b)  # exact: a view\n") == []
    group = "# exact: views\nassert torch.equal(a, b)\nassert torch.equal(c, d)\n"
    assert unexplained_equals(group) == []
    broken = "# exact: views\nassert torch.equal(a, b)\ny = 2\nassert torch.equal(c, d)\n"
    assert unexplained_equals(broken) == [4]
    assert unexplained_equals(">>> # exact: ids\n>>> torch.equal(x, y)\n") == []
    assert unstated_tolerances("assert torch.allclose(a, b)\n") == [1]
    assert unstated_tolerances("ok = torch.allclose(f(a), g(b, c))\n") == [1]
    assert unstated_tolerances("torch.testing.assert_close(\n    a, b\n)\n") == [1]
    assert unstated_tolerances("assert x == pytest.approx(1.0)\n") == [1]
    assert unstated_tolerances("torch.allclose(f(a), b, atol=1e-6, rtol=0)\n") == []
    assert unstated_tolerances("torch.testing.assert_close(\n    a, b, **F32\n)\n") == []
    assert unstated_tolerances("assert x == pytest.approx(1.0, abs=1e-6)\n") == []
