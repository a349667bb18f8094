"""Local/global layers: Gemma 3's pattern, the rolling KV cache and the cost table."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attention.complexity import kv_cache_bytes
from attention.local_global import (
    RollingKV,
    decode_step_seconds,
    layer_windows,
    rolling_attention,
    rolling_decode,
    window_cost_table,
)
from attention.multihead import MultiHeadAttention
from tests.conftest import random_tensor

ATOL = RTOL = 1e-5  # float32: the same sums in another order


def _layer(
    seed: int, device, *, window: int | None, heads: int = 2, **options
) -> MultiHeadAttention:
    """A seeded layer, drawn on the CPU and moved: the same weights on every device."""
    torch.manual_seed(seed)
    return MultiHeadAttention(8, 8, 16, 0.0, heads, window=window, **options).to(device).eval()


# -- layer_windows ----------------------------------------------------------------------


def test_gemma3_pattern_every_sixth_layer_is_global() -> None:
    """Gemma 3: 5 local layers with a 1024 window, then 1 global, starting with local."""
    windows = layer_windows(26)  # Gemma 3 1B has 26 layers
    assert [i for i, w in enumerate(windows) if w is None] == [5, 11, 17, 23]
    assert set(windows) == {1024, None}
    assert windows[0] == 1024
    assert windows[-2:] == [1024, 1024]


def test_no_local_layers_means_all_global() -> None:
    assert layer_windows(3, local_per_global=0, window=7) == [None, None, None]


@given(n=st.integers(1, 40), local=st.integers(0, 7), window=st.integers(1, 64))
def test_pattern_counts(n: int, local: int, window: int) -> None:
    windows = layer_windows(n, local_per_global=local, window=window)
    assert len(windows) == n
    assert windows.count(None) == n // (local + 1)  # one global per full block
    assert all(w in (None, window) for w in windows)


# -- the rolling cache ------------------------------------------------------------------


@pytest.mark.parametrize("options", [{}, {"rope": True}, {"num_kv_heads": 1, "heads": 4}])
def test_rolling_decode_equals_full_windowed_attention(device, options) -> None:
    att = _layer(1, device, window=3, **options)
    x = random_tensor(2, 2, 10, 8, device=device)  # (B, T, C)
    out = rolling_decode(att, x)
    assert out.shape == (2, 10, 8)
    torch.testing.assert_close(out, att(x), atol=ATOL, rtol=RTOL)


def test_window_at_least_t_equals_full_causal_attention(device) -> None:
    """A window as long as the sequence blocks nothing: the same as no window."""
    x = random_tensor(3, 1, 6, 8, device=device)
    windowed, full = _layer(4, device, window=6), _layer(4, device, window=None)
    torch.testing.assert_close(rolling_decode(windowed, x), full(x), atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(
        rolling_decode(_layer(4, device, window=50), x), full(x), atol=ATOL, rtol=RTOL
    )


@settings(max_examples=20)
@given(seed=st.integers(0, 2**16), window=st.integers(1, 8), t=st.integers(1, 14))
def test_rolling_equals_windowed_for_any_window(device, seed, window, t) -> None:
    att = _layer(seed, device, window=window)
    x = random_tensor(seed, 1, t, 8, device=device)
    torch.testing.assert_close(rolling_decode(att, x), att(x), atol=ATOL, rtol=RTOL)


def test_memory_stops_growing_at_w_tokens(device) -> None:
    """The tensors the cache holds: (B, H_kv, W, D) each, from the first token to the last."""
    att = _layer(5, device, window=4, heads=4, num_kv_heads=2)
    x, kv = random_tensor(6, 3, 20, 8, device=device), RollingKV(4)  # T = 20 > 16 = context
    sizes, lengths = [], []
    for t in range(x.shape[1]):
        rolling_attention(att, x[:, t : t + 1], kv)
        sizes.append(kv.nbytes)
        lengths.append(kv.length)
    assert kv.keys is not None
    assert kv.values is not None
    assert tuple(kv.keys.shape) == tuple(kv.values.shape) == (3, 2, 4, 2)  # (B, H_kv, W, D)
    assert set(sizes) == {2 * 3 * 2 * 4 * 2 * 4}  # keys and values, B H_kv W D, 4 bytes
    assert lengths == [1, 2, 3] + [4] * 17
    assert kv.position == 20
    expected = kv_cache_bytes(
        n_layers=1, d_model=8, context_length=20, batch_size=3, n_heads=4, n_kv_heads=2, window=4
    )
    assert kv.nbytes == expected


def test_ring_overwrites_the_oldest_slot(device) -> None:
    kv = RollingKV(2)
    held = []
    for p in range(5):
        token = torch.full((1, 1, 1, 1), float(p), device=device)  # (B, H, 1, D)
        keys, _ = kv.append(token, token)  # (B, H, min(p + 1, 2), D)
        held.append(keys.flatten().tolist())
    # exact: copies. Token p goes to slot p % 2, over the token two places back.
    assert held == [[0.0], [0.0, 1.0], [2.0, 1.0], [2.0, 3.0], [4.0, 3.0]]


def test_golden_decode_seed_0(device) -> None:
    """Weights and tokens drawn on the CPU, then moved: the same numbers on every device."""
    att = _layer(0, device, window=2)
    x = random_tensor(0, 1, 4, 8).to(device)  # (B, T, C)
    out = rolling_decode(att, x)
    expected = torch.tensor([-0.6469, -0.4262, -0.4354, -0.3842], device=device)
    torch.testing.assert_close(out[0, :, 0], expected, atol=1e-4, rtol=0)
    # the first token sees only itself: its output is out_proj of its own value
    torch.testing.assert_close(out[:, 0], att.out_proj(att.W_value(x[:, 0])), atol=ATOL, rtol=RTOL)


# -- the cost table ---------------------------------------------------------------------


def test_cost_table_matches_the_formulas() -> None:
    rows = window_cost_table([1, 3, 4, 10, 1024], 4)
    assert [r.full_pairs for r in rows] == [t * (t + 1) // 2 for t in (1, 3, 4, 10, 1024)]
    assert [r.window_pairs for r in rows] == [1, 6, 10, 10 + 6 * 4, 10 + 1020 * 4]
    assert [r.window_cache_tokens for r in rows] == [1, 3, 4, 4, 4]
    assert [r.full_cache_tokens for r in rows] == [1, 3, 4, 10, 1024]


@pytest.mark.parametrize("window", [1, 3, 5, 12])
def test_cost_table_counts_the_layers_attended_pairs(device, window) -> None:
    """Cross-check: the pairs the windowed layer gives a nonzero weight, counted."""
    t = 9
    x = random_tensor(8, 1, t, 8, device=device)  # (B, T, C)
    _, weights = _layer(7, device, window=window)(x, return_weights=True)  # (B, H, T, T)
    (row,) = window_cost_table([t], window)
    assert int((weights[0, 0] > 0).sum()) == row.window_pairs
    _, full = _layer(7, device, window=None)(x, return_weights=True)  # (B, H, T, T)
    assert int((full[0, 0] > 0).sum()) == row.full_pairs


def test_step_timing_reports_each_length_and_way() -> None:
    rows = decode_step_seconds([3, 9], 4, d_model=8, num_heads=2, batch_size=1, repeats=2)
    assert [r.tokens for r in rows] == [3, 9]
    for row in rows:
        assert all(0 < s < 60 for s in (row.full, row.masked, row.rolling))  # finite, measured


def test_a_ring_filled_from_the_middle_decodes_like_one_filled_from_the_start(device) -> None:
    # decode_step_seconds fills its ring with only the last W of T tokens, each in slot p % W;
    # the next steps must then match a ring that saw every token.
    att, x = _layer(1, device, window=3), random_tensor(2, 1, 11, 8, device=device)
    whole = RollingKV(3)
    reference = rolling_decode(att, x, whole)  # (1, 11, 8)
    late = RollingKV(3)
    rolling_decode(att, x[:, :8], late)
    shortcut = RollingKV(3)
    shortcut.position = 5  # the 5 earlier tokens would have been overwritten by now
    keys = att._split_heads(att.W_key(x[:, 5:8]))  # (1, H, 3, D)
    values = att._split_heads(att.W_value(x[:, 5:8]))
    for p in range(3):
        shortcut.append(keys[:, :, p : p + 1], values[:, :, p : p + 1])
    for t in range(8, 11):
        out = rolling_attention(att, x[:, t : t + 1], shortcut)  # (1, 1, 8)
        torch.testing.assert_close(out, reference[:, t : t + 1], atol=1e-6, rtol=1e-5)


# -- bad inputs -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: layer_windows(0), ValueError, r"n_layers must be a positive int, got 0"),
        (lambda: layer_windows(4, local_per_global=-1), ValueError, r"local_per_global"),
        (
            lambda: layer_windows(4, window=2.0),  # type: ignore[arg-type]
            TypeError,
            r"window must be a positive int",
        ),
        (lambda: RollingKV(0), ValueError, r"window must be a positive int, got 0"),
        (lambda: window_cost_table([4, 0], 2), ValueError, r"lengths\[i\] must be a positive"),
        (lambda: window_cost_table([], 2), TypeError, r"lengths must be a non-empty sequence"),
        (lambda: window_cost_table([4], 0), ValueError, r"window must be a positive int"),
        (lambda: decode_step_seconds([4, 0], 2), ValueError, r"lengths\[i\] must be a positive"),
        (lambda: decode_step_seconds((), 2), TypeError, r"lengths must be a non-empty sequence"),
        (lambda: decode_step_seconds([4], 0), ValueError, r"window must be a positive int"),
        (lambda: decode_step_seconds([4], 2, repeats=0), ValueError, r"repeats must be a positive"),
    ],
)
def test_bad_arguments_are_named(call, error, match) -> None:
    with pytest.raises(error, match=match):
        call()


def test_bad_decode_inputs_are_named(device) -> None:
    att, x = _layer(0, device, window=3), random_tensor(0, 1, 1, 8, device=device)
    with pytest.raises(ValueError, match=r"att must be a self-attention layer built with window"):
        rolling_attention(_layer(0, device, window=None), x, RollingKV(3))
    with pytest.raises(TypeError, match=r"att must be a MultiHeadAttention"):
        rolling_decode(torch.nn.Linear(8, 8), x)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"kv must have the layer's window=3, got window=2"):
        rolling_attention(att, x, RollingKV(2))
    with pytest.raises(TypeError, match=r"kv must be a RollingKV"):
        rolling_attention(att, x, object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"x must hold one new token, shape \(B, 1, C\)"):
        rolling_attention(att, random_tensor(0, 1, 2, 8, device=device), RollingKV(3))
    with pytest.raises(ValueError, match=r"x must have last dimension d_in=8"):
        rolling_attention(att, random_tensor(0, 1, 1, 5, device=device), RollingKV(3))
    with pytest.raises(ValueError, match=r"x must hold at least one token"):
        rolling_decode(att, random_tensor(0, 1, 0, 8, device=device))
    one = torch.zeros(1, 2, 1, 4, device=device)  # (B, H_kv, 1, D)
    with pytest.raises(ValueError, match=r"keys and values must both have shape \(B, H_kv, 1, D\)"):
        RollingKV(3).append(one.expand(1, 2, 2, 4), one.expand(1, 2, 2, 4))
    kv = RollingKV(3)
    kv.append(one, one)
    with pytest.raises(ValueError, match=r"keys must have the same width D as the cached keys"):
        kv.append(one[..., :3], one[..., :3])
    kv = RollingKV(3)
    rolling_attention(att, x, kv)
    with pytest.raises(ValueError, match=r"x must have the same batch size B as the cache"):
        rolling_attention(att, random_tensor(0, 2, 1, 8, device=device), kv)
