"""MultiHeadAttention without a causal mask, and as cross-attention, against PyTorch's."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from attention import MultiHeadAttention
from attention.kv_cache import LayerKV, cached_attention
from tests.conftest import generator


def _torch_mha(mha: MultiHeadAttention) -> torch.nn.MultiheadAttention:
    """nn.MultiheadAttention with our weights, keys and values from d_context features."""
    ref = torch.nn.MultiheadAttention(
        mha.d_out,
        mha.num_heads,
        bias=True,
        batch_first=True,
        kdim=mha.d_context,
        vdim=mha.d_context,
    ).to(mha.out_proj.weight.device)
    with torch.no_grad():
        if ref.in_proj_weight is not None:  # kdim == vdim == embed_dim: one packed matrix
            ref.in_proj_weight.copy_(
                torch.cat([mha.W_query.weight, mha.W_key.weight, mha.W_value.weight])
            )
        else:
            ref.q_proj_weight.copy_(mha.W_query.weight)
            ref.k_proj_weight.copy_(mha.W_key.weight)
            ref.v_proj_weight.copy_(mha.W_value.weight)
        ref.in_proj_bias.copy_(torch.cat([mha.W_query.bias, mha.W_key.bias, mha.W_value.bias]))
        ref.out_proj.weight.copy_(mha.out_proj.weight)
        ref.out_proj.bias.copy_(mha.out_proj.bias)
    return ref.eval()


def _layer(
    seed: int, width: int, heads: int, d_context: int | None, impl: str, device="cpu"
) -> MultiHeadAttention:
    torch.manual_seed(seed)
    return (
        MultiHeadAttention(
            width, width, 8, 0.0, heads, qkv_bias=True, impl=impl, causal=False, d_context=d_context
        )
        .to(device)
        .eval()
    )


@given(
    seed=st.integers(0, 2**16),
    b=st.integers(1, 3),
    t=st.integers(1, 8),
    s=st.integers(1, 9),
    heads=st.sampled_from([1, 2, 4]),
    d_context=st.sampled_from([None, 3, 12]),
    impl=st.sampled_from(["manual", "sdpa"]),
)
def test_cross_attention_equals_torch(device, seed, b, t, s, heads, d_context, impl) -> None:
    mha = _layer(seed, 8, heads, d_context, impl, device=device)
    g = generator(device, seed)
    x = torch.randn(b, t, 8, generator=g, device=device)
    context = torch.randn(b, s, mha.d_context, generator=g, device=device)
    pad = torch.rand(b, s, generator=g, device=device) < 0.3
    pad[:, 0] = False  # every query keeps a key to look at
    expected, _ = _torch_mha(mha)(x, context, context, key_padding_mask=pad, need_weights=False)
    with torch.no_grad():
        out = mha(x, context=context, padding_mask=pad)
        assert torch.allclose(out, expected, atol=1e-5, rtol=1e-5)
        assert torch.allclose(
            mha(x, context=context), _torch_mha(mha)(x, context, context)[0], atol=1e-5, rtol=1e-5
        )


@given(seed=st.integers(0, 2**16), t=st.integers(1, 8), impl=st.sampled_from(["manual", "sdpa"]))
def test_without_the_causal_mask_every_token_sees_every_token(device, seed, t, impl) -> None:
    mha = _layer(seed, 8, 2, None, impl, device=device)
    x = torch.randn(2, t, 8, generator=generator(device, seed), device=device)
    expected, _ = _torch_mha(mha)(x, x, x, need_weights=False)
    with torch.no_grad():
        assert torch.allclose(mha(x), expected, atol=1e-5, rtol=1e-5)


def test_cross_attention_weights_cover_the_other_sequence(device) -> None:
    mha = _layer(0, 8, 2, 3, "manual", device=device)
    x, context = torch.randn(2, 4, 8, device=device), torch.randn(2, 7, 3, device=device)
    pad = torch.zeros(2, 7, dtype=torch.bool, device=device)
    pad[1, 5:] = True  # the second sequence's last two keys are padding
    out, weights = mha(x, context=context, padding_mask=pad, return_weights=True)
    assert out.shape == (2, 4, 8)
    assert weights.shape == (2, 2, 4, 7)  # (B, H, T, S)
    assert torch.allclose(
        weights.sum(dim=-1), torch.ones(2, 2, 4, device=device), atol=1e-6, rtol=0
    )
    assert (weights[1, :, :, 5:] == 0).all()  # exact: masked weights are exactly 0
    assert (weights[0] > 0).all()  # no mask: every key gets some weight


def test_a_token_after_the_source_changes_nothing_earlier_only_with_the_mask(device) -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 5, 8, device=device)
    later = x.clone()
    later[:, -1] += 1.0
    for causal, moves in ((True, False), (False, True)):
        torch.manual_seed(1)
        mha = MultiHeadAttention(8, 8, 5, 0.0, 2, causal=causal).to(device).eval()
        with torch.no_grad():
            changed = not torch.allclose(mha(x)[:, 0], mha(later)[:, 0], atol=1e-6, rtol=0)
        assert changed is moves


def test_the_default_layer_is_the_books_causal_one() -> None:
    torch.manual_seed(123)
    default = MultiHeadAttention(3, 2, 6, 0.0, 2)
    torch.manual_seed(123)
    explicit = MultiHeadAttention(3, 2, 6, 0.0, 2, causal=True, d_context=3)
    x = torch.rand(2, 6, 3)
    assert default.causal
    assert default.d_context == 3
    assert torch.equal(default(x), explicit(x))  # exact: same seed, same weights, same operations
    assert default.mask is not None
    assert MultiHeadAttention(3, 2, 6, 0.0, 2, causal=False).mask is None  # nothing to store


@pytest.mark.parametrize(
    ("make", "call", "error", "message"),
    [
        (
            lambda: MultiHeadAttention(8, 8, 4, 0.0, 2),
            lambda m: m(torch.ones(1, 2, 8), context=torch.ones(1, 3, 8)),
            ValueError,
            "context= .* needs a layer built with causal=False",
        ),
        (
            lambda: MultiHeadAttention(8, 8, 4, 0.0, 2, causal=False, d_context=3),
            lambda m: m(torch.ones(1, 2, 8)),
            ValueError,
            "d_context=3 .* pass the other sequence as context=",
        ),
        (
            lambda: MultiHeadAttention(8, 8, 4, 0.0, 2, causal=False, d_context=3),
            lambda m: m(torch.ones(1, 2, 8), context=torch.ones(1, 3, 5)),
            ValueError,
            "context",
        ),
        (
            lambda: MultiHeadAttention(8, 8, 4, 0.0, 2, causal=False),
            lambda m: m(torch.ones(2, 2, 8), context=torch.ones(1, 3, 8)),
            ValueError,
            "context must have the batch size of x, 2, got 1",
        ),
        (
            lambda: MultiHeadAttention(8, 8, 4, 0.0, 2, causal=False),
            lambda m: m(torch.ones(1, 2, 8), context=torch.ones(3, 8)),
            ValueError,
            "context",
        ),
        (
            lambda: MultiHeadAttention(8, 8, 4, 0.0, 2, causal=False),
            lambda m: m(
                torch.ones(1, 2, 8),
                context=torch.ones(1, 3, 8),
                padding_mask=torch.zeros(1, 2, dtype=torch.bool),
            ),
            ValueError,
            r"padding_mask must have shape \(B, T\) = \(1, 3\)",
        ),
        (
            lambda: None,
            lambda m: MultiHeadAttention(8, 8, 4, 0.0, 2, causal=1),
            TypeError,
            "causal must be a bool",
        ),
        (
            lambda: None,
            lambda m: MultiHeadAttention(8, 8, 4, 0.0, 2, d_context=0),
            ValueError,
            "d_context",
        ),
        (
            lambda: MultiHeadAttention(8, 8, 4, 0.0, 2, causal=False),
            lambda m: cached_attention(m, torch.ones(1, 2, 8), LayerKV()),
            ValueError,
            "causal",
        ),
    ],
)
def test_bad_input_names_the_argument(make, call, error, message) -> None:
    layer = make()
    with pytest.raises(error, match=message):
        call(layer)
