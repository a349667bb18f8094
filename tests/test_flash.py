"""Chapter 13: tiled, online-softmax attention equals the formula and the fused kernel."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from attention.flash import flash_attention, reference_attention
from attention.memory import peak_allocated_bytes
from tests.conftest import random_tensor

# Two computations of the same numbers (tiles and an online softmax against one
# softmax) round differently. float32: values of size ~1, sums of up to a few
# hundred terms, so differences stay far below 1e-5. float64: the same sums
# differ by ~1e-15; 1e-10 still catches any real mistake.
F32 = {"rtol": 0.0, "atol": 1e-5}
F64 = {"rtol": 0.0, "atol": 1e-10}


def _qkv(seed: int, b: int, h: int, t_q: int, t_k: int, d: int, dtype=torch.float32, device="cpu"):
    q = random_tensor(seed, b, h, t_q, d, dtype=dtype, device=device)
    k = random_tensor(seed + 1, b, h, t_k, d, dtype=dtype, device=device)
    v = random_tensor(seed + 2, b, h, t_k, d, dtype=dtype, device=device)
    return q, k, v


def _sdpa_bottom_right(q, k, v, causal):
    """SDPA with the causal mask aligned at the bottom right (True = may attend)."""
    if not causal:
        return F.scaled_dot_product_attention(q, k, v)
    t_q, t_k = q.shape[-2], k.shape[-2]
    allowed = torch.ones(t_q, t_k, dtype=torch.bool, device=q.device).tril(diagonal=t_k - t_q)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(
    ("t", "d", "block_size"),
    [(1, 8, 4), (7, 8, 4), (8, 8, 4), (37, 16, 8), (64, 3, 16), (20, 32, 128)],
)
def test_the_three_agree(device, dtype, causal, t, d, block_size):
    q, k, v = _qkv(0, 2, 3, t, t, d, dtype, device=device)
    sdpa = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    flash = flash_attention(q, k, v, causal=causal, block_size=block_size)
    ref = reference_attention(q, k, v, causal=causal)
    assert flash.shape == (2, 3, t, d)
    assert flash.dtype == dtype
    torch.testing.assert_close(flash, sdpa, atol=1e-5, rtol=0)
    torch.testing.assert_close(ref, sdpa, atol=1e-5, rtol=0)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("t_q", "t_k"), [(1, 1), (1, 9), (3, 10), (5, 17), (16, 16)])
def test_fewer_queries_than_keys_align_bottom_right(device, causal, t_q, t_k):
    q, k, v = _qkv(1, 1, 2, t_q, t_k, 8, device=device)
    expected = _sdpa_bottom_right(q, k, v, causal)
    torch.testing.assert_close(
        flash_attention(q, k, v, causal=causal, block_size=4), expected, **F32
    )
    torch.testing.assert_close(reference_attention(q, k, v, causal=causal), expected, **F32)


def test_last_rows_of_causal_attention_are_a_cache_step(device):
    """Attending with the last 3 queries gives the last 3 rows of full causal attention."""
    q, k, v = _qkv(2, 1, 2, 12, 12, 8, device=device)
    full = flash_attention(q, k, v, causal=True, block_size=4)
    step = flash_attention(q[..., -3:, :], k, v, causal=True, block_size=4)
    torch.testing.assert_close(step, full[..., -3:, :], **F32)


def test_one_query_one_key_returns_the_value(device):
    q, k, v = _qkv(3, 1, 1, 1, 1, 4, device=device)
    assert torch.equal(flash_attention(q, k, v, causal=True), v)  # exact: weight exp(0) / 1 = 1


def test_value_width_may_differ(device):
    q, k, _ = _qkv(4, 1, 2, 9, 9, 8, device=device)
    v = random_tensor(9, 1, 2, 9, 5, device=device)
    out = flash_attention(q, k, v, causal=True, block_size=4)
    assert out.shape == (1, 2, 9, 5)
    torch.testing.assert_close(out, reference_attention(q, k, v, causal=True), **F32)


def test_large_scores_do_not_overflow(device):
    """The running maximum keeps exp() in range, as the stable softmax does."""
    q, k, v = _qkv(5, 1, 1, 20, 20, 4, device=device)
    out = flash_attention(q * 300, k * 300, v, causal=True, block_size=8)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, reference_attention(q * 300, k * 300, v, causal=True), **F32)


def test_golden_value_seed_0():
    q, k, v = _qkv(0, 1, 1, 5, 5, 4)
    out = flash_attention(q, k, v, causal=True, block_size=2)
    # exact: the first token sees only itself, with weight exp(0) = 1; the others get exp(-inf) = 0
    assert out[0, 0, 0].tolist() == v[0, 0, 0].tolist()
    assert out.sum().item() == pytest.approx(-3.848913, abs=1e-5)  # SDPA gives the same


def test_gradients_pass_gradcheck(device):
    q, k, v = (t.requires_grad_() for t in _qkv(6, 1, 2, 5, 5, 3, torch.float64, device=device))
    assert torch.autograd.gradcheck(
        lambda q, k, v: flash_attention(q, k, v, causal=True, block_size=2), (q, k, v)
    )


def test_gradients_equal_the_reference(device):
    q, k, v = (t.requires_grad_() for t in _qkv(7, 1, 2, 9, 9, 4, torch.float64, device=device))
    flash_attention(q, k, v, causal=True, block_size=4).square().sum().backward()
    flash_grads = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    reference_attention(q, k, v, causal=True).square().sum().backward()
    for mine, theirs in zip(flash_grads, (q.grad, k.grad, v.grad), strict=True):
        torch.testing.assert_close(mine, theirs, **F64)


@given(
    t=st.integers(1, 24),
    block_size=st.integers(1, 10),
    causal=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_block_size_does_not_change_the_result(device, t, block_size, causal, seed):
    q, k, v = _qkv(seed, 1, 1, t, t, 4, torch.float64, device=device)
    expected = reference_attention(q, k, v, causal=causal)
    torch.testing.assert_close(
        flash_attention(q, k, v, causal=causal, block_size=block_size), expected, **F64
    )


@settings(max_examples=15)
@given(
    t_q=st.integers(1, 600),
    extra_keys=st.integers(0, 300),
    causal=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_default_tiles_equal_sdpa_on_long_sequences(device, t_q, extra_keys, causal, seed):
    """Several (256, 256) tiles, a ragged last one, and diagonals at any offset."""
    q, k, v = _qkv(seed, 1, 2, t_q, t_q + extra_keys, 8, device=device)
    expected = _sdpa_bottom_right(q, k, v, causal)
    torch.testing.assert_close(flash_attention(q, k, v, causal=causal), expected, atol=1e-5, rtol=0)


def test_gradients_equal_the_reference_across_default_tiles(device):
    """The backward pass's recomputed tiles give the formula's gradients."""
    q, k, v = (
        t.requires_grad_() for t in _qkv(10, 1, 2, 300, 340, 8, torch.float64, device=device)
    )
    cotangent = random_tensor(11, 1, 2, 300, 8, dtype=torch.float64, device=device)
    (flash_attention(q, k, v, causal=True) * cotangent).sum().backward()
    flash_grads = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    (reference_attention(q, k, v, causal=True) * cotangent).sum().backward()
    for mine, theirs in zip(flash_grads, (q.grad, k.grad, v.grad), strict=True):
        torch.testing.assert_close(mine, theirs, **F64)


@given(shift=st.floats(-50, 50), seed=st.integers(0, 1000))
def test_adding_a_constant_to_the_keys_along_the_query_does_not_matter(device, shift, seed):
    """Scores of one query all move by the same amount: the softmax ignores it."""
    q, k, v = _qkv(seed, 1, 1, 1, 6, 4, torch.float64, device=device)
    direction = q / q.square().sum() * 4**0.5  # q . direction = sqrt(D), so scores move by shift
    out = flash_attention(q, k + shift * direction, v, block_size=2)
    # float64 scores moved by up to 50: their rounding (~1e-14) passes to the weights.
    torch.testing.assert_close(out, flash_attention(q, k, v, block_size=2), **F64)


def test_rejects_bad_input():
    q, k, v = _qkv(8, 1, 2, 4, 4, 8)
    with pytest.raises(ValueError, match=r"q must have shape \(B, H, T, D\).*got 3 dimensions"):
        flash_attention(q[0], k, v)
    with pytest.raises(TypeError, match=r"k must be a torch\.Tensor, got list"):
        flash_attention(q, [1.0], v)
    with pytest.raises(TypeError, match="v must be a floating-point tensor"):
        flash_attention(q, k, v.long())
    with pytest.raises(TypeError, match="k must have the dtype of q"):
        flash_attention(q, k.double(), v)
    with pytest.raises(ValueError, match=r"k must have the batch and head sizes \(B, H\) of q"):
        flash_attention(q, k[:, :1], v)
    with pytest.raises(ValueError, match="k must have last dimension D"):
        flash_attention(q, k[..., :4], v)
    with pytest.raises(ValueError, match="v must have as many tokens as k, T_k=4, got 3"):
        flash_attention(q, k, v[..., :3, :])
    with pytest.raises(ValueError, match="causal=True needs T_q <= T_k"):
        flash_attention(q, k[..., :2, :], v[..., :2, :], causal=True)
    with pytest.raises(ValueError, match="at least one token"):
        reference_attention(q[..., :0, :], k, v)
    with pytest.raises(TypeError, match="causal must be a bool, got int 1"):
        flash_attention(q, k, v, causal=1)
    with pytest.raises(ValueError, match="block_size must be a positive int, got 0"):
        flash_attention(q, k, v, block_size=0)
    with pytest.raises(TypeError, match="block_size must be a positive int, got float"):
        flash_attention(q, k, v, block_size=2.0)


# -- The backward pass: a torch.autograd.Function that recomputes the tiles ----


@pytest.mark.parametrize(
    ("causal", "t_q", "t_k", "d_v", "block_size"),
    [(False, 6, 6, 3, 4), (True, 7, 7, 3, 3), (True, 3, 8, 2, 2), (False, 4, 9, 5, 4)],
)
def test_custom_backward_passes_gradcheck_across_tiles(device, causal, t_q, t_k, d_v, block_size):
    """Ragged last tiles, fewer queries than keys, a value width unlike D: all in float64."""
    q, k, _ = _qkv(12, 1, 2, t_q, t_k, 3, torch.float64, device=device)
    v = random_tensor(13, 1, 2, t_k, d_v, dtype=torch.float64, device=device)
    inputs = tuple(t.requires_grad_() for t in (q, k, v))
    assert torch.autograd.gradcheck(
        lambda q, k, v: flash_attention(q, k, v, causal=causal, block_size=block_size), inputs
    )


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("t_q", "t_k"), [(300, 300), (100, 340)])
def test_gradients_equal_sdpas_in_float32(device, causal, t_q, t_k):
    """Across two default (256, 256) tiles; 1e-5 is float32 rounding at these magnitudes."""
    q, k, v = (t.requires_grad_() for t in _qkv(14, 2, 3, t_q, t_k, 16, device=device))
    cotangent = random_tensor(15, 2, 3, t_q, 16, device=device)
    mine = torch.autograd.grad(flash_attention(q, k, v, causal=causal), (q, k, v), cotangent)
    theirs = torch.autograd.grad(_sdpa_bottom_right(q, k, v, causal), (q, k, v), cotangent)
    for a, b in zip(mine, theirs, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def _saved_bytes(fn, *inputs) -> int:
    """Bytes of the tensors autograd saves for the backward pass of fn(*inputs)."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(*inputs)
    return total


