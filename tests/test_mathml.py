"""The build-time maths renderer (docs/_ext/mathml.py) and its font."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from fontTools.ttLib import TTFont
from math_core import LatexError

from tests.conftest import EXTENSIONS, extension

mathml = extension("mathml")


def test_a_formula_becomes_mathml_that_keeps_its_tex():
    out = mathml.to_mathml(r"\frac{a}{b} < c", display=True)
    assert out.startswith('<math display="block">')
    assert "<mfrac>" in out
    assert '<annotation encoding="application/x-tex">\\frac{a}{b} &lt; c</annotation>' in out


@pytest.mark.parametrize("tex", [r"\notacommand x", r"\frac{1}{", r"x^"])
def test_tex_it_cannot_convert_is_an_error(tex):
    with pytest.raises(LatexError):
        mathml.to_mathml(tex, display=False)


def test_tables_carry_no_scriptlevel_but_sit_in_an_mstyle_that_does():
    out = mathml.to_mathml(r"m = \begin{cases} 0 & a \\ 1 & b \end{cases}", display=True)
    tables = re.findall(r"<mtable[^>]*>", out)
    assert tables
    assert all("scriptlevel" not in tag for tag in tables)
    assert out.count("<mstyle") == out.count("</mstyle>") == len(tables)
    assert out.count("<mtable") == out.count("</mtable>")


def test_nested_tables_are_wrapped_one_by_one():
    html = '<math><mtable scriptlevel="0"><mtd><mtable><mtd/></mtable></mtd></mtable></math>'
    assert mathml._valid_tables(html) == (
        '<math><mstyle scriptlevel="0"><mtable><mtd><mtable><mtd/></mtable></mtd></mtable>'
        "</mstyle></math>"
    )


def test_display_maths_is_stacked_like_mathjax_does():
    assert mathml.display_tex("a = b") == "a = b"
    assert mathml.display_tex("a = b\n\nc = d") == r"\begin{aligned}a = b \\ c = d\end{aligned}"
    assert mathml.display_tex(r"a &= b \\ c &= d").startswith(r"\begin{aligned}")
    cases = r"m = \begin{cases} 0 & x \\ 1 & y \end{cases}"
    assert mathml.display_tex(cases) == cases


def test_the_maths_characters_are_the_formulas_text_not_their_tex():
    page = (
        "<p>x</p><math><mi>α</mi><mo>&lt;</mo>"
        '<annotation encoding="application/x-tex">\\alpha &lt; Z</annotation></math>'
    )
    assert mathml.math_characters([page]) == {ord("α"), ord("<")}
    assert mathml.math_characters(["<p>no maths</p>"]) == set()


def _build(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conf.py").write_text(
        f"import sys\nsys.path.insert(0, {str(EXTENSIONS)!r})\n"
        'extensions = ["mathml"]\nhtml_math_renderer = "mathml"\n',
        encoding="utf-8",
    )
    (tmp_path / "index.rst").write_text(source, encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "sphinx", "-b", "html", "-W", "-q", "-d",
         str(tmp_path / "doctrees"), str(tmp_path), str(tmp_path / "html")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_a_site_gets_mathml_its_stylesheet_and_a_font_with_its_characters(tmp_path):
    result = _build(tmp_path, "Title\n=====\n\nInline :math:`\\sqrt{x} + ω`.\n\n.. math:: a = b\n")
    assert result.returncode == 0, result.stderr
    html = (tmp_path / "html" / "index.html").read_text(encoding="utf-8")
    assert len(re.findall(r'<span class="math notranslate"><math>', html)) == 1
    assert len(re.findall(r'<div class="math notranslate">\s*<math display="block">', html)) == 1
    assert "mathml.css" in html
    assert "mathjax" not in html.lower()
    font = TTFont(tmp_path / "html" / "_static" / mathml.FONT)
    cmap = font.getBestCmap()
    assert {ord(c) for c in "√+ω=𝑥𝑎"} <= set(cmap)
    assert "MATH" in font
    assert font["name"].getDebugName(1) == "Attention Math"


def test_tex_it_cannot_convert_fails_a_strict_build(tmp_path):
    result = _build(tmp_path, "Title\n=====\n\nBroken :math:`\\notacommand x`.\n")
    assert result.returncode != 0
    assert "cannot render this TeX as MathML" in result.stderr
    assert "notacommand" in result.stderr
