"""MultiHeadAttention's options beyond the book, checked against PyTorch.

``attn_mask``, grouped-query heads (``num_kv_heads``), rotary positions
(``rope``), a sliding ``window`` and averaged weights, on both ``impl`` paths,
with and without a KV cache; and ``GPTModel``'s ``padding_mask``.

Tolerance: every comparison of two float32 computations of the same numbers
(ours against ``nn.MultiheadAttention`` or ``F.scaled_dot_product_attention``,
manual against sdpa, cached against uncached) uses ``TOL`` (atol = rtol =
1e-5); the differences measured here are below 1e-6.
"""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from attention import MultiHeadAttention
from attention.gpt import GPTConfig, GPTModel, generate
from attention.kv_cache import KVCache, LayerKV, cached_attention
from attention.position import apply_rope
from tests.conftest import generator

TOL = {"atol": 1e-5, "rtol": 1e-5}
IMPLS = ["manual", "sdpa"]
TINY = GPTConfig(vocab_size=50, context_length=16, emb_dim=16, n_heads=4, n_layers=2, drop_rate=0.0)
SAFE_MARGIN = 1e-4  # see tests/test_kv_cache.py: greedy ids compared only far from a tie


def _layer(
    seed: int, impl: str = "manual", *, heads: int = 2, device="cpu", **options: object
) -> MultiHeadAttention:
    torch.manual_seed(seed)
    layer = MultiHeadAttention(8, 8, 12, 0.0, heads, qkv_bias=True, impl=impl, **options)  # type: ignore[arg-type]
    return layer.to(device).eval()


def _pair(
    seed: int, *, heads: int = 2, device="cpu", **options: object
) -> tuple[MultiHeadAttention, ...]:
    """The same weights on both paths."""
    manual = _layer(seed, "manual", heads=heads, device=device, **options)
    fast = _layer(seed, "sdpa", heads=heads, device=device, **options)
    fast.load_state_dict(manual.state_dict())
    return manual, fast


def _torch_mha(mha: MultiHeadAttention) -> nn.MultiheadAttention:
    """nn.MultiheadAttention holding our weights (H_kv = H, no rope)."""
    ref = nn.MultiheadAttention(mha.d_out, mha.num_heads, bias=True, batch_first=True)
    ref = ref.to(mha.out_proj.weight.device)
    with torch.no_grad():
        assert ref.in_proj_weight is not None
        assert ref.in_proj_bias is not None
        ref.in_proj_weight.copy_(
            torch.cat([mha.W_query.weight, mha.W_key.weight, mha.W_value.weight])
        )
        ref.in_proj_bias.copy_(torch.cat([mha.W_query.bias, mha.W_key.bias, mha.W_value.bias]))
        ref.out_proj.weight.copy_(mha.out_proj.weight)
        ref.out_proj.bias.copy_(mha.out_proj.bias)
    return ref.eval()


def _heads(mha: MultiHeadAttention, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Queries (B, H, T, D), keys and values (B, H_kv, T, D), written out here."""
    b, t, _ = x.shape
    d = mha.head_dim
    q = mha.W_query(x).view(b, t, mha.num_heads, d).transpose(1, 2)
    k = mha.W_key(x).view(b, t, mha.num_kv_heads, d).transpose(1, 2)
    v = mha.W_value(x).view(b, t, mha.num_kv_heads, d).transpose(1, 2)
    if mha.rope:
        q, k = apply_rope(q), apply_rope(k)
    return q, k, v


def _sdpa_reference(mha: MultiHeadAttention, x: Tensor, allowed: Tensor | None = None) -> Tensor:
    """Our layer's maths through F.scaled_dot_product_attention(enable_gqa=True)."""
    q, k, v = _heads(mha, x)
    if allowed is None:
        out = F.scaled_dot_product_attention(q, k, v, is_causal=mha.causal, enable_gqa=True)
    else:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, enable_gqa=True)
    merged: Tensor = mha.out_proj(out.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1))
    return merged


def _repeat_reference(mha: MultiHeadAttention, x: Tensor) -> Tensor:
    """Grouped-query attention by hand: every key head repeated for its query heads."""
    q, k, v = _heads(mha, x)
    group = mha.num_heads // mha.num_kv_heads
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    scores = q @ k.transpose(2, 3) / mha.head_dim**0.5
    t = x.shape[1]
    scores = scores.masked_fill(
        torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1), -torch.inf
    )
    out = torch.softmax(scores, dim=-1) @ v
    merged: Tensor = mha.out_proj(out.transpose(1, 2).reshape(x.shape[0], t, -1))
    return merged


