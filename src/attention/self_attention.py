"""Self-attention with trainable weights (chapter 4): the first two rungs.

Three learned matrices project every token into a query, a key and a value;
the scores are scaled by ``1 / sqrt(d_k)`` before the softmax:

    Q = x W_q,  K = x W_k,  V = x W_v
    context = softmax(Q K^T / sqrt(d_k)) V

* :class:`SelfAttentionV1` keeps the matrices as raw ``nn.Parameter`` and
  multiplies ``x @ W``.
* :class:`SelfAttentionV2` (new: ``nn.Linear``) gets a better initialisation
  and an optional bias. ``nn.Linear`` stores its weight transposed, (d_out,
  d_in), so the two agree once ``W = linear.weight.T``.

Both take one sequence (T, d_in) as in the book, or a batch (B, T, d_in).
"""

from __future__ import annotations

from typing import Literal, overload

import torch
from torch import Tensor, nn

from attention import _checks

_LAYOUT = "(T, d_in) or (B, T, d_in)"


class SelfAttentionV1(nn.Module):
    """Scaled dot-product self-attention with raw weight matrices.

    ``softmax((x W_q)(x W_k)^T / sqrt(d_out)) (x W_v)``, no mask, no dropout.

    Args:
        d_in: Width of each input token.
        d_out: Width of queries, keys, values and the output.

    Attributes:
        W_query: ``nn.Parameter`` of shape (d_in, d_out), uniform in [0, 1).
        W_key: Likewise, drawn after ``W_query`` (the book's order, so that a
            seed reproduces its numbers).
        W_value: Likewise, drawn last.

    Example:
        >>> import torch
        >>> from attention import SelfAttentionV1, toy_inputs
        >>> _ = torch.manual_seed(123)
        >>> SelfAttentionV1(3, 2)(toy_inputs()).shape
        torch.Size([6, 2])
    """

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.d_in = _checks.positive_int("d_in", d_in)
        self.d_out = _checks.positive_int("d_out", d_out)
        self.W_query = nn.Parameter(torch.rand(d_in, d_out))
        self.W_key = nn.Parameter(torch.rand(d_in, d_out))
        self.W_value = nn.Parameter(torch.rand(d_in, d_out))

    @overload
    def forward(self, x: Tensor, *, return_weights: Literal[False] = False) -> Tensor: ...
    @overload
    def forward(self, x: Tensor, *, return_weights: Literal[True]) -> tuple[Tensor, Tensor]: ...
    @overload
    def forward(self, x: Tensor, *, return_weights: bool) -> Tensor | tuple[Tensor, Tensor]: ...
    def forward(self, x: Tensor, *, return_weights: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Attend every token to every token.

        Args:
            x: Tokens, shape (T, d_in) or (B, T, d_in).
            return_weights: Also return the attention weights. Default: ``False``.

        Returns:
            Context vectors, shape (..., T, d_out); with ``return_weights=True``
            the pair ``(context, weights)``, weights of shape (..., T, T).
        """
        _checks.flag("return_weights", return_weights)
        x = _checks.layer_input(
            x, d_in=self.d_in, ranks=(2, 3), layout=_LAYOUT, parameter=self.W_query
        )
        keys = x @ self.W_key  # (..., T, d_in) @ (d_in, d_out) -> (..., T, d_out)
        queries = x @ self.W_query  # (..., T, d_out)
        values = x @ self.W_value  # (..., T, d_out)
        keys_t = keys.transpose(-2, -1)  # (..., d_out, T); .T only works without a batch
        scores = queries @ keys_t  # (..., T, d_out) @ (..., d_out, T) -> (..., T, T)
        weights = torch.softmax(scores / keys.shape[-1] ** 0.5, dim=-1)  # (..., T, T)
        context = weights @ values  # (..., T, T) @ (..., T, d_out) -> (..., T, d_out)
        return (context, weights) if return_weights else context


class SelfAttentionV2(nn.Module):
    """Scaled dot-product self-attention with ``nn.Linear`` projections.

    New relative to :class:`SelfAttentionV1`: the projections are
    ``nn.Linear`` layers (Kaiming-uniform initialisation, optional bias), so
    ``x W`` becomes ``W(x)``. Same formula, different starting weights.

    Args:
        d_in: Width of each input token.
        d_out: Width of queries, keys, values and the output.
        qkv_bias: Give the three projections a bias. Default: ``False``.

    Attributes:
        W_query: ``nn.Linear(d_in, d_out)``; its ``weight`` has shape (d_out, d_in).
        W_key: Likewise, created after ``W_query``.
        W_value: Likewise, created last.

    Example:
        >>> import torch
        >>> from attention import SelfAttentionV2, toy_inputs
        >>> _ = torch.manual_seed(789)
        >>> SelfAttentionV2(3, 2)(toy_inputs()).shape
        torch.Size([6, 2])
    """

    def __init__(self, d_in: int, d_out: int, qkv_bias: bool = False) -> None:
        super().__init__()
        self.d_in = _checks.positive_int("d_in", d_in)
        self.d_out = _checks.positive_int("d_out", d_out)
        _checks.flag("qkv_bias", qkv_bias)
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)

    @overload
    def forward(self, x: Tensor, *, return_weights: Literal[False] = False) -> Tensor: ...
    @overload
    def forward(self, x: Tensor, *, return_weights: Literal[True]) -> tuple[Tensor, Tensor]: ...
    @overload
    def forward(self, x: Tensor, *, return_weights: bool) -> Tensor | tuple[Tensor, Tensor]: ...
    def forward(self, x: Tensor, *, return_weights: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Attend every token to every token.

        Args:
            x: Tokens, shape (T, d_in) or (B, T, d_in).
            return_weights: Also return the attention weights. Default: ``False``.

        Returns:
            Context vectors, shape (..., T, d_out); with ``return_weights=True``
            the pair ``(context, weights)``, weights of shape (..., T, T).
        """
        _checks.flag("return_weights", return_weights)
        x = _checks.layer_input(
            x, d_in=self.d_in, ranks=(2, 3), layout=_LAYOUT, parameter=self.W_query.weight
        )
        keys = self.W_key(x)  # (..., T, d_in) -> (..., T, d_out)
        queries = self.W_query(x)  # (..., T, d_out)
        values = self.W_value(x)  # (..., T, d_out)
        keys_t = keys.transpose(-2, -1)  # (..., d_out, T); .T only works without a batch
        scores = queries @ keys_t  # (..., T, d_out) @ (..., d_out, T) -> (..., T, T)
        weights = torch.softmax(scores / keys.shape[-1] ** 0.5, dim=-1)  # (..., T, T)
        context = weights @ values  # (..., T, T) @ (..., T, d_out) -> (..., T, d_out)
        return (context, weights) if return_weights else context
