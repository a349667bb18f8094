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

Beyond the book, :class:`MultiHeadAttention` takes the options of current
models: a general ``attn_mask``, grouped-query attention (``num_kv_heads``),
rotary position embeddings (``rope=True``) and a sliding window
(``window``), and can average the weights it returns over the heads.
"""

from __future__ import annotations

from typing import Literal, overload

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attention import _checks
from attention.causal import CausalAttention, _ignore_saved_mask, blocked_positions
from attention.functional import masked_softmax
from attention.position import apply_rope

_LAYOUT = "(B, T, d_in)"
Impl = Literal["manual", "sdpa"]
_MASK_LAYOUT = "(T, S), or any shape that broadcasts to (B, H, T, S)"


def _torch_at_least(major: int, minor: int) -> bool:
    parts = torch.__version__.split("+")[0].split(".")
    return (int(parts[0]), int(parts[1])) >= (major, minor)


# F.scaled_dot_product_attention shares key and value heads among query heads
# itself (enable_gqa) from torch 2.5 on; before that the heads are repeated.
_SDPA_GQA = _torch_at_least(2, 5)


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
        causal: Block every key after its query (default ``True``, the
            book's decoder layer). ``False`` lets every token see every token,
            as an encoder's self-attention does, and is needed for
            cross-attention.
        d_context: Width of the tokens that keys and values are made from in
            cross-attention (``forward(x, context=...)``). Default: ``None``,
            meaning ``d_in``: self-attention, or cross-attention from a
            sequence as wide as ``x``.
        num_kv_heads: Number of key and value heads H_kv; must divide
            ``num_heads``. Default: ``None``, meaning ``num_heads`` (the
            book's layer). Fewer is grouped-query attention: each group of
            H / H_kv query heads shares one key head and one value head, so
            ``W_key`` and ``W_value`` are H / H_kv times narrower and so is a
            KV cache; ``num_kv_heads=1`` is multi-query attention. Query head
            h uses key head ``h // (H / H_kv)``, as
            ``F.scaled_dot_product_attention(..., enable_gqa=True)`` does.
        rope: Rotate queries and keys by their positions (rotary position
            embeddings, :func:`attention.position.apply_rope`, with base
            10,000) in every head before the scores, so that scores depend on
            positions only through distances. Needs an even head width D.
            Self-attention only. Default: ``False``.
        window: Sliding-window attention: each query sees at most the last
            ``window`` keys, itself included (key j is visible to query i when
            ``i - window < j <= i``). Needs ``causal=True``. Default: ``None``,
            no window.

    Attributes:
        W_query: ``nn.Linear(d_in, d_out)``, all heads' queries at once.
        W_key: ``nn.Linear(d_context, H_kv * D)`` for keys (``d_out`` wide
            unless ``num_kv_heads`` is given), created after ``W_query``
            (``d_context`` is ``d_in`` unless given).
        W_value: Likewise for values, created after ``W_key``.
        out_proj: ``nn.Linear(d_out, d_out)`` with bias, mixing the heads.
        dropout: The ``nn.Dropout`` on the weights.
        mask: Buffer (context_length, context_length), 1.0 above the diagonal,
            not saved in ``state_dict`` (``persistent=False``); ``None`` when
            built with ``impl="sdpa"``, which never reads it (the causal mask
            is then built per call where one is needed: with a
            ``padding_mask``, or after switching ``impl`` to ``"manual"``).

    Unlike ``nn.MultiheadAttention``, which takes every mask as an argument of
    each call, the book's layer is causal by default and keeps its mask as a
    buffer, as chapter 5 teaches; checkpoints saved while that buffer was
    persistent still load (their ``"mask"`` entry is ignored). With
    ``causal=False`` and ``forward(x, context=c)`` it is the cross-attention
    of an encoder-decoder transformer, equal to ``nn.MultiheadAttention``
    called with ``query=x`` and ``key=value=c``. ``nn.MultiheadAttention``
    has no grouped-query, rotary or window option.

    Example:
        >>> import torch
        >>> from attention import MultiHeadAttention, toy_inputs
        >>> _ = torch.manual_seed(123)
        >>> batch = torch.stack((toy_inputs(), toy_inputs()))
        >>> MultiHeadAttention(3, 2, 6, 0.0, num_heads=2)(batch).shape
        torch.Size([2, 6, 2])
        >>> gqa = MultiHeadAttention(3, 8, 6, 0.0, num_heads=4, num_kv_heads=2, rope=True)
        >>> gqa(batch).shape, tuple(gqa.W_key.weight.shape)
        (torch.Size([2, 6, 8]), (4, 3))
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
        causal: bool = True,
        d_context: int | None = None,
        num_kv_heads: int | None = None,
        rope: bool = False,
        window: int | None = None,
    ) -> None:
        super().__init__()
        self.d_in = _checks.positive_int("d_in", d_in)
        self.causal = _checks.flag("causal", causal)
        self.d_context = d_in if d_context is None else _checks.positive_int("d_context", d_context)
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
        self.num_kv_heads = self._kv_heads(num_kv_heads)
        self.rope = _checks.flag("rope", rope)
        if rope and self.head_dim % 2:
            raise ValueError(
                f"rope=True needs an even head width D = d_out / num_heads (RoPE turns "
                f"features in pairs), got D={self.head_dim}"
            )
        self.window = None if window is None else _checks.positive_int("window", window)
        if window is not None and not causal:
            raise ValueError(
                "window needs causal=True: the sliding window keeps the last `window` "
                "keys up to each query"
            )
        kv_width = self.num_kv_heads * self.head_dim  # d_out unless num_kv_heads is given
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(self.d_context, kv_width, bias=qkv_bias)
        self.W_value = nn.Linear(self.d_context, kv_width, bias=qkv_bias)
        self.out_proj = nn.Linear(d_out, d_out)
        self.dropout = nn.Dropout(p)
        mask = None  # (context_length, context_length) floats, built only where read
        if impl == "manual" and causal:
            mask = torch.triu(torch.ones(context_length, context_length), diagonal=1)
        self.register_buffer("mask", mask, persistent=False)
        self.register_load_state_dict_pre_hook(_ignore_saved_mask)  # type: ignore[no-untyped-call]

    def _kv_heads(self, num_kv_heads: int | None) -> int:
        """Check ``num_kv_heads``; return H_kv (``num_heads`` when ``None``)."""
        if num_kv_heads is None:
            return self.num_heads
        kv = _checks.positive_int("num_kv_heads", num_kv_heads)
        if self.num_heads % kv != 0:
            raise ValueError(
                f"num_kv_heads must divide num_heads (each key head serves a whole group of "
                f"query heads), got num_heads={self.num_heads} and num_kv_heads={kv}"
            )
        return kv

    @overload
    def forward(
        self,
        x: Tensor,
        *,
        context: Tensor | None = None,
        padding_mask: Tensor | None = None,
        attn_mask: Tensor | None = None,
        return_weights: Literal[False] = False,
        average_weights: bool = False,
    ) -> Tensor: ...
    @overload
    def forward(
        self,
        x: Tensor,
        *,
        context: Tensor | None = None,
        padding_mask: Tensor | None = None,
        attn_mask: Tensor | None = None,
        return_weights: Literal[True],
        average_weights: bool = False,
    ) -> tuple[Tensor, Tensor]: ...
    @overload
    def forward(
        self,
        x: Tensor,
        *,
        context: Tensor | None = None,
        padding_mask: Tensor | None = None,
        attn_mask: Tensor | None = None,
        return_weights: bool,
        average_weights: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]: ...
    def forward(
        self,
        x: Tensor,
        *,
        context: Tensor | None = None,
        padding_mask: Tensor | None = None,
        attn_mask: Tensor | None = None,
        return_weights: bool = False,
        average_weights: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Attend with every head at once, then mix the heads.

        Masks, in one polarity each: ``padding_mask`` is ``True`` where a key
        is padding (blocked), as in ``nn.MultiheadAttention``'s
        ``key_padding_mask``; a boolean ``attn_mask`` is ``True`` where a query
        *may attend*, as in ``F.scaled_dot_product_attention`` (the opposite
        of ``nn.MultiheadAttention``'s ``attn_mask``, where ``True`` means
        blocked: pass ``~mask`` there). All masks combine with the causal mask
        and the window: a key is seen only if every mask allows it. A query
        that can see no key gets zero weights and a zero context vector,
        where PyTorch's layers give NaN.

        Args:
            x: Tokens, shape (B, T, d_in) with T <= context_length; the
                queries come from them.
            context: For cross-attention, the tokens that keys and values come
                from, shape (B, S, d_context); needs ``causal=False``. Default:
                ``None``, self-attention (keys and values from ``x``).
            padding_mask: Optional (B, S) bool, ``True`` where a key's token is
                padding (S = T in self-attention). A query that can see only
                padding gets zero weights.
            attn_mask: Optional mask on the scores, shape (T, S) or any shape
                that broadcasts to (B, H, T, S) (so (H, T, S), not
                ``nn.MultiheadAttention``'s (B * H, T, S)). Either bool,
                ``True`` = may attend, or floating point in the layer's dtype,
                added to the scaled scores (``-inf`` blocks a key).
            return_weights: Also return the attention weights (after dropout);
                needs ``impl="manual"``: ``impl="sdpa"`` raises, because
                ``F.scaled_dot_product_attention`` never forms the weights
                (switch ``layer.impl = "manual"`` for the call; the two share
                their parameters). Default: ``False``.
            average_weights: Return the weights averaged over the heads,
                (B, T, S), as ``nn.MultiheadAttention`` does by default
                (``average_attn_weights=True``); needs
                ``return_weights=True``. Default: ``False``, every head's
                weights, which the book's chapters read one head at a time.

        Returns:
            Output (B, T, d_out); with ``return_weights=True`` the pair
            ``(output, weights)``, weights of shape (B, H, T, S), or (B, T, S)
            with ``average_weights=True``.
        """
        _checks.flag("return_weights", return_weights)
        if _checks.flag("average_weights", average_weights) and not return_weights:
            raise ValueError("average_weights=True needs return_weights=True")
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
        source = self._source(x, context)  # keys and values come from here: (B, S, d_context)
        if self.impl == "sdpa":
            fast: Tensor = self.out_proj(
                self._sdpa(x, source, padding_mask, attn_mask)
            )  # (B, T, C)
            return fast

        b, num_tokens, _ = x.shape
        blocked, bias = self._masks(x, source, padding_mask, attn_mask)  # bool, float or None
        queries = self._split_heads(self.W_query(x))  # (B, H, T, D)
        keys = self._split_heads(self.W_key(source))  # (B, H_kv, S, D); H_kv = H by default
        values = self._split_heads(self.W_value(source))  # (B, H_kv, S, D)
        queries, keys = self._rotate(queries, keys)  # RoPE, only with rope=True
        keys, values = self._share_kv(keys), self._share_kv(values)  # (B, H, S, D) each

        scores = queries @ keys.transpose(2, 3)  # (B, H, T, D) @ (B, H, D, S) -> (B, H, T, S)
        scores = scores / keys.shape[-1] ** 0.5
        if bias is not None:  # a float attn_mask is added to the scaled scores
            scores = scores + bias
        weights = masked_softmax(scores, blocked)  # (B, H, T, S)
        weights = self.dropout(weights)
        mixed = weights @ values  # (B, H, T, S) @ (B, H, S, D) -> (B, H, T, D)

        mixed = mixed.transpose(1, 2)  # (B, T, H, D)
        mixed = mixed.contiguous().view(b, num_tokens, self.d_out)  # (B, T, C)
        output: Tensor = self.out_proj(mixed)  # (B, T, C)
        if not return_weights:
            return output
        return output, weights.mean(dim=1) if average_weights else weights

    def _source(self, x: Tensor, context: Tensor | None) -> Tensor:
        """The tokens keys and values are made from: ``x``, or a checked ``context``."""
        if context is None:
            if self.d_context != self.d_in:
                raise ValueError(
                    f"this layer makes keys and values from d_context={self.d_context} "
                    f"features, but x has d_in={self.d_in}: pass the other sequence as "
                    f"context= (cross-attention)"
                )
            return x
        if self.causal:
            raise ValueError(
                "context= (cross-attention) needs a layer built with causal=False: a "
                "causal mask orders the queries and keys of one sequence, and here they "
                "come from two"
            )
        if self.rope:
            raise ValueError(
                "context= (cross-attention) needs a layer built with rope=False: rotary "
                "positions compare positions within one sequence, and here there are two"
            )
        c = _checks.floating("context", context, ranks=(3,), layout="(B, S, d_context)")
        _checks.last_dim("context", c, self.d_context, "d_context")
        _checks.matches_parameters("context", c, self.W_key.weight)
        if c.shape[0] != x.shape[0]:
            raise ValueError(
                f"context must have the batch size of x, {x.shape[0]}, got {c.shape[0]} "
                f"(context has shape {tuple(c.shape)})"
            )
        return c

    def _blocked(self, x: Tensor, source: Tensor, padding_mask: Tensor | None) -> Tensor | None:
        """True where a query may not look: (T, T), (B, 1, T, S), (B, 1, 1, S) or None."""
        if self.causal:
            blocked = blocked_positions(
                self.mask, x.shape[1], padding_mask, x
            )  # (T, T) or (B, T, T)
            if self.window is not None:  # also block keys `window` or more tokens back
                pos = torch.arange(x.shape[1], device=x.device)  # (T,)
                blocked = blocked | (pos[None, :] <= pos[:, None] - self.window)
            return blocked[:, None] if blocked.dim() == 3 else blocked  # one mask for every head
        if padding_mask is None:
            return None  # every query sees every key
        b, num_keys = source.shape[0], source.shape[1]
        pad = _checks.padding_mask("padding_mask", padding_mask, b, num_keys, x.device)
        return pad[:, None, None, :]  # (B, 1, 1, S): blocked for every head and query

    def _masks(
        self, x: Tensor, source: Tensor, padding_mask: Tensor | None, attn_mask: Tensor | None
    ) -> tuple[Tensor | None, Tensor | None]:
        """Every mask in one: ``(blocked, bias)``.

        ``blocked`` is bool, ``True`` where a query may not look (causal mask,
        window, padding and ``attn_mask`` together), broadcastable to
        (B, H, T, S), or ``None``; ``bias`` is a float ``attn_mask`` to add to
        the scaled scores, its ``-inf`` entries moved into ``blocked`` (so a
        fully blocked row is recognised), or ``None``.
        """
        blocked = self._blocked(x, source, padding_mask)
        if attn_mask is None:
            return blocked, None
        shape = (x.shape[0], self.num_heads, x.shape[1], source.shape[1])  # (B, H, T, S)
        mask_blocked, bias = _attn_mask_parts(attn_mask, shape, self.W_query.weight)
        return (mask_blocked if blocked is None else blocked | mask_blocked), bias

    def _split_heads(self, t: Tensor) -> Tensor:
        b, num_tokens, width = t.shape
        heads = width // self.head_dim  # H; H_kv for grouped keys and values
        t = t.view(b, num_tokens, heads, self.head_dim)  # (B, T, C) -> (B, T, H, D)
        return t.transpose(1, 2)  # (B, H, T, D)

    def _rotate(self, queries: Tensor, keys: Tensor, offset: int = 0) -> tuple[Tensor, Tensor]:
        """Queries and keys (B, heads, T, D) turned by RoPE from position ``offset`` on.

        Unchanged unless the layer was built with ``rope=True``.
        """
        if not self.rope:
            return queries, keys
        return apply_rope(queries, offset=offset), apply_rope(keys, offset=offset)

    def _share_kv(self, t: Tensor) -> Tensor:
        """Keys or values (B, H_kv, S, D) repeated for their query heads: (B, H, S, D).

        Each of the H_kv heads is repeated H / H_kv times in a row, so query
        head h reads key head ``h // (H / H_kv)``. The identity when H_kv = H.
        """
        group = self.num_heads // self.num_kv_heads
        return t if group == 1 else t.repeat_interleave(group, dim=1)

    def _sdpa(
        self, x: Tensor, source: Tensor, padding_mask: Tensor | None, attn_mask: Tensor | None
    ) -> Tensor:
        """The fast path: the heads' merged context (B, T, C), before ``out_proj``.

        The same maths as the manual path, in fewer and larger operations: one
        matrix product computes the queries, keys and values together, with the
        three weights stacked into one (3C, d_in) matrix (``torch.cat`` is
        differentiable, so each weight still receives its own gradient, and the
        stack is rebuilt on every call, so it always holds the current
        weights); and ``F.scaled_dot_product_attention`` never forms the
        weights. Without autograd (inference) the three projections run
        separately instead, as in the manual path: there the stacking would
        only copy the weights on every call.
        """
        b, num_tokens, _ = x.shape
        training = torch.is_grad_enabled() and self.W_query.weight.requires_grad
        if source is not x or self.num_kv_heads != self.num_heads or not training:
            # Cross-attention (queries and keys from two sequences), grouped
            # keys and values narrower than the queries, or inference (no
            # autograd): three projections. Without autograd the stack of the
            # weights would be a copy of them on every call, slower than the
            # three products it saves (measured).
            queries = self._split_heads(self.W_query(x))  # (B, H, T, D)
            keys = self._split_heads(self.W_key(source))  # (B, H_kv, S, D)
            values = self._split_heads(self.W_value(source))  # (B, H_kv, S, D)
            return self._sdpa_heads(queries, keys, values, x, source, padding_mask, attn_mask)
        weight = torch.cat((self.W_query.weight, self.W_key.weight, self.W_value.weight))
        bias = None
        if self.W_query.bias is not None:
            bias = torch.cat((self.W_query.bias, self.W_key.bias, self.W_value.bias))  # (3C,)
        qkv = F.linear(x, weight, bias)  # (B, T, d_in) @ (d_in, 3C) -> (B, T, 3C)
        qkv = qkv.view(b, num_tokens, 3, self.num_heads, self.head_dim)  # (B, T, 3, H, D)
        # Measured: the kernel's backward pass is faster on contiguous inputs,
        # enough to repay this copy.
        heads = qkv.permute(2, 0, 3, 1, 4).contiguous()  # (3, B, H, T, D)
        queries, keys, values = heads.unbind(0)  # 3 x (B, H, T, D)
        return self._sdpa_heads(queries, keys, values, x, source, padding_mask, attn_mask)

    def _sdpa_heads(
        self,
        queries: Tensor,
        keys: Tensor,
        values: Tensor,
        x: Tensor,
        source: Tensor,
        padding_mask: Tensor | None,
        attn_mask: Tensor | None,
    ) -> Tensor:
        """``F.scaled_dot_product_attention`` on split heads; the merged (B, T, C)."""
        b, num_tokens, _ = x.shape
        p = self.dropout.p if self.training else 0.0
        queries, keys = self._rotate(queries, keys)  # RoPE, only with rope=True
        if padding_mask is None and attn_mask is None and self.window is None:
            # The kernel builds the causal mask itself, which lets it skip work.
            mixed = _sdpa_call(queries, keys, values, None, dropout_p=p, is_causal=self.causal)
        else:
            blocked, bias = self._masks(x, source, padding_mask, attn_mask)
            assert blocked is not None  # a padding_mask, attn_mask or window gives one
            # SDPA's boolean mask means the opposite of ours: True = may attend.
            # A float mask is added to the scores; -inf blocks.
            sdpa_mask = ~blocked if bias is None else torch.where(blocked, -torch.inf, bias)
            mixed = _sdpa_call(queries, keys, values, sdpa_mask, dropout_p=p, is_causal=False)
            fully_blocked = blocked.all(dim=-1, keepdim=True)  # (..., T or 1, 1)
            mixed = mixed.masked_fill(fully_blocked, 0.0)  # zero instead of NaN
        # PyTorch's fused kernels write their output token-major, so this reshape
        # is a view, not a copy (it copies only for the math fallback).
        return mixed.transpose(1, 2).reshape(b, num_tokens, self.d_out)  # (B, T, C)


