"""The running example: six tokens, "Your journey starts with one step".

Each token is a hand-picked 3-d embedding, so that every intermediate number
of chapter 3 fits on a page. The whole book, and every test that checks a
published number, takes the example from here.

Example:
    >>> from attention.toy import TOKENS, toy_inputs
    >>> TOKENS[1]
    'journey'
    >>> toy_inputs().shape
    torch.Size([6, 3])
"""

from __future__ import annotations

import torch
from torch import Tensor

#: The six words of the running example, in order.
TOKENS: tuple[str, ...] = ("Your", "journey", "starts", "with", "one", "step")

_EMBEDDINGS: tuple[tuple[float, float, float], ...] = (
    (0.43, 0.15, 0.89),  # Your
    (0.55, 0.87, 0.66),  # journey
    (0.57, 0.85, 0.64),  # starts
    (0.22, 0.58, 0.33),  # with
    (0.77, 0.25, 0.10),  # one
    (0.05, 0.80, 0.55),  # step
)


def toy_inputs(*, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> Tensor:
    """Return the embeddings of :data:`TOKENS` as a new (T, d_in) = (6, 3) tensor.

    Each call builds a fresh tensor, so callers may modify it in place.

    Args:
        dtype: Floating-point dtype of the result. Default: ``torch.float32``.
        device: Device of the result. Default: ``"cpu"``.

    Returns:
        Tensor of shape (6, 3), one row per token of :data:`TOKENS`.
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    return torch.tensor(_EMBEDDINGS, dtype=dtype, device=device)
