"""Ways to tell attention where each token is: chapter 11's positions.

Attention by itself compares tokens by content only: shuffle the tokens and
the outputs shuffle with them. A model learns about order only from position
information added to what attention sees. Three schemes:

* learned absolute positions (GPT-2 and the book: ``nn.Embedding`` rows added
  to the token embeddings; see :class:`attention.gpt.GPTModel`);
* fixed sinusoidal positions, added the same way (:func:`sinusoidal_positions`,
  Vaswani et al. 2017);
* rotary position embeddings, RoPE (:func:`apply_rope`, Su et al. 2021), which
  rotate each query and key by an angle proportional to its position, so that
  a score depends on the two positions only through their distance.
"""

from __future__ import annotations

import torch
from torch import Tensor

from attention import _checks

__all__ = ["apply_rope", "rope_angles", "sinusoidal_positions"]


def _even(name: str, value: object) -> int:
    n = _checks.positive_int(name, value)
    if n % 2:
        raise ValueError(f"{name} must be even (sines and cosines come in pairs), got {n}")
    return n


def sinusoidal_positions(num_positions: int, dim: int, *, base: float = 10_000.0) -> Tensor:
    """The fixed position vectors of the original transformer, one row per position.

    ``PE[p, 2i] = sin(p / base^(2i/dim))`` and ``PE[p, 2i+1] = cos(p / base^(2i/dim))``:
    each pair of features turns at its own frequency, from once per 2 pi
    positions to once per 2 pi base positions. The dot product of two rows
    depends only on how far apart the positions are.

    Args:
        num_positions: T, the number of positions.
        dim: d, the width of each vector; even.
        base: The longest wavelength's scale. Default: 10,000, as in the paper.

    Returns:
        (T, d) float32 tensor.

    Example:
        >>> pe = sinusoidal_positions(4, 6)
        >>> tuple(pe.shape), pe[0].tolist()
        ((4, 6), [0.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    """
    t = _checks.positive_int("num_positions", num_positions)
    d = _even("dim", dim)
    b = _checks.positive_number("base", base)
    angles = rope_angles(t, d, base=b)  # (T, d / 2)
    out = torch.empty(t, d)
    out[:, 0::2] = torch.sin(angles)  # (T, d / 2)
    out[:, 1::2] = torch.cos(angles)
    return out


def rope_angles(num_positions: int, head_dim: int, *, base: float = 10_000.0) -> Tensor:
    """The rotation angle of every position and feature pair, ``p * base^(-2i/D)``.

    Args:
        num_positions: T, the number of positions (0 to T - 1).
        head_dim: D, the width of a query or key; even.
        base: Sets the slowest frequency. Default: 10,000 (RoFormer, Llama 2).

    Returns:
        (T, D / 2) float32 tensor of angles in radians, computed in float64.
    """
    t = _checks.positive_int("num_positions", num_positions)
    d = _even("head_dim", head_dim)
    b = _checks.positive_number("base", base)
    pairs = torch.arange(0, d, 2, dtype=torch.float64)  # (D / 2,): 2i
    frequencies = b ** (-pairs / d)  # (D / 2,), from 1 down to base^(-(D-2)/D)
    positions = torch.arange(t, dtype=torch.float64)  # (T,)
    return (positions[:, None] * frequencies[None, :]).float()  # (T, D / 2)


def apply_rope(x: Tensor, *, offset: int = 0, base: float = 10_000.0) -> Tensor:
    """Rotate each pair of features of each token by its position's angle (RoPE).

    Features ``(2i, 2i+1)`` of the token at position ``p`` form a point in
    the plane, turned by ``p * base^(-2i/D)`` radians. Applied to queries and
    keys before the scores, it makes ``rope(q, m) . rope(k, n)`` depend on m
    and n only through ``m - n``: a rotation by m followed by the inverse of
    a rotation by n is a rotation by m - n. Norms do not change.

    Args:
        x: Queries or keys, shape (..., T, D) with D even.
        offset: The position of the first token (for tokens that follow a
            KV cache). Default: 0.
        base: See :func:`rope_angles`. Default: 10,000.

    Returns:
        Tensor of the shape and dtype of ``x``.

    Example:
        >>> q = torch.ones(3, 2)  # (T, D): three tokens at positions 0, 1, 2
        >>> [round(v, 4) for v in apply_rope(q)[:, 0].tolist()]  # cos p - sin p
        [1.0, -0.3012, -1.3254]
    """
    t = _checks.floating("x", x, ranks=range(2, 9), layout="(..., T, D)")
    d = t.shape[-1]
    if d % 2:
        raise ValueError(f"x must have an even last dimension D (features in pairs), got {d}")
    start = _checks.non_negative_int("offset", offset)
    angles = rope_angles(start + t.shape[-2], d, base=base)[start:]  # (T, D / 2)
    cos = torch.cos(angles).to(device=t.device, dtype=t.dtype)
    sin = torch.sin(angles).to(device=t.device, dtype=t.dtype)
    even, odd = t[..., 0::2], t[..., 1::2]  # (..., T, D / 2) each
    out = torch.empty_like(t)
    out[..., 0::2] = even * cos - odd * sin
    out[..., 1::2] = even * sin + odd * cos
    return out