def _band(t: int, window: int, device="cpu") -> Tensor:
    """(T, T) bool, True = may attend: key j for query i when i - window < j <= i."""
    i = torch.arange(t, device=device)[:, None]
    j = torch.arange(t, device=device)[None, :]
    return (j <= i) & (j > i - window)


# -- attn_mask ------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    b=st.integers(1, 3),
    t=st.integers(1, 8),
    causal=st.booleans(),
    per_head=st.booleans(),
)
def test_bool_attn_mask_equals_torch(device, seed, b, t, causal, per_head) -> None:
    """True = may attend here; nn.MultiheadAttention takes the inverse (True = blocked)."""
    manual, fast = _pair(seed, causal=causal, device=device)
    g = generator(device, seed)
    x = torch.randn(b, t, 8, generator=g, device=device)
    shape = (b, 2, t, t) if per_head else (t, t)
    allowed = torch.rand(shape, generator=g, device=device) < 0.6
    allowed[..., 0] = True  # every query keeps key 0 (never padding): no empty row,
    pad = torch.rand(b, t, generator=g, device=device) < 0.2  # where PyTorch would give NaN
    pad[:, 0] = False
    torch_blocked = ~allowed.expand(b, 2, t, t).reshape(b * 2, t, t)  # (B * H, T, S)
    if causal:
        torch_blocked = torch_blocked | torch.ones(t, t, dtype=torch.bool, device=device).triu(1)
    with torch.no_grad():
        expected, expected_weights = _torch_mha(manual)(
            x, x, x, key_padding_mask=pad, attn_mask=torch_blocked, need_weights=True
        )
        out, weights = manual(
            x, padding_mask=pad, attn_mask=allowed, return_weights=True, average_weights=True
        )
        torch.testing.assert_close(out, expected, **TOL)
        torch.testing.assert_close(weights, expected_weights, **TOL)
        torch.testing.assert_close(fast(x, padding_mask=pad, attn_mask=allowed), out, **TOL)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("causal", [True, False])
def test_float_attn_mask_is_added_to_the_scores_as_in_torch(device, impl, causal) -> None:
    mha = _layer(3, impl, causal=causal, device=device)
    x = torch.randn(2, 6, 8, generator=generator(device, 3), device=device)
    bias = torch.randn(6, 6, generator=generator(device, 4), device=device)
    bias[0, 1:] = -torch.inf  # -inf blocks, as in PyTorch (query 0 keeps key 0)
    torch_bias = (
        bias.masked_fill(torch.ones(6, 6, dtype=torch.bool, device=device).triu(1), -torch.inf)
        if causal
        else bias
    )
    with torch.no_grad():
        expected, _ = _torch_mha(mha)(x, x, x, attn_mask=torch_bias, need_weights=False)
        torch.testing.assert_close(mha(x, attn_mask=bias), expected, **TOL)
        q, k, v = _heads(mha, x)
        by_sdpa = F.scaled_dot_product_attention(q, k, v, attn_mask=torch_bias)
        merged = mha.out_proj(by_sdpa.transpose(1, 2).reshape(2, 6, 8))
        torch.testing.assert_close(mha(x, attn_mask=bias), merged, **TOL)


@pytest.mark.parametrize("kind", ["bool", "float"])
def test_fully_masked_rows_give_zeros_on_both_paths(device, kind) -> None:
    """The package's rule for a query that sees nothing: zero weights and output, not NaN."""
    manual, fast = _pair(5, causal=False, device=device)
    x = torch.randn(2, 5, 8, generator=generator(device, 5), device=device)
    allowed = torch.ones(5, 5, dtype=torch.bool, device=device)
    allowed[2] = False  # query 2 may attend to nothing
    mask = (
        allowed
        if kind == "bool"
        else torch.zeros(5, 5, device=device).masked_fill(~allowed, -torch.inf)
    )
    with torch.no_grad():
        out, weights = manual(x, attn_mask=mask, return_weights=True)
        assert (weights[:, :, 2] == 0).all()  # exact: the package's masked_softmax writes 0
        assert torch.isfinite(out).all()
        # the zero context vector leaves only out_proj's bias
        torch.testing.assert_close(out[:, 2], manual.out_proj.bias.expand(2, 8), **TOL)
        torch.testing.assert_close(fast(x, attn_mask=mask), out, **TOL)
        # padding and attn_mask together can also empty a row
        pad = torch.tensor([[False, True, True, True, True]] * 2, device=device)
        allowed_2 = torch.ones(5, 5, dtype=torch.bool, device=device)
        allowed_2[:, 0] = False
        both = manual(x, padding_mask=pad, attn_mask=allowed_2)
        assert torch.isfinite(both).all()
        torch.testing.assert_close(fast(x, padding_mask=pad, attn_mask=allowed_2), both, **TOL)
        torch.testing.assert_close(both, manual.out_proj.bias.expand(2, 5, 8), **TOL)


