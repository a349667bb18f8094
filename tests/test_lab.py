"""The lab's reference forward pass and its data are the package's own numbers."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from attention import TOKENS, CausalAttention, SelfAttentionV1, masked_softmax, toy_inputs
from attention.dropout import inverted_dropout
from attention.lab import (
    LAB_D_K,
    LAB_DROPOUT_SEED,
    LAB_LINES,
    LAB_P,
    _encode,
    lab,
    lab_cases,
    lab_forward,
    lab_inputs,
    lab_keep,
    lab_mask,
)
from tests.conftest import random_tensor


def _causal_layer(w_q, w_k, w_v):
    layer = CausalAttention(w_q.shape[0], w_q.shape[1], 8, 0.0).eval()
    with torch.no_grad():
        layer.W_query.weight.copy_(w_q.T)
        layer.W_key.weight.copy_(w_k.T)
        layer.W_value.weight.copy_(w_v.T)
    return layer


@given(seed=st.integers(0, 2**31 - 1), t=st.integers(1, 7), d_in=st.integers(1, 4),
       d_out=st.integers(1, 4))  # fmt: skip
def test_the_unbroken_lab_is_the_causal_head(seed, t, d_in, d_out):
    x = random_tensor(seed, t, d_in)
    w_q, w_k, w_v = (random_tensor(seed + k, d_in, d_out) for k in (1, 2, 3))
    steps = lab_forward(x @ w_q, x @ w_k, x @ w_v)
    context, weights = _causal_layer(w_q, w_k, w_v)(x[None], return_weights=True)
    torch.testing.assert_close(steps.context, context[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(steps.dropped, weights[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(steps.guarded, steps.weights, atol=0, rtol=0)
    assert steps.masked.masked_select(lab_mask(t)).eq(-torch.inf).all()


def test_the_books_head_is_chapter_4s():
    head = lab_inputs()["book"]
    torch.manual_seed(123)
    layer = SelfAttentionV1(3, 2)
    x = toy_inputs()
    assert head["queries"][1].tolist() == pytest.approx([0.4306, 1.4551], abs=1e-4)
    for name in ("queries", "keys", "values"):
        w = {"queries": layer.W_query, "keys": layer.W_key, "values": layer.W_value}[name]
        torch.testing.assert_close(head[name], x @ w.detach(), atol=1e-5, rtol=1e-5)


def test_training_is_inverted_dropout_with_the_fixed_mask():
    head = lab_inputs()["book"]
    steps = lab_forward(**head, keep=lab_keep())
    g = torch.Generator().manual_seed(LAB_DROPOUT_SEED)
    evaluation = lab_forward(**head)
    expected = inverted_dropout(evaluation.weights, LAB_P, training=True, generator=g)
    torch.testing.assert_close(steps.dropped, expected, atol=1e-7, rtol=1e-6)
    kept = steps.dropped[lab_keep()]
    torch.testing.assert_close(
        kept, evaluation.weights[lab_keep()] / (1 - LAB_P), atol=1e-7, rtol=1e-6
    )
    assert steps.dropped[~lab_keep()].eq(0).all()
    # A row sums to one only on average: the fixed mask makes some rows differ.
    assert not torch.allclose(steps.dropped.sum(-1), torch.ones(len(TOKENS)), atol=1e-3)


def test_zeroing_after_the_softmax_leaves_rows_short_of_one():
    head = lab_inputs()["book"]
    steps = lab_forward(**head, mask_after=True)
    mask = lab_mask(len(TOKENS))
    unmasked = torch.softmax(steps.scaled, dim=-1)
    torch.testing.assert_close(steps.weights, unmasked, atol=0, rtol=0)
    torch.testing.assert_close(steps.zeroed, unmasked.masked_fill(mask, 0), atol=0, rtol=0)
    sums = steps.zeroed.sum(-1)
    assert (sums[:-1] < 1 - 1e-3).all()
    assert sums[-1].item() == pytest.approx(1.0, abs=1e-6)  # the last row sees every key
    assert sums.diff().gt(0).all()  # the further down, the more keys survive


def test_a_fully_masked_row_is_nan_and_the_guard_gives_zeros():
    head = lab_inputs()["book"]
    steps = lab_forward(**head, blocked_row=2)
    assert steps.masked[2].eq(-torch.inf).all()
    assert steps.weights[2].isnan().all()
    assert steps.context[2].isnan().all()
    assert math.isnan(steps.max_weight[2].item())
    assert math.isnan(steps.entropy[2].item())
    assert steps.guarded[2].eq(0).all()
    assert steps.guarded_context[2].eq(0).all()
    torch.testing.assert_close(
        steps.guarded, masked_softmax(steps.scaled, lab_mask(6, 2)), atol=0, rtol=0
    )
    others = [0, 1, 3, 4, 5]
    assert not steps.weights[others].isnan().any()
    torch.testing.assert_close(steps.guarded[others], steps.weights[others], atol=0, rtol=0)


def test_no_scaling_saturates_the_softmax_at_large_d_k():
    head = lab_inputs()["random"]
    wide = {k: v[:, : max(LAB_D_K)] if k != "values" else v for k, v in head.items()}
    scaled = lab_forward(**wide)
    raw = lab_forward(**wide, scale=False)
    assert raw.max_weight[1:].mean() > 0.95
    assert raw.entropy[1:].mean() < 0.1
    assert scaled.entropy[1:].mean() > 3 * raw.entropy[1:].mean()
    assert head["queries"].shape == (len(TOKENS), max(LAB_D_K))
    assert head["queries"].std().item() == pytest.approx(1.0, abs=0.05)


def test_entropy_and_max_weight_of_the_softmax_rows():
    steps = lab_forward(**lab_inputs()["book"])
    w = steps.weights
    by_hand = [-sum(p * math.log(p) for p in row.tolist() if p > 0) for row in w]
    assert steps.entropy.tolist() == pytest.approx(by_hand, abs=1e-6)
    assert steps.entropy[0].item() == 0.0  # exact: "Your" sees only itself, entr(1) = 0
    assert steps.max_weight.tolist() == pytest.approx(w.max(-1).values.tolist(), abs=0)


def test_bad_inputs_name_the_argument():
    q = torch.rand(4, 2)
    with pytest.raises(ValueError, match=r"keys must have the shape of queries \(4, 2\)"):
        lab_forward(q, torch.rand(4, 3), torch.rand(4, 2))
    with pytest.raises(ValueError, match=r"blocked_row must be below T=4, got 4"):
        lab_forward(q, q, q, blocked_row=4)
    with pytest.raises(ValueError, match=r"p"):
        lab_forward(q, q, q, p=1.0)
    with pytest.raises(ValueError, match=r"keep"):
        lab_forward(q, q, q, keep=torch.ones(3, 3, dtype=torch.bool))


def test_encode_keeps_nan_and_infinities_readable_by_javascript():
    t = torch.tensor([[1.0, -math.inf], [math.nan, math.inf]])
    assert _encode(t) == [[1.0, "-Infinity"], ["NaN", "Infinity"]]


def test_the_cases_cover_every_way_to_break_it():
    cases = lab_cases()
    settings = [c["settings"] for c in cases]
    for key in ("scale", "mask_after", "training"):
        assert {s[key] for s in settings} == {True, False}, key
    assert {s["source"] for s in settings} == {"book", "random"}
    assert any(s["blocked_row"] is not None for s in settings)
    assert any(s["d_k"] == max(LAB_D_K) and not s["scale"] for s in settings)
    first = cases[0]
    assert first["settings"]["source"] == "book"
    assert first["expected"]["masked"][0][1] == "-Infinity"
    nan = next(c for c in cases if c["settings"]["blocked_row"] == 2)
    assert nan["expected"]["weights"][2] == ["NaN"] * 6
    assert nan["expected"]["guarded"][2] == [0.0] * 6


def test_the_widget_embeds_the_lines_and_leaves_the_rng_alone():
    torch.manual_seed(7)
    before = torch.rand(3)
    torch.manual_seed(7)
    widget = lab()
    assert torch.equal(torch.rand(3), before)  # exact: the same seeded draw
    assert widget.kind == "lab"
    assert widget.data["lines"] == LAB_LINES
    assert widget.data["keep"] == lab_keep().tolist()
    assert 'data-attn-kind="lab"' in widget.to_html(portable=False)
