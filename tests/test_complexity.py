"""Chapter 13: the cost formulas match hand counts, operator counts and measurements."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from attention import MultiHeadAttention
from attention.complexity import (
    attended_pairs,
    attention_layer_macs,
    attention_macs,
    attention_macs_per_token,
    crossover_context_length,
    generation_step_macs,
    keys_per_query,
    kv_cache_bytes,
    linear_macs_per_token,
    score_matrix_bytes,
    score_matrix_entries,
)
from attention.flash import flash_attention, reference_attention
from tests.conftest import random_tensor

GPT2_SMALL = {"n_layers": 12, "d_model": 768}
# Llama 3 8B's attention (Grattafiori et al. 2024, table 3): 32 layers, d = 4096,
# 32 query heads of width 128 and 8 key/value heads.
LLAMA3_8B = {"n_layers": 32, "d_model": 4096, "n_heads": 32}


def _macs(fn) -> int:
    """Multiply-adds counted by PyTorch's FLOP counter (which counts 2 per MAC)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() // 2


def test_hand_computed_values():
    assert score_matrix_entries(3) == 9
    assert score_matrix_bytes(3, dtype_bytes=2) == 18
    assert linear_macs_per_token(2) == 48
    assert attention_macs_per_token(2, 5) == 20
    assert crossover_context_length(2) == 12
    assert kv_cache_bytes(n_layers=2, d_model=3, context_length=5, batch_size=7, dtype_bytes=2) == (
        2 * 2 * 3 * 5 * 7 * 2
    )


def test_the_books_numbers():
    # GPT-4.1's context: about 1.1e12 entries, 4.4 TB in float32, per head per layer.
    assert score_matrix_entries(1_047_576) == pytest.approx(1.1e12, rel=0.01)
    assert score_matrix_bytes(1_047_576) == pytest.approx(4.4e12, rel=0.01)
    assert crossover_context_length(768) == 4608
    assert kv_cache_bytes(**GPT2_SMALL, context_length=1024) == 72 * 2**20


def test_linear_macs_equal_the_weights_of_a_layers_linear_maps():
    d = 16
    linears = [nn.Linear(d, d, bias=False) for _ in range(3)]  # Q, K, V
    linears += [nn.Linear(d, d), nn.Linear(d, 4 * d), nn.Linear(4 * d, d)]  # out, FFN
    weights = sum(layer.weight.numel() for layer in linears)
    assert linear_macs_per_token(d) == weights


def test_linear_macs_equal_counted_operations():
    d, t = 8, 5
    x = random_tensor(0, 1, t, d)
    qkv = [nn.Linear(d, d, bias=False) for _ in range(3)]
    out_proj, up, down = nn.Linear(d, d), nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def layer():
        for lin in qkv:
            lin(x)
        down(up(out_proj(x)))

    assert _macs(layer) == t * linear_macs_per_token(d)


@pytest.mark.parametrize("impl", [reference_attention, flash_attention])
def test_attention_macs_equal_counted_operations(impl):
    """Non-causal attention over T tokens: T queries, each 2 T d multiply-adds."""
    b, h, t, head_dim = 1, 4, 6, 2
    q, k, v = (random_tensor(s, b, h, t, head_dim) for s in range(3))
    assert _macs(lambda: impl(q, k, v)) == t * attention_macs_per_token(h * head_dim, t)


@given(b=st.integers(1, 4), t=st.integers(1, 300), d=st.integers(1, 64))
def test_attention_macs_sum_the_per_token_costs(b, t, d):
    causal = sum(attention_macs_per_token(d, s) for s in range(1, t + 1))  # query s sees s keys
    assert attention_macs(batch_size=b, context_length=t, d_model=d, causal=True) == b * causal
    full = attention_macs(batch_size=b, context_length=t, d_model=d, causal=False)
    assert full == b * t * attention_macs_per_token(d, t)
    layer = attention_layer_macs(batch_size=b, context_length=t, d_model=d, causal=True)
    assert layer == b * causal + b * t * linear_macs_per_token(d) // 3  # 4 of the 12 d^2


def test_attention_macs_equal_counted_operations_of_the_formula_on_a_batch():
    b, h, t, head_dim = 3, 2, 7, 4
    q, k, v = (random_tensor(s, b, h, t, head_dim) for s in range(3))
    counted = _macs(lambda: reference_attention(q, k, v))
    assert counted == attention_macs(
        batch_size=b, context_length=t, d_model=h * head_dim, causal=False
    )