@pytest.mark.parametrize(
    ("mask", "error", "message"),
    [
        (
            torch.ones(4, 4, dtype=torch.int64),
            TypeError,
            r"attn_mask must be a bool tensor .* got dtype torch.int64",
        ),
        (
            torch.ones(4, 3, dtype=torch.bool),
            ValueError,
            r"attn_mask must have shape .* got \(4, 3\)",
        ),
        (
            torch.ones(3, 4, 4, dtype=torch.bool),
            ValueError,
            r"attn_mask must have shape .* \(3, 4, 4\)",
        ),
        (torch.ones(1, 1, 1, 4, 4, dtype=torch.bool), ValueError, r"attn_mask must have shape"),
        (
            torch.zeros(4, 4, dtype=torch.float64),
            TypeError,
            r"float attn_mask must have the layer's dtype",
        ),
        ([[True]], TypeError, r"attn_mask must be a torch.Tensor, got list"),
    ],
)
@pytest.mark.parametrize("impl", IMPLS)
def test_bad_attn_mask_names_the_argument(mask, error, message, impl) -> None:
    mha = _layer(0, impl)
    with pytest.raises(error, match=message):
        mha(torch.randn(2, 4, 8), attn_mask=mask)


# -- weights ------------------------------------------------------------------------


def test_averaged_weights_equal_torchs_defaults(device) -> None:
    mha = _layer(7, causal=False, device=device)
    x = torch.randn(3, 5, 8, generator=generator(device, 7), device=device)
    with torch.no_grad():
        _, expected = _torch_mha(mha)(x, x, x)  # need_weights, average_attn_weights default True
        _, per_head = _torch_mha(mha)(x, x, x, average_attn_weights=False)
        _, ours = mha(x, return_weights=True, average_weights=True)
        _, ours_per_head = mha(x, return_weights=True)
    assert ours.shape == (3, 5, 5)
    torch.testing.assert_close(ours, expected, **TOL)
    torch.testing.assert_close(ours_per_head, per_head, **TOL)


def test_weight_options_need_return_weights_and_the_manual_path() -> None:
    with pytest.raises(ValueError, match=r"average_weights=True needs return_weights=True"):
        _layer(0)(torch.randn(1, 4, 8), average_weights=True)
    with pytest.raises(TypeError, match=r"average_weights must be a bool, got int"):
        _layer(0)(torch.randn(1, 4, 8), return_weights=True, average_weights=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"never forms the weights"):
        _layer(0, "sdpa")(torch.randn(1, 4, 8), return_weights=True, average_weights=True)


# -- grouped-query attention --------------------------------------------------------


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    kv_heads=st.sampled_from([1, 2, 4]),
    t=st.integers(1, 9),
    impl=st.sampled_from(IMPLS),
    rope=st.booleans(),
)
def test_grouped_query_attention_equals_sdpa_and_repeated_heads(
    device, seed, kv_heads, t, impl, rope
) -> None:
    mha = _layer(seed, impl, heads=4, num_kv_heads=kv_heads, rope=rope, device=device)
    assert mha.W_key.weight.shape == mha.W_value.weight.shape == (kv_heads * 2, 8)
    x = torch.randn(2, t, 8, generator=generator(device, seed), device=device)
    with torch.no_grad():
        out = mha(x)
        torch.testing.assert_close(out, _sdpa_reference(mha, x), **TOL)
        torch.testing.assert_close(out, _repeat_reference(mha, x), **TOL)


