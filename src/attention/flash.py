"""Attention without the T x T matrix: tiled, online-softmax attention (chapter 13).

:func:`reference_attention` is the readable formula,
``softmax(Q K^T / sqrt(D)) V``, which builds the full (T_q, T_k) score matrix
for every head. :func:`flash_attention` computes the same numbers block by
block, in the manner of FlashAttention (Dao et al., 2022): it visits the keys
and values one block at a time and keeps, for every query row, a running
maximum and a running sum of exponentials, so that it never holds more than
one (block, block) tile of scores. Its backward pass, a
``torch.autograd.Function``, recomputes each tile from one number per query
row saved by the forward pass, so forward and backward together hold memory
that grows linearly with T instead of with T squared. It is written in plain
PyTorch, so it is slower than a fused kernel.

Causal masking is aligned at the bottom right: with T_q queries and T_k keys
(T_q <= T_k, as for the new tokens of a generation step with a KV cache),
query i is the token at position ``T_k - T_q + i`` and may see keys
``0 .. T_k - T_q + i``. With T_q = T_k this is the usual causal mask.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

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

    ``softmax(Q K^T / sqrt(D) + M) V``, computed one (block_size, block_size)
    tile of scores at a time. For each block of queries, loop over blocks of
    keys and values, keeping per query row a running maximum ``m``, a running
    sum ``l`` of ``exp(s - m)`` and an accumulator ``acc`` of
    ``exp(s - m) V``. When a new block raises the maximum to ``m'``, the old
    sum and accumulator are rescaled by ``exp(m - m')``; at the end
    ``acc / l`` is the softmax-weighted sum of the values. With ``causal``,
    key blocks wholly after a query block are skipped and the block that
    straddles the diagonal is masked. It also equals
    ``F.scaled_dot_product_attention`` (``is_causal=True`` when T_q = T_k).

    The backward pass does not store the tiles either, as in FlashAttention:
    autograd keeps ``q``, ``k``, ``v``, the output and one number per query
    row, the log-sum-exp ``L = m + log(l)``, and the backward pass recomputes
    each tile of weights as ``exp(s - L)``. Forward and backward together
    therefore hold memory linear in T, plus a few tiles.

    Where it differs from ``F.scaled_dot_product_attention``: the causal
    mask is aligned at the bottom right (the two agree when T_q = T_k); there
    is no ``attn_mask``, ``dropout_p`` or ``scale``; and the backward pass
    cannot itself be differentiated, like those of SDPA's fused kernels and
    unlike its math fallback. Running it with ``create_graph=True`` raises
    ``RuntimeError`` at once (SDPA's kernels raise later, when the second
    derivative is taken). As in SDPA's CPU kernels, float16 and bfloat16
    inputs are accumulated in float32 and the output is rounded to the
    input's dtype once; float64 stays float64.

    It is written to be read, not to be fast, and on a GPU it is slow: every
    operation on every tile is a separate PyTorch call, so a separate small
    kernel launch, with the GPU idle while Python issues the next one, where
    a fused kernel (``F.scaled_dot_product_attention``) keeps the tiles in
    on-chip memory within one launch. Issue 23 of this project reported, at
    (B, H, T, D) = (1, 8, 4096, 64), causal, float32, on an NVIDIA H200 with
    torch 2.11: 20.5 ms for this function, 2.4 ms for the naive formula and
    0.81 ms for SDPA (copied from that report into
    ``benchmarks/results/flash-gpu-reported.json``, not re-measured). For speed,
    use ``F.scaled_dot_product_attention``.

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
        Context vectors, shape (B, H, T_q, D_v), in the dtype of ``q``.

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
    out: Tensor = _FlashAttention.apply(q, k, v, causal, block)  # type: ignore[no-untyped-call]
    return out


class _FlashAttention(torch.autograd.Function):
    """Autograd for :func:`flash_attention`: saves the log-sum-exp, not the tiles."""

    @staticmethod
    def forward(ctx: Any, q: Tensor, k: Tensor, v: Tensor, causal: bool, block: int) -> Tensor:
        out, lse = _forward_tiles(q, k, v, causal, block)  # (B, H, T_q, D_v), (B, H, T_q, 1)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.causal, ctx.block = causal, block
        return out

    @staticmethod
    def backward(ctx: Any, *grad_outputs: Tensor) -> tuple[Tensor, Tensor, Tensor, None, None]:
        (grad_out,) = grad_outputs  # the one output's gradient; *args as the base declares
        if torch.is_grad_enabled():  # autograd.grad(..., create_graph=True) asked for it
            raise RuntimeError(
                "flash_attention has no second derivatives: its backward pass cannot run "
                "with create_graph=True; use reference_attention for higher-order gradients"
            )
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = _backward_tiles(q, k, v, out, lse, grad_out, ctx.causal, ctx.block)
        return dq, dk, dv, None, None  # no gradients for causal and block


def _forward_tiles(
    q: Tensor, k: Tensor, v: Tensor, causal: bool, block: int
) -> tuple[Tensor, Tensor]:
    """The forward loop of :func:`flash_attention`; also returns the log-sum-exp.

    Three shortcuts change no result. The exponentials are powers of 2:
    ``exp(x) = 2 ** (x log2(e))``, so ``log2(e)`` joins the ``1 / sqrt(D)``
    scale of the queries and ``exp2`` does the rest (faster than ``exp`` on
    some CPUs, slower on others: chapter 13 times both on the machine that
    builds it); the log-sum-exp comes out in base 2 as well. No
    autograd runs here, so each tile of scores turns into its exponentials in
    place. And every tile is written into the same scratch buffer, allocated
    once, and the causal mask of a diagonal tile is built once per distinct
    position relative to the diagonal: a fresh megabyte-sized tile per step
    costs the CPU's memory allocator, and the caches, more than the maths.

    Returns:
        The context vectors (B, H, T_q, D_v) in the dtype of ``q``, and the
        base-2 log-sum-exp of each query row's scaled scores, (B, H, T_q, 1),
        in the accumulation dtype.
    """
    work = _accumulation_dtype(q.dtype)  # float32 for float16 and bfloat16
    (b, h, t_q, d), t_k, d_v = q.shape, k.shape[-2], v.shape[-1]
    offset = t_k - t_q  # query i sits at key position i + offset
    # Batch and heads as one dimension, (B H, T, D), for bmm and baddbmm_ (no copies when
    # k and v are contiguous float32); the queries scaled once, in base 2.
    qs = q.to(work).reshape(b * h, t_q, d) * (_LOG2_E / math.sqrt(d))  # (B H, T_q, D)
    k_t = k.to(work).reshape(b * h, t_k, d).transpose(1, 2)  # (B H, D, T_k), a view
    v = v.to(work).reshape(b * h, t_k, d_v)  # (B H, T_k, D_v)
    out = q.new_empty((b * h, t_q, d_v))  # (B H, T_q, D_v)
    lse = qs.new_empty((b * h, t_q, 1))  # (B H, T_q, 1)
    tiles_of = _TileScores(qs, k_t, offset, causal, block)
    for i0 in range(0, t_q, block):
        i1 = min(i0 + block, t_q)
        tiles = _key_blocks(i0, i1, t_k, offset, causal, block)  # key 0 comes first
        j0, j1 = next(tiles)  # the first tile: nothing to rescale yet
        s = tiles_of(i0, i1, j0, j1)  # (B H, b_q, b_k), in the scratch buffer
        row_max = s.amax(dim=-1, keepdim=True)  # (B H, b_q, 1)
        p = s.sub_(row_max).exp2_()  # (B H, b_q, b_k), in place of the scores
        row_sum = p.sum(dim=-1, keepdim=True)  # (B H, b_q, 1)
        acc = torch.bmm(p, v[:, j0:j1])  # (B H, b_q, b_k) @ (B H, b_k, D_v)
        for j0, j1 in tiles:
            s = tiles_of(i0, i1, j0, j1)  # (B H, b_q, b_k); the last tile's p is used up
            new_max = torch.maximum(row_max, s.amax(dim=-1, keepdim=True))  # (B H, b_q, 1)
            rescale = row_max.sub_(new_max).exp2_()  # (B H, b_q, 1), in place of the old max
            p = s.sub_(new_max).exp2_()  # (B H, b_q, b_k)
            row_sum.mul_(rescale).add_(p.sum(dim=-1, keepdim=True))  # (B H, b_q, 1)
            acc.mul_(rescale).baddbmm_(p, v[:, j0:j1])  # acc += (B H, b_q, b_k) @ (B H, b_k, D_v)
            row_max = new_max
        out[:, i0:i1] = acc.div_(row_sum)  # (B H, b_q, D_v), rounded to q's dtype
        lse[:, i0:i1] = row_max + torch.log2(row_sum)  # (B H, b_q, 1)
    return out.reshape(b, h, t_q, d_v), lse.reshape(b, h, t_q, 1)


class _TileScores:
    """Scores of queries i0..i1 against keys j0..j1, (B H, b_q, b_k); masked only on the diagonal.

    Every call returns a view of one scratch buffer, so a tile is only valid
    until the next call. Tiles wholly below the diagonal need no mask; the
    mask of a tile that straddles it depends only on the tile's shape and on
    where the diagonal crosses it, so each distinct one is built once.
    """

    def __init__(self, qs: Tensor, k_t: Tensor, offset: int, causal: bool, block: int) -> None:
        self.qs, self.k_t, self.offset, self.causal = qs, k_t, offset, causal
        self.scratch = qs.new_empty(qs.shape[0] * block * block)  # the largest tile, flat
        self.masks: dict[tuple[int, int, int], Tensor] = {}

    def __call__(self, i0: int, i1: int, j0: int, j1: int) -> Tensor:
        n, b_q, b_k = self.qs.shape[0], i1 - i0, j1 - j0
        s = self.scratch[: n * b_q * b_k].view(n, b_q, b_k)  # contiguous, as bmm's out needs
        torch.bmm(self.qs[:, i0:i1], self.k_t[..., j0:j1], out=s)  # (B H, b_q, D) @ (B H, D, b_k)
        if self.causal and j1 - 1 > i0 + self.offset:  # the tile straddles the diagonal
            key = (i0 + self.offset - j0, b_q, b_k)  # where the diagonal crosses the tile
            mask = self.masks.get(key)
            if mask is None:
                mask = _diagonal_tile(i0, i1, j0, j1, self.offset, s.dtype, s.device)
                self.masks[key] = mask
            s += mask  # (b_q, b_k) broadcast over B H
        return s


def _backward_tiles(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    out: Tensor,
    lse: Tensor,
    grad_out: Tensor,
    causal: bool,
    block: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """The backward loop of :func:`flash_attention`: gradients from recomputed tiles.

    With ``P = softmax(S)`` for ``S = Q K^T / sqrt(D)`` and the output's
    gradient ``dO``: ``dV = P^T dO``, ``dP = dO V^T``, ``dS = P * (dP - d)``
    with ``d = rowsum(dO * O)`` (which equals ``rowsum(P * dP)``), then
    ``dQ = dS K / sqrt(D)`` and ``dK = dS^T Q / sqrt(D)``. Each tile of ``P`` is
    rebuilt from the saved log-sum-exp as ``2 ** (s - L)``, already normalised,
    so no running statistics are needed; ``dQ`` is summed over key tiles and
    ``dK``, ``dV`` over query tiles, in the accumulation dtype.

    Returns:
        The gradients of ``q``, ``k`` and ``v``, each in its input's shape
        and dtype.
    """
    work = _accumulation_dtype(q.dtype)
    t_q, t_k = q.shape[-2], k.shape[-2]
    offset = t_k - t_q
    scale = 1 / math.sqrt(q.shape[-1])
    qf, kf, vf = q.to(work), k.to(work), v.to(work)  # no copies when q is float32
    qs = qf * (scale * _LOG2_E)  # (B, H, T_q, D), the forward pass's base-2 scaling
    d_out = grad_out.to(work)  # (B, H, T_q, D_v)
    delta = (d_out * out.to(work)).sum(dim=-1, keepdim=True)  # (B, H, T_q, 1)
    dq = torch.zeros_like(qf)  # (B, H, T_q, D)
    dk = torch.zeros_like(kf)  # (B, H, T_k, D)
    dv = torch.zeros_like(vf)  # (B, H, T_k, D_v)
    for i0 in range(0, t_q, block):
        i1 = min(i0 + block, t_q)
        do_blk = d_out[..., i0:i1, :]  # (B, H, b_q, D_v)
        for j0, j1 in _key_blocks(i0, i1, t_k, offset, causal, block):
            k_blk = kf[..., j0:j1, :]  # (B, H, b_k, D)
            s = qs[..., i0:i1, :] @ k_blk.transpose(-2, -1)  # (B,H,b_q,D) @ (B,H,D,b_k)
            if causal and j1 - 1 > i0 + offset:
                s += _diagonal_tile(i0, i1, j0, j1, offset, s.dtype, s.device)  # (b_q, b_k)
            p = s.sub_(lse[..., i0:i1, :]).exp2_()  # (B, H, b_q, b_k), the weights
            dv[..., j0:j1, :] += p.transpose(-2, -1) @ do_blk  # (B,H,b_k,b_q) @ (B,H,b_q,D_v)
            dp = do_blk @ vf[..., j0:j1, :].transpose(-2, -1)  # (B,H,b_q,D_v) @ (B,H,D_v,b_k)
            ds = p.mul_(dp.sub_(delta[..., i0:i1, :]))  # (B, H, b_q, b_k), in place of p
            dq[..., i0:i1, :] += ds @ k_blk  # (B,H,b_q,b_k) @ (B,H,b_k,D)
            dk[..., j0:j1, :] += ds.transpose(-2, -1) @ qf[..., i0:i1, :]  # (B,H,b_k,b_q) @ (.., D)
    return dq.mul_(scale).to(q.dtype), dk.mul_(scale).to(k.dtype), dv.to(v.dtype)


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for float16 and bfloat16 (and float32); float64 stays float64."""
    return torch.promote_types(dtype, torch.float32)


def _key_blocks(
    i0: int, i1: int, t_k: int, offset: int, causal: bool, block: int
) -> Iterator[tuple[int, int]]:
    """The key blocks (j0, j1) that queries i0..i1 see: all, or up to the diagonal."""
    # With causal masking, the last query of the block sees keys up to i1 - 1 + offset.
    k_end = min(t_k, i1 + offset) if causal else t_k
    for j0 in range(0, k_end, block):
        yield j0, min(j0 + block, k_end)


def _diagonal_tile(
    i0: int, i1: int, j0: int, j1: int, offset: int, dtype: torch.dtype, device: torch.device
) -> Tensor:
    """The causal mask of one tile that straddles the diagonal, as 0 and -inf to add.

    One (b_q, b_k) tile added to every head: much faster than ``masked_fill_``
    with a boolean mask broadcast over the heads.
    """
    blocked = _blocked(i0, i1, j0, j1, offset, device)  # (b_q, b_k), True = blocked
    return torch.zeros(blocked.shape, dtype=dtype, device=device).masked_fill_(blocked, -torch.inf)


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
