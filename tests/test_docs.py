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