def test_grouped_heads_share_keys_in_order(device) -> None:
    """Query heads 0, 1 read key head 0 and heads 2, 3 key head 1 (as enable_gqa)."""
    mha = _layer(1, heads=4, num_kv_heads=2, causal=False, device=device)
    x = torch.randn(1, 5, 8, device=device)
    with torch.no_grad():
        _, weights = mha(x, return_weights=True)  # (B, H, T, S)
        q, k, _ = _heads(mha, x)
        for h in range(4):
            expected = torch.softmax(q[:, h] @ k[:, h // 2].transpose(1, 2) / 2**0.5, dim=-1)
            torch.testing.assert_close(weights[:, h], expected, **TOL)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        (
            {"heads": 4, "num_kv_heads": 3},
            ValueError,
            r"num_kv_heads must divide num_heads .*, got num_heads=4 and num_kv_heads=3",
        ),
        (
            {"heads": 4, "num_kv_heads": 0},
            ValueError,
            r"num_kv_heads must be a positive int, got 0",
        ),
        (
            {"heads": 2, "num_kv_heads": 2.0},
            TypeError,
            r"num_kv_heads must be a positive int, got float",
        ),
        ({"heads": 8, "rope": True}, ValueError, r"rope=True needs an even head width .* got D=1"),
        ({"rope": "yes"}, TypeError, r"rope must be a bool, got str"),
        ({"window": 0}, ValueError, r"window must be a positive int, got 0"),
        ({"window": 3, "causal": False}, ValueError, r"window needs causal=True"),
    ],
)
def test_bad_options_name_the_argument(options, error, message) -> None:
    with pytest.raises(error, match=message):
        _layer(0, **options)


def test_rope_refuses_cross_attention() -> None:
    mha = _layer(0, causal=False, rope=True)
    with pytest.raises(
        ValueError, match=r"context= \(cross-attention\) needs a layer built with rope=False"
    ):
        mha(torch.randn(1, 3, 8), context=torch.randn(1, 4, 8))


def test_default_options_are_the_books_layer() -> None:
    """num_kv_heads=None, rope=False, window=None: the same weights from the same seed."""
    book = _layer(123)
    explicit = _layer(123, num_kv_heads=2, rope=False, window=None)
    for (name, p), (_, q) in zip(
        book.state_dict().items(), explicit.state_dict().items(), strict=True
    ):
        assert torch.equal(p, q), name  # exact: the same seed draws the same numbers
    x = torch.randn(2, 6, 8)
    with torch.no_grad():
        assert torch.equal(book(x), explicit(x))  # exact: the same operations on the same numbers


# -- RoPE and the window -------------------------------------------------------------


@pytest.mark.parametrize("impl", IMPLS)
def test_rope_scores_depend_only_on_distance(device, impl) -> None:
    """Identical tokens: every row's weights over the window are the same shifted row."""
    mha = _layer(2, "manual", rope=True, window=4, device=device)
    x = torch.randn(1, 1, 8, device=device).expand(1, 10, 8)
    with torch.no_grad():
        _, weights = mha(x, return_weights=True)  # (1, H, T, T)
        rows = torch.stack([weights[0, :, i, i - 3 : i + 1] for i in range(3, 10)])  # (7, H, 4)
        torch.testing.assert_close(rows, rows[:1].expand_as(rows), **TOL)
        assert rows[0].std(dim=-1).min() > 1e-3  # the positions do move the weights
        # without rope every key of the window is the same: equal weights
        _, flat = _layer(2, rope=False, window=4, device=device)(x, return_weights=True)
        torch.testing.assert_close(
            flat[0, :, 9, 6:], torch.full((2, 4), 0.25, device=device), **TOL
        )
    if impl == "sdpa":
        fast = _layer(2, "sdpa", rope=True, window=4, device=device)
        with torch.no_grad():
            torch.testing.assert_close(fast(x), mha(x), **TOL)


@pytest.mark.parametrize("impl", IMPLS)
def test_rope_output_is_shift_invariant(device, impl) -> None:
    """With a window, token i + p after any p-token prefix gives token i's output."""
    mha = _layer(4, impl, rope=True, window=3, heads=4, num_kv_heads=2, device=device)
    g = generator(device, 4)
    x = torch.randn(2, 6, 8, generator=g, device=device)
    prefix = torch.randn(2, 4, 8, generator=g, device=device)
    with torch.no_grad():
        alone = mha(x)[:, 2:]  # from token 2 on, the window holds only x's tokens
        shifted = mha(torch.cat((prefix, x), dim=1))[:, 6:]
    torch.testing.assert_close(shifted, alone, **TOL)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), window=st.integers(1, 9), t=st.integers(1, 9))
