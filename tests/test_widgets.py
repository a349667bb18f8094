"""The interactive figures carry the package's own numbers."""

from __future__ import annotations

import importlib.resources
import json
import re
from pathlib import Path

import pytest
import torch

from attention import (
    TOKENS,
    CausalAttention,
    MultiHeadAttention,
    SelfAttentionV1,
    SelfAttentionV2,
    causal_mask,
    simple_self_attention,
    toy_inputs,
)
from attention.playground import playground
from attention.widgets import (
    ASSETS,
    ENGINE,
    PORTABLE_END,
    PORTABLE_START,
    STATIC,
    Widget,
    _text_on,
    _viridis,
    interactive_heatmap,
    step_through,
)


def _payload(widget: Widget) -> dict:
    match = re.search(r'<script type="application/json" class="attn-data">(.*?)</script>',
                      widget.to_html(), flags=re.S)  # fmt: skip
    assert match
    return json.loads(match.group(1))


def test_widget_html_is_a_labelled_container_with_its_data():
    widget = Widget("heatmap", {"text": "</script><b>"}, label='a "label" & more')
    html = widget.to_html()
    assert html.startswith('<div class="attn-widget" data-attn-kind="heatmap" role="group"')
    assert 'aria-label="a &quot;label&quot; &amp; more"' in html
    assert "</script><b>" not in html  # the data cannot end its script element
    assert _payload(widget) == {"text": "</script><b>"}
    assert widget._repr_html_() == html
    assert "<noscript>" in html


def test_heatmap_data_are_the_weights():
    _, weights = simple_self_attention(toy_inputs(), return_weights=True)
    data = _payload(interactive_heatmap(weights, row_labels=TOKENS, title="w"))
    assert data["rows"] == data["cols"] == list(TOKENS)
    assert data["heads"] == ["head 1"]
    assert torch.allclose(torch.tensor(data["values"][0]), weights, atol=1e-6)
    assert data["blocked"] is None


def test_heatmap_with_heads_and_a_mask():
    weights = torch.softmax(torch.rand(3, 4, 4).masked_fill(causal_mask(4), -torch.inf), -1)
    data = _payload(interactive_heatmap(weights, blocked=causal_mask(4)))
    assert data["heads"] == ["head 1", "head 2", "head 3"]
    assert data["blocked"] == causal_mask(4).tolist()
    assert len(data["values"]) == 3


def test_heatmap_bad_input():
    with pytest.raises(ValueError, match=r"matrix must have shape \(T_q, T_k\) or \(H, T_q, T_k\)"):
        interactive_heatmap(torch.rand(4))
    with pytest.raises(ValueError, match=r"row_labels must be a sequence of 4 labels"):
        interactive_heatmap(torch.rand(4, 4), row_labels=["a"])
    with pytest.raises(ValueError, match=r"blocked must be a bool tensor of shape \(4, 4\)"):
        interactive_heatmap(torch.rand(4, 4), blocked=torch.zeros(4, 4))


def test_step_through_weight_free_matches_chapter_3():
    data = _payload(step_through(toy_inputs(), 1, tokens=TOKENS))
    titles = [s["title"] for s in data["steps"]]
    assert titles == ["Query and keys", "Scores", "Softmax", "Weighted values", "Context vector"]
    scores = [row[0] for row in data["steps"][1]["values"]]
    assert scores == pytest.approx([0.9544, 1.4950, 1.4754, 0.8434, 0.7070, 1.0865], abs=1e-4)
    context = data["steps"][-1]["extra"]["values"]
    assert context == pytest.approx([0.4419, 0.6515, 0.5683], abs=1e-4)


@pytest.mark.parametrize("cls", [SelfAttentionV1, SelfAttentionV2, CausalAttention])
def test_step_through_context_equals_the_layer(cls):
    torch.manual_seed(123)
    layer = cls(3, 2) if cls is not CausalAttention else cls(3, 2, 6, 0.0)
    x = toy_inputs()
    expected = layer(x[None] if cls is CausalAttention else x).reshape(6, 2)
    for query in range(6):
        data = _payload(step_through(x, query, tokens=TOKENS, layer=layer))
        titles = [s["title"] for s in data["steps"]]
        assert "Scaling" in titles
        assert ("Causal mask" in titles) == (cls is CausalAttention)
        context = data["steps"][-1]["extra"]["values"]
        assert context == pytest.approx(expected[query].tolist(), abs=1e-5)


def test_step_through_masked_scores_are_null():
    torch.manual_seed(0)
    data = _payload(step_through(toy_inputs(), 2, layer=CausalAttention(3, 2, 6, 0.0)))
    masked = next(s for s in data["steps"] if s["title"] == "Causal mask")
    assert [row[0] is None for row in masked["values"]] == [False] * 3 + [True] * 3