@pytest.mark.parametrize("t", [64, 512])
def test_autograd_saves_q_k_v_the_output_and_one_number_per_row(device, t):
    q, k, v = (x.requires_grad_() for x in _qkv(16, 1, 2, t, t, 8, device=device))
    saved = _saved_bytes(lambda *a: flash_attention(*a, causal=True, block_size=32), q, k, v)
    assert saved == 4 * q.numel() * 4 + 2 * t * 4  # exact: q, k, v, output and the log-sum-exp
    naive = _saved_bytes(lambda *a: reference_attention(*a, causal=True), q, k, v)
    assert naive > 2 * t * t * 4  # the formula keeps (T, T) matrices of every head


def test_forward_and_backward_memory_grows_linearly():
    """Doubling T about doubles the peak; the formula's peak quadruples."""

    def peak(fn, t: int) -> int:
        q, k, v = (x.requires_grad_() for x in _qkv(17, 1, 2, t, t, 16))
        cotangent = random_tensor(18, 1, 2, t, 16)
        return peak_allocated_bytes(lambda: torch.autograd.grad(fn(q, k, v), (q, k, v), cotangent))

    def flash(q, k, v):
        return flash_attention(q, k, v, causal=True, block_size=64)

    def naive(q, k, v):
        return reference_attention(q, k, v, causal=True)

    flash_peaks = [peak(flash, t) for t in (512, 1024)]
    naive_peaks = [peak(naive, t) for t in (512, 1024)]
    assert flash_peaks[1] / flash_peaks[0] < 2.5
    assert naive_peaks[1] / naive_peaks[0] > 3.5
    assert flash_peaks[1] < naive_peaks[1] / 8


