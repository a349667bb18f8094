"""attention.heads: every head's weights, scores and labels, as a widget and a figure."""

from __future__ import annotations

import importlib.resources
import json
import re

import pytest
import torch

from attention.heads import (
    INDUCTION,
    PREVIOUS_TOKEN,
    HeadPatterns,
    head_grid,
    head_grid_figure,
    head_patterns,
)
from attention.induction import AttentionOnlyTransformer, InductionConfig
from attention.induction_scores import induction_score, previous_token_score
from attention.widgets import JSON_DECIMALS, STATIC

# The widget's JSON keeps JSON_DECIMALS decimals: each number is within half a unit
# of the last decimal of the model's own float32 weight.
JSON_TOL = 0.5 * 10.0**-JSON_DECIMALS + 1e-7

CONFIG = InductionConfig(vocab_size=16, context_length=12, emb_dim=18, n_heads=3, n_layers=2)
TOKENS = torch.tensor([3, 9, 1, 4, 3, 9, 1, 4])  # period 4


@pytest.fixture(scope="module")
def model() -> AttentionOnlyTransformer:
    torch.manual_seed(0)
    return AttentionOnlyTransformer(CONFIG).eval()


def _data(widget_html: str) -> dict:
    pattern = r'<script type="application/json" class="attn-data">(.*?)</script>'
    payload = re.search(pattern, widget_html)
    assert payload
    return json.loads(payload.group(1).replace("<\\/", "</"))


def test_the_widget_holds_every_heads_own_weights(model):
    widget = head_grid(model, TOKENS, length=4)
    assert widget.kind == "heads"
    with torch.no_grad():
        weights = model(TOKENS[None], return_weights=True)[1][0]  # (N, H, T, T)
    data = widget.data
    assert [(e["layer"], e["head"]) for e in data["heads"]] == [
        (n, h) for n in range(2) for h in range(3)
    ]
    for entry in data["heads"]:
        shown = torch.tensor(entry["values"], dtype=torch.float64)
        expected = weights[entry["layer"], entry["head"]].double()
        torch.testing.assert_close(shown, expected, atol=JSON_TOL, rtol=0)
    assert _data(widget.to_html()) == json.loads(json.dumps(data))  # what the page carries


def test_scores_and_labels_are_the_score_functions(model):
    with torch.no_grad():
        weights = model(TOKENS[None], return_weights=True)[1][0]
    prev = previous_token_score(weights)  # (N, H)
    ind = induction_score(weights, 4)
    best = torch.maximum(prev, ind).flatten()  # (N*H,): each head's higher score
    threshold = float(best.median())  # some heads reach it, the lowest does not
    data = head_grid(model, TOKENS, length=4, threshold=threshold).data
    labelled = 0
    for entry in data["heads"]:
        n, h = entry["layer"], entry["head"]
        p, i = prev[n, h].item(), ind[n, h].item()
        assert entry["scores"][PREVIOUS_TOKEN] == pytest.approx(p, abs=JSON_TOL)
        assert entry["scores"][INDUCTION] == pytest.approx(i, abs=JSON_TOL)
        if max(p, i) >= threshold:
            labelled += 1
            assert entry["label"] == (PREVIOUS_TOKEN if p >= i else INDUCTION)
        else:
            assert entry["label"] is None
    assert 0 < labelled < len(data["heads"])


def test_without_a_period_only_previous_token_scores(model):
    data = head_grid(model, TOKENS[:6], token_labels=list("abcdef")).data
    assert data["tokens"] == list("abcdef")
    assert all(set(e["scores"]) == {PREVIOUS_TOKEN} for e in data["heads"])


def test_label_picks_the_higher_score_that_reaches_the_threshold():
    one_back = torch.eye(6).roll(-1, dims=1).tril()  # every row on the previous token
    one_back[0, 0] = 1.0
    period = torch.eye(6).roll(-2, dims=1).tril()  # rows 3.. on t - 2 (period 3)
    period[:3] = torch.eye(6)[:3]
    uniform = torch.ones(6, 6).tril()
    uniform = uniform / uniform.sum(dim=-1, keepdim=True)
    weights = torch.stack([one_back, period, uniform])[None]  # (1, 3, T, T)
    heads = HeadPatterns(
        weights=weights,
        tokens=tuple("abcabc"),
        previous_token=previous_token_score(weights),
        induction=induction_score(weights, 3),
        length=3,
        threshold=0.9,
    )
    assert heads.label(0, 0) == (PREVIOUS_TOKEN, 1.0)
    assert heads.label(0, 1) == (INDUCTION, 1.0)
    assert heads.label(0, 2) is None


def test_the_portable_html_carries_a_fallback_and_its_script(model):
    text = head_grid(model, TOKENS, length=4, title="Six heads").to_html()
    assert 'data-attn-kind="heads"' in text
    assert 'aria-label="Six heads"' in text
    assert "window.AttentionHeads" in text
    assert text.count("<li>Layer ") == 6


def test_first_numbers_layers_and_heads_from_one(model):
    widget = head_grid(model, TOKENS, first=1)
    assert widget.data["first"] == 1
    assert widget.data["heads"][0]["layer"] == 0  # the data keeps the indices
    assert "<li>Layer 1, head 1: " in widget.fallback
    assert "<li>Layer 2, head 3: " in widget.fallback
    with pytest.raises(ValueError, match="first must be 0 or 1, got 2"):
        head_grid(model, TOKENS, first=2)


def test_the_script_is_package_data_and_guards_against_running_twice():
    script = (STATIC / "attention-heads.js").read_text(encoding="utf-8")
    assert "if (window.AttentionHeads) {" in script
    assert "window.AttentionHeads = { init };" in script
    names = {f.name for f in (importlib.resources.files("attention") / "static").iterdir()}
    assert {"attention-heads.js", "attention-heads.css"} <= names


def test_the_static_figure_has_one_panel_per_head(model):
    pytest.importorskip("matplotlib")
    figure = head_grid_figure(model, TOKENS, length=4, title="Heads")
    assert len(figure.axes) == 6
    titles = [ax.get_title() for ax in figure.axes]
    assert titles[0].startswith("L0 H0: ")
    assert titles[-1].startswith("L1 H2: ")


@pytest.mark.parametrize(
    ("kwargs", "error", "names"),
    [
        ({"tokens": torch.tensor([[1, 2, 3]])}, ValueError, "tokens"),
        ({"tokens": torch.tensor([1.0, 2.0])}, TypeError, "tokens"),
        ({"tokens": torch.tensor([1, 99])}, ValueError, "tokens"),
        ({"tokens": torch.tensor([1])}, ValueError, "tokens"),
        ({"token_labels": ["a", "b"]}, ValueError, "token_labels"),
        ({"token_labels": "abcdefgh"}, ValueError, "token_labels"),
        ({"length": 1}, ValueError, "length"),
        ({"length": 8}, ValueError, "length"),
        ({"length": 3}, ValueError, "length=3"),
        ({"length": 2.0}, TypeError, "length"),
        ({"threshold": 0.0}, ValueError, "threshold"),
        ({"threshold": 1.5}, ValueError, "threshold"),
        ({"model": torch.nn.Linear(2, 2)}, TypeError, "model"),
    ],
)
def test_bad_input_names_the_argument(model, kwargs, error, names):
    args = {"model": model, "tokens": TOKENS} | kwargs
    with pytest.raises(error, match=names):
        head_patterns(args.pop("model"), args.pop("tokens"), **args)
