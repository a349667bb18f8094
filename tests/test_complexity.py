"""Chapter 13: the cost formulas match hand counts, operator counts and measurements."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from attention import MultiHeadAttention
from attention.complexity import (
    attention_layer_macs,
    attention_macs,
    attention_macs_per_token,
    crossover_context_length,
    generation_step_macs,
    kv_cache_bytes,
    linear_macs_per_token,
    score_matrix_bytes,
    score_matrix_entries,
)
from attention.flash import flash_attention, reference_attention
from tests.conftest import random_tensor

GPT2_SMALL = {"n_layers": 12, "d_model": 768}


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
