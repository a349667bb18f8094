"""A key-value cache: generation that feeds only the new token (chapter 11).

Greedy generation without a cache runs the whole sequence through the model
for every new token, although the keys and values of the earlier tokens never
change. :class:`KVCache` keeps them, one :class:`LayerKV` per transformer
block, and :func:`cached_attention` computes attention for the new tokens
only, against the cached keys and values. :func:`attention.gpt.generate_text_simple`
with ``use_cache=True`` uses them and returns the same tokens.
"""

from __future__ import annotations

import torch
from torch import Tensor

from attention import _checks
from attention.functional import masked_softmax
from attention.multihead import MultiHeadAttention

__all__ = ["KVCache", "LayerKV", "cached_attention"]

_LAYOUT = "(B, H, T, D)"


class LayerKV:
    """The keys and values one attention layer has seen so far.

    Attributes:
        keys: (B, H, S, D) for the S cached tokens, or ``None`` when empty;
            H is the layer's ``num_kv_heads`` (fewer than its query heads in
            grouped-query attention), and with ``rope=True`` the keys are
            stored already rotated.
        values: Likewise.
    """

    def __init__(self) -> None:
        self.keys: Tensor | None = None
        self.values: Tensor | None = None

    @property
    def length(self) -> int:
        """S, the number of tokens cached."""
        return 0 if self.keys is None else self.keys.shape[2]

    @property
    def nbytes(self) -> int:
        """Bytes held by the cached keys and values."""
        return sum(t.nbytes for t in (self.keys, self.values) if t is not None)

    def extend(self, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        """Append new (B, H, T, D) keys and values; return all (B, H, S + T, D)."""
        self._check(keys, values)
        if self.keys is None or self.values is None:
            self.keys, self.values = keys, values
        else:
            self.keys = torch.cat((self.keys, keys), dim=2)  # (B, H, S + T, D)
            self.values = torch.cat((self.values, values), dim=2)  # (B, H, S + T, D)
        return self.keys, self.values

    def _check(self, keys: object, values: object) -> None:
        """Raise unless ``keys`` and ``values`` can join each other and the cache."""
        k = _checks.floating("keys", keys, ranks=(4,), layout=_LAYOUT)
        v = _checks.floating("values", values, ranks=(4,), layout=_LAYOUT)
        if k.shape != v.shape:
            raise ValueError(
                f"keys and values must have the same shape (B, H, T, D), "
                f"got {tuple(k.shape)} and {tuple(v.shape)}"
            )
        _checks.same_dtype("values", v, "keys", k.dtype)
        if self.keys is None:
            return
        cached = self.keys
        for dim, what in ((0, "batch size B"), (1, "number of heads H"), (3, "head width D")):
            _checks.same_size("keys", k, dim, "the cached keys", cached.shape[dim], what)
        _checks.same_dtype("keys", k, "the cached keys", cached.dtype)
        if k.device != cached.device:
            raise ValueError(f"keys must be on the cache's device {cached.device}, got {k.device}")


class KVCache:
    """Keys and values of every layer, so generation feeds only new tokens.

    Pass one to :meth:`attention.gpt.GPTModel.forward`; it fills on the first call and
    grows by the new tokens on each later call. The positions of the cached
    tokens are fixed, so a cache is valid only while the sequence it holds
    starts at position 0 of the model's window.

    Attributes:
        layers: One :class:`LayerKV` per transformer block.
        length: S, the number of tokens cached.
        batch: B, the batch size of the cached sequences (``None`` when empty).
        padding: (B, S) bool, ``True`` where a cached token is padding, once
            a ``padding_mask`` was given to the model; else ``None``.

    Example:
        >>> import torch
        >>> from attention.gpt import GPTConfig, GPTModel
        >>> cfg = GPTConfig(vocab_size=10, context_length=8, emb_dim=8, n_heads=2, n_layers=1)
        >>> model, cache = GPTModel(cfg).eval(), KVCache()
        >>> _ = model(torch.tensor([[1, 2, 3]]), cache=cache)
        >>> _ = model(torch.tensor([[4]]), cache=cache)
        >>> cache.length
        4
    """

    def __init__(self) -> None:
        self.layers: list[LayerKV] = []
        self.length = 0
        self.batch: int | None = None
        self.padding: Tensor | None = None  # (B, S), True = padding, when the model had a mask

    @property
    def nbytes(self) -> int:
        """Bytes held by the keys and values of every layer."""
        return sum(layer.nbytes for layer in self.layers)


def cached_attention(
    att: MultiHeadAttention, x: Tensor, kv: LayerKV, *, padding_mask: Tensor | None = None
) -> Tensor:
    """``att`` on new tokens ``x`` that also attend to the cached ones in ``kv``.

    The same maths as ``att(x_all)[:, -T:]`` for the full sequence ``x_all``
    (its first S tokens cached): queries only for the T new tokens, keys and
    values for all S + T, and new token i (at position S + i) blocked from
    keys after it. Uses ``att``'s parameters; ``att`` is not modified.
    Follows the layer's options: with ``num_kv_heads`` the cache stores only
    the H_kv key and value heads (H / H_kv times less memory), shared among
    the query heads after it is read; with ``rope=True`` the new queries and
    keys are rotated for positions S to S + T - 1 before the keys are cached;
    with a ``window`` the new tokens see only the last ``window`` keys.

    Args:
        att: The block's :class:`attention.MultiHeadAttention`.
        x: New tokens, shape (B, T, C).
        kv: The layer's cache; extended in place by the T new keys and values.
        padding_mask: Optional (B, S + T) bool, ``True`` where a key, cached
            or new, is padding: blocked for every new query. Default: ``None``.

    Returns:
        Output for the new tokens, shape (B, T, C).
    """
    x = _check_cached_input(att, x, kv)  # also: x's batch size is the cache's
    b, num_tokens, _ = x.shape
    past = kv.length
    if past + num_tokens > att.context_length:
        raise ValueError(
            f"the cache holds {past} tokens and x adds {num_tokens}, more than "
            f"context_length={att.context_length}; start a new KVCache"
        )
    queries = att._split_heads(att.W_query(x))  # (B, H, T, D)
    keys = att._split_heads(att.W_key(x))  # (B, H_kv, T, D); H_kv = H by default
    values = att._split_heads(att.W_value(x))  # (B, H_kv, T, D)
    queries, keys = att._rotate(queries, keys, offset=past)  # RoPE at positions S.., if used
    keys, values = kv.extend(keys, values)  # (B, H_kv, S + T, D) each: the cache keeps H_kv
    keys, values = att._share_kv(keys), att._share_kv(values)  # (B, H, S + T, D) each
    query_pos = torch.arange(past, past + num_tokens, device=x.device)  # (T,)
    key_pos = torch.arange(past + num_tokens, device=x.device)  # (S + T,)
    blocked = key_pos[None, :] > query_pos[:, None]  # (T, S + T), True = blocked
    if att.window is not None:  # a sliding window also blocks keys `window` or more back
        blocked |= key_pos[None, :] <= query_pos[:, None] - att.window
    if padding_mask is not None:  # padding keys are blocked for every query: (B, 1, T, S + T)
        pad = _checks.padding_mask("padding_mask", padding_mask, b, past + num_tokens, x.device)
        blocked = blocked | pad[:, None, None, :]
    scores = queries @ keys.transpose(2, 3)  # (B, H, T, D) @ (B, H, D, S+T) -> (B, H, T, S+T)
    weights = att.dropout(masked_softmax(scores / keys.shape[-1] ** 0.5, blocked))
    context = weights @ values  # (B, H, T, S+T) @ (B, H, S+T, D) -> (B, H, T, D)
    context = context.transpose(1, 2).contiguous().view(b, num_tokens, att.d_out)  # (B, T, C)
    out: Tensor = att.out_proj(context)  # (B, T, C)
    return out


def _check_cached_input(att: object, x: object, kv: object) -> Tensor:
    """The argument checks of :func:`cached_attention`; return ``x``."""
    if not isinstance(att, MultiHeadAttention):
        raise TypeError(f"att must be a MultiHeadAttention, got {type(att).__name__}")
    if not att.causal or att.d_context != att.d_in:
        raise ValueError(
            "att must be a causal self-attention layer (causal=True, no d_context), "
            f"got causal={att.causal}, d_context={att.d_context}, d_in={att.d_in}"
        )
    # Any cache with extend() and length will do (the exercises pass the reader's own).
    if not (callable(getattr(kv, "extend", None)) and hasattr(kv, "length")):
        raise TypeError(
            f"kv must be a LayerKV, got {type(kv).__name__} (any cache with extend() and "
            f"length will do)"
        )
    t = _checks.layer_input(
        x, d_in=att.d_in, ranks=(3,), layout="(B, T, C)", parameter=att.W_query.weight
    )
    cached = getattr(kv, "keys", None)
    if isinstance(cached, Tensor):
        _checks.same_size("x", t, 0, "the cache", cached.shape[0], "batch size B")
    return t