def test_layer_macs_equal_counted_operations_of_the_books_layer():
    """The book's layer computes every score, masked or not: the unmasked count."""
    b, t, c = 2, 6, 8
    layer = MultiHeadAttention(c, c, t, 0.0, num_heads=2)
    x = random_tensor(0, b, t, c)
    expected = attention_layer_macs(batch_size=b, context_length=t, d_model=c, causal=False)
    assert _macs(lambda: layer(x)) == expected


@given(d=st.integers(1, 4096))
def test_crossover_is_where_the_costs_are_equal(d):
    t = crossover_context_length(d)
    assert attention_macs_per_token(d, t) == linear_macs_per_token(d)
    assert attention_macs_per_token(d, t + 1) > linear_macs_per_token(d)
    if t > 1:
        assert attention_macs_per_token(d, t - 1) < linear_macs_per_token(d)


@given(t=st.integers(1, 10_000), d=st.integers(1, 2048))
def test_score_matrix_grows_with_the_square_and_the_cache_linearly(t, d):
    assert score_matrix_bytes(2 * t) == 4 * score_matrix_bytes(t)
    doubled = kv_cache_bytes(n_layers=1, d_model=d, context_length=2 * t)
    assert doubled == 2 * kv_cache_bytes(n_layers=1, d_model=d, context_length=t)


def test_kv_cache_by_hand_for_multi_head_grouped_and_multi_query():
    # d = 12, H = 4 heads of width D = 3; one layer, two tokens, 2-byte numbers.
    kw = {"n_layers": 1, "d_model": 12, "context_length": 2, "dtype_bytes": 2, "n_heads": 4}
    assert kv_cache_bytes(**kw) == 2 * 2 * 12 * 2  # K and V, 2 tokens, width 12
    assert kv_cache_bytes(**kw, n_kv_heads=4) == 2 * 2 * 12 * 2
    assert kv_cache_bytes(**kw, n_kv_heads=2) == 2 * 2 * 6 * 2  # width 2 * 3
    assert kv_cache_bytes(**kw, n_kv_heads=1) == 2 * 2 * 3 * 2  # width 3


def test_kv_cache_of_llama_3_8b():
    """bfloat16, 128K tokens: 64 GiB with 32 KV heads, 16 GiB with 8, 2 GiB with 1."""
    t = 131_072
    mha = kv_cache_bytes(**LLAMA3_8B, context_length=t, dtype_bytes=2)
    gqa = kv_cache_bytes(**LLAMA3_8B, context_length=t, dtype_bytes=2, n_kv_heads=8)
    mqa = kv_cache_bytes(**LLAMA3_8B, context_length=t, dtype_bytes=2, n_kv_heads=1)
    assert (mha, gqa, mqa) == (64 * 2**30, 16 * 2**30, 2 * 2**30)
    assert gqa // t == 2 * 32 * 8 * 128 * 2  # bytes per token: 128 KiB


@given(
    layers=st.integers(1, 8),
    head_dim=st.integers(1, 64),
    groups=st.integers(1, 8),
    kv_heads=st.integers(1, 8),
    t=st.integers(1, 5000),
    b=st.integers(1, 4),
)
def test_fewer_kv_heads_divide_the_cache(layers, head_dim, groups, kv_heads, t, b):
    h = groups * kv_heads  # query heads, a multiple of the key/value heads
    kw = {"n_layers": layers, "d_model": h * head_dim, "context_length": t, "batch_size": b}
    mha = kv_cache_bytes(**kw)
    assert kv_cache_bytes(**kw, n_heads=h) == mha  # n_kv_heads defaults to n_heads
    assert kv_cache_bytes(**kw, n_heads=h, n_kv_heads=h) == mha
    mqa = kv_cache_bytes(**kw, n_heads=h, n_kv_heads=1)
    gqa = kv_cache_bytes(**kw, n_heads=h, n_kv_heads=kv_heads)
    assert mqa * h == mha
    assert gqa * groups == mha
    assert mqa <= gqa <= mha


