"""What a pair of projections can express (chapter 4): heads set by hand.

A head's scores are a bilinear form of the tokens. With ``q_i = x_i W_q`` and
``k_j = x_j W_k``,

    s_ij = q_i . k_j = x_i (W_q W_k^T) x_j^T = x_i A x_j^T,

so everything the two matrices decide about *who attends to whom* sits in one
(d_in, d_in) matrix ``A = W_q W_k^T`` of rank at most ``d_out``: a learned
similarity between tokens. The raw dot product of chapter 3 is the special
case ``A = I``.

Three heads are built by hand here, each for one relation:

* :func:`rank_one_head`: one query direction and one key direction, ``A = u v^T``;
  every query ranks the keys by ``x_j . v`` (for example "with" -> "journey");
* :func:`previous_token_head`: attend to the token one position back. The
  content of a token says nothing about where it stands, so this head reads
  one-hot positions appended to the tokens by :func:`with_positions`;
* :func:`other_token_head`: attend to the key with the largest dot product,
  itself excluded. "Itself" is a position too: a repeated word has the same
  content as its twin, so this head also reads :func:`with_positions`.

Example:
    >>> import torch
    >>> from attention import toy_inputs
    >>> x = with_positions(toy_inputs())  # (T, d_in + T) = (6, 9)
    >>> head = previous_token_head(3, 6)
    >>> head_weights(x, head).argmax(dim=-1)[1:].tolist()  # row 0 has no previous token
    [0, 1, 2, 3, 4]
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from attention import _checks

__all__ = [
    "BilinearForm",
    "Head",
    "bilinear_form",
    "bilinear_scores",
    "head_weights",
    "other_token_head",
    "previous_token_head",
    "rank_one_head",
    "with_positions",
]


class Head(NamedTuple):
    """The two matrices of a head that decide its attention pattern."""

    W_query: Tensor  # (d_in, d_out)
    W_key: Tensor  # (d_in, d_out)


class BilinearForm(NamedTuple):
    """``A = W_q W_k^T`` and its rank (at most ``d_out``)."""

    matrix: Tensor  # (d_in, d_in)
    rank: int


def _head(W_query: object, W_key: object) -> tuple[Tensor, Tensor]:
    wq = _checks.floating("W_query", W_query, ranks=(2,), layout="(d_in, d_out)")
    wk = _checks.floating("W_key", W_key, ranks=(2,), layout="(d_in, d_out)")
    if wq.shape != wk.shape:
        raise ValueError(
            f"W_key must have the shape of W_query, {tuple(wq.shape)} (d_in, d_out), "
            f"got {tuple(wk.shape)}"
        )
    _checks.same_dtype("W_key", wk, "W_query", wq.dtype)
    return wq, wk


def bilinear_form(W_query: Tensor, W_key: Tensor) -> BilinearForm:
    """The (d_in, d_in) similarity ``A = W_q W_k^T`` a head computes, and its rank.

    ``x_i A x_j^T`` equals the score ``(x_i W_q) . (x_j W_k)``. ``A`` is a
    product through ``d_out`` dimensions, so its rank is at most
    ``min(d_in, d_out)``. The rank is counted in float64, so that a singular
    value that is zero in exact arithmetic is not mistaken for a small one.

    Args:
        W_query: Query projection, shape (d_in, d_out).
        W_key: Key projection, the same shape and dtype.

    Returns:
        ``BilinearForm(matrix, rank)``: matrix of shape (d_in, d_in) in the
        dtype of the weights, and its rank, an ``int``.

    Example:
        >>> form = bilinear_form(torch.eye(3, 2), torch.eye(3, 2))
        >>> form.matrix.diagonal().tolist(), form.rank
        ([1.0, 1.0, 0.0], 2)
    """
    wq, wk = _head(W_query, W_key)
    matrix = wq @ wk.T  # (d_in, d_out) @ (d_out, d_in) -> (d_in, d_in)
    exact = wq.detach().double() @ wk.detach().double().T  # (d_in, d_in)
    rank = int(torch.linalg.matrix_rank(exact).item())
    return BilinearForm(matrix, rank)


def bilinear_scores(x: Tensor, matrix: Tensor) -> Tensor:
    """All scores ``s_ij = x_i A x_j^T`` of the tokens ``x`` under the form ``A``.

    The same numbers as ``(x W_q) @ (x W_k).T`` when ``A = W_q W_k^T``, up to
    float rounding (the sums are taken in another order).

    Args:
        x: Tokens, shape (T, d_in).
        matrix: ``A``, shape (d_in, d_in).

    Returns:
        Scores, shape (T, T): row i is query i, column j key j.
    """
    a = _checks.floating("matrix", matrix, ranks=(2,), layout="(d_in, d_in)")
    if a.shape[0] != a.shape[1]:
        raise ValueError(f"matrix must be square, (d_in, d_in), got shape {tuple(a.shape)}")
    t = _checks.floating("x", x, ranks=(2,), layout="(T, d_in)")
    _checks.last_dim("x", t, a.shape[0], "d_in")
    _checks.same_dtype("x", t, "matrix", a.dtype)
    return t @ a @ t.T  # (T, d_in) @ (d_in, d_in) @ (d_in, T) -> (T, T)


def head_weights(x: Tensor, head: Head) -> Tensor:
    """The attention weights of a head: ``softmax((x W_q)(x W_k)^T / sqrt(d_out))``.

    The scaled dot product of :class:`attention.SelfAttentionV1`, without the
    values.

    Args:
        x: Tokens, shape (T, d_in).
        head: Its ``W_query`` and ``W_key``, each (d_in, d_out).

    Returns:
        Weights, shape (T, T); each row sums to one.
    """
    wq, wk = _head(head.W_query, head.W_key)
    t = _checks.floating("x", x, ranks=(2,), layout="(T, d_in)")
    _checks.last_dim("x", t, wq.shape[0], "d_in")
    _checks.same_dtype("x", t, "W_query", wq.dtype)
    scores = (t @ wq) @ (t @ wk).T  # (T, d_out) @ (d_out, T) -> (T, T)
    return torch.softmax(scores / wq.shape[1] ** 0.5, dim=-1)  # (T, T)


def with_positions(x: Tensor) -> Tensor:
    """Append a one-hot position to each token: ``[x_i, e_i]``.

    Attention compares content only (chapter 11); a head can read where a
    token stands only from features that say so. One-hot positions are the
    plainest such features.

    Args:
        x: Tokens, shape (T, d_in).

    Returns:
        Shape (T, d_in + T), of ``x``'s dtype: columns ``d_in + i`` is 1 in row i.
    """
    t = _checks.floating("x", x, ranks=(2,), layout="(T, d_in)")
    eye = torch.eye(t.shape[0], dtype=t.dtype, device=t.device)  # (T, T)
    return torch.cat((t, eye), dim=-1)  # (T, d_in + T)


def rank_one_head(query_direction: Tensor, key_direction: Tensor, *, strength: float = 1.0) -> Head:
    """A head with ``d_out = 1``: ``W_q = strength * u``, ``W_k = v`` as columns.

    Its scores are ``strength * (x_i . u)(x_j . v)``: every query ranks the
    keys by the same number ``x_j . v``, read from the top when its own
    ``x_i . u`` is positive and from the bottom when it is negative. One key
    ranking for all queries is what rank one allows.

    Args:
        query_direction: ``u``, shape (d_in,).
        key_direction: ``v``, shape (d_in,), the same dtype.
        strength: Multiplies the scores; larger makes the softmax sharper.
            Default: 1.

    Returns:
        ``Head`` with matrices of shape (d_in, 1).
    """
    u = _checks.floating("query_direction", query_direction, ranks=(1,), layout="(d_in,)")
    v = _checks.floating("key_direction", key_direction, ranks=(1,), layout="(d_in,)")
    _checks.same_size("key_direction", v, 0, "query_direction", u.shape[0], "d_in")
    _checks.same_dtype("key_direction", v, "query_direction", u.dtype)
    s = _checks.positive_number("strength", strength)
    return Head(s * u[:, None], v[:, None].clone())  # (d_in, 1) each


def previous_token_head(d_in: int, num_positions: int, *, strength: float = 8.0) -> Head:
    """A head on :func:`with_positions` tokens that attends one position back.

    It ignores content (zero rows for the first ``d_in`` features). The query
    of position i is ``strength * e_(i-1)`` and the key of position j is
    ``e_j``, so the score is ``strength`` for j = i - 1 and 0 elsewhere.
    Position 0 has no previous token: its query is zero and its row uniform.

    Args:
        d_in: Width of the content part of each token.
        num_positions: T, the number of positions appended.
        strength: The score of the previous token. Default: 8.

    Returns:
        ``Head`` with matrices of shape (d_in + T, T); ``A`` has rank T - 1.
    """
    d = _checks.positive_int("d_in", d_in)
    t = _checks.positive_int("num_positions", num_positions)
    s = _checks.positive_number("strength", strength)
    W_query = torch.zeros(d + t, t)
    W_query[d + 1 :, : t - 1] = s * torch.eye(t - 1)  # position i -> e_(i-1)
    W_key = torch.zeros(d + t, t)
    W_key[d:, :] = torch.eye(t)  # position j -> e_j
    return Head(W_query, W_key)


def other_token_head(
    d_in: int, num_positions: int, *, strength: float = 8.0, sharpness: float = 1.0
) -> Head:
    """A head on :func:`with_positions` tokens: the largest dot product, itself excluded.

    The content features pass through unchanged (``A``'s content block is the
    identity, chapter 3's dot product), and the position features add
    ``-strength`` to the score of a token with itself. The scores are

        s_ij = sharpness * (x_i . x_j - strength * [i == j]).

    Args:
        d_in: Width of the content part of each token.
        num_positions: T, the number of positions appended.
        strength: The penalty on the diagonal. Default: 8, more than any dot
            product of the running example.
        sharpness: Multiplies every score (a temperature, chapter 2); it
            changes how peaked the weights are, never which key wins.
            Default: 1.

    Returns:
        ``Head`` with matrices of shape (d_in + T, d_in + T); ``A`` has full rank.
    """
    d = _checks.positive_int("d_in", d_in)
    t = _checks.positive_int("num_positions", num_positions)
    s = _checks.positive_number("strength", strength)
    c = _checks.positive_number("sharpness", sharpness)
    W_query = c * torch.eye(d + t)
    W_query[d:, d:] *= -s  # the query of position i carries -sharpness * strength * e_i
    return Head(W_query, torch.eye(d + t))