def test_the_backward_pass_is_not_differentiable_again(device):
    q, k, v = (t.requires_grad_() for t in _qkv(19, 1, 1, 4, 4, 2, torch.float64, device=device))
    with pytest.raises(RuntimeError, match="flash_attention has no second derivatives"):
        torch.autograd.grad(flash_attention(q, k, v).sum(), q, create_graph=True)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_types_accumulate_in_float32_and_round_once(device, dtype):
    """Each output is the float32 result rounded to ``dtype``: within half a unit of
    ``dtype`` (relative 2^-11 for float16, 2^-8 for bfloat16) of the float64 result
    from the same rounded inputs, plus 1e-5 for float32's own rounding. Summing in
    ``dtype`` itself missed this by several units."""
    q, k, v = _qkv(20, 1, 4, 600, 600, 64, dtype, device=device)
    truth = reference_attention(q.double(), k.double(), v.double(), causal=True)
    out = flash_attention(q, k, v, causal=True)
    assert out.dtype == dtype
    half_unit = torch.finfo(dtype).eps / 2
    torch.testing.assert_close(out.double(), truth, rtol=half_unit, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_type_gradients_are_as_accurate_as_sdpas(dtype):
    """Largest gradient error against float64 at most 1.25 times SDPA's in the same dtype."""
    q, k, v = (t.requires_grad_() for t in _qkv(21, 1, 2, 300, 300, 32, dtype))
    cotangent = random_tensor(22, 1, 2, 300, 32, dtype=dtype)
    wide = [t.detach().double().requires_grad_() for t in (q, k, v)]
    truth = torch.autograd.grad(reference_attention(*wide, causal=True), wide, cotangent.double())
    mine = torch.autograd.grad(flash_attention(q, k, v, causal=True), (q, k, v), cotangent)
    theirs = torch.autograd.grad(
        F.scaled_dot_product_attention(q, k, v, is_causal=True), (q, k, v), cotangent
    )
    for a, b, exact in zip(mine, theirs, truth, strict=True):
        assert a.dtype == dtype
        my_error = (a.double() - exact).abs().max()
        their_error = (b.double() - exact).abs().max()
        assert my_error <= 1.25 * their_error
