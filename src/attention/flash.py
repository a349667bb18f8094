"""Attention without the T x T matrix: tiled, online-softmax attention (chapter 13).

:func:`reference_attention` is the readable formula,
``softmax(Q K^T / sqrt(D)) V``, which builds the full (T_q, T_k) score matrix
for every head. :func:`flash_attention` computes the same numbers block by
block, in the manner of FlashAttention (Dao et al., 2022): it visits the keys
and values one block at a time and keeps, for every query row, a running
maximum and a running sum of exponentials, so that it never holds more than
one (block, block) tile of scores. Its memory grows linearly with T instead
of with T squared. It is written in plain PyTorch, so it is slower than a
fused kernel, but autograd flows through it.

Causal masking is aligned at the bottom right: with T_q queries and T_k keys
(T_q <= T_k, as for the new tokens of a generation step with a KV cache),
query i is the token at position ``T_k - T_q + i`` and may see keys
``0 .. T_k - T_q + i``. With T_q = T_k this is the usual causal mask.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from attention import _checks

_LAYOUT = "(B, H, T, D)"
_LOG2_E = math.log2(math.e)  # exp(x) = 2 ** (x * _LOG2_E)


def reference_attention(q: Tensor, k: Tensor, v: Tensor, *, causal: bool = False) -> Tensor:
    """Scaled dot-product attention, written as the formula: the readable path.

    ``softmax(Q K^T / sqrt(D) + M) V`` with ``M = -inf`` where a query may not
    see a key (above the bottom-right-aligned diagonal when ``causal``).

    Args:
        q: Queries, shape (B, H, T_q, D).
        k: Keys, shape (B, H, T_k, D).
        v: Values, shape (B, H, T_k, D_v).
        causal: Block each query from the keys after its own position, with
            the last query aligned to the last key. Needs T_q <= T_k.
            Default: ``False``.

    Returns:
        Context vectors, shape (B, H, T_q, D_v).

    Example:
        >>> import torch
        >>> q = k = v = torch.ones(1, 1, 3, 2)
        >>> reference_attention(q, k, v, causal=True).shape
        torch.Size([1, 1, 3, 2])
    """
    q, k, v = _check_qkv(q, k, v, causal)
    t_q, t_k = q.shape[-2], k.shape[-2]
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B,H,T_q,D) @ (B,H,D,T_k)
    if causal:
        blocked = _blocked(0, t_q, 0, t_k, t_k - t_q, q.device)  # (T_q, T_k), True = blocked
        scores = scores.masked_fill(blocked, -torch.inf)  # (B, H, T_q, T_k)
    weights = torch.softmax(scores, dim=-1)  # (B, H, T_q, T_k)
    return weights @ v  # (B, H, T_q, T_k) @ (B, H, T_k, D_v) -> (B, H, T_q, D_v)


def flash_attention(
    q: Tensor, k: Tensor, v: Tensor, *, causal: bool = False, block_size: int = 256
) -> Tensor:
    """Tiled attention with an online softmax: equal to :func:`reference_attention`.

    For each block of queries, loop over blocks of keys and values, keeping per
    query row a running maximum ``m``, a running sum ``l`` of ``exp(s - m)`` and
    an accumulator ``acc`` of ``exp(s - m) V``. When a new block raises the
    maximum to ``m'``, the old sum and accumulator are rescaled by
    ``exp(m - m')``; at the end ``acc / l`` is ``softmax(Q K^T / sqrt(D)) V``.
    With ``causal``, key blocks wholly after a query block are skipped and the
    block that straddles the diagonal is masked. It also equals
    ``F.scaled_dot_product_attention`` (``is_causal=True`` when T_q = T_k).

    Two shortcuts change no result. The exponentials are powers of 2:
    ``exp(x) = 2 ** (x log2(e))``, so ``log2(e)`` joins the ``1 / sqrt(D)``
    scale of the queries and ``exp2`` (several times cheaper than ``exp`` on a
    CPU) does the rest. And the running maximum, which only keeps the powers
    in range and cancels in ``acc / l``, is taken without a gradient, so the
    tile of scores can turn into its exponentials in place.

    Args:
        q: Queries, shape (B, H, T_q, D).
        k: Keys, shape (B, H, T_k, D).
        v: Values, shape (B, H, T_k, D_v).
        causal: Block each query from the keys after its own position, with
            the last query aligned to the last key. Needs T_q <= T_k.
            Default: ``False``.
        block_size: Queries and keys per tile; the scores held at any moment
            are (B, H, block_size, block_size). Default: 256.

    Returns:
        Context vectors, shape (B, H, T_q, D_v).

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> q, k, v = torch.randn(3, 1, 2, 10, 4, generator=g)
        >>> out = flash_attention(q, k, v, causal=True, block_size=4)
        >>> torch.allclose(out, reference_attention(q, k, v, causal=True), atol=1e-6)
        True
    """
    q, k, v = _check_qkv(q, k, v, causal)
    block = _checks.positive_int("block_size", block_size)
    t_q, t_k = q.shape[-2], k.shape[-2]
    offset = t_k - t_q  # query i sits at key position i + offset
    q = q * (_LOG2_E / math.sqrt(q.shape[-1]))  # (B, H, T_q, D), scaled once, base 2
    # Key j0 + c comes after query i0 + r exactly when c - r > i0 + offset - j0.
    rows = torch.arange(min(block, t_q), device=q.device)  # (b_q,)
    cols = torch.arange(min(block, t_k), device=q.device)  # (b_k,)
    col_minus_row = cols[None, :] - rows[:, None]  # (b_q, b_k), one tile's worth
    out = q.new_empty((*q.shape[:-1], v.shape[-1]))  # (B, H, T_q, D_v)
    for i0 in range(0, t_q, block):
        i1 = min(i0 + block, t_q)
        q_blk = q[..., i0:i1, :]  # (B, H, b_q, D)
        # With causal masking, the last query of this block sees keys up to i1 - 1 + offset.
        k_end = min(t_k, i1 + offset) if causal else t_k
        row_max = q.new_full((*q_blk.shape[:-1], 1), -torch.inf)  # (B, H, b_q, 1)
        row_sum = q.new_zeros((*q_blk.shape[:-1], 1))  # (B, H, b_q, 1)
        acc = q.new_zeros((*q_blk.shape[:-1], v.shape[-1]))  # (B, H, b_q, D_v)
        for j0 in range(0, k_end, block):
            j1 = min(j0 + block, k_end)
            s = q_blk @ k[..., j0:j1, :].transpose(-2, -1)  # (B,H,b_q,D) @ (B,H,D,b_k)
            if causal and j1 - 1 > i0 + offset:  # the tile straddles the diagonal
                blocked = col_minus_row[: i1 - i0, : j1 - j0] > i0 + offset - j0  # (b_q, b_k)
                # One (b_q, b_k) tile of 0 and -inf added to every head: much faster
                # than masked_fill_ with the mask broadcast over the heads.
                s += torch.zeros_like(blocked, dtype=s.dtype).masked_fill_(blocked, -torch.inf)
            new_max = torch.maximum(row_max, s.detach().amax(dim=-1, keepdim=True))  # (B,H,b_q,1)
            rescale = torch.exp2(row_max - new_max)  # (B, H, b_q, 1); 0 on the first tile
            p = s.sub_(new_max).exp2_()  # (B, H, b_q, b_k), in place of the scores
            row_sum = row_sum * rescale + p.sum(dim=-1, keepdim=True)  # (B, H, b_q, 1)
            acc = acc * rescale + p @ v[..., j0:j1, :]  # (B,H,b_q,b_k) @ (B,H,b_k,D_v)
            row_max = new_max
        out[..., i0:i1, :] = acc / row_sum  # (B, H, b_q, D_v)
    return out


def _blocked(i0: int, i1: int, j0: int, j1: int, offset: int, device: torch.device) -> Tensor:
    """Causal mask of queries i0..i1 against keys j0..j1, ``True`` = blocked."""
    rows = torch.arange(i0, i1, device=device)[:, None] + offset  # (b_q, 1)
    cols = torch.arange(j0, j1, device=device)[None, :]  # (1, b_k)
    return cols > rows  # (b_q, b_k)


def _check_qkv(q: object, k: object, v: object, causal: object) -> tuple[Tensor, Tensor, Tensor]:
    """Check the shapes, dtypes and devices of q, k, v; return them."""
    qt = _checks.floating("q", q, ranks=(4,), layout=_LAYOUT)
    kt = _checks.floating("k", k, ranks=(4,), layout=_LAYOUT)
    vt = _checks.floating("v", v, ranks=(4,), layout=_LAYOUT)
    _checks.flag("causal", causal)
    for name, t in (("k", kt), ("v", vt)):
        if t.dtype != qt.dtype:
            raise TypeError(f"{name} must have the dtype of q, {qt.dtype}, got {t.dtype}")
        if t.device != qt.device:
            raise ValueError(f"{name} must be on the device of q, {qt.device}, got {t.device}")
        if t.shape[:2] != qt.shape[:2]:
            raise ValueError(
                f"{name} must have the batch and head sizes (B, H) of q, "
                f"{tuple(qt.shape[:2])}, got {tuple(t.shape[:2])}"
            )
    _checks.last_dim("k", kt, qt.shape[-1], "D (the width of q)")
    if vt.shape[-2] != kt.shape[-2]:
        raise ValueError(f"v must have as many tokens as k, T_k={kt.shape[-2]}, got {vt.shape[-2]}")
    if qt.shape[-2] == 0 or kt.shape[-2] == 0:
        raise ValueError(
            f"q and k must hold at least one token each, got T_q={qt.shape[-2]} "
            f"and T_k={kt.shape[-2]}"
        )
    if causal and qt.shape[-2] > kt.shape[-2]:
        raise ValueError(
            f"causal=True needs T_q <= T_k (the queries are the last T_q keys), "
            f"got T_q={qt.shape[-2]} and T_k={kt.shape[-2]}"
        )
    return qt, kt, vt
