"""Masks and the masked softmax that every causal layer shares (chapter 5).

Mask polarity, once and for all: in this package a boolean mask is ``True``
where attention is **blocked**, as for ``Tensor.masked_fill`` and
``nn.MultiheadAttention``. ``F.scaled_dot_product_attention`` takes the
opposite (``True`` = may attend); :class:`attention.MultiHeadAttention`
inverts the mask before calling it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from attention import _checks


def causal_mask(num_tokens: int, *, device: torch.device | str | None = None) -> Tensor:
    """Boolean (T, T) mask, ``True`` above the diagonal: token i may not see j > i.

    Args:
        num_tokens: T, the number of tokens (0 gives an empty mask).
        device: Device of the mask. Default: the current default device.

    Returns:
        Tensor of shape (T, T), dtype bool, ``True`` = blocked.

    Example:
        >>> causal_mask(3).int()
        tensor([[0, 1, 1],
                [0, 0, 1],
                [0, 0, 0]], dtype=torch.int32)
    """
    _checks.non_negative_int("num_tokens", num_tokens)
    ones = torch.ones(num_tokens, num_tokens, dtype=torch.bool, device=device)
    return torch.triu(ones, diagonal=1)


def masked_softmax(scores: Tensor, blocked: Tensor | None) -> Tensor:
    """Softmax over the last dimension with blocked positions given weight 0.

    Blocked scores become ``-inf`` before the softmax, so ``exp`` turns them
    into exact zeros and the remaining weights still sum to one. A row in
    which *every* key is blocked would be ``0 / 0 = NaN``; it is returned as
    all zeros instead, so its context vector is zero (not NaN).

    Args:
        scores: Scores, shape (..., T_q, T_k).
        blocked: Boolean mask broadcastable to ``scores``, ``True`` = blocked,
            or ``None`` for a plain softmax.

    Returns:
        Weights, shape of ``scores``: rows sum to 1, fully blocked rows to 0.
    """
    s = _checks.floating("scores", scores, layout="(..., T_k)", min_dims=1)
    if blocked is None:
        return torch.softmax(s, dim=-1)
    m = _checks.mask("blocked", blocked, s.shape, "the scores'")
    weights = torch.softmax(s.masked_fill(m, -torch.inf), dim=-1)  # (..., T_q, T_k)
    return weights.masked_fill(m.all(dim=-1, keepdim=True), 0.0)