def test_step_through_bad_input():
    with pytest.raises(ValueError, match=r"query must be an int in \[0, 6\), got 6"):
        step_through(toy_inputs(), 6)
    with pytest.raises(TypeError, match=r"layer must be None, SelfAttentionV1"):
        step_through(toy_inputs(), 0, layer=MultiHeadAttention(3, 2, 6, 0.0, 1))


# Outside the book: the widget carries its fallback, its script and its stylesheet.


def _portable_part(html: str) -> str:
    start, end = html.index(PORTABLE_START), html.index(PORTABLE_END)
    assert html.count(PORTABLE_START) == html.count(PORTABLE_END) == 1
    return html[start : end + len(PORTABLE_END)]


def test_the_book_form_is_the_portable_form_without_its_portable_part():
    _, weights = simple_self_attention(toy_inputs(), return_weights=True)
    widget = interactive_heatmap(weights, row_labels=TOKENS)
    portable, book = widget.to_html(), widget.to_html(portable=False)
    assert widget._repr_html_() == portable
    assert portable.replace(_portable_part(portable), "") == book
    assert PORTABLE_START not in book
    assert "<script>" not in book
    assert "attn-script" not in book
    assert "attn-fallback" not in book


@pytest.mark.parametrize(
    ("kind", "name"),
    [("heatmap", "attention-widgets"), ("steps", "attention-widgets"),
     ("playground", "attention-playground"), ("heads", "attention-heads"),
     ("model-lab", "attention-model"), ("layout", "attention-layout"), ("quiz", "attention-quiz"),
     ("kv-budget", "attention-kv-budget")],
)  # fmt: skip
def test_each_widget_carries_its_script_and_stylesheet_once(kind, name):
    widget = playground() if kind == "playground" else Widget(kind, {}, label="x")
    part = _portable_part(widget.to_html())
    script = (STATIC / f"{name}.js").read_text(encoding="utf-8")
    stylesheet = (STATIC / f"{name}.css").read_text(encoding="utf-8")
    # The engine, then the widget's script: each its own element, each ended
    # by its own end tag alone (nothing inside ends it early).
    assert ASSETS[kind] == (ENGINE, name)
    assert part.count('<script class="attn-script">') == 2
    assert part.count("</script>") == 2
    scripts = re.findall(r'<script class="attn-script">(.*?)</script>', part, flags=re.S)
    assert scripts[0] == (STATIC / f"{ENGINE}.js").read_text(encoding="utf-8")
    # The file as it is, but for the one line that receives the stylesheet.
    slot = "const STYLESHEET = null;"
    assert script.count(slot) == 1
    before, after = script.split(slot)
    body = scripts[1]
    assert body.startswith(before)
    assert body.endswith(after)
    filled = body[len(before) : len(body) - len(after)]
    assert filled.startswith("const STYLESHEET = ")
    assert json.loads(filled.removeprefix("const STYLESHEET = ").removesuffix(";")) == stylesheet
    assert "</" not in body  # nothing inside can end the script element


def test_every_kind_loads_the_engine_first():
    # The widget scripts use window.AttentionEngine as they start: it must run before them.
    assert set(ASSETS) == {
        "heatmap", "steps", "playground", "heads", "lab", "layout", "quiz", "model-lab",
        "kv-budget",
    }  # fmt: skip
    for kind, names in ASSETS.items():
        assert names[0] == ENGINE, kind
        assert ENGINE not in names[1:], kind
        assert len(names) == 2, kind
        for name in names:
            assert (STATIC / f"{name}.js").is_file(), name
        widget_script = (STATIC / f"{names[1]}.js").read_text(encoding="utf-8")
        assert "window.AttentionEngine" in widget_script, names[1]
    assert not (STATIC / f"{ENGINE}.css").exists()  # the engine draws nothing


def test_each_output_carries_the_engine_once_and_before_its_script():
    engine = (STATIC / f"{ENGINE}.js").read_text(encoding="utf-8")
    element = f'<script class="attn-script">{engine}</script>'
    _, weights = simple_self_attention(toy_inputs(), return_weights=True)
    outputs = [
        interactive_heatmap(weights, row_labels=TOKENS).to_html(),
        step_through(toy_inputs(), 1, tokens=TOKENS).to_html(),
        playground().to_html(),
        Widget("quiz", {}, label="x").to_html(),
    ]
    for html in outputs:
        assert html.count(element) == 1
        assert html.count("window.AttentionEngine = ") == 1
        part = _portable_part(html)
        assert part.index(element) < part.rindex('<script class="attn-script">')
    # Several outputs on one page: one copy each, and every copy keeps the
    # engine a first copy defined (it returns at once when one is there).
    page = "".join(outputs)
    assert page.count(element) == len(outputs)
    assert "if (window.AttentionEngine) return;" in engine
    assert engine.count("window.AttentionEngine = ") == 1
    # The book's form carries none: its pages load the file (conf.py).
    assert "AttentionEngine" not in interactive_heatmap(weights).to_html(portable=False)