def test_window_equals_an_explicit_band_mask(device, seed, window, t) -> None:
    manual, fast = _pair(seed, window=window, device=device)
    plain = _layer(seed, device=device)  # the same weights, no window
    x = torch.randn(2, t, 8, generator=generator(device, seed), device=device)
    band = _band(t, window, device=device)
    with torch.no_grad():
        expected = plain(x, attn_mask=band)
        torch.testing.assert_close(manual(x), expected, **TOL)
        torch.testing.assert_close(fast(x), expected, **TOL)
        torch.testing.assert_close(fast(x), _sdpa_reference(plain, x, band), **TOL)
        torch_out, _ = _torch_mha(plain)(x, x, x, attn_mask=~band, need_weights=False)
        torch.testing.assert_close(manual(x), torch_out, **TOL)
        _, weights = manual(x, return_weights=True)
        assert (weights[..., ~band] == 0).all()  # exact: blocked weights are 0


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    kv_heads=st.sampled_from([1, 2, 4]),
    rope=st.booleans(),
    window=st.sampled_from([None, 1, 3, 20]),
    cuts=st.lists(st.integers(1, 11), min_size=0, max_size=3),
)
def test_cached_attention_equals_the_full_forward(
    device, seed, kv_heads, rope, window, cuts
) -> None:
    mha = _layer(seed, heads=4, num_kv_heads=kv_heads, rope=rope, window=window, device=device)
    x = torch.randn(2, 12, 8, generator=generator(device, seed), device=device)
    bounds = sorted({0, 12, *cuts})
    kv = LayerKV()
    with torch.no_grad():
        pieces = [cached_attention(mha, x[:, a:b], kv) for a, b in itertools.pairwise(bounds)]
        torch.testing.assert_close(torch.cat(pieces, dim=1), mha(x), **TOL)
    assert kv.keys is not None
    assert kv.keys.shape == (2, kv_heads, 12, 2)


# -- GPTModel: grouped-query cache, options, padding ---------------------------------


def test_gqa_cache_shrinks_by_the_group_size(device) -> None:
    ids = torch.randint(0, 50, (2, 7), generator=generator(device, 0), device=device)
    sizes = {}
    for kv_heads in (4, 2, 1):
        torch.manual_seed(0)
        model = GPTModel(TINY, n_kv_heads=kv_heads).to(device).eval()
        cache = KVCache()
        with torch.no_grad():
            model(ids, cache=cache)
        assert all(
            layer.keys is not None and layer.keys.shape[1] == kv_heads for layer in cache.layers
        )
        sizes[kv_heads] = cache.nbytes
    assert sizes[4] == 2 * 2 * 7 * 4 * 4 * 4 * 2  # K and V, B, T, H, D, 4 bytes, 2 layers
    assert sizes[4] == 2 * sizes[2] == 4 * sizes[1]  # shrinks by n_heads / n_kv_heads


def _smallest_margin(model: GPTModel, ids: Tensor, prompt: int) -> float:
    gaps = []
    with torch.no_grad():
        for t in range(prompt, ids.shape[1]):
            top2 = model(ids[:, :t])[:, -1].topk(2, dim=-1).values
            gaps.append((top2[:, 0] - top2[:, 1]).min())
    return float(torch.stack(gaps).min())


@pytest.mark.parametrize(
    "options",
    [
        {"n_kv_heads": 1},
        {"n_kv_heads": 2, "rope": True},
        {"rope": True, "window": 3},
        {"window": 5},
    ],
)
def test_cached_generation_equals_uncached_with_options(options) -> None:
    torch.manual_seed(11)
    model = GPTModel(TINY, **options).eval()
    g = torch.Generator().manual_seed(11)  # cpu: its seeds' margins were checked on the CPU
    ids = torch.randint(0, 50, (2, 4), generator=g)
    plain = generate(model, ids, 8, use_cache=False)
    cached = generate(model, ids, 8)
    assert _smallest_margin(model, plain, 4) > SAFE_MARGIN  # these seeds are far from ties
    assert torch.equal(plain, cached)  # exact: integer ids, no step near a tie
    with torch.no_grad():
        cache = KVCache()
        pieces = [
            model(plain[:, :5], cache=cache),
            model(plain[:, 5:9], cache=cache),
            model(plain[:, 9:], cache=cache),
        ]
        torch.testing.assert_close(torch.cat(pieces, dim=1), model(plain), **TOL)


