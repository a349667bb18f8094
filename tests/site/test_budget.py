"""The interactive layer stays small: its files, and what it adds to a page."""

from __future__ import annotations

import re
from pathlib import Path

from tests.site.conftest import SITE

STATIC = Path(__file__).resolve().parents[2] / "src" / "attention" / "static"

WIDGET_FILES = [
    "attention-widgets.js",
    "attention-widgets.css",
    "attention-playground.js",
    "attention-playground.css",
]
WIDGET_DIV = re.compile(r'<div class="attn-widget".*?</div>', flags=re.S)
WIDGET_TAG = re.compile(
    r"<(?:script|link)[^>]*_static/attention-(?:widgets|playground)\.(?:js|css)[^>]*>(?:</script>)?"
)


def test_widget_script_and_styles_total_at_most_60_kb():
    sizes = {name: (STATIC / name).stat().st_size for name in WIDGET_FILES}
    assert sum(sizes.values()) <= 60_000, sizes


def _weight(html: str) -> int:
    """Bytes of the page, its images and its widget files: everything but the
    theme's assets and the maths font, which every page or every page with
    maths loads either way (tests/site/test_weight.py weighs those)."""
    images = set(re.findall(r'src="(_images/[^"]+)"', html))
    assets = set(
        re.findall(
            r'(?:src|href)="(_static/attention-(?:widgets|playground)\.(?:js|css))[^"]*"', html
        )
    )
    files = sum((SITE / path).stat().st_size for path in images | assets)
    return len(html.encode("utf-8")) + files


def test_three_interactive_figures_add_at_most_a_fifth_to_a_page():
    html = (SITE / "03-self-attention-without-weights.html").read_text(encoding="utf-8")
    assert len(WIDGET_DIV.findall(html)) == 3
    without = WIDGET_TAG.sub("", WIDGET_DIV.sub("", html))
    assert "attn-widget" not in without
    assert "attention-widgets.js" not in without
    ratio = _weight(html) / _weight(without)
    print(f"page weight with / without its three interactive figures: {ratio:.3f}")
    assert ratio <= 1.2


def test_widget_files_load_only_on_pages_with_widgets():
    for page in SITE.glob("*.html"):
        html = page.read_text(encoding="utf-8")
        has_widget = 'class="attn-widget"' in html
        assert ("_static/attention-widgets.js" in html) == has_widget, page.name
        has_playground = 'data-attn-kind="playground"' in html
        assert ("_static/attention-playground.js" in html) == has_playground, page.name
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
