"""The playground's reference attention and its data are the package's own numbers."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from attention import (
    TOKENS,
    CausalAttention,
    MultiHeadAttention,
    SelfAttentionV1,
    causal_mask,
    simple_self_attention,
    toy_inputs,
)
from attention.playground import (
    PLAYGROUND_D_OUT,
    playground,
    playground_attention,
    playground_cases,
)
from tests.conftest import random_tensor


def _linear_weights(layer, w_q, w_k, w_v):
    with torch.no_grad():
        layer.W_query.weight.copy_(w_q.T)
        layer.W_key.weight.copy_(w_k.T)
        layer.W_value.weight.copy_(w_v.T)


@given(seed=st.integers(0, 2**31 - 1), t=st.integers(1, 7), d_in=st.integers(1, 4),
       head_dim=st.integers(1, 3), heads=st.integers(1, 3))  # fmt: skip
def test_playground_attention_equals_the_classes(seed, t, d_in, head_dim, heads):
    x = random_tensor(seed, t, d_in)
    d_out = head_dim * heads
    w_q, w_k, w_v = (random_tensor(seed + k, d_in, d_out) for k in (1, 2, 3))

    if heads == 1:
        v1 = SelfAttentionV1(d_in, d_out)
        with torch.no_grad():
            v1.W_query.copy_(w_q)
            v1.W_key.copy_(w_k)
            v1.W_value.copy_(w_v)
        _, weights, context = playground_attention(x, w_q, w_k, w_v)
        assert torch.allclose(context, v1(x), atol=1e-5)
        causal = CausalAttention(d_in, d_out, t, 0.0)
        _linear_weights(causal, w_q, w_k, w_v)
        _, weights, context = playground_attention(x, w_q, w_k, w_v, causal=True)
        expected, expected_weights = causal(x[None], return_weights=True)
        assert torch.allclose(context, expected[0], atol=1e-5)
        assert torch.allclose(weights[0], expected_weights[0], atol=1e-5)

    mha = MultiHeadAttention(d_in, d_out, t, 0.0, heads)
    _linear_weights(mha, w_q, w_k, w_v)
    with torch.no_grad():  # no output projection in the playground
        mha.out_proj.weight.copy_(torch.eye(d_out))
        mha.out_proj.bias.zero_()
    scores, weights, context = playground_attention(x, w_q, w_k, w_v, num_heads=heads, causal=True)
    expected, expected_weights = mha(x[None], return_weights=True)
    assert torch.allclose(context, expected[0], atol=1e-5)
    assert torch.allclose(weights, expected_weights[0], atol=1e-5)
    assert scores.masked_select(causal_mask(t)).eq(-torch.inf).all()


def test_playground_attention_weight_free_is_chapter_3():
    x = toy_inputs()
    eye = torch.eye(3)
    _, weights, context = playground_attention(x, eye, eye, eye, scale=False)
    expected_context, expected_weights = simple_self_attention(x, return_weights=True)
    assert torch.allclose(context, expected_context, atol=1e-6)
    assert torch.allclose(weights[0], expected_weights, atol=1e-6)


def test_playground_attention_bad_input():
    x = toy_inputs()
    w = torch.rand(3, 4)
    with pytest.raises(ValueError, match=r"num_heads must divide d_out=4, got num_heads=3"):
        playground_attention(x, w, w, w, num_heads=3)
    with pytest.raises(ValueError, match=r"W_key must have shape \(d_in, d_out\)"):
        playground_attention(x, w, torch.rand(3, 2), w)


def test_seeded_matrices_are_the_layers_of_seed_123():
    data = playground().data
    assert sorted(int(d) for d in data["seeded"]) == sorted(PLAYGROUND_D_OUT)
    for d_out in PLAYGROUND_D_OUT:
        torch.manual_seed(123)
        layer = SelfAttentionV1(3, d_out)
        for name in ("W_query", "W_key", "W_value"):
            got = torch.tensor(data["seeded"][str(d_out)][name])
            assert torch.allclose(got, getattr(layer, name).detach(), atol=1e-6)


def test_playground_starts_at_chapter_3_and_leaves_the_rng_alone():
    torch.manual_seed(7)
    before = torch.rand(3)
    torch.manual_seed(7)
    data = playground().data
    assert torch.equal(torch.rand(3), before)  # exact: the same seeded draw
    assert data["initial"]["mode"] == "weight-free"
    assert data["initial"]["query"] == 1
    assert data["tokens"] == list(TOKENS)


def test_reference_cases_cover_the_settings():
    cases = playground_cases()
    assert {c["mode"] for c in cases} == {"weight-free", "trainable"}
    assert {c["causal"] for c in cases} == {True, False}
    assert {c["scale"] for c in cases} == {True, False}
    assert {c["heads"] for c in cases} >= {1, 2, 3}
    first, edited = cases[0], cases[1]
    assert first["expected"]["scores"][0] == pytest.approx(
        [0.9544, 1.4950, 1.4754, 0.8434, 0.7070, 1.0865], abs=1e-4
    )
    assert first["expected"]["context"] == pytest.approx([0.4419, 0.6515, 0.5683], abs=1e-4)
    assert edited["expected"]["scores"][0][0] == pytest.approx(1.0094, abs=1e-4)
    book = next(c for c in cases if c["name"].startswith("trainable, seed 123"))
    assert book["expected"]["context"] == pytest.approx([0.3061, 0.8210], abs=1e-4)
    masked = next(c for c in cases if c["causal"] and c["heads"] == 2)
    q = masked["query"]
    for head_scores in masked["expected"]["scores"]:
        assert [s is None for s in head_scores] == [j > q for j in range(6)]