@given(t=st.integers(1, 3000), w=st.integers(1, 3000), d=st.integers(1, 256))
def test_sliding_window_counts(t, w, d):
    assert keys_per_query(t, window=w) == min(t, w)
    pairs = attended_pairs(t, window=w)
    assert pairs == sum(min(s, w) for s in range(1, t + 1))
    assert pairs <= attended_pairs(t) == t * (t + 1) // 2
    assert pairs <= t * w
    per_token = attention_macs_per_token(d, t, window=w)
    assert per_token == 2 * d * min(t, w) <= attention_macs_per_token(d, t)
    total = attention_macs(batch_size=2, context_length=t, d_model=d, causal=True, window=w)
    assert total == 2 * 2 * d * pairs
    cache = kv_cache_bytes(n_layers=1, d_model=d, context_length=t, window=w)
    assert cache == kv_cache_bytes(n_layers=1, d_model=d, context_length=min(t, w))


@given(t=st.integers(1, 3000), extra=st.integers(0, 100), d=st.integers(1, 64))
def test_a_window_as_long_as_the_sequence_is_full_attention(t, extra, d):
    w = t + extra
    assert attended_pairs(t, window=w) == attended_pairs(t)
    assert attention_macs_per_token(d, t, window=w) == attention_macs_per_token(d, t)
    full = attention_macs(batch_size=1, context_length=t, d_model=d, causal=True)
    assert attention_macs(batch_size=1, context_length=t, d_model=d, causal=True, window=w) == full
    assert kv_cache_bytes(n_layers=2, d_model=d, context_length=t, window=w) == kv_cache_bytes(
        n_layers=2, d_model=d, context_length=t
    )


def test_sliding_window_by_hand():
    # T = 6, W = 2: queries see 1, 2, 2, 2, 2, 2 keys.
    assert [keys_per_query(s, window=2) for s in range(1, 7)] == [1, 2, 2, 2, 2, 2]
    assert attended_pairs(6, window=2) == 11
    assert attended_pairs(6) == 21
    assert attention_macs(batch_size=1, context_length=6, d_model=3, causal=True, window=2) == 66
    # Mistral 7B (W = 4096) at 32,768 tokens: the newest token does 8 times less work and
    # the bfloat16 cache is 512 MiB instead of 4 GiB.
    mistral = {"n_layers": 32, "d_model": 4096, "n_heads": 32, "n_kv_heads": 8, "dtype_bytes": 2}
    assert attention_macs_per_token(4096, 32_768) == 8 * attention_macs_per_token(
        4096, 32_768, window=4096
    )
    assert kv_cache_bytes(**mistral, context_length=32_768) == 4 * 2**30
    assert kv_cache_bytes(**mistral, context_length=32_768, window=4096) == 512 * 2**20


def test_sliding_window_macs_equal_counted_operations_of_a_banded_mask():
    """A kernel that skips the blocked pairs would do attention_macs(..., window=W)."""
    b, h, t, head_dim, w = 1, 2, 7, 3, 3
    q, k, v = (random_tensor(s, b, h, t, head_dim) for s in range(3))
    rows, cols = torch.arange(t)[:, None], torch.arange(t)[None, :]
    kept = (cols <= rows) & (cols > rows - w)  # (T, T), True where attention may look
    scores = (q @ k.transpose(-2, -1)).masked_fill(~kept, float("-inf"))  # (B, H, T, T)
    out = torch.softmax(scores, dim=-1) @ v  # (B, H, T, D)
    expected = torch.stack(
        [
            torch.softmax(q[..., i : i + 1, :] @ k[..., max(0, i - w + 1) : i + 1, :].mT, -1)
            @ v[..., max(0, i - w + 1) : i + 1, :]
            for i in range(t)
        ],
        dim=-2,
    ).squeeze(-3)  # each query over its own W most recent keys
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)
    assert int(kept.sum()) == attended_pairs(t, window=w)
    used = sum(min(i + 1, w) for i in range(t)) * 2 * h * head_dim
    assert used == attention_macs(
        batch_size=b, context_length=t, d_model=h * head_dim, causal=True, window=w
    )


def test_generation_step_with_and_without_cache():
    kw = {"n_layers": 2, "d_model": 4, "vocab_size": 10}
    # One token, nothing cached: both ways do the same work.
    assert generation_step_macs(**kw, context_length=1, use_cache=True) == generation_step_macs(
        **kw, context_length=1, use_cache=False
    )
    # By hand, T = 3 without cache: 2 * (3 * 192 + 4 * 3 * 4) + 3 * 40.
    assert generation_step_macs(**kw, context_length=3, use_cache=False) == 2 * (576 + 48) + 120
    # With cache: 2 * (192 + 2 * 3 * 4) + 40.
    assert generation_step_macs(**kw, context_length=3, use_cache=True) == 2 * (192 + 24) + 40


