"""Invariants that must hold for any shape: property tests with Hypothesis."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from attention import (
    CausalAttention,
    MultiHeadAttention,
    MultiHeadAttentionWrapper,
    SelfAttentionV1,
    SelfAttentionV2,
    causal_mask,
    masked_softmax,
    simple_self_attention,
)
from tests.conftest import generator, random_tensor

seeds = st.integers(0, 2**31 - 1)
batches = st.integers(1, 3)
tokens = st.integers(1, 8)
widths = st.integers(1, 6)
heads = st.integers(1, 4)


def _mha(seed, d_in, head_dim, num_heads, context_length, dropout=0.0, impl="manual", device="cpu"):
    torch.manual_seed(seed)
    return (
        MultiHeadAttention(
            d_in, head_dim * num_heads, context_length, dropout, num_heads, qkv_bias=True, impl=impl
        )
        .to(device)
        .eval()
    )


def _layers(seed, d_in, d_out, context_length, device):
    """One of every causal layer, freshly seeded, in eval mode, on ``device``."""
    torch.manual_seed(seed)
    yield CausalAttention(d_in, d_out, context_length, 0.0).to(device).eval()
    yield MultiHeadAttentionWrapper(d_in, d_out, context_length, 0.0, num_heads=2).to(device).eval()
    yield _mha(seed, d_in, d_out, 2, context_length, device=device)
    yield _mha(seed, d_in, d_out, 2, context_length, impl="sdpa", device=device)


@given(seed=seeds, b=batches, t=tokens, d_in=widths, d_out=widths)
def test_weight_rows_sum_to_one(device, seed, b, t, d_in, d_out):
    x = random_tensor(seed, b, t, d_in, device=device)
    torch.manual_seed(seed)
    layers = [
        SelfAttentionV1(d_in, d_out),
        SelfAttentionV2(d_in, d_out),
        CausalAttention(d_in, d_out, t, 0.0),
        MultiHeadAttentionWrapper(d_in, d_out, t, 0.0, num_heads=2),
        MultiHeadAttention(d_in, 2 * d_out, t, 0.0, num_heads=2),
    ]
    for layer in layers:
        _, weights = layer.to(device).eval()(x, return_weights=True)
        ones = torch.ones(weights.shape[:-1], device=device)
        assert torch.allclose(weights.sum(dim=-1), ones, atol=1e-5)
        assert (weights >= 0).all()
    _, weights = simple_self_attention(x, return_weights=True)
    assert torch.allclose(weights.sum(dim=-1), torch.ones(b, t, device=device), atol=1e-5)


@given(seed=seeds, b=batches, t=st.integers(2, 8), d_in=widths, d_out=widths, data=st.data())
def test_causality(device, seed, b, t, d_in, d_out, data):
    """Changing the tokens after position p never changes any output at or before p."""
    p = data.draw(st.integers(0, t - 2), label="p")
    x = random_tensor(seed, b, t, d_in, device=device)
    changed = x.clone()
    changed[:, p + 1 :] = random_tensor(seed + 1, b, t - p - 1, d_in, device=device)
    for layer in _layers(seed, d_in, d_out, t, device):
        before, after = layer(x), layer(changed)
        assert torch.allclose(before[:, : p + 1], after[:, : p + 1], atol=1e-6)
        assert not torch.allclose(before[:, p + 1 :], after[:, p + 1 :], atol=1e-6, rtol=0)


@given(seed=seeds, b=batches, t=tokens)
def test_minus_infinity_equals_zero_and_renormalise(device, seed, b, t):
    scores = random_tensor(seed, b, t, t, device=device) * 3
    mask = causal_mask(t, device=device)
    via_inf = masked_softmax(scores, mask)
    zeroed = torch.softmax(scores, dim=-1).masked_fill(mask, 0.0)
    renormalised = zeroed / zeroed.sum(dim=-1, keepdim=True)
    assert torch.allclose(via_inf, renormalised, atol=1e-6)
    assert (via_inf.masked_select(mask) == 0).all()  # exact: exp(-inf) = 0


@given(seed=seeds, t=tokens, d_in=widths, d_out=widths, num_heads=heads)
def test_wrapper_head_zero_is_a_causal_attention_from_the_same_seed(
    device, seed, t, d_in, d_out, num_heads
):
    x = random_tensor(seed, 2, t, d_in, device=device)
    torch.manual_seed(seed)
    wrapper = MultiHeadAttentionWrapper(d_in, d_out, t, 0.0, num_heads=num_heads).to(device)
    torch.manual_seed(seed)
    single = CausalAttention(d_in, d_out, t, 0.0).to(device)
    # exact: the same seed draws the same weights for head 0; then the same operations
    assert torch.equal(wrapper(x)[..., :d_out], single(x))
    assert wrapper(x).shape == (2, t, num_heads * d_out)


def _copy_into_torch_mha(mha: MultiHeadAttention) -> torch.nn.MultiheadAttention:
    """nn.MultiheadAttention with our weights; it needs d_in == d_out for self-attention."""
    ref = torch.nn.MultiheadAttention(mha.d_out, mha.num_heads, bias=True, batch_first=True)
    ref = ref.to(mha.out_proj.weight.device)
    with torch.no_grad():
        # Its Q, K, V projections are one packed (3C, C) matrix, stacked in that order.
        ref.in_proj_weight.copy_(
            torch.cat([mha.W_query.weight, mha.W_key.weight, mha.W_value.weight])
        )
        ref.in_proj_bias.copy_(torch.cat([mha.W_query.bias, mha.W_key.bias, mha.W_value.bias]))
        ref.out_proj.weight.copy_(mha.out_proj.weight)
        ref.out_proj.bias.copy_(mha.out_proj.bias)
    return ref.eval()


@given(seed=seeds, b=batches, t=tokens, head_dim=widths, num_heads=heads)
def test_equals_torch_multihead_attention(device, seed, b, t, head_dim, num_heads):
    width = head_dim * num_heads
    mha = _mha(seed, width, head_dim, num_heads, context_length=8, device=device)
    ref = _copy_into_torch_mha(mha)
    x = random_tensor(seed, b, t, width, device=device)
    # nn.MultiheadAttention's boolean attn_mask: True = blocked, as ours.
    mask = causal_mask(t, device=device)
    expected, ref_weights = ref(
        x, x, x, attn_mask=mask, need_weights=True, average_attn_weights=False
    )
    out, weights = mha(x, return_weights=True)
    assert torch.allclose(out, expected, atol=1e-5)
    assert torch.allclose(weights, ref_weights, atol=1e-5)


@given(seed=seeds, b=batches, t=tokens, d_in=widths, head_dim=widths, num_heads=heads)
def test_equals_functional_sdpa_and_the_sdpa_impl(device, seed, b, t, d_in, head_dim, num_heads):
    mha = _mha(seed, d_in, head_dim, num_heads, context_length=8, device=device)
    x = random_tensor(seed, b, t, d_in, device=device)
    mask = causal_mask(t, device=device)
    out = mha(x)

    def split(t_):  # (B, T, C) -> (B, H, T, D)
        return t_.view(b, t, num_heads, head_dim).transpose(1, 2)

    q, k, v = split(mha.W_query(x)), split(mha.W_key(x)), split(mha.W_value(x))
    # F.scaled_dot_product_attention's boolean mask: True = MAY attend, the opposite.
    context = F.scaled_dot_product_attention(q, k, v, attn_mask=~mask)
    expected = mha.out_proj(context.transpose(1, 2).reshape(b, t, num_heads * head_dim))
    assert torch.allclose(out, expected, atol=1e-5)

    wrong_polarity = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    if t > 1:  # with our mask passed as-is, every token sees only the future
        assert not torch.allclose(context, wrong_polarity.nan_to_num(), atol=1e-5)

    mha.impl = "sdpa"
    assert torch.allclose(mha(x), out, atol=1e-5)


@given(seed=seeds, b=batches, t=st.integers(2, 8), d_in=widths, head_dim=widths)
def test_padding_mask_agrees_between_impls_and_never_gives_nan(device, seed, b, t, d_in, head_dim):
    mha = _mha(seed, d_in, head_dim, 2, context_length=8, device=device)
    x = random_tensor(seed, b, t, d_in, device=device)
    padding = torch.zeros(b, t, dtype=torch.bool, device=device)
    padding[:, 0] = True  # left padding: query 0 can see only padding
    out, weights = mha(x, padding_mask=padding, return_weights=True)
    assert not out.isnan().any()
    assert (weights[:, :, 0] == 0).all()  # exact: the fully masked row is filled with 0
    assert (weights[:, :, 1:, 0] == 0).all()  # exact: exp(-inf) = 0 for the padding
    assert torch.allclose(
        weights[:, :, 1:].sum(-1), torch.ones(b, 2, t - 1, device=device), atol=1e-5
    )
    mha.impl = "sdpa"
    assert torch.allclose(mha(x, padding_mask=padding), out, atol=1e-5)


@given(seed=seeds, p=st.sampled_from([0.1, 0.5, 0.8]))
def test_dropout_keeps_zero_or_scaled_weights(device, seed, p):
    torch.manual_seed(seed)
    layer = CausalAttention(3, 4, 6, p).to(device)
    x = random_tensor(seed, 2, 6, 3, device=device)
    _, clean = layer.eval()(x, return_weights=True)
    layer.train()
    _, dropped = layer(x, return_weights=True)
    kept = dropped != 0  # exact: a dropped weight is 0 * w = 0
    assert torch.allclose(dropped[kept], (clean / (1 - p))[kept], atol=1e-6)
    assert torch.equal(layer.eval()(x), layer.eval()(x))  # exact: eval, the same operations twice


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_dropout_row_sums_average_one(device, p):
    torch.manual_seed(0)
    layer = CausalAttention(3, 4, 6, p).to(device).train()
    x = random_tensor(0, 1, 6, 3, device=device).expand(4000, 6, 3)
    _, weights = layer(x, return_weights=True)
    sums = weights.sum(dim=-1)  # (draws, T)
    assert sums.mean().item() == pytest.approx(1.0, abs=0.02)
    assert sums.std().item() > 0.1  # single rows really do stray from 1
    assert (sums[:, 0] == 0).any()  # exact: the first row has one weight: dropped ...
    # ... or kept and scaled up: 1 / (1 - p) in float32 need not equal the double 1 / (1 - p)
    scaled = torch.tensor(1 / (1 - p), device=device)
    assert torch.isclose(sums[:, 0], scaled, rtol=1e-6, atol=0).any()


@pytest.mark.parametrize("impl", ["manual", "sdpa"])
def test_eval_mode_turns_dropout_off(impl, device_batch):
    batch = device_batch
    torch.manual_seed(1)
    mha = MultiHeadAttention(3, 4, 6, 0.5, num_heads=2, impl=impl).to(batch.device)
    torch.manual_seed(1)
    no_dropout = MultiHeadAttention(3, 4, 6, 0.0, num_heads=2, impl=impl).to(batch.device)
    # exact: the same seed draws the same weights, and dropout that is off (eval, or p = 0)
    # leaves the weights alone, so both run the same operations on the same numbers
    assert torch.equal(mha.eval()(batch), no_dropout(batch))
    assert not torch.equal(mha.train()(batch), no_dropout(batch))


@pytest.mark.parametrize(
    "make",
    [
        lambda: SelfAttentionV1(3, 4),
        lambda: SelfAttentionV2(3, 4, qkv_bias=True),
        lambda: CausalAttention(3, 4, 6, 0.1),
        lambda: MultiHeadAttentionWrapper(3, 4, 6, 0.1, num_heads=2),
        lambda: MultiHeadAttention(3, 4, 6, 0.1, num_heads=2),
    ],
)
def test_state_dict_round_trip(make, device_batch):
    batch = device_batch
    torch.manual_seed(5)
    source = make().to(batch.device).eval()
    buffer = io.BytesIO()
    torch.save(source.state_dict(), buffer)
    buffer.seek(0)
    torch.manual_seed(6)
    target = make().to(batch.device).eval()
    assert not torch.equal(source(batch), target(batch))  # exact: other weights, other numbers
    target.load_state_dict(torch.load(buffer, weights_only=True))
    # exact: the saved weights come back bit for bit; then the same operations
    assert torch.equal(source(batch), target(batch))


def test_mask_is_a_buffer_not_a_parameter():
    layer = MultiHeadAttention(3, 4, 6, 0.0, num_heads=2)
    assert "mask" in dict(layer.named_buffers())
    assert "mask" not in layer.state_dict()  # persistent=False: rebuilt from context_length
    assert all(name != "mask" for name, _ in layer.named_parameters())
    assert not layer.mask.requires_grad


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_other_dtypes(dtype, device_batch):
    batch = device_batch
    torch.manual_seed(123)
    reference = MultiHeadAttention(3, 4, 6, 0.0, num_heads=2).to(batch.device)
    expected = reference(batch)
    for impl in ("manual", "sdpa"):
        layer = MultiHeadAttention(3, 4, 6, 0.0, num_heads=2, impl=impl).to(batch.device)
        layer.load_state_dict(reference.state_dict())
        out = layer.to(dtype)(batch.to(dtype))
        assert out.dtype == dtype
        tolerance = 1e-6 if dtype == torch.float64 else 3e-2
        assert torch.allclose(out.float(), expected, atol=tolerance)


def _sdpa_of(layer: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One head's output from F.scaled_dot_product_attention on the layer's projections."""
    if isinstance(layer, SelfAttentionV1):
        q, k, v = x @ layer.W_query, x @ layer.W_key, x @ layer.W_value  # 3 x (B, T, d_out)
    else:
        q, k, v = layer.W_query(x), layer.W_key(x), layer.W_value(x)  # 3 x (B, T, d_out)
    return F.scaled_dot_product_attention(q, k, v, is_causal=isinstance(layer, CausalAttention))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_every_layer_in_half_types_equals_pytorchs_attention(device, dtype):
    """Within two units in the last place of the dtype at the largest output.

    Each layer, converted to float16 or bfloat16, against PyTorch's own attention
    in the same dtype on the same weights: F.scaled_dot_product_attention for
    the single heads, nn.MultiheadAttention for the multi-head layer. The book's
    layers round the scores and the weights to the dtype, PyTorch's kernels keep
    them in float32: each rounding may add half a unit (measured: at most 0.72).
    """
    x = random_tensor(0, 2, 6, 4, device=device).to(dtype)
    torch.manual_seed(0)
    singles = [SelfAttentionV1(4, 3), SelfAttentionV2(4, 3, qkv_bias=True)]
    singles.append(CausalAttention(4, 3, 6, 0.0, qkv_bias=True))
    singles = [layer.to(device) for layer in singles]
    wrapper = MultiHeadAttentionWrapper(4, 3, 6, 0.0, num_heads=2).to(device)
    pairs = [(layer.to(dtype)(x), _sdpa_of(layer, x)) for layer in singles]
    wrapper = wrapper.to(dtype)
    pairs.append((wrapper(x), torch.cat([_sdpa_of(head, x) for head in wrapper.heads], dim=-1)))
    for impl in ("manual", "sdpa"):
        mha = _mha(0, 4, 2, 2, 6, impl=impl, device=device)
        expected, _ = _copy_into_torch_mha(mha).to(dtype)(
            x, x, x, attn_mask=causal_mask(6, device=device), need_weights=False
        )
        pairs.append((mha.to(dtype)(x), expected))
    for ours, theirs in pairs:
        assert ours.dtype == theirs.dtype == dtype
        unit = torch.finfo(dtype).eps * theirs.abs().max().item()
        torch.testing.assert_close(ours, theirs, atol=2 * unit, rtol=0)


