"""The chapters keep the project's promises about code and numbers."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import attention

DOCS = Path(__file__).resolve().parents[1] / "docs"
CHAPTERS = sorted(p for p in DOCS.glob("*.md") if "```{code-cell}" in p.read_text(encoding="utf-8"))
CLASSES = [name for name, obj in vars(attention).items() if inspect.isclass(obj)]


def _prose(text: str) -> str:
    """The chapter without front matter, code blocks, math and inline code."""
    text = re.sub(r"\A---\n.*?\n---\n", "", text, flags=re.S)
    text = re.sub(r"^(`{3,}|:{3,}).*?^\1\s*$", "", text, flags=re.S | re.M)
    text = re.sub(r"\$\$.*?\$\$", "", text, flags=re.S)
    text = re.sub(r"\$[^$\n]+\$", "", text)
    return re.sub(r"`[^`\n]*`", "", text)


def test_there_are_executed_chapters():
    assert DOCS / "03-self-attention-without-weights.md" in CHAPTERS
    assert "MultiHeadAttention" in CLASSES


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_chapters_are_notebooks_with_a_kernel(chapter):
    head = chapter.read_text(encoding="utf-8").split("\n---\n", 1)[0]
    assert "kernelspec:" in head
    assert "name: python3" in head


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_chapters_import_classes_instead_of_pasting_them(chapter):
    text = chapter.read_text(encoding="utf-8")
    for name in CLASSES:
        assert not re.search(rf"^\s*class {name}\b", text, flags=re.M), name


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_computed_numbers_in_prose_are_glued(chapter):
    """A number with three or more decimals in a sentence was computed: glue it."""
    typed = re.findall(r"(?<![\w.])\d+\.\d{3,}", _prose(chapter.read_text(encoding="utf-8")))
    assert typed == []


def test_the_prose_check_can_see_numbers():
    sample = "The score is 0.9544, glued: {glue:text}`score-0:.4f`.\n```python\nx = 1.2345\n```\n"
    assert re.findall(r"(?<![\w.])\d+\.\d{3,}", _prose(sample)) == ["0.9544"]


# A closing quote followed by 's ("journey"'s) comes out of the typographer as
# an opening quote and a stray apostrophe; write "the ... of" instead.
QUOTED_POSSESSIVE = re.compile(r"\"'s\b")


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_no_possessive_after_a_quoted_word(chapter):
    assert QUOTED_POSSESSIVE.findall(_prose(chapter.read_text(encoding="utf-8"))) == []


def test_the_quote_check_can_see_a_possessive():
    assert QUOTED_POSSESSIVE.findall(_prose('It is "Your"\'s value; `"x"\'s` is code.')) == ["\"'s"]


# A check in a visible cell stands between the reader and the line the passage
# is about. A visible cell keeps at most one, a check the reader learns from
# (the book's number, the one equivalence the passage shows); the others run
# in cells whose input the page hides, so the build still stops on a wrong
# number. The whole book keeps fewer than VISIBLE_CHECKS_MAX.
VISIBLE_CHECKS_MAX = 60
CELL = re.compile(r"^```\{code-cell\}[^\n]*\n(.*?)^```\s*$", flags=re.S | re.M)
HIDDEN = re.compile(r"^:tags:.*\b(remove-cell|remove-input|hide-input)\b", flags=re.M)
CHECK = re.compile(r"^\s*(assert\b|torch\.testing\.assert_close\()", flags=re.M)


def visible_checks(text: str) -> list[int]:
    """The number of check lines in each visible code cell of a chapter."""
    return [len(CHECK.findall(body)) for body in CELL.findall(text) if not HIDDEN.search(body)]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_a_visible_cell_shows_at_most_one_check(chapter):
    counts = visible_checks(chapter.read_text(encoding="utf-8"))
    assert max(counts, default=0) <= 1, f"a visible cell holds {max(counts)} checks"


def test_the_book_shows_few_checks():
    total = sum(sum(visible_checks(p.read_text(encoding="utf-8"))) for p in CHAPTERS)
    assert total < VISIBLE_CHECKS_MAX


def test_the_check_counter_sees_visible_cells_only():
    sample = (
        "```{code-cell} ipython3\nx = 1\nassert x == 1\nassert x > 0\n```\n"
        "```{code-cell} ipython3\n:tags: [remove-cell]\n\nassert x\n```\n"
        "```{code-cell} ipython3\n:tags: [hide-input]\n\nassert x\n```\n"
        "```{code-cell} ipython3\ntorch.testing.assert_close(a, b, atol=0, rtol=0)\n```\n"
    )
    assert visible_checks(sample) == [2, 1]