def test_rope_model_has_no_learned_positions() -> None:
    model = GPTModel(TINY, rope=True)
    assert model.pos_emb is None
    assert all(block.att.rope for block in model.trf_blocks)
    assert "pos_emb.weight" not in model.state_dict()


PROMPTS = [[5, 9, 2, 7, 1, 3], [4, 8, 6], [11]]


def _padded(side: str) -> tuple[Tensor, Tensor]:
    width = max(map(len, PROMPTS))
    ids = torch.zeros(len(PROMPTS), width, dtype=torch.long)
    pad = torch.ones(len(PROMPTS), width, dtype=torch.bool)
    for row, prompt in enumerate(PROMPTS):
        cols = slice(width - len(prompt), width) if side == "left" else slice(0, len(prompt))
        ids[row, cols] = torch.tensor(prompt)
        pad[row, cols] = False
    return ids, pad


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("options", [{}, {"n_kv_heads": 2, "rope": True}, {"window": 2}])
def test_padded_batch_gives_each_prompts_logits(device, side, options) -> None:
    torch.manual_seed(5)
    model = GPTModel(TINY, **options).to(device).eval()
    ids, pad = _padded(side)
    with torch.no_grad():
        batch = model(ids, padding_mask=pad)
        assert torch.isfinite(batch).all()
        for row, prompt in enumerate(PROMPTS):
            alone = model(torch.tensor([prompt], device=device))[0]
            torch.testing.assert_close(batch[row][~pad[row]], alone, **TOL)


def test_padded_prompts_continue_through_the_cache(device) -> None:
    torch.manual_seed(6)
    model = GPTModel(TINY).to(device).eval()
    ids, pad = _padded("left")
    new = torch.tensor([[1, 2], [3, 4], [5, 6]], device=device)
    with torch.no_grad():
        cache = KVCache()
        model(ids, padding_mask=pad, cache=cache)
        after = model(new, cache=cache)  # new tokens: real, no mask needed
        assert cache.padding is not None
        assert cache.padding.shape == (3, 8)
        for row, prompt in enumerate(PROMPTS):
            alone = model(torch.tensor([prompt + new[row].tolist()], device=device))[0, -2:]
            torch.testing.assert_close(after[row], alone, **TOL)


@pytest.mark.parametrize("use_cache", [True, False])
def test_generate_with_a_left_padded_batch(device, use_cache) -> None:
    torch.manual_seed(8)
    model = GPTModel(TINY).to(device).eval()
    ids, pad = _padded("left")
    out = generate(model, ids, 5, padding_mask=pad, use_cache=use_cache)
    for row, prompt in enumerate(PROMPTS):
        alone = generate(model, torch.tensor([prompt], device=device), 5)
        assert _smallest_margin(model, alone, len(prompt)) > SAFE_MARGIN
        assert out[row, -5:].tolist() == alone[0, -5:].tolist()  # exact: ids far from ties


def test_gpt_padding_mask_errors_name_the_argument() -> None:
    model = GPTModel(TINY).eval()
    ids = torch.zeros(2, 4, dtype=torch.long)
    with pytest.raises(
        ValueError, match=r"padding_mask must have shape \(B, T\) = \(2, 4\), got \(2, 3\)"
    ):
        model(ids, padding_mask=torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(
        TypeError, match=r"padding_mask must have dtype torch.bool \(True = padding\)"
    ):
        model(ids, padding_mask=torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"padding_mask must have shape \(B, T\) = \(2, 4\)"):
        generate(model, ids, 1, padding_mask=torch.zeros(4, dtype=torch.bool))


def test_gpt_defaults_keep_the_books_model() -> None:
    """No option: the same parameters, in the same order, from the same seed."""
    torch.manual_seed(123)
    book = GPTModel(TINY)
    torch.manual_seed(123)
    explicit = GPTModel(dataclasses.replace(TINY), n_kv_heads=None, rope=False, window=None)
    assert list(book.state_dict()) == list(explicit.state_dict())
    for name, p in book.state_dict().items():
        assert torch.equal(p, explicit.state_dict()[name]), name  # exact: same seed, same draws
