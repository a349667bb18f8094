"""A key-value cache: generation that feeds only the new token (chapter 11).

Greedy generation without a cache runs the whole sequence through the model
for every new token, although the keys and values of the earlier tokens never
change. :class:`KVCache` keeps them, one :class:`LayerKV` per transformer
block, and :func:`cached_attention` computes attention for the new tokens
only, against the cached keys and values. :func:`attention.gpt.generate_text_simple`
with ``use_cache=True`` uses them and returns the same tokens.

A cache built with ``KVCache(max_length=L)`` is *preallocated*: each layer's
keys and values live in one (B, H, L, D) buffer, allocated on the first call
and then written in place, and the position of the next token is a tensor on
the model's device. :meth:`attention.gpt.GPTModel.decode_step` runs a step
against it with the same shapes every time and no host synchronisation, so
the step can run under ``torch.compile`` or in a CUDA graph;
:func:`attention.gpt.generate` uses it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from attention import _checks
from attention.functional import masked_softmax
from attention.multihead import MultiHeadAttention, _sdpa_call
from attention.position import rope_angles

__all__ = ["KVCache", "LayerKV", "cached_attention", "static_attention"]

_LAYOUT = "(B, H, T, D)"


class LayerKV:
    """The keys and values one attention layer has seen so far.

    Attributes:
        keys: (B, H, S, D) for the S cached tokens, or ``None`` when empty;
            H is the layer's ``num_kv_heads`` (fewer than its query heads in
            grouped-query attention), and with ``rope=True`` the keys are
            stored already rotated.
        values: Likewise.
        max_length: L for a preallocated layer, else ``None``. A preallocated
            layer's ``keys`` and ``values`` are its (B, H, L, D) buffers, of
            which the first ``length`` slots are filled.
        position: A preallocated layer's position of the next token, a 0-d
            int64 tensor on the device, shared with its :class:`KVCache`
            (``None`` until the first write).
    """

    def __init__(self, max_length: int | None = None) -> None:
        self.keys: Tensor | None = None
        self.values: Tensor | None = None
        self.max_length = (
            None if max_length is None else _checks.positive_int("max_length", max_length)
        )
        self.position: Tensor | None = None
        self._length = 0  # the tokens a preallocated layer holds, counted on the host
        self._rope: tuple[Tensor, Tensor] | None = None  # cos and sin (L, D / 2), with RoPE

    @property
    def length(self) -> int:
        """S, the number of tokens cached."""
        if self.max_length is not None:
            return self._length
        return 0 if self.keys is None else self.keys.shape[2]

    @property
    def nbytes(self) -> int:
        """Bytes held by the cached keys and values."""
        return sum(t.nbytes for t in (self.keys, self.values) if t is not None)

    def extend(self, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        """Append new (B, H, T, D) keys and values; return all (B, H, S + T, D).

        A preallocated layer writes them into its buffers (no new memory) and
        returns views of the filled part.
        """
        self._check(keys, values)
        if self.max_length is not None:
            start, end = self._length, self._length + keys.shape[2]
            if end > self.max_length:
                raise ValueError(
                    f"the cache holds {start} tokens and keys adds {keys.shape[2]}, more than "
                    f"its max_length={self.max_length}; start a new KVCache"
                )
            stored_keys, stored_values = self._storage(keys)
            stored_keys[:, :, start:end] = keys  # in place: the buffer stays where it is
            stored_values[:, :, start:end] = values
            self._length = end
            return stored_keys[:, :, :end], stored_values[:, :, :end]  # views (B, H, S + T, D)
        if self.keys is None or self.values is None:
            self.keys, self.values = keys, values
        else:
            self.keys = torch.cat((self.keys, keys), dim=2)  # (B, H, S + T, D)
            self.values = torch.cat((self.values, values), dim=2)  # (B, H, S + T, D)
        return self.keys, self.values

    def write(self, keys: Tensor, values: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
        """Write (B, H, T, D) keys and values at ``positions`` (T,) of a preallocated layer.

        Unchecked and in place (``index_copy_``), for the decode step: it
        reads nothing back to the host. Returns the whole (B, H, L, D) buffers;
        the slots not yet written hold zeros, and the caller must block them.
        Does not advance ``length``, a host counter (see :meth:`KVCache.advance`).
        """
        stored_keys, stored_values = self._storage(keys)
        stored_keys.index_copy_(2, positions, keys)
        stored_values.index_copy_(2, positions, values)
        return stored_keys, stored_values

    def _storage(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """The (B, H, L, D) buffers, allocated at the first write like ``like``."""
        if self.max_length is None:
            raise ValueError("this LayerKV was not preallocated: build it with max_length")
        if self.keys is None or self.values is None:
            b, h, _, d = like.shape
            shape = (b, h, self.max_length, d)
            self.keys = torch.zeros(shape, dtype=like.dtype, device=like.device)
            self.values = torch.zeros(shape, dtype=like.dtype, device=like.device)
        return self.keys, self.values

    def rope_tables(self, head_dim: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """The cos and sin of the RoPE angles of positions 0 to L - 1, (L, D / 2), made once."""
        if self._rope is None:
            assert self.max_length is not None
            angles = rope_angles(self.max_length, head_dim).to(device)  # (L, D / 2)
            self._rope = (torch.cos(angles), torch.sin(angles))
        return self._rope

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

    With ``max_length``, the keys and values are preallocated for that many
    tokens and written in place (see the module's docstring):

        >>> cache = KVCache(max_length=6)
        >>> _ = model(torch.tensor([[1, 2, 3]]), cache=cache)
        >>> buffer = cache.layers[0].keys
        >>> _ = model.decode_step(torch.tensor([[4]]), cache)
        >>> cache.advance(1)
        >>> cache.length, cache.layers[0].keys is buffer, tuple(buffer.shape)
        (4, True, (1, 2, 6, 4))

    Args:
        max_length: Preallocate for at most this many tokens (at most the
            model's ``context_length``). Default: ``None``, a cache that grows
            by concatenation.
    """

    def __init__(self, max_length: int | None = None) -> None:
        self.max_length = (
            None if max_length is None else _checks.positive_int("max_length", max_length)
        )
        self.layers: list[LayerKV] = []
        self.length = 0
        self.batch: int | None = None
        # (B, S), True = padding, when the model had a mask; preallocated: (B, L),
        # its slots after the written ones False.
        self.padding: Tensor | None = None
        self.position: Tensor | None = None  # preallocated: S as a 0-d int64 device tensor

    def start(self, num_layers: int, device: torch.device) -> None:
        """Create the layers (and, preallocated, the position tensor) if not done yet."""
        if not self.layers:
            self.layers = [LayerKV(self.max_length) for _ in range(num_layers)]
        if self.max_length is not None and self.position is None:
            self.position = torch.zeros((), dtype=torch.int64, device=device)
            for layer in self.layers:
                layer.position = self.position

    def advance(self, num_tokens: int) -> None:
        """Count ``num_tokens`` more cached tokens on the host (after a decode step).

        :meth:`attention.gpt.GPTModel.decode_step` moves only the position
        tensor on the device, so that a compiled step has no Python counter
        to guard on; whoever calls it counts the tokens here.
        """
        self.length += num_tokens
        for layer in self.layers:
            layer._length += num_tokens

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