def _sdpa_call(
    queries: Tensor,
    keys: Tensor,
    values: Tensor,
    attn_mask: Tensor | None,
    *,
    dropout_p: float,
    is_causal: bool,
) -> Tensor:
    """``F.scaled_dot_product_attention``, with H_kv <= H key and value heads."""
    group = queries.shape[1] // keys.shape[1]
    if group == 1:
        return F.scaled_dot_product_attention(
            queries, keys, values, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal
        )
    if _SDPA_GQA:
        return F.scaled_dot_product_attention(
            queries,
            keys,
            values,
            attn_mask=attn_mask,
            dropout_p=dropout_p,
            is_causal=is_causal,
            enable_gqa=True,
        )
    keys, values = keys.repeat_interleave(group, dim=1), values.repeat_interleave(group, dim=1)
    return F.scaled_dot_product_attention(
        queries, keys, values, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal
    )


def _attn_mask_parts(
    attn_mask: object, shape: tuple[int, int, int, int], parameter: Tensor
) -> tuple[Tensor, Tensor | None]:
    """Check ``attn_mask``; return it as ``(blocked, bias)``.

    ``blocked`` is bool with the package's polarity, ``True`` = blocked: the
    inverse of a bool mask, or where a float mask is ``-inf``. ``bias`` is a
    float mask with those entries set to 0 (they are blocked instead), or
    ``None`` for a bool mask.
    """
    m = _checks.tensor("attn_mask", attn_mask)
    if m.dtype != torch.bool and not m.is_floating_point():
        raise TypeError(
            f"attn_mask must be a bool tensor (True = may attend, as in "
            f"F.scaled_dot_product_attention) or a float tensor added to the scores, "
            f"got dtype {m.dtype}"
        )
    if m.is_floating_point() and m.dtype != parameter.dtype:
        raise TypeError(
            f"a float attn_mask must have the layer's dtype {parameter.dtype}, got {m.dtype}"
        )
    if m.device != parameter.device:
        raise ValueError(
            f"attn_mask must be on the layer's device {parameter.device}, got {m.device}"
        )
    trailing = shape[len(shape) - m.dim() :] if m.dim() <= len(shape) else None
    if trailing is None or any(a not in (1, n) for a, n in zip(m.shape, trailing, strict=True)):
        raise ValueError(
            f"attn_mask must have shape {_MASK_LAYOUT}, here (B, H, T, S) = {shape}, "
            f"got {tuple(m.shape)}"
        )
    if m.dtype == torch.bool:
        return ~m, None
    blocked = torch.isneginf(m)
    return blocked, m.masked_fill(blocked, 0.0)
