"""Multi-head attention (chapter 8): the last two rungs.

* :class:`MultiHeadAttentionWrapper` stacks ``num_heads`` independent
  :class:`attention.CausalAttention` heads and concatenates their outputs.
* :class:`MultiHeadAttention` computes the same kind of result efficiently:
  one projection each for Q, K and V, split into heads with ``view`` and
  ``transpose``, attention for all heads in one batched matmul, the heads
  merged back, and an output projection that mixes them.

``impl="manual"`` runs the book's readable forward; ``impl="sdpa"`` runs the
same maths through ``torch.nn.functional.scaled_dot_product_attention`` on the
same parameters (it cannot return the weights).
"""

from __future__ import annotations

from typing import Literal, overload

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attention import _checks
from attention.causal import CausalAttention, _ignore_saved_mask, blocked_positions
from attention.functional import masked_softmax

_LAYOUT = "(B, T, d_in)"
Impl = Literal["manual", "sdpa"]


class MultiHeadAttentionWrapper(nn.Module):
    """``num_heads`` causal attention heads side by side, outputs concatenated.

    Args:
        d_in: Width of each input token.
        d_out: Width of *each head*; the output is ``num_heads * d_out`` wide.
        context_length: The longest sequence the layer accepts.
        dropout: Dropout probability on each head's weights, in [0, 1).
        num_heads: Number of heads H.
        qkv_bias: Give the projections a bias. Default: ``False``.

    Attributes:
        heads: ``nn.ModuleList`` of H :class:`attention.CausalAttention`,
            created in order (so head 0 equals a ``CausalAttention`` built
            right after the same seed).

    Example:
        >>> import torch
        >>> from attention import MultiHeadAttentionWrapper, toy_inputs
        >>> _ = torch.manual_seed(123)
        >>> batch = torch.stack((toy_inputs(), toy_inputs()))
        >>> MultiHeadAttentionWrapper(3, 2, 6, 0.0, num_heads=2)(batch).shape
        torch.Size([2, 6, 4])
    """

    def __init__(
        self,
        d_in: int,
        d_out: int,
        context_length: int,
        dropout: float,
        num_heads: int,
        qkv_bias: bool = False,
    ) -> None:
        super().__init__()
        self.num_heads = _checks.positive_int("num_heads", num_heads)
        self.heads = nn.ModuleList(
            [
                CausalAttention(d_in, d_out, context_length, dropout, qkv_bias)
                for _ in range(num_heads)
            ]
        )

    @overload
    def forward(
        self,
        x: Tensor,
        *,
        padding_mask: Tensor | None = None,
        return_weights: Literal[False] = False,
    ) -> Tensor: ...
    @overload
    def forward(
        self, x: Tensor, *, padding_mask: Tensor | None = None, return_weights: Literal[True]
    ) -> tuple[Tensor, Tensor]: ...
    @overload
    def forward(
        self, x: Tensor, *, padding_mask: Tensor | None = None, return_weights: bool
    ) -> Tensor | tuple[Tensor, Tensor]: ...
    def forward(
        self, x: Tensor, *, padding_mask: Tensor | None = None, return_weights: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Run every head on ``x`` and concatenate along the last dimension.

        Args:
            x: Tokens, shape (B, T, d_in).
            padding_mask: Optional (B, T) bool, ``True`` = padding.
            return_weights: Also return every head's weights. Default: ``False``.

        Returns:
            Context vectors (B, T, H * d_out); with ``return_weights=True`` the
            pair ``(context, weights)``, weights of shape (B, H, T, T).
        """
        _checks.flag("return_weights", return_weights)
        outputs = [head(x, padding_mask=padding_mask, return_weights=True) for head in self.heads]
        context = torch.cat([c for c, _ in outputs], dim=-1)  # H x (B, T, d_out) -> (B, T, H*d_out)
        if not return_weights:
            return context
        return context, torch.stack([w for _, w in outputs], dim=1)  # H x (B, T, T) -> (B, H, T, T)


class MultiHeadAttention(nn.Module):
    """Causal multi-head self-attention with fused head computation.

    For each head h: ``head_h = dropout(masked_softmax(Q_h K_h^T / sqrt(D))) V_h``;
    then ``out_proj(concat(head_1, ..., head_H))``, where Q, K, V come from one
    (d_in -> d_out) projection each, split into H heads of width D = d_out / H.

    Args:
        d_in: Width of each input token.
        d_out: Model width C = H x D, the width of the output.
        context_length: The longest sequence the layer accepts.
        dropout: Dropout probability on the attention weights, in [0, 1).
        num_heads: Number of heads H; must divide ``d_out``.
        qkv_bias: Give the Q, K, V projections a bias. Default: ``False``.
        impl: ``"manual"`` (default) for the book's readable forward,
            ``"sdpa"`` for ``F.scaled_dot_product_attention``. Both give the same
            numbers (to float rounding) with dropout off; with dropout on they
            draw different random masks. With ``"sdpa"`` the layer keeps no
            mask buffer: the kernel applies the causal mask itself.

    Attributes:
        W_query: ``nn.Linear(d_in, d_out)``, all heads' queries at once.
        W_key: Likewise for keys, created after ``W_query``.
        W_value: Likewise for values, created after ``W_key``.
        out_proj: ``nn.Linear(d_out, d_out)`` with bias, mixing the heads.
        dropout: The ``nn.Dropout`` on the weights.
        mask: Buffer (context_length, context_length), 1.0 above the diagonal,
            not saved in ``state_dict`` (``persistent=False``); ``None`` when
            built with ``impl="sdpa"``, which never reads it (the causal mask
            is then built per call where one is needed: with a
            ``padding_mask``, or after switching ``impl`` to ``"manual"``).

    Unlike ``nn.MultiheadAttention``, which takes every mask as an argument of
    each call, the book's layer is always causal and keeps its mask as a
    buffer, as chapter 5 teaches; checkpoints saved while that buffer was
    persistent still load (their ``"mask"`` entry is ignored).

    Example:
        >>> import torch
        >>> from attention import MultiHeadAttention, toy_inputs
        >>> _ = torch.manual_seed(123)
        >>> batch = torch.stack((toy_inputs(), toy_inputs()))
        >>> MultiHeadAttention(3, 2, 6, 0.0, num_heads=2)(batch).shape
        torch.Size([2, 6, 2])
    """

    mask: Tensor | None

    def __init__(
        self,
        d_in: int,
        d_out: int,
        context_length: int,
        dropout: float,
        num_heads: int,
        qkv_bias: bool = False,
        *,
        impl: Impl = "manual",
    ) -> None:
        super().__init__()
        self.d_in = _checks.positive_int("d_in", d_in)
        self.d_out = _checks.positive_int("d_out", d_out)
        self.context_length = _checks.positive_int("context_length", context_length)
        self.num_heads = _checks.positive_int("num_heads", num_heads)
        p = _checks.probability("dropout", dropout)
        _checks.flag("qkv_bias", qkv_bias)
        if d_out % num_heads != 0:
            raise ValueError(
                f"d_out must be divisible by num_heads, got d_out={d_out} and "
                f"num_heads={num_heads} (remainder {d_out % num_heads})"
            )
        if impl not in ("manual", "sdpa"):
            raise ValueError(f"impl must be 'manual' or 'sdpa', got {impl!r}")
        self.impl: Impl = impl
        self.head_dim = d_out // num_heads
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.out_proj = nn.Linear(d_out, d_out)
        self.dropout = nn.Dropout(p)
        mask = None  # (context_length, context_length) floats, built only where read
        if impl == "manual":
            mask = torch.triu(torch.ones(context_length, context_length), diagonal=1)
        self.register_buffer("mask", mask, persistent=False)
        self.register_load_state_dict_pre_hook(_ignore_saved_mask)  # type: ignore[no-untyped-call]

    @overload
    def forward(
        self,
        x: Tensor,
        *,
        padding_mask: Tensor | None = None,
        return_weights: Literal[False] = False,
    ) -> Tensor: ...
    @overload
    def forward(
        self, x: Tensor, *, padding_mask: Tensor | None = None, return_weights: Literal[True]
    ) -> tuple[Tensor, Tensor]: ...
    @overload
    def forward(
        self, x: Tensor, *, padding_mask: Tensor | None = None, return_weights: bool
    ) -> Tensor | tuple[Tensor, Tensor]: ...
    def forward(
        self, x: Tensor, *, padding_mask: Tensor | None = None, return_weights: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Attend with every head at once, then mix the heads.

        Args:
            x: Tokens, shape (B, T, d_in) with T <= context_length.
            padding_mask: Optional (B, T) bool, ``True`` where a token is
                padding. A query that can see only padding gets zero weights.
            return_weights: Also return the attention weights (after dropout);
                needs ``impl="manual"``. Default: ``False``.

        Returns:
            Output (B, T, d_out); with ``return_weights=True`` the pair
            ``(output, weights)``, weights of shape (B, H, T, T).
        """
        _checks.flag("return_weights", return_weights)
        if return_weights and self.impl != "manual":
            raise ValueError(
                "return_weights=True needs impl='manual'; impl='sdpa' calls "
                "F.scaled_dot_product_attention, which never forms the weights"
            )
        x = _checks.layer_input(
            x,
            d_in=self.d_in,
            ranks=(3,),
            layout=_LAYOUT,
            parameter=self.W_query.weight,
            context_length=self.context_length,
        )
        if self.impl == "sdpa":
            fast: Tensor = self.out_proj(self._sdpa(x, padding_mask))  # (B, T, C)
            return fast

        b, num_tokens, _ = x.shape
        blocked = blocked_positions(self.mask, num_tokens, padding_mask, x)  # (T, T) or (B, T, T)
        if blocked.dim() == 3:
            blocked = blocked[:, None]  # (B, 1, T, T): the same mask for every head
        queries = self._split_heads(self.W_query(x))  # (B, H, T, D)
        keys = self._split_heads(self.W_key(x))  # (B, H, T, D)
        values = self._split_heads(self.W_value(x))  # (B, H, T, D)

        scores = queries @ keys.transpose(2, 3)  # (B, H, T, D) @ (B, H, D, T) -> (B, H, T, T)
        weights = masked_softmax(scores / keys.shape[-1] ** 0.5, blocked)  # (B, H, T, T)
        weights = self.dropout(weights)
        context = weights @ values  # (B, H, T, T) @ (B, H, T, D) -> (B, H, T, D)

        context = context.transpose(1, 2)  # (B, T, H, D)
        context = context.contiguous().view(b, num_tokens, self.d_out)  # (B, T, C)
        output = self.out_proj(context)  # (B, T, C)
        return (output, weights) if return_weights else output

    def _split_heads(self, t: Tensor) -> Tensor:
        b, num_tokens, _ = t.shape
        t = t.view(b, num_tokens, self.num_heads, self.head_dim)  # (B, T, C) -> (B, T, H, D)
        return t.transpose(1, 2)  # (B, H, T, D)

    def _sdpa(self, x: Tensor, padding_mask: Tensor | None) -> Tensor:
        """The fast path: the heads' merged context (B, T, C), before ``out_proj``.

        The same maths as the manual path, in fewer and larger operations: one
        matrix product computes the queries, keys and values together, with the
        three weights stacked into one (3C, d_in) matrix (``torch.cat`` is
        differentiable, so each weight still receives its own gradient, and the
        stack is rebuilt on every call, so it always holds the current
        weights); without autograd the heads are strided views into that
        product, not copies; and ``F.scaled_dot_product_attention`` never forms
        the weights.
        """
        b, num_tokens, _ = x.shape
        weight = torch.cat((self.W_query.weight, self.W_key.weight, self.W_value.weight))
        bias = None
        if self.W_query.bias is not None:
            bias = torch.cat((self.W_query.bias, self.W_key.bias, self.W_value.bias))  # (3C,)
        qkv = F.linear(x, weight, bias)  # (B, T, d_in) @ (d_in, 3C) -> (B, T, 3C)
        qkv = qkv.view(b, num_tokens, 3, self.num_heads, self.head_dim)  # (B, T, 3, H, D)
        heads = qkv.permute(2, 0, 3, 1, 4)  # (3, B, H, T, D), a strided view
        if heads.requires_grad:
            # Measured: the kernel's backward pass is faster on contiguous inputs,
            # enough to repay this copy; its forward pass reads the view as fast.
            heads = heads.contiguous()
        queries, keys, values = heads.unbind(0)  # 3 x (B, H, T, D)
        p = self.dropout.p if self.training else 0.0
        if padding_mask is None:
            # The kernel builds the causal mask itself, which lets it skip work.
            context = F.scaled_dot_product_attention(
                queries, keys, values, dropout_p=p, is_causal=True
            )  # (B, H, T, D)
        else:
            blocked = blocked_positions(self.mask, num_tokens, padding_mask, x)[:, None]
            # SDPA's boolean mask means the opposite of ours: True = may attend.
            context = F.scaled_dot_product_attention(
                queries, keys, values, attn_mask=~blocked, dropout_p=p
            )  # (B, H, T, D); blocked is (B, 1, T, T)
            fully_blocked = blocked.all(dim=-1, keepdim=True)  # (B, 1, T, 1)
            context = context.masked_fill(fully_blocked, 0.0)  # zero instead of NaN
        # PyTorch's fused kernels write their output token-major, so this reshape
        # is a view, not a copy (it copies only for the math fallback).
        return context.transpose(1, 2).reshape(b, num_tokens, self.d_out)  # (B, T, C)
