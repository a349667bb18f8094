"""DeepSeek sparse attention: a cheap indexer picks the k keys each query attends to.

DeepSeek-V3.2-Exp (DeepSeek-AI 2025, DeepSeek-V3.2-Exp technical report,
section 1, "Prototype of DSA") adds two parts in front of ordinary attention:

* a **lightning indexer**: a few small heads score every preceding token s for
  query token t, ``I[t, s] = sum_j w[t, j] * ReLU(q_I[t, j] . k_I[s])``, with
  ``q_I[t, j]`` and the weight ``w[t, j]`` computed from token t and one key
  ``k_I[s]``, shared by the indexer's heads, from token s;
* **fine-grained token selection**: query t attends, with the usual softmax,
  only to the keys of its top-k index scores (k = 2048 in the paper).

The main attention then scores ``T k`` pairs instead of ``T (T + 1) / 2``. The
indexer itself still scores every causal pair, O(T^2), but with few heads,
narrow vectors and (in the paper) FP8 arithmetic, so it costs a small fraction
of the attention it replaces: :func:`sparse_attention_cost` counts both.

Simplifications relative to the paper: the main attention is this package's
:class:`attention.MultiHeadAttention`, not multi-head latent attention (MLA)
in its multi-query mode; everything runs in the input's dtype, not FP8; ties
among index scores go wherever ``torch.topk`` puts them. Training: the top-k
choice is not differentiable, so a loss on the layer's output reaches the
attention's projections but never the indexer. The paper (section 2.1) first
fits the indexer alone to the dense attention (the "dense warm-up": a KL
loss, :meth:`SparseAttention.indexer_loss` here) and then trains the model on
the sparse selection, the indexer still by a KL loss, restricted there to the
selected keys, with its input detached; this module offers only the dense loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, overload

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attention import _checks
from attention.complexity import attended_pairs
from attention.functional import causal_mask
from attention.multihead import Impl, MultiHeadAttention

__all__ = [
    "SparseAttention",
    "SparseCost",
    "lightning_index_scores",
    "sparse_attention_cost",
    "topk_causal_mask",
]


def lightning_index_scores(queries: Tensor, keys: Tensor, weights: Tensor) -> Tensor:
    """The lightning indexer's scores ``I[t, s] = sum_j w[t, j] ReLU(q[t, j] . k[s])``.

    Every (t, s) pair is scored, the future included; :func:`topk_causal_mask`
    blocks the future.

    Args:
        queries: Indexer queries q_I, shape (B, T, H_I, D_I): H_I small heads.
        keys: Indexer keys k_I, shape (B, S, D_I): one per token, shared by the heads.
        weights: Head weights w, shape (B, T, H_I).

    Returns:
        Index scores, shape (B, T, S).

    Example:
        >>> q = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])  # (1, 1, 2, 2)
        >>> k = torch.tensor([[[2.0, -1.0], [-1.0, 3.0]]])  # (1, 2, 2)
        >>> lightning_index_scores(q, k, torch.tensor([[[1.0, 0.5]]]))
        tensor([[[2.0000, 1.5000]]])
    """
    q = _checks.floating("queries", queries, ranks=(4,), layout="(B, T, H_I, D_I)")
    k = _checks.floating("keys", keys, ranks=(3,), layout="(B, S, D_I)")
    w = _checks.floating("weights", weights, ranks=(3,), layout="(B, T, H_I)")
    _checks.same_size("keys", k, 0, "queries", q.shape[0], "batch size B")
    _checks.last_dim("keys", k, q.shape[-1], "D_I (the queries' width)")
    if w.shape != q.shape[:3]:
        raise ValueError(
            f"weights must have shape (B, T, H_I) = {tuple(q.shape[:3])} like queries, "
            f"got {tuple(w.shape)}"
        )
    dots = q @ k[:, None].transpose(-1, -2)  # (B, T, H_I, D_I) @ (B, 1, D_I, S) -> (B, T, H_I, S)
    return (w[..., None] * F.relu(dots)).sum(dim=2)  # (B, T, H_I, S) -> (B, T, S)


def topk_causal_mask(scores: Tensor, k: int) -> Tensor:
    """Boolean mask of each query's k best-scored keys among itself and the past.

    **Polarity: True = may attend** (as in ``F.scaled_dot_product_attention``,
    the opposite of :func:`attention.masked_softmax`'s ``blocked``). Row t has
    exactly ``min(k, t + 1)`` True entries, none after the diagonal.

    Args:
        scores: Index scores, shape (..., T, T), query t in row t.
        k: The number of keys each query may attend to, a positive int.

    Returns:
        Bool tensor of the shape of ``scores``, True = may attend.

    Example:
        >>> s = torch.tensor([[0.0, 9.0, 9.0], [5.0, 1.0, 9.0], [1.0, 3.0, 2.0]])
        >>> topk_causal_mask(s, 2).int()
        tensor([[1, 0, 0],
                [1, 1, 0],
                [0, 1, 1]], dtype=torch.int32)
    """
    s = _checks.floating("scores", scores, layout="(..., T, T)", min_dims=2)
    if s.shape[-1] != s.shape[-2]:
        raise ValueError(f"scores must be square in its last two dims (T, T), got {tuple(s.shape)}")
    kk = min(_checks.positive_int("k", k), s.shape[-1])
    future = causal_mask(s.shape[-1], device=s.device)  # (T, T), True = after the query
    best = s.masked_fill(future, -torch.inf).topk(kk, dim=-1).indices  # (..., T, kk)
    chosen = torch.zeros_like(s, dtype=torch.bool).scatter_(-1, best, True)  # (..., T, T)
    return chosen & ~future  # rows t < kk - 1 picked some future -inf: drop them


class SparseAttention(nn.Module):
    """Causal multi-head attention over each query's top-k keys, chosen by a lightning indexer.

    ``out = MultiHeadAttention(x, attn_mask=topk_causal_mask(I(x), top_k))``
    with ``I`` the :func:`lightning_index_scores` of the indexer's projections
    of ``x``. With ``top_k >= T`` every causal key is kept and the layer equals
    its ``attn`` alone (tested).

    Args:
        d_in: Width of each input token.
        d_out: Model width C = H x D.
        context_length: The longest sequence the layer accepts.
        num_heads: Number of attention heads H; must divide ``d_out``.
        top_k: k, the keys each query attends to. Default: 2048 (the paper).
        index_heads: H_I, the indexer's heads. Default: 4.
        index_dim: D_I, the width of the indexer's queries and key. Default: 16.
        dropout: Dropout on the attention weights, in [0, 1). Default: 0.0.
        impl: The attention's path, ``"manual"`` or ``"sdpa"``. Default: ``"manual"``.

    Attributes:
        attn: The :class:`attention.MultiHeadAttention` that does the attending.
        index_query: ``nn.Linear(d_in, H_I * D_I)``, the indexer's queries.
        index_key: ``nn.Linear(d_in, D_I)``, its one key per token.
        index_weight: ``nn.Linear(d_in, H_I)``, the head weights w[t, j].

    Example:
        >>> _ = torch.manual_seed(0)
        >>> layer = SparseAttention(8, 8, 16, num_heads=2, top_k=3)
        >>> out, w = layer(torch.randn(1, 6, 8), return_weights=True)
        >>> out.shape, (w[0, 0] > 0).sum(dim=-1).tolist()
        (torch.Size([1, 6, 8]), [1, 2, 3, 3, 3, 3])
    """

    def __init__(
        self,
        d_in: int,
        d_out: int,
        context_length: int,
        num_heads: int,
        *,
        top_k: int = 2048,
        index_heads: int = 4,
        index_dim: int = 16,
        dropout: float = 0.0,
        impl: Impl = "manual",
    ) -> None:
        super().__init__()
        self.top_k = _checks.positive_int("top_k", top_k)
        self.index_heads = _checks.positive_int("index_heads", index_heads)
        self.index_dim = _checks.positive_int("index_dim", index_dim)
        self.attn = MultiHeadAttention(d_in, d_out, context_length, dropout, num_heads, impl=impl)
        self.index_query = nn.Linear(d_in, index_heads * index_dim, bias=False)
        self.index_key = nn.Linear(d_in, index_dim, bias=False)
        self.index_weight = nn.Linear(d_in, index_heads, bias=False)

    def index_scores(self, x: Tensor) -> Tensor:
        """The indexer's scores for the (B, T, d_in) tokens ``x``: (B, T, T)."""
        b, t, _ = x.shape
        queries = self.index_query(x).view(b, t, self.index_heads, -1)  # (B, T, H_I, D_I)
        keys = self.index_key(x)  # (B, T, D_I)
        return lightning_index_scores(queries, keys, self.index_weight(x))  # (B, T, T)

    def indexer_loss(self, x: Tensor) -> Tensor:
        """The dense warm-up loss: how far the indexer is from the dense attention.

        ``mean_t KL(p_t || softmax(I_t))`` over the causal keys, where ``p_t`` is
        the dense attention's weights of query t summed over the heads and
        renormalised. ``p_t`` is detached: only the indexer learns from it.
        Needs ``impl="manual"`` (the weights are read).

        Args:
            x: Tokens, shape (B, T, d_in).

        Returns:
            A 0-d tensor, >= 0, the mean over the B T queries.
        """
        _, dense = self.attn(x, return_weights=True)  # (B, H, T, T), causal, no top-k
        target = dense.detach().sum(dim=1)  # (B, T, T)
        # clamped: dropout in training mode may empty a row, which then adds 0
        target = target / target.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
        future = causal_mask(x.shape[1], device=x.device)  # (T, T), True = after the query
        log_q = torch.log_softmax(self.index_scores(x).masked_fill(future, -torch.inf), dim=-1)
        kl = torch.xlogy(target, target) - target * log_q.masked_fill(future, 0.0)  # (B, T, T)
        loss: Tensor = kl.sum(dim=-1).mean()  # (B, T) -> ()
        return loss

    @overload
    def forward(self, x: Tensor, *, return_weights: Literal[False] = False) -> Tensor: ...
    @overload
    def forward(self, x: Tensor, *, return_weights: Literal[True]) -> tuple[Tensor, Tensor]: ...
    @overload
    def forward(self, x: Tensor, *, return_weights: bool) -> Tensor | tuple[Tensor, Tensor]: ...
    def forward(self, x: Tensor, *, return_weights: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Select each query's top-k keys with the indexer, then attend to them only.

        Args:
            x: Tokens, shape (B, T, d_in) with T <= context_length.
            return_weights: Also return the weights (needs ``impl="manual"``).
                Default: ``False``.

        Returns:
            Output (B, T, C); with ``return_weights=True`` the pair
            ``(output, weights)``, weights (B, H, T, T), zero off the selection.
        """
        x = _checks.layer_input(
            x,
            d_in=self.attn.d_in,
            ranks=(3,),
            layout="(B, T, d_in)",
            parameter=self.attn.W_query.weight,
            context_length=self.attn.context_length,
        )
        keep = topk_causal_mask(self.index_scores(x), self.top_k)  # (B, T, T), True = may attend
        out: Tensor | tuple[Tensor, Tensor] = self.attn(
            x, attn_mask=keep[:, None], return_weights=return_weights
        )  # the mask as (B, 1, T, T): the same selection for every head
        return out


@dataclass(frozen=True)
class SparseCost:
    """Pairs and multiply-adds of one layer over T tokens, dense against sparse."""

    dense_pairs: int  # (query, key) pairs full causal attention scores: T (T + 1) / 2
    sparse_pairs: int  # pairs the sparse attention scores: sum over t of min(k, t)
    indexer_pairs: int  # pairs the indexer scores: every causal pair, T (T + 1) / 2
    dense_macs: int  # 2 C per pair: the scores Q K^T and the weighted sum of V
    sparse_macs: int  # likewise, over the selected pairs only
    indexer_macs: int  # (D_I + 1) H_I per pair: the dot products and the weighted sum


def sparse_attention_cost(
    context_length: int, *, top_k: int, d_model: int, index_heads: int, index_dim: int
) -> SparseCost:
    """Count what DeepSeek sparse attention saves and what its indexer spends.

    ``sparse_pairs`` is ``attended_pairs(T, window=k)`` of
    :mod:`attention.complexity`: query t (from 1) scores ``min(k, t)`` keys,
    as with a window of k, but the keys are chosen, not the most recent.

    Args:
        context_length: T, the number of tokens.
        top_k: k, keys per query.
        d_model: C, the width of the main attention (all heads).
        index_heads: H_I, the indexer's heads.
        index_dim: D_I, their width.

    Returns:
        A :class:`SparseCost`.

    Example:
        >>> c = sparse_attention_cost(8192, top_k=2048, d_model=1024, index_heads=4,
        ...                           index_dim=32)
        >>> round(c.sparse_macs / c.dense_macs, 3), round(c.indexer_macs / c.dense_macs, 3)
        (0.437, 0.064)
    """
    t = _checks.positive_int("context_length", context_length)
    k = _checks.positive_int("top_k", top_k)
    d = _checks.positive_int("d_model", d_model)
    heads = _checks.positive_int("index_heads", index_heads)
    width = _checks.positive_int("index_dim", index_dim)
    dense, sparse = attended_pairs(t), attended_pairs(t, window=k)
    return SparseCost(
        dense_pairs=dense,
        sparse_pairs=sparse,
        indexer_pairs=dense,
        dense_macs=2 * d * dense,
        sparse_macs=2 * d * sparse,
        indexer_macs=(width + 1) * heads * dense,
    )
