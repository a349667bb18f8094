"""Positions: sinusoidal vectors and rotary embeddings against their definitions."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from attention.position import apply_rope, rope_angles, sinusoidal_positions
from tests.conftest import random_tensor


def test_sinusoidal_positions_follow_the_papers_formula() -> None:
    pe = sinusoidal_positions(50, 8)
    for p in (0, 1, 7, 49):
        for i in range(4):
            angle = p / 10_000 ** (2 * i / 8)
            assert pe[p, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6, rel=0)
            assert pe[p, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6, rel=0)


def test_sinusoidal_dot_products_depend_only_on_distance() -> None:
    pe = sinusoidal_positions(64, 16).double()
    gram = pe @ pe.T  # (T, T)
    for k in (1, 5, 20):
        diagonal = gram.diagonal(offset=k)
        assert torch.allclose(diagonal, diagonal[0].expand_as(diagonal), atol=1e-5, rtol=0)


def rope_by_complex_numbers(x: torch.Tensor, offset: int = 0) -> torch.Tensor:
    """RoPE as in the RoFormer paper: each feature pair a complex number, times e^(i p theta)."""
    t, d = x.shape[-2], x.shape[-1]
    f64 = {"dtype": torch.float64, "device": x.device}
    theta = 10_000.0 ** (-torch.arange(0, d, 2, **f64) / d)
    p = torch.arange(offset, offset + t, **f64)
    turn = torch.polar(torch.ones(t, d // 2, **f64), p[:, None] * theta)
    z = torch.view_as_complex(x.double().reshape(*x.shape[:-1], d // 2, 2).contiguous())
    return torch.view_as_real(z * turn).reshape(x.shape).to(x.dtype)


@given(
    t=st.integers(1, 12),
    half=st.integers(1, 8),
    offset=st.integers(0, 100),
    seed=st.integers(0, 2**16),
)
def test_rope_equals_the_complex_number_definition(device, t, half, offset, seed) -> None:
    x = random_tensor(seed, 2, 3, t, 2 * half, device=device)
    expected = rope_by_complex_numbers(x, offset)
    assert torch.allclose(apply_rope(x, offset=offset), expected, atol=1e-5, rtol=1e-5)


def test_rope_keeps_norms_and_scores_depend_only_on_distance(device) -> None:
    q, k = random_tensor(0, 1, 16, device=device), random_tensor(1, 1, 16, device=device)
    rotated_q = apply_rope(q.expand(40, 16))  # (T, D): the same query at positions 0..39
    rotated_k = apply_rope(k.expand(40, 16))
    assert torch.allclose(rotated_q.norm(dim=-1), q.norm(), atol=1e-5, rtol=0)
    scores = rotated_q @ rotated_k.T  # (T, T): the query at m against the key at n
    for distance in (0, 3, -7, 20):
        diagonal = scores.diagonal(offset=-distance)  # all (m, n) with m - n = distance
        assert torch.allclose(diagonal, diagonal[0].expand_as(diagonal), atol=1e-4, rtol=0)


def test_rope_offset_continues_the_positions(device) -> None:
    x = random_tensor(1, 2, 10, 8, device=device)
    whole = apply_rope(x)
    assert torch.allclose(apply_rope(x[:, 6:], offset=6), whole[:, 6:], atol=1e-6, rtol=0)


def test_rope_at_position_zero_changes_nothing(device) -> None:
    x = random_tensor(0, 1, 8, device=device)
    assert torch.equal(apply_rope(x), x)  # exact: cos 0 = 1 and sin 0 = 0 are exact


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_rope_keeps_the_dtype(device, dtype) -> None:
    x = random_tensor(0, 4, 6, device=device).to(dtype)
    out = apply_rope(x)
    assert out.dtype == dtype
    expected = apply_rope(x.float()).to(dtype)
    tol = {torch.float16: 2e-3, torch.bfloat16: 2e-2, torch.float64: 1e-6}[dtype]
    assert torch.allclose(out.float(), expected.float(), atol=tol, rtol=tol)


def test_rope_angles_start_at_one_radian_per_position() -> None:
    angles = rope_angles(5, 4)
    assert angles[:, 0].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]  # exact: small integers
    assert angles[1, 1].item() == pytest.approx(0.01, rel=1e-6, abs=0)  # 10,000^(-1/2)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: apply_rope(torch.ones(3, 5)), ValueError, "even last dimension D.*got 5"),
        (lambda: apply_rope(torch.ones(5)), ValueError, "x must"),
        (lambda: apply_rope(torch.ones(3, 4, dtype=torch.long)), TypeError, "x must"),
        (lambda: apply_rope(torch.ones(3, 4), offset=-1), ValueError, "offset"),
        (lambda: apply_rope(torch.ones(3, 4), base=0.0), ValueError, "base"),
        (lambda: sinusoidal_positions(4, 3), ValueError, "dim must be even"),
        (lambda: sinusoidal_positions(0, 4), ValueError, "num_positions"),
        (lambda: rope_angles(4, 2.0), TypeError, "head_dim"),
    ],
)
def test_bad_input_names_the_argument(call, error, message) -> None:
    with pytest.raises(error, match=message):
        call()
