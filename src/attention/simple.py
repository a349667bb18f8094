"""Self-attention with no trainable weights (chapter 3).

The simplest attention there is: every token is its own query, key and value.
For one query ``q`` and the inputs ``x`` (one row per token):

    scores  = x @ q                 how similar each token is to the query
    weights = softmax(scores)       positive, summing to one
    context = weights @ x           the weighted blend of all tokens

Functions come in the order chapter 3 introduces them: one query first, then
every query at once as matrices.

Example:
    >>> from attention import toy_inputs, simple_self_attention
    >>> context = simple_self_attention(toy_inputs())
    >>> [round(v, 4) for v in context[1].tolist()]
    [0.4419, 0.6515, 0.5683]
"""

from __future__ import annotations

from typing import Literal, overload

import torch
from torch import Tensor

from attention import _checks


def _query_and_inputs(query: object, inputs: object) -> tuple[Tensor, Tensor]:
    q = _checks.floating("query", query, ranks=(1,), layout="(d_in,)")
    x = _checks.floating("inputs", inputs, ranks=(2,), layout="(T, d_in)")
    _checks.last_dim("inputs", x, q.shape[0], "query's d_in")
    if q.dtype != x.dtype:
        raise TypeError(f"query and inputs must share a dtype, got {q.dtype} and {x.dtype}")
    return q, x


def attention_scores(query: Tensor, inputs: Tensor) -> Tensor:
    """Dot product of one query with every token: ``scores[i] = inputs[i] · query``.

    Args:
        query: The query token, shape (d_in,).
        inputs: All tokens, shape (T, d_in).

    Returns:
        Unnormalised attention scores, shape (T,).

    Example:
        >>> from attention import toy_inputs
        >>> x = toy_inputs()
        >>> [round(s, 4) for s in attention_scores(x[1], x).tolist()]
        [0.9544, 1.495, 1.4754, 0.8434, 0.707, 1.0865]
    """
    q, x = _query_and_inputs(query, inputs)
    return x @ q  # (T, d_in) @ (d_in,) -> (T,)


def _scores(name: str, scores: object) -> Tensor:
    return _checks.floating(name, scores, layout="(..., T)", min_dims=1)


def normalize_by_sum(scores: Tensor) -> Tensor:
    """Divide scores by their sum along the last dimension: ``s / s.sum()``.

    The first attempt at weights that sum to one. It breaks down for negative
    scores (weights can be negative, or the sum can be zero); softmax does not.

    Args:
        scores: Scores, shape (..., T).

    Returns:
        Weights summing to one along the last dimension, shape (..., T).
    """
    s = _scores("scores", scores)
    return s / s.sum(dim=-1, keepdim=True)


def softmax_naive(scores: Tensor) -> Tensor:
    """Softmax straight from the formula: ``exp(s) / exp(s).sum()``, last dimension.

    Readable, but ``exp`` overflows to ``inf`` for scores above about 88 in
    float32, and then the result is NaN. :func:`softmax_stable` does not.

    Args:
        scores: Scores, shape (..., T).

    Returns:
        Weights, shape (..., T).
    """
    s = _scores("scores", scores)
    e = torch.exp(s)
    return e / e.sum(dim=-1, keepdim=True)


def softmax_stable(scores: Tensor) -> Tensor:
    """Softmax that cannot overflow: subtract the row maximum before ``exp``.

    ``softmax(s) = softmax(s - c)`` for any constant ``c``; with ``c = max(s)``
    every exponent is at most 0, so ``exp`` stays in (0, 1]. This is the
    readable twin of ``torch.softmax(scores, dim=-1)``, which it equals.

    Args:
        scores: Scores, shape (..., T).

    Returns:
        Weights, shape (..., T).
    """
    s = _scores("scores", scores)
    e = torch.exp(s - s.amax(dim=-1, keepdim=True))
    return e / e.sum(dim=-1, keepdim=True)


def context_vector(weights: Tensor, inputs: Tensor) -> Tensor:
    """Blend the tokens by the weights: ``sum_i weights[i] * inputs[i]``.

    Args:
        weights: Attention weights of one query, shape (T,).
        inputs: All tokens, shape (T, d_in).

    Returns:
        The context vector, shape (d_in,).
    """
    w = _checks.floating("weights", weights, ranks=(1,), layout="(T,)")
    x = _checks.floating("inputs", inputs, ranks=(2,), layout="(T, d_in)")
    if w.shape[0] != x.shape[0]:
        raise ValueError(
            f"weights has {w.shape[0]} entries but inputs has {x.shape[0]} tokens; they must match"
        )
    _checks.same_dtype("inputs", x, "weights", w.dtype)
    return w @ x  # (T,) @ (T, d_in) -> (d_in,)


def all_attention_scores(inputs: Tensor) -> Tensor:
    """Scores of every query against every key at once: ``inputs @ inputs.T``.

    Args:
        inputs: Tokens, shape (T, d_in) or batched (B, T, d_in).

    Returns:
        Scores, shape (T, T) or (B, T, T); row i holds query i's scores.
    """
    x = _checks.floating("inputs", inputs, ranks=(2, 3), layout="(T, d_in) or (B, T, d_in)")
    return x @ x.transpose(-2, -1)  # (..., T, d_in) @ (..., d_in, T) -> (..., T, T)


@overload
def simple_self_attention(inputs: Tensor, *, return_weights: Literal[False] = False) -> Tensor: ...
@overload
def simple_self_attention(
    inputs: Tensor, *, return_weights: Literal[True]
) -> tuple[Tensor, Tensor]: ...
@overload
def simple_self_attention(
    inputs: Tensor, *, return_weights: bool
) -> Tensor | tuple[Tensor, Tensor]: ...
def simple_self_attention(
    inputs: Tensor, *, return_weights: bool = False
) -> Tensor | tuple[Tensor, Tensor]:
    """Weight-free self-attention for all tokens: ``softmax(x @ x.T) @ x``.

    Args:
        inputs: Tokens, shape (T, d_in) or batched (B, T, d_in).
        return_weights: Also return the (..., T, T) attention weights.
            Default: ``False``.

    Returns:
        Context vectors, shape (..., T, d_in); with ``return_weights=True`` the
        pair ``(context, weights)``.
    """
    _checks.flag("return_weights", return_weights)
    x = _checks.floating("inputs", inputs, ranks=(2, 3), layout="(T, d_in) or (B, T, d_in)")
    scores = x @ x.transpose(-2, -1)  # (..., T, d_in) @ (..., d_in, T) -> (..., T, T)
    weights = torch.softmax(scores, dim=-1)  # (..., T, T)
    context = weights @ x  # (..., T, T) @ (..., T, d_in) -> (..., T, d_in)
    return (context, weights) if return_weights else context
