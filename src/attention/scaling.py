"""Why scores are divided by sqrt(d_k) (chapter 4): a measured experiment.

If the entries of a query q and a key k are independent with mean 0 and
variance 1, their dot product q · k is a sum of d_k terms of variance 1, so
its variance is d_k and its spread grows like sqrt(d_k). Wide heads then feed
the softmax large scores, the softmax puts nearly all the weight on one key,
and almost no gradient flows back through it. Dividing by sqrt(d_k) brings
the variance back to 1 whatever the width.

:func:`softmax_stats` measures one batch of queries and keys;
:func:`scaling_experiment` repeats it over several widths, with and without
the scaling, on random unit-variance queries and keys drawn from a private
generator (the global random state is left alone).

Example:
    >>> points = scaling_experiment([4, 256], num_sequences=8, num_tokens=8)
    >>> [round(p.unscaled.score_std) for p in points]
    [2, 16]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from attention import _checks

#: A row of weights counts as saturated when its largest weight exceeds this.
SATURATED = 0.99

# Each width gets its own generator, seeded from (seed, d_k), so a width's
# numbers do not depend on which other widths are measured alongside it.
_SEED_STRIDE = 1_000_003


@dataclass(frozen=True)
class SoftmaxStats:
    """What the softmax receives and what it passes back, for one batch of scores.

    Attributes:
        score_std: Standard deviation of the scores fed to the softmax.
        max_weight: Mean over rows of the largest weight (1/T for uniform
            rows, 1 for one-hot rows).
        saturated: Fraction of rows whose largest weight exceeds
            :data:`SATURATED`.
        grad_norm: Median over rows of the norm of the gradient that reaches
            the softmax's input (the scores, after any scaling).
        query_grad_norm: Median over rows of the norm of the gradient that
            reaches the queries.
    """

    score_std: float  # spread of the softmax's input
    max_weight: float  # mean largest weight per row
    saturated: float  # fraction of near one-hot rows
    grad_norm: float  # median row gradient at the softmax's input
    query_grad_norm: float  # median row gradient at the queries


@dataclass(frozen=True)
class ScalingPoint:
    """One width of :func:`scaling_experiment`: the same scores, unscaled and scaled.

    Attributes:
        d_k: Width of the queries and keys.
        unscaled: Statistics of ``softmax(Q K^T)``.
        scaled: Statistics of ``softmax(Q K^T / sqrt(d_k))``.
    """

    d_k: int  # width of queries and keys
    unscaled: SoftmaxStats  # softmax(Q K^T)
    scaled: SoftmaxStats  # softmax(Q K^T / sqrt(d_k))


def _stats_inputs(queries: object, keys: object, upstream: object) -> tuple[Tensor, Tensor, Tensor]:
    """Check the tensors of :func:`softmax_stats` and return them."""
    q_in = _checks.floating("queries", queries, ranks=(2, 3), layout="(T_q, d_k) or (B, T_q, d_k)")
    k_in = _checks.floating("keys", keys, ranks=(2, 3), layout="(T_k, d_k) or (B, T_k, d_k)")
    u = _checks.floating("upstream", upstream, ranks=(2, 3), layout="(T_q, T_k) or (B, T_q, T_k)")
    if k_in.dim() != q_in.dim() or k_in.shape[:-2] != q_in.shape[:-2]:
        raise ValueError(
            f"keys must have the batch shape of queries {tuple(q_in.shape[:-2])}, "
            f"got shape {tuple(k_in.shape)}"
        )
    _checks.last_dim("keys", k_in, q_in.shape[-1], "d_k of queries")
    _checks.same_dtype("keys", k_in, "queries", q_in.dtype)
    _checks.same_dtype("upstream", u, "queries", q_in.dtype)
    expected = (*q_in.shape[:-1], k_in.shape[-2])
    if tuple(u.shape) != expected:
        raise ValueError(f"upstream must have the scores' shape {expected}, got {tuple(u.shape)}")
    return q_in, k_in, u


def softmax_stats(queries: Tensor, keys: Tensor, upstream: Tensor, *, scale: bool) -> SoftmaxStats:
    """Measure the scores, the weights and the gradient through the softmax.

    ``W = softmax(Q K^T / c)`` with ``c = sqrt(d_k)`` if ``scale`` else 1; the
    gradient is that of the loss ``sum(W * upstream)``, whose gradient with
    respect to ``W`` is ``upstream``. At the softmax's input ``S`` it is
    ``W * (upstream - sum_j W_j upstream_j)``, which vanishes as a row of
    ``W`` becomes one-hot.

    Args:
        queries: Q, shape (T_q, d_k) or (B, T_q, d_k). Not modified.
        keys: K, shape (T_k, d_k) or (B, T_k, d_k), the same rank as Q.
        upstream: The gradient arriving at the weights, shape (T_q, T_k) or
            (B, T_q, T_k).
        scale: Divide the scores by sqrt(d_k) before the softmax.

    Returns:
        A :class:`SoftmaxStats`; the medians are over the rows (B x T_q).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> q, k = torch.randn(2, 4, 8, 64, generator=g)  # each (B, T, d_k)
        >>> u = torch.randn(4, 8, 8, generator=g)  # (B, T_q, T_k)
        >>> softmax_stats(q, k, u, scale=True).score_std < 2
        True
    """
    q_in, k_in, u = _stats_inputs(queries, keys, upstream)
    _checks.flag("scale", scale)
    d_k = q_in.shape[-1]
    with torch.enable_grad():
        q = q_in.detach().clone().requires_grad_(True)  # (..., T_q, d_k), our own leaf
        k_t = k_in.detach().transpose(-2, -1)  # (..., d_k, T_k)
        scores = q @ k_t  # (..., T_q, d_k) @ (..., d_k, T_k) -> (..., T_q, T_k)
        if scale:
            scores = scores / d_k**0.5  # (..., T_q, T_k)
        weights = torch.softmax(scores, dim=-1)  # (..., T_q, T_k)
        grad_scores, grad_q = torch.autograd.grad((weights * u.detach()).sum(), (scores, q))
    largest = weights.detach().amax(dim=-1)  # (..., T_q)
    return SoftmaxStats(
        score_std=scores.detach().std().item(),
        max_weight=largest.mean().item(),
        saturated=(largest > SATURATED).float().mean().item(),
        grad_norm=grad_scores.norm(dim=-1).median().item(),
        query_grad_norm=grad_q.norm(dim=-1).median().item(),
    )


def scaling_experiment(
    d_ks: Sequence[int],
    *,
    num_sequences: int = 64,
    num_tokens: int = 32,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> list[ScalingPoint]:
    """Measure softmax saturation against the width d_k, with and without scaling.

    For each width, standard-normal queries and keys (B, T, d_k) give the
    scores ``Q K^T``, whose variance is d_k; :func:`softmax_stats` measures
    them as they are and divided by sqrt(d_k), with the same queries, keys
    and upstream gradient (standard normal, (B, T, T)).

    Args:
        d_ks: The widths to measure, positive ints, for example
            ``[4, 16, 64, 256, 1024]``.
        num_sequences: B, sequences per width. Default: 64.
        num_tokens: T, tokens per sequence (each query sees T keys), at
            least 2. Default: 32.
        seed: Seeds the private generators; the same seed gives the same
            numbers. Default: 0.
        device: Where to draw and compute. Default: ``"cpu"``.

    Returns:
        One :class:`ScalingPoint` per width, in the order of ``d_ks``.

    Example:
        >>> [p.d_k for p in scaling_experiment([4, 16], num_sequences=2, num_tokens=4)]
        [4, 16]
    """
    if isinstance(d_ks, str | bytes) or not isinstance(d_ks, Sequence):
        raise TypeError(f"d_ks must be a sequence of positive ints, got {type(d_ks).__name__}")
    if len(d_ks) == 0:
        raise ValueError("d_ks must hold at least one width, got an empty sequence")
    widths = [_checks.positive_int(f"d_ks[{i}]", d) for i, d in enumerate(d_ks)]
    batch = _checks.positive_int("num_sequences", num_sequences)
    tokens = _checks.positive_int("num_tokens", num_tokens)
    if tokens < 2:
        raise ValueError(
            f"num_tokens must be at least 2 (one key always gets weight 1), got {tokens}"
        )
    _checks.non_negative_int("seed", seed)

    points = []
    for d_k in widths:
        g = torch.Generator(device=device).manual_seed(seed * _SEED_STRIDE + d_k)
        queries = torch.randn(batch, tokens, d_k, generator=g, device=device)  # (B, T, d_k)
        keys = torch.randn(batch, tokens, d_k, generator=g, device=device)  # (B, T, d_k)
        upstream = torch.randn(batch, tokens, tokens, generator=g, device=device)  # (B, T, T)
        points.append(
            ScalingPoint(
                d_k=d_k,
                unscaled=softmax_stats(queries, keys, upstream, scale=False),
                scaled=softmax_stats(queries, keys, upstream, scale=True),
            )
        )
    return points
