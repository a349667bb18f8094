"""The interactive figures carry the package's own numbers."""

from __future__ import annotations

import json
import re

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
from attention.widgets import Widget, interactive_heatmap, step_through


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