def test_gradcheck_in_float64(device):
    torch.manual_seed(0)
    x = torch.rand(2, 5, 3, dtype=torch.float64, device=device, requires_grad=True)
    layers = [
        SelfAttentionV1(3, 2).double(),
        SelfAttentionV2(3, 2).double(),
        CausalAttention(3, 2, 5, 0.0).double(),
        MultiHeadAttentionWrapper(3, 2, 5, 0.0, num_heads=2).double(),
        MultiHeadAttention(3, 4, 5, 0.0, num_heads=2).double(),
        MultiHeadAttention(3, 4, 5, 0.0, num_heads=2, impl="sdpa").double(),
    ]
    for layer in layers:
        layer.to(device)
        assert torch.autograd.gradcheck(lambda t, layer=layer: layer(t), (x,))


def test_zero_tokens_give_an_empty_result(device_batch):
    empty = device_batch[:, :0]
    d = empty.device
    torch.manual_seed(0)
    assert SelfAttentionV1(3, 2).to(d)(empty).shape == (2, 0, 2)
    assert SelfAttentionV2(3, 2).to(d)(empty).shape == (2, 0, 2)
    assert CausalAttention(3, 2, 6, 0.0).to(d)(empty).shape == (2, 0, 2)
    assert MultiHeadAttentionWrapper(3, 2, 6, 0.0, num_heads=3).to(d)(empty).shape == (2, 0, 6)
    mha = MultiHeadAttention(3, 4, 6, 0.0, num_heads=2).to(d)
    out, weights = mha(empty, return_weights=True)
    assert out.shape == (2, 0, 4)
    assert weights.shape == (2, 2, 0, 0)
    assert MultiHeadAttention(3, 4, 6, 0.0, 2, impl="sdpa").to(d)(empty).shape == (2, 0, 4)
    assert simple_self_attention(empty[0]).shape == (0, 3)


