"""The interactive layer stays small: its files, and what it adds to a page."""

from __future__ import annotations

import re
from pathlib import Path

from tests.site.conftest import SITE

STATIC = Path(__file__).resolve().parents[2] / "src" / "attention" / "static"

WIDGET_FILES = [
    "attention-engine.js",  # the maths and DOM helpers every widget script uses
    "attention-widgets.js",
    "attention-widgets.css",
    "attention-playground.js",
    "attention-playground.css",
    "attention-heads.js",
    "attention-heads.css",
]
# The layout widget and the predict-then-reveal questions, budgeted apart.
LESSON_FILES = [
    "attention-layout.js",
    "attention-layout.css",
    "attention-quiz.js",
    "attention-quiz.css",
]
WIDGET_DIV = re.compile(r'<div class="attn-widget".*?</div>', flags=re.S)
QUIZ_DIV = re.compile(r'<div class="attn-widget" data-attn-kind="quiz".*?</div>', flags=re.S)
QUIZ_TAG = re.compile(
    r"<(?:script|link)[^>]*_static/attention-quiz\.(?:js|css)[^>]*>(?:</script>)?"
)
WIDGET_TAG = re.compile(
    r"<(?:script|link)[^>]*_static/attention-(?:engine|widgets|playground|heads|layout|quiz|kv-budget)\.(?:js|css)[^>]*>(?:</script>)?"
)


def test_widget_script_and_styles_total_at_most_85_kb():
    # 60 KB before the lab (issue 18) added its step-through and broken
    # variants to the playground's script; pages stay under the first-load
    # budget, which tests/site/test_weight.py checks.
    sizes = {name: (STATIC / name).stat().st_size for name in WIDGET_FILES}
    assert sum(sizes.values()) <= 85_000, sizes


def test_layout_and_quiz_files_total_at_most_35_kb():
    sizes = {name: (STATIC / name).stat().st_size for name in LESSON_FILES}
    assert sum(sizes.values()) <= 35_000, sizes


def test_the_kv_charts_script_and_styles_total_at_most_25_kb():
    names = ("attention-kv-budget.js", "attention-kv-budget.css")
    sizes = {name: (STATIC / name).stat().st_size for name in names}
    assert sum(sizes.values()) <= 25_000, sizes


def _weight(html: str) -> int:
    """Bytes of the page, its images and its widget files: everything but the
    theme's assets and the maths font, which every page or every page with
    maths loads either way (tests/site/test_weight.py weighs those)."""
    images = set(re.findall(r'src="(_images/[^"]+)"', html))
    assets = set(
        re.findall(
            r'(?:src|href)="(_static/attention-(?:engine|widgets|playground|heads|layout|quiz|kv-budget)\.(?:js|css))[^"]*"',
            html,
        )
    )
    files = sum((SITE / path).stat().st_size for path in images | assets)
    return len(html.encode("utf-8")) + files


def test_three_interactive_figures_add_at_most_a_fifth_and_a_question_a_tenth():
    html = (SITE / "03-self-attention-without-weights.html").read_text(encoding="utf-8")
    assert len(WIDGET_DIV.findall(html)) == 4
    without = WIDGET_TAG.sub("", WIDGET_DIV.sub("", html))
    assert "attn-widget" not in without
    assert "attention-widgets.js" not in without
    assert "attention-engine.js" not in without
    # The question: its container and its own files.
    question = QUIZ_DIV.findall(html)
    assert len(question) == 1
    no_question = QUIZ_TAG.sub("", html.replace(question[0], ""))
    assert "attention-quiz.js" not in no_question
    figures = _weight(no_question) / _weight(without)
    added = _weight(html) / _weight(no_question)
    print(f"page weight with / without its three figures: {figures:.3f}; its question: {added:.3f}")
    assert figures <= 1.2
    assert added <= 1.1


def test_widget_files_load_only_on_pages_with_widgets():
    for page in SITE.glob("*.html"):
        html = page.read_text(encoding="utf-8")
        has_widget = 'class="attn-widget"' in html
        assert ("_static/attention-widgets.js" in html) == has_widget, page.name
        assert ("_static/attention-engine.js" in html) == has_widget, page.name
        has_playground = 'data-attn-kind="playground"' in html
        assert ("_static/attention-playground.js" in html) == has_playground, page.name
        has_heads = 'data-attn-kind="heads"' in html
        assert ("_static/attention-heads.js" in html) == has_heads, page.name
        for kind in ("layout", "quiz", "kv-budget"):
            has_kind = f'data-attn-kind="{kind}"' in html
            assert (f"_static/attention-{kind}.js" in html) == has_kind, page.name
        has_model = 'data-attn-kind="model-lab"' in html
        assert ("_static/attention-model.js" in html) == has_model, page.name
    assert "attention-widgets.js" not in (SITE / "index.html").read_text(encoding="utf-8")
    assert "attention-playground.js" in (SITE / "playground.html").read_text(encoding="utf-8")
    assert "attention-model.js" in (SITE / "playground.html").read_text(encoding="utf-8")


def test_the_model_labs_script_and_styles_total_at_most_30_kb():
    # Its data (the model's weights and references) is weighed with the page
    # in tests/site/test_model_lab.py.
    names = ("attention-model.js", "attention-model.css")
    sizes = {name: (STATIC / name).stat().st_size for name in names}
    assert sum(sizes.values()) <= 30_000, sizes