def test_the_scripts_guard_against_running_twice():
    # A page that already ran a copy (the book's file, an earlier output)
    # must only draw the new widgets, never define everything again.
    widgets = (STATIC / "attention-widgets.js").read_text(encoding="utf-8")
    assert "if (window.AttentionWidgets) {" in widgets
    assert "window.AttentionWidgets = { viridis, format, init };" in widgets
    play = (STATIC / "attention-playground.js").read_text(encoding="utf-8")
    assert "if (window.AttentionPlayground) {" in play
    assert "window.AttentionPlayground = { start };" in play
    lab = (STATIC / "attention-model.js").read_text(encoding="utf-8")
    assert "if (window.AttentionModelLab) {" in lab
    assert "window.AttentionModelLab = { start," in lab


def test_the_drawing_files_are_package_data():
    # Installed with the package (hatchling ships every file of src/attention).
    files = importlib.resources.files("attention") / "static"
    names = {"attention-widgets.js", "attention-widgets.css"}
    names |= {"attention-playground.js", "attention-playground.css"}
    names |= {"attention-model.js", "attention-model.css"}
    assert names <= {f.name for f in files.iterdir()}
    assert Path(str(files)) == STATIC


def _fallback(widget: Widget) -> str:
    part = _portable_part(widget.to_html())
    found = re.search(r'<div class="attn-fallback">(.*?)</div><script', part, flags=re.S)
    assert found
    return found.group(1)


def _cells(html: str) -> list[str]:
    return re.findall(r"<td[^>]*>([^<]*)</td>", html)


def test_heatmap_fallback_is_a_table_of_the_values():
    _, weights = simple_self_attention(toy_inputs(), return_weights=True)
    fallback = _fallback(interactive_heatmap(weights, row_labels=TOKENS, title="w <b>"))
    assert "<caption>w &lt;b&gt;</caption>" in fallback
    cells = [float(c) for c in _cells(fallback)]
    torch.testing.assert_close(torch.tensor(cells), weights.flatten(), atol=0.005, rtol=0)
    assert re.findall(r'<th scope="row"[^>]*>([^<]*)</th>', fallback) == list(TOKENS)
    assert "<script" not in fallback
    assert "<style" not in fallback  # inline styles only: they survive a sanitiser


def test_heatmap_fallback_with_heads_and_a_mask():
    weights = torch.softmax(torch.rand(2, 3, 3).masked_fill(causal_mask(3), -torch.inf), -1)
    fallback = _fallback(interactive_heatmap(weights, blocked=causal_mask(3), decimals=3))
    assert fallback.count("<table") == 2
    assert "<caption>Attention weights: head 2</caption>" in fallback
    cells = _cells(fallback)
    assert [c == "masked" for c in cells] == causal_mask(3).flatten().tolist() * 2
    shown = [float(c) for c in cells if c != "masked"]
    expected = weights.masked_select(~causal_mask(3))
    torch.testing.assert_close(torch.tensor(shown), expected, atol=5e-4, rtol=0)


def test_steps_fallback_shows_every_step():
    widget = step_through(toy_inputs(), 1, tokens=TOKENS)
    fallback = _fallback(widget)
    titles = re.findall(r"<strong>Step \d of 5: ([^<]*)</strong>", fallback)
    assert titles == [s["title"] for s in widget.data["steps"]]
    context = [float(c) for c in _cells(fallback)[-3:]]
    assert context == pytest.approx([0.4419, 0.6515, 0.5683], abs=1e-4)
    masked = _fallback(step_through(toy_inputs(), 2, layer=CausalAttention(3, 2, 6, 0.0)))
    assert "−∞" in masked


def test_fallback_colours_match_the_script():
    # The script's own numbers: viridis at 0, 1/2 and 1, and the text on each.
    assert _viridis(0.0) == (68, 1, 84)
    assert _viridis(0.5) == (33, 145, 140)
    assert _viridis(1.0) == (253, 231, 37)
    assert [_text_on(_viridis(t)) for t in (0.0, 0.5, 1.0)] == ["#fff", "#000", "#000"]


def test_widget_kind_must_be_known():
    with pytest.raises(ValueError, match=r"kind must be one of .*got 'chart'"):
        Widget("chart", {}, label="x")