def test_cache_turns_quadratic_steps_into_linear_ones():
    kw = {"n_layers": 12, "d_model": 768, "vocab_size": 50257}
    short = generation_step_macs(**kw, context_length=512, use_cache=False)
    long = generation_step_macs(**kw, context_length=1024, use_cache=False)
    assert long > 2 * short  # the rerun grows faster than T
    cached_short = generation_step_macs(**kw, context_length=512, use_cache=True)
    cached_long = generation_step_macs(**kw, context_length=1024, use_cache=True)
    assert cached_long < 2 * cached_short
    assert long > 500 * cached_long


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: score_matrix_entries(0),
            ValueError,
            "context_length must be a positive int, got 0",
        ),
        (
            lambda: score_matrix_bytes(4, dtype_bytes=0),
            ValueError,
            "dtype_bytes must be a positive",
        ),
        (
            lambda: linear_macs_per_token(7.5),
            TypeError,
            "d_model must be a positive int, got float",
        ),
        (lambda: attention_macs_per_token(8, -1), ValueError, "context_length must be a positive"),
        (lambda: crossover_context_length(True), TypeError, "d_model must be a positive int"),
        (
            lambda: attention_macs(batch_size=0, context_length=4, d_model=8, causal=True),
            ValueError,
            "batch_size must be a positive int, got 0",
        ),
        (
            lambda: attention_layer_macs(batch_size=1, context_length=4, d_model=8, causal=0),
            TypeError,
            "causal must be a bool, got int 0",
        ),
        (
            lambda: kv_cache_bytes(n_layers=0, d_model=8, context_length=4),
            ValueError,
            "n_layers must be a positive int, got 0",
        ),
        (
            lambda: kv_cache_bytes(n_layers=1, d_model=8, context_length=4, batch_size=0),
            ValueError,
            "batch_size must be a positive int, got 0",
        ),
        (
            lambda: kv_cache_bytes(n_layers=1, d_model=8, context_length=4, n_kv_heads=2),
            ValueError,
            "n_kv_heads=2 needs n_heads",
        ),
        (
            lambda: kv_cache_bytes(n_layers=1, d_model=8, context_length=4, n_heads=3),
            ValueError,
            "d_model=8 must be divisible by n_heads=3",
        ),
        (
            lambda: kv_cache_bytes(
                n_layers=1, d_model=8, context_length=4, n_heads=4, n_kv_heads=3
            ),
            ValueError,
            "n_heads=4 must be divisible by n_kv_heads=3",
        ),
        (
            lambda: kv_cache_bytes(
                n_layers=1, d_model=8, context_length=4, n_heads=2, n_kv_heads=4
            ),
            ValueError,
            "n_heads=2 must be divisible by n_kv_heads=4",
        ),
        (
            lambda: kv_cache_bytes(n_layers=1, d_model=8, context_length=4, n_heads=0),
            ValueError,
            "n_heads must be a positive int, got 0",
        ),
        (
            lambda: kv_cache_bytes(
                n_layers=1, d_model=8, context_length=4, n_heads=2, n_kv_heads=1.0
            ),
            TypeError,
            "n_kv_heads must be a positive int, got float",
        ),
        (
            lambda: kv_cache_bytes(n_layers=1, d_model=8, context_length=4, window=0),
            ValueError,
            "window must be a positive int, got 0",
        ),
        (lambda: keys_per_query(0), ValueError, "position must be a positive int, got 0"),
        (lambda: attended_pairs(4, window=True), TypeError, "window must be a positive int"),
        (
            lambda: attention_macs_per_token(8, 4, window=-2),
            ValueError,
            "window must be a positive int, got -2",
        ),
        (
            lambda: attention_macs(
                batch_size=1, context_length=4, d_model=8, causal=False, window=2
            ),
            ValueError,
            "window=2 needs causal=True",
        ),
        (
            lambda: generation_step_macs(
                n_layers=1, d_model=8, vocab_size=0, context_length=4, use_cache=True
            ),
            ValueError,
            "vocab_size must be a positive int, got 0",
        ),
        (
            lambda: generation_step_macs(
                n_layers=1, d_model=8, vocab_size=5, context_length=4, use_cache=1
            ),
            TypeError,
            "use_cache must be a bool, got int 1",
        ),
    ],
)
def test_rejects_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()