def static_attention(
    att: MultiHeadAttention, x: Tensor, kv: LayerKV, *, padding: Tensor | None = None
) -> Tensor:
    """``att`` on new tokens ``x`` against a preallocated cache, with static shapes.

    The maths of :func:`cached_attention`, but the T new tokens sit at
    positions ``kv.position + 0 .. T-1`` (a device tensor, so no host
    synchronisation), their keys and values are written in place into the
    (B, H_kv, L, D) buffers, and the queries attend to all L slots with the
    slots after each query's position blocked (this also blocks the slots
    not written yet). Every shape depends on B, T and L only, never on how
    many tokens are cached, so a compiled step does not recompile as the
    cache fills. Unchecked: the caller (:meth:`attention.gpt.GPTModel.decode_step`)
    guarantees shapes and devices. With ``att.impl == "sdpa"`` the product
    runs in ``F.scaled_dot_product_attention``.

    Args:
        att: The block's :class:`attention.MultiHeadAttention`.
        x: New tokens, shape (B, T, C).
        kv: The layer's preallocated cache (``max_length`` and ``position`` set).
        padding: Optional (B, L) bool, ``True`` where a slot holds padding.

    Returns:
        Output for the new tokens, shape (B, T, C).
    """
    assert kv.position is not None
    assert kv.max_length is not None
    b, num_tokens, _ = x.shape
    positions = kv.position + torch.arange(num_tokens, device=x.device)  # (T,)
    queries = att._split_heads(att.W_query(x))  # (B, H, T, D)
    keys = att._split_heads(att.W_key(x))  # (B, H_kv, T, D)
    values = att._split_heads(att.W_value(x))  # (B, H_kv, T, D)
    if att.rope:  # turn by the angles of the new tokens' positions, read from a table
        cos, sin = kv.rope_tables(att.head_dim, x.device)  # (L, D / 2) each
        cos, sin = cos.index_select(0, positions), sin.index_select(0, positions)  # (T, D / 2)
        queries, keys = _turn(queries, cos, sin), _turn(keys, cos, sin)
    keys, values = kv.write(keys, values, positions)  # (B, H_kv, L, D): every slot
    key_pos = torch.arange(kv.max_length, device=x.device)  # (L,)
    blocked = key_pos[None, :] > positions[:, None]  # (T, L): later or unwritten slots
    if att.window is not None:  # a sliding window also blocks keys `window` or more back
        blocked = blocked | (key_pos[None, :] <= positions[:, None] - att.window)
    if padding is not None:  # padding keys are blocked for every query: (B, 1, T, L)
        blocked = blocked | padding[:, None, None, :]
    if att.impl == "sdpa":
        p = att.dropout.p if att.training else 0.0
        mixed = _sdpa_call(queries, keys, values, ~blocked, dropout_p=p, is_causal=False)
        if padding is not None:  # a padding query may see no key: zero, not NaN
            mixed = mixed.masked_fill(blocked.all(dim=-1, keepdim=True), 0.0)
    else:
        keys, values = att._share_kv(keys), att._share_kv(values)  # (B, H, L, D) each
        scores = queries @ keys.transpose(2, 3)  # (B, H, T, D) @ (B, H, D, L) -> (B, H, T, L)
        weights = att.dropout(masked_softmax(scores / keys.shape[-1] ** 0.5, blocked))
        mixed = weights @ values  # (B, H, T, L) @ (B, H, L, D) -> (B, H, T, D)
    context = mixed.transpose(1, 2).reshape(b, num_tokens, att.d_out)  # (B, T, C)
    out: Tensor = att.out_proj(context)  # (B, T, C)
    return out


def _turn(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """RoPE: turn each feature pair of (B, H, T, D) ``x`` by angles with (T, D / 2) cos, sin.

    The arithmetic of :func:`attention.position.apply_rope`, with the angles given.
    """
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    even, odd = x[..., 0::2], x[..., 1::2]  # (B, H, T, D / 2) each
    return torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1).flatten(-2)


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