@pytest.mark.parametrize("impl", ["manual", "sdpa"])
def test_the_device_matches_the_cpu(impl, device, batch):
    """The CPU result (the golden side) against the same layer moved to ``device``."""
    torch.manual_seed(123)
    layer = MultiHeadAttention(3, 4, 6, 0.0, num_heads=2, impl=impl).eval()
    expected = layer(batch)
    out = layer.to(device)(batch.to(device))
    assert out.device == device
    torch.testing.assert_close(out.cpu(), expected, atol=1e-5, rtol=1e-5)


def test_the_mask_buffer_follows_to(device):
    layer = CausalAttention(3, 2, 6, 0.0).to(device)
    assert layer.mask.device == device
    elsewhere = "meta" if device.type == "cpu" else "cpu"
    with pytest.raises(ValueError, match="x must be on the layer's device"):
        layer(torch.rand(1, 6, 3, device=elsewhere))


@given(
    seed=seeds,
    b=batches,
    t=tokens,
    d_in=widths,
    head_dim=widths,
    num_heads=heads,
    bias=st.booleans(),
    padded=st.booleans(),
)
def test_sdpa_impl_equals_manual_forward_and_gradients(
    device, seed, b, t, d_in, head_dim, num_heads, bias, padded
):
    """The fused path (one stacked Q, K, V product, SDPA) gives the book's numbers and grads."""
    torch.manual_seed(seed)
    d_out = head_dim * num_heads
    manual = MultiHeadAttention(d_in, d_out, 8, 0.0, num_heads, qkv_bias=bias)
    manual = manual.to(device, torch.float64)
    fast = MultiHeadAttention(d_in, d_out, 8, 0.0, num_heads, qkv_bias=bias, impl="sdpa")
    fast = fast.to(device, torch.float64)
    fast.load_state_dict(manual.state_dict())
    x = random_tensor(seed, b, t, d_in, dtype=torch.float64, device=device)
    cotangent = random_tensor(seed + 1, b, t, d_out, dtype=torch.float64, device=device)
    padding = None
    if padded:  # left padding of random length, never the whole sequence
        g = generator(device, seed)
        lengths = torch.randint(0, t, (b, 1), generator=g, device=device)
        padding = torch.arange(t, device=device)[None, :] < lengths  # (B, T), True = padding
    results = []
    for layer in (manual, fast):
        leaf = x.clone().requires_grad_()
        out = layer(leaf, padding_mask=padding)
        (out * cotangent).sum().backward()
        grads = {name: p.grad for name, p in layer.named_parameters()}
        results.append((out.detach(), leaf.grad, grads))
    (out_m, gx_m, grads_m), (out_f, gx_f, grads_f) = results
    # float64: the two paths sum in different orders, ~1e-16 apart on values of size ~1-10.
    f64 = {"rtol": 1e-10, "atol": 1e-12}
    torch.testing.assert_close(out_f, out_m, **f64)
    torch.testing.assert_close(gx_f, gx_m, **f64)
    assert grads_f.keys() == grads_m.keys()
    for name in grads_m:
        torch.testing.assert_close(grads_f[name], grads_m[name], msg=name, **f64)
