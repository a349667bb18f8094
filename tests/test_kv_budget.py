"""The KV budget: published models' caches by hand, the uniform case against complexity, invariants.

Pure integer arithmetic: no tensors, so no `device` fixture; every equality is exact.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from attention.complexity import kv_cache_bytes
from attention.kv_budget import (
    DEEPSEEK_V3,
    GEMMA3_27B,
    GPT_OSS_120B,
    LLAMA3_8B,
    PUBLISHED,
    QWEN3_8B,
    KVLayout,
    as_mha,
    bytes_per_token,
    cache_bytes,
    cache_bytes_curve,
    local_layers,
    numbers_per_token,
    tokens_per_layer,
)

KIB, MIB, GIB = 2**10, 2**20, 2**30
T128K = 131_072  # 128K tokens


# -- Published models, worked out by hand ------------------------------------------------
# Each total is written as bytes = K and V (2) * layers * KV heads * head width * bytes per
# number (2, bfloat16) * tokens, so a reader can redo it.


def test_llama3_8b():
    assert bytes_per_token(LLAMA3_8B) == 2 * 32 * 8 * 128 * 2 == 128 * KIB
    assert cache_bytes(LLAMA3_8B, context_length=8192) == 2 * 32 * 8 * 128 * 2 * 8192 == GIB
    assert cache_bytes(LLAMA3_8B, context_length=T128K) == 16 * GIB
    assert cache_bytes(as_mha(LLAMA3_8B), context_length=T128K) == 64 * GIB  # 32 KV heads


def test_qwen3_8b():
    assert bytes_per_token(QWEN3_8B) == 2 * 36 * 8 * 128 * 2 == 144 * KIB
    assert cache_bytes(QWEN3_8B, context_length=32_768) == 2 * 36 * 8 * 128 * 2 * 32_768
    assert cache_bytes(QWEN3_8B, context_length=32_768) == 9 * GIB // 2  # 4.5 GiB


def test_deepseek_v3_caches_one_latent_and_one_rope_key():
    # MLA: per token and layer one latent (512) and one RoPE key (64), for all 128 heads.
    assert numbers_per_token(DEEPSEEK_V3) == 512 + 64
    assert bytes_per_token(DEEPSEEK_V3) == 61 * (512 + 64) * 2 == 70_272
    assert cache_bytes(DEEPSEEK_V3, context_length=T128K) == 61 * (512 + 64) * 2 * T128K
    # As MHA: a key and a value of width 128 for each of 128 heads.
    mha = cache_bytes(as_mha(DEEPSEEK_V3), context_length=T128K)
    assert mha == 2 * 61 * 128 * 128 * 2 * T128K
    assert mha * 576 == cache_bytes(DEEPSEEK_V3, context_length=T128K) * 2 * 128 * 128


def test_mla_costs_as_much_as_gqa_with_two_and_a_quarter_groups():
    """DeepSeek-AI 2024a, table 1: d_c + d_rope = 4.5 d_h, what 2.25 KV heads of width d_h cache."""
    assert 4 * numbers_per_token(DEEPSEEK_V3) == 9 * 2 * 128  # 2.25 = 9 / 4 heads, K and V


def test_gemma3_27b_mixes_five_local_layers_with_one_global():
    local = local_layers(GEMMA3_27B)
    assert [i + 1 for i, is_local in enumerate(local) if not is_local] == list(range(6, 61, 6))
    assert local.count(False) == 10
    assert local.count(True) == 52
    per_token_and_layer = 2 * 16 * 128 * 2  # bytes
    # 10 global layers keep all 128K tokens, 52 local layers keep 1024.
    expected = per_token_and_layer * (10 * T128K + 52 * 1024)
    assert cache_bytes(GEMMA3_27B, context_length=T128K) == expected
    assert cache_bytes(as_mha(GEMMA3_27B), context_length=T128K) == 2 * 62 * 32 * 128 * 2 * T128K
    assert cache_bytes(as_mha(GEMMA3_27B), context_length=T128K) == 124 * GIB


def test_gpt_oss_120b_alternates_banded_and_dense_layers():
    assert local_layers(GPT_OSS_120B) == (True, False) * 18
    per_token_and_layer = 2 * 8 * 64 * 2  # bytes
    # 18 dense layers keep all 128K tokens, 18 banded layers keep 128.
    expected = per_token_and_layer * (18 * T128K + 18 * 128)
    assert cache_bytes(GPT_OSS_120B, context_length=T128K) == expected
    assert cache_bytes(as_mha(GPT_OSS_120B), context_length=T128K) == 72 * GIB


def test_every_published_model_saves_against_its_mha_version():
    for layout in PUBLISHED:
        assert layout.dtype_bytes == 2
        mha = cache_bytes(as_mha(layout), context_length=T128K)
        assert cache_bytes(layout, context_length=T128K) < mha, layout.name


# -- Sharing, windows and the building blocks by hand -----------------------------------


def test_cross_layer_sharing_by_hand():
    # MQA with CLA2 (Brandon et al. 2024): 4 layers, 2 caches, one KV head of width 8.
    cla = KVLayout(n_layers=4, n_heads=4, n_kv_heads=1, head_dim=8, share_every=2, dtype_bytes=2)
    assert tokens_per_layer(cla, context_length=10) == (10, 0, 10, 0)
    assert cache_bytes(cla, context_length=10) == 2 * (4 // 2) * 1 * 8 * 2 * 10 == 640


def test_windowed_layer_by_hand():
    # One layer, 2 heads of width 3, window 4, 1 byte per number: 12 bytes per token kept.
    one = KVLayout(n_layers=1, n_heads=2, head_dim=3, window=4, dtype_bytes=1)
    assert cache_bytes_curve(one, [1, 2, 3, 4, 5, 100]) == [12, 24, 36, 48, 48, 48]
    assert cache_bytes(one, context_length=100, batch_size=3) == 3 * 48


def test_local_and_shared_layers_together():
    # Pattern L L G, shared in pairs: layers 0, 2, 4 keep a cache; 2 is global, 0 and 4 local.
    lay = KVLayout(n_layers=6, window=5, local_per_global=2, share_every=2)
    assert local_layers(lay) == (True, True, False, True, True, False)
    assert tokens_per_layer(lay, context_length=9) == (5, 0, 9, 0, 5, 0)


def test_defaults_are_gpt2_small_in_float32():
    assert cache_bytes(KVLayout(), context_length=1024) == 72 * MIB
    assert KVLayout().n_layers == 12
    assert KVLayout().dtype_bytes == 4


def test_as_mha_keeps_the_shape_and_drops_every_saving():
    mha = as_mha(GEMMA3_27B)
    assert mha.name == "Gemma 3 27B as MHA"
    assert (mha.n_layers, mha.n_heads, mha.head_dim, mha.dtype_bytes) == (62, 32, 128, 2)
    assert (mha.n_kv_heads, mha.latent_dim, mha.window, mha.share_every) == (None, None, None, 1)
    assert as_mha(mha) == dataclasses.replace(mha, name="Gemma 3 27B as MHA as MHA")


def test_the_layout_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        LLAMA3_8B.n_layers = 1  # type: ignore[misc]


# -- The uniform case equals attention.complexity.kv_cache_bytes ----------------------------

uniform = st.builds(
    lambda layers, kv_heads, group, head_dim, window, dtype_bytes: KVLayout(
        n_layers=layers,
        n_heads=kv_heads * group,
        n_kv_heads=kv_heads,
        head_dim=head_dim,
        window=window,
        dtype_bytes=dtype_bytes,
    ),
    layers=st.integers(1, 8),
    kv_heads=st.integers(1, 8),
    group=st.integers(1, 4),
    head_dim=st.integers(1, 64),
    window=st.none() | st.integers(1, 300),
    dtype_bytes=st.sampled_from([1, 2, 4]),
)


@given(lay=uniform, t=st.integers(1, 1000), b=st.integers(1, 4))
def test_uniform_layouts_equal_complexity_kv_cache_bytes(lay, t, b):
    expected = kv_cache_bytes(
        n_layers=lay.n_layers,
        d_model=lay.n_heads * lay.head_dim,
        context_length=t,
        batch_size=b,
        dtype_bytes=lay.dtype_bytes,
        n_heads=lay.n_heads,
        n_kv_heads=lay.n_kv_heads,
        window=lay.window,
    )
    assert cache_bytes(lay, context_length=t, batch_size=b) == expected


# -- Properties ---------------------------------------------------------------------------

published = st.sampled_from(PUBLISHED)


@given(lay=published, t=st.integers(1, 300_000))
def test_the_cache_never_shrinks_as_t_grows(lay, t):
    assert cache_bytes(lay, context_length=t + 1) >= cache_bytes(lay, context_length=t)


@given(lay=published, t=st.integers(1, 300_000), b=st.integers(1, 8))
def test_the_cache_is_linear_in_the_batch(lay, t, b):
    assert cache_bytes(lay, context_length=t, batch_size=b) == b * cache_bytes(
        lay, context_length=t
    )


@given(lay=published, t=st.integers(1, 128))
def test_before_any_window_fills_each_token_costs_bytes_per_token(lay, t):
    assert cache_bytes(lay, context_length=t) == t * bytes_per_token(lay)


@given(w=st.integers(1, 500), t=st.integers(1, 2000))
def test_windowed_layers_are_flat_after_the_window(w, t):
    local = KVLayout(n_layers=3, window=w)
    assert cache_bytes(local, context_length=t) == cache_bytes(local, context_length=min(t, w))
    # Mixed: past the window only the global layers grow, one token's worth each step.
    mixed = KVLayout(n_layers=6, window=w, local_per_global=2)  # 2 global layers
    step = cache_bytes(mixed, context_length=w + t) - cache_bytes(mixed, context_length=w + t - 1)
    assert step == 2 * numbers_per_token(mixed) * mixed.dtype_bytes


@given(lay=uniform, t=st.integers(1, 1000))
def test_mha_at_least_gqa_at_least_mqa(lay, t):
    mha = cache_bytes(dataclasses.replace(lay, n_kv_heads=None), context_length=t)
    gqa = cache_bytes(lay, context_length=t)
    mqa = cache_bytes(dataclasses.replace(lay, n_kv_heads=1), context_length=t)
    assert mha >= gqa >= mqa
    assert mha == gqa * (lay.n_heads // (lay.n_kv_heads or lay.n_heads))
    assert gqa == mqa * (lay.n_kv_heads or lay.n_heads)


@given(lay=uniform, groups=st.integers(1, 4), share=st.integers(1, 4), t=st.integers(1, 1000))
def test_sharing_divides_the_cache(lay, groups, share, t):
    base = dataclasses.replace(lay, n_layers=groups * share)
    shared = dataclasses.replace(base, share_every=share)
    assert share * cache_bytes(shared, context_length=t) == cache_bytes(base, context_length=t)


@given(lay=published, ts=st.lists(st.integers(1, 300_000), min_size=1, max_size=6))
def test_the_curve_is_cache_bytes_at_each_length(lay, ts):
    expected = [cache_bytes(lay, context_length=t, batch_size=2) for t in ts]
    assert cache_bytes_curve(lay, ts, batch_size=2) == expected
    assert cache_bytes_curve(lay, tuple(ts), batch_size=2) == expected


# -- Bad input ----------------------------------------------------------------------------

BAD_LAYOUTS = [
    ({"n_layers": 0}, ValueError, r"n_layers must be a positive int, got 0"),
    ({"n_heads": 2.0}, TypeError, r"n_heads must be a positive int, got float 2\.0"),
    (
        {"n_heads": 32, "n_kv_heads": 5},
        ValueError,
        r"n_heads=32 must be divisible by n_kv_heads=5$",
    ),
    ({"n_kv_heads": 0}, ValueError, r"n_kv_heads must be a positive int, got 0"),
    ({"head_dim": True}, TypeError, r"head_dim must be a positive int, got bool True"),
    ({"latent_dim": -512}, ValueError, r"latent_dim must be a positive int, got -512"),
    ({"rope_dim": 64}, ValueError, r"rope_dim=64 is MLA's RoPE key and needs latent_dim"),
    ({"latent_dim": 8, "rope_dim": -1}, ValueError, r"rope_dim must be an int >= 0, got -1"),
    ({"window": 0}, ValueError, r"window must be a positive int, got 0"),
    ({"local_per_global": 5}, ValueError, r"local_per_global=5 needs a window"),
    ({"window": 8, "local_per_global": 0}, ValueError, r"local_per_global must be a positive"),
    ({"share_every": 5}, ValueError, r"share_every=5 must divide n_layers=12"),
    ({"share_every": 0}, ValueError, r"share_every must be a positive int, got 0"),
    ({"dtype_bytes": "2"}, TypeError, r"dtype_bytes must be a positive int, got str '2'"),
]


@pytest.mark.parametrize(("fields", "error", "message"), BAD_LAYOUTS)
def test_bad_layouts_name_the_field(fields, error, message):
    with pytest.raises(error, match=message):
        KVLayout(**fields)


def test_bad_calls_name_the_argument():
    with pytest.raises(TypeError, match=r"layout must be a KVLayout, got dict"):
        cache_bytes({"n_layers": 32}, context_length=8)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"layout must be a KVLayout, got NoneType"):
        as_mha(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"context_length must be a positive int, got 0"):
        cache_bytes(LLAMA3_8B, context_length=0)
    with pytest.raises(ValueError, match=r"batch_size must be a positive int, got -1"):
        cache_bytes(LLAMA3_8B, context_length=8, batch_size=-1)
    with pytest.raises(ValueError, match=r"context_lengths must hold at least one context length"):
        cache_bytes_curve(LLAMA3_8B, [])
    with pytest.raises(
        TypeError, match=r"context_lengths must be a list or tuple of ints, got int"
    ):
        cache_bytes_curve(LLAMA3_8B, 1024)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"context_lengths\[1\] must be a positive int, got 0"):
        cache_bytes_curve(LLAMA3_8B, [1024, 0])
    with pytest.raises(TypeError, match=r"context_lengths\[0\] must be a positive int, got str"):
        cache_bytes_curve(LLAMA3_8B, ["1024"])  # type: ignore[list-item]
