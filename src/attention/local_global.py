"""Local and global layers interleaved, and a KV cache that stops growing (modern attention).

A sliding-window layer (``MultiHeadAttention(..., window=W)``) lets each
query see only the last W tokens, itself included. Its cost per token is then
fixed, and so is its KV cache: tokens that fell out of the window are never
read again. Only a few *global* layers, which see the whole past, keep a
cache that grows with the sequence.

Gemma 3 (Gemma Team 2025, Gemma 3 technical report, section 2, "5:1
interleaving of local/global layers" and "Long context") repeats a block of
5 local layers with a 1024-token window followed by 1 global layer, "starting
with a local layer as the first layer of the model": counting layers from 0,
layer i is global when ``(i + 1) % 6 == 0`` (layers 5, 11, 17, ...), as in
Hugging Face's ``Gemma3TextConfig`` (``sliding_window_pattern=6``). A stack
whose depth is not a multiple of 6 ends with local layers. (Gemma 3 also
gives its global layers a RoPE base of 1M and its local layers 10k; not
modelled here.)

* :func:`layer_windows` gives each layer's window in that pattern.
* :class:`RollingKV` is the cache of one windowed layer: a ring buffer of W
  slots, written in place, so its memory is fixed; :func:`rolling_attention`
  decodes one token against it and :func:`rolling_decode` a whole sequence,
  token by token. They equal the full-sequence windowed layer (tested).
* :func:`window_cost_table` counts attended pairs and cached tokens, full
  against windowed, from :mod:`attention.complexity`'s formulas, and
  :func:`decode_step_seconds` times one decoding step as the sequence grows.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from attention import _checks
from attention.complexity import attended_pairs, keys_per_query
from attention.functional import masked_softmax
from attention.kv_cache import LayerKV, cached_attention
from attention.multihead import MultiHeadAttention

__all__ = [
    "RollingKV",
    "StepSeconds",
    "WindowCost",
    "decode_step_seconds",
    "layer_windows",
    "rolling_attention",
    "rolling_decode",
    "window_cost_table",
]


def layer_windows(
    n_layers: int, *, local_per_global: int = 5, window: int = 1024
) -> list[int | None]:
    """Each layer's sliding window in Gemma 3's local/global pattern; ``None`` = global.

    Layer i (from 0) is global when ``(i + 1) % (local_per_global + 1) == 0``,
    else local with ``window``: every block of ``local_per_global`` local
    layers ends with one global layer.

    Args:
        n_layers: Number of layers N.
        local_per_global: Local layers before each global one; 0 makes every
            layer global. Default: 5 (Gemma 3).
        window: W, the local layers' window in tokens. Default: 1024 (Gemma 3).

    Returns:
        A list of N entries, ``window`` or ``None``.

    Example:
        >>> layer_windows(8, local_per_global=2, window=4)
        [4, 4, None, 4, 4, None, 4, 4]
    """
    n = _checks.positive_int("n_layers", n_layers)
    period = _checks.non_negative_int("local_per_global", local_per_global) + 1
    w = _checks.positive_int("window", window)
    return [None if (i + 1) % period == 0 else w for i in range(n)]


class RollingKV:
    """The keys and values of the last W tokens of one windowed layer, in a ring.

    Token number p (from 0) is written into slot ``p % W``, overwriting the
    token W places before it, which the window no longer shows. The slots are
    not in time order once the ring has wrapped; attention does not mind, as
    softmax-weighted sums do not depend on the order of the keys (positions
    enter only through RoPE, applied before a key is stored).

    Args:
        window: W, the number of slots: the layer's ``window``.

    Attributes:
        keys: (B, H_kv, W, D) buffer, allocated at the first write, or ``None``.
        values: Likewise.
        position: The number of tokens written so far (the next token's position).
    """

    def __init__(self, window: int) -> None:
        self.window = _checks.positive_int("window", window)
        self.keys: Tensor | None = None
        self.values: Tensor | None = None
        self.position = 0

    @property
    def length(self) -> int:
        """The number of filled slots, ``min(position, W)``."""
        return min(self.position, self.window)

    @property
    def nbytes(self) -> int:
        """Bytes held by the key and value buffers: fixed once allocated."""
        return sum(t.nbytes for t in (self.keys, self.values) if t is not None)

    def append(self, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        """Store one token's (B, H_kv, 1, D) key and value; return the filled slots.

        Returns:
            Keys and values (B, H_kv, min(position, W), D): views of the ring.
        """
        k = _checks.floating("keys", keys, ranks=(4,), layout="(B, H_kv, 1, D)")
        v = _checks.floating("values", values, ranks=(4,), layout="(B, H_kv, 1, D)")
        if k.shape[2] != 1 or v.shape != k.shape:
            raise ValueError(
                f"keys and values must both have shape (B, H_kv, 1, D), one token, "
                f"got {tuple(k.shape)} and {tuple(v.shape)}"
            )
        if self.keys is not None:
            for dim, what in ((0, "batch size B"), (1, "number of heads H_kv"), (3, "width D")):
                _checks.same_size("keys", k, dim, "the cached keys", self.keys.shape[dim], what)
        if self.keys is None or self.values is None:
            b, h, _, d = keys.shape
            shape = (b, h, self.window, d)  # (B, H_kv, W, D)
            self.keys = keys.new_zeros(shape)
            self.values = values.new_zeros(shape)
        slot = self.position % self.window
        self.keys[:, :, slot : slot + 1] = keys  # in place: the ring never grows
        self.values[:, :, slot : slot + 1] = values
        self.position += 1
        return self.keys[:, :, : self.length], self.values[:, :, : self.length]


def rolling_attention(att: MultiHeadAttention, x: Tensor, kv: RollingKV) -> Tensor:
    """``att`` for one new token ``x`` against the W tokens held in ``kv``.

    Equals ``att(x_all)[:, -1:]`` for the sequence ``x_all`` that ends with
    ``x`` (tested). The ring holds exactly the keys the window shows, so no
    mask is needed. Uses ``att``'s parameters and options (``num_kv_heads``,
    ``rope``); dropout follows ``att.training``.

    Args:
        att: A causal self-attention layer built with ``window=W``.
        x: The new token, shape (B, 1, C).
        kv: The layer's :class:`RollingKV`, with ``kv.window == att.window``;
            the new key and value are written into it.

    Returns:
        Output for the new token, shape (B, 1, C).
    """
    x = _check_rolling(att, x, kv)
    b = x.shape[0]
    queries = att._split_heads(att.W_query(x))  # (B, H, 1, D)
    keys = att._split_heads(att.W_key(x))  # (B, H_kv, 1, D)
    values = att._split_heads(att.W_value(x))  # (B, H_kv, 1, D)
    queries, keys = att._rotate(queries, keys, offset=kv.position)  # RoPE, if used
    keys, values = kv.append(keys, values)  # (B, H_kv, S, D), S = min(p + 1, W)
    keys, values = att._share_kv(keys), att._share_kv(values)  # (B, H, S, D) each
    scores = queries @ keys.transpose(2, 3)  # (B, H, 1, D) @ (B, H, D, S) -> (B, H, 1, S)
    weights = att.dropout(masked_softmax(scores / keys.shape[-1] ** 0.5, None))
    mixed = weights @ values  # (B, H, 1, S) @ (B, H, S, D) -> (B, H, 1, D)
    mixed = mixed.transpose(1, 2).reshape(b, 1, att.d_out)  # (B, 1, C)
    out: Tensor = att.out_proj(mixed)  # (B, 1, C)
    return out


def rolling_decode(att: MultiHeadAttention, x: Tensor, kv: RollingKV | None = None) -> Tensor:
    """Run ``att`` over ``x`` one token at a time with a :class:`RollingKV`.

    The token-by-token form of ``att(x)`` for a windowed layer (tested equal).

    Args:
        att: A causal self-attention layer built with ``window=W``.
        x: Tokens, shape (B, T, C); T may exceed ``att.context_length``.
        kv: The cache to fill (to inspect it afterwards). Default: ``None``, a
            new ``RollingKV(att.window)``.

    Returns:
        Outputs, shape (B, T, C).

    Example:
        >>> _ = torch.manual_seed(0)
        >>> att = MultiHeadAttention(4, 4, 8, 0.0, num_heads=2, window=3)
        >>> x, kv = torch.randn(1, 8, 4), RollingKV(3)
        >>> torch.allclose(rolling_decode(att, x, kv), att(x), atol=1e-6), kv.length
        (True, 3)
    """
    cache = RollingKV(_windowed_layer(att)) if kv is None else kv
    x = _checks.layer_input(
        x, d_in=att.d_in, ranks=(3,), layout="(B, T, C)", parameter=att.W_query.weight
    )
    if x.shape[1] == 0:
        raise ValueError(f"x must hold at least one token, got shape {tuple(x.shape)}")
    steps = [rolling_attention(att, x[:, t : t + 1], cache) for t in range(x.shape[1])]
    return torch.cat(steps, dim=1)  # T x (B, 1, C) -> (B, T, C)


def _windowed_layer(att: object) -> int:
    """Raise unless ``att`` is a causal, windowed self-attention layer; return its W."""
    if not isinstance(att, MultiHeadAttention):
        raise TypeError(f"att must be a MultiHeadAttention, got {type(att).__name__}")
    if att.window is None or att.d_context != att.d_in:
        raise ValueError(
            "att must be a self-attention layer built with window=W, got "
            f"window={att.window}: a global layer's cache grows, use "
            "attention.kv_cache.LayerKV for it"
        )
    return att.window


def _check_rolling(att: object, x: object, kv: object) -> Tensor:
    """The argument checks of :func:`rolling_attention`; return ``x``."""
    window = _windowed_layer(att)
    assert isinstance(att, MultiHeadAttention)
    if not isinstance(kv, RollingKV):
        raise TypeError(f"kv must be a RollingKV, got {type(kv).__name__}")
    if kv.window != window:
        raise ValueError(f"kv must have the layer's window={window}, got window={kv.window}")
    t = _checks.layer_input(
        x, d_in=att.d_in, ranks=(3,), layout="(B, 1, C)", parameter=att.W_query.weight
    )
    if t.shape[1] != 1:
        raise ValueError(f"x must hold one new token, shape (B, 1, C), got {tuple(t.shape)}")
    if kv.keys is not None:
        _checks.same_size("x", t, 0, "the cache", kv.keys.shape[0], "batch size B")
    return t


@dataclass(frozen=True)
class WindowCost:
    """What one layer costs at one sequence length, full causal against windowed."""

    tokens: int  # T, the sequence length
    full_pairs: int  # (query, key) pairs scored by full causal attention: T (T + 1) / 2
    window_pairs: int  # pairs scored with the window: about T W
    full_cache_tokens: int  # tokens a growing KV cache holds after T tokens: T
    window_cache_tokens: int  # tokens a RollingKV holds: min(T, W)


def window_cost_table(lengths: Sequence[int], window: int) -> list[WindowCost]:
    """Attended pairs and cached tokens of one layer as T grows, full against windowed.

    ``full_pairs = T (T + 1) / 2`` and ``window_pairs = W (W + 1) / 2 + (T - W) W``
    for T > W (:func:`attention.complexity.attended_pairs`); the caches hold T
    and ``min(T, W)`` tokens (:func:`attention.complexity.keys_per_query`).
    Multiply the cached tokens by ``2 * H_kv * D * dtype_bytes`` for bytes,
    as :func:`attention.complexity.kv_cache_bytes` does.

    Args:
        lengths: The sequence lengths T to tabulate, positive ints.
        window: W, the sliding window.

    Returns:
        One :class:`WindowCost` per length, in the order given.

    Example:
        >>> [(r.full_pairs, r.window_pairs) for r in window_cost_table([4, 8], 2)]
        [(10, 7), (36, 15)]
    """
    w = _checks.positive_int("window", window)
    if isinstance(lengths, str | bytes) or not isinstance(lengths, Sequence) or not lengths:
        raise TypeError(f"lengths must be a non-empty sequence of positive ints, got {lengths!r}")
    rows = []
    for t in lengths:
        _checks.positive_int("lengths[i]", t)
        rows.append(
            WindowCost(
                tokens=t,
                full_pairs=attended_pairs(t),
                window_pairs=attended_pairs(t, window=w),
                full_cache_tokens=t,
                window_cache_tokens=keys_per_query(t, window=w),
            )
        )
    return rows


@dataclass(frozen=True)
class StepSeconds:
    """The time of one decoding step after ``tokens`` tokens, three ways (seconds, median)."""

    tokens: int  # T, the tokens already cached when the step runs
    full: float  # a growing cache (LayerKV), full causal attention over T + 1 keys
    masked: float  # the same growing cache, the window applied as a mask over all T + 1 keys
    rolling: float  # a RollingKV of W slots: attention over min(T + 1, W) keys


def decode_step_seconds(
    lengths: Sequence[int],
    window: int,
    *,
    d_model: int = 256,
    num_heads: int = 4,
    batch_size: int = 4,
    repeats: int = 15,
    seed: int = 0,
) -> list[StepSeconds]:
    """Time one layer's decoding step at each length T: full cache, masked window, ring.

    For each T the caches first receive the keys and values of T random
    tokens (projected by the layer, no attention computed), then ``repeats``
    single-token steps are timed with ``time.perf_counter`` and their median
    kept; each step appends its token, as generation does. The three ways
    share one set of weights:

    * ``full``: :func:`attention.kv_cache.cached_attention` over a
      preallocated :class:`attention.kv_cache.LayerKV`, every key read;
    * ``masked``: the same with the layer's ``window`` applied as a mask: the
      same keys are read and scored, and the mask only zeroes the old ones;
    * ``rolling``: :func:`rolling_attention` over a :class:`RollingKV`, which
      holds only the last W tokens.

    A measurement of the machine it runs on, under ``torch.no_grad()``:
    compare the three in one run, never against a fixed time.

    Args:
        lengths: The numbers T of tokens cached before the timed steps, positive ints.
        window: W, the sliding window.
        d_model: C, the layer's width. Default: 256.
        num_heads: H, the number of heads. Default: 4.
        batch_size: B, sequences decoded at once. Default: 4.
        repeats: Steps timed per length, a positive int. Default: 15.
        seed: Seed of the weights and the tokens. Default: 0.

    Returns:
        One :class:`StepSeconds` per length, in the order given.
    """
    w = _checks.positive_int("window", window)
    reps = _checks.positive_int("repeats", repeats)
    if isinstance(lengths, str | bytes) or not isinstance(lengths, Sequence) or not lengths:
        raise TypeError(f"lengths must be a non-empty sequence of positive ints, got {lengths!r}")
    for t in lengths:
        _checks.positive_int("lengths[i]", t)
    longest = max(lengths) + reps
    generator = torch.Generator().manual_seed(seed)  # cpu: the timing runs on the CPU
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        full = MultiHeadAttention(d_model, d_model, longest, 0.0, num_heads=num_heads).eval()
    windowed = MultiHeadAttention(
        d_model, d_model, longest, 0.0, num_heads=num_heads, window=w
    ).eval()
    windowed.load_state_dict(full.state_dict())
    rows = []
    with torch.no_grad():
        for t in lengths:
            x = torch.randn(batch_size, t + reps, d_model, generator=generator)  # (B, T + R, C)
            keys = full._split_heads(full.W_key(x[:, :t]))  # (B, H, T, D)
            values = full._split_heads(full.W_value(x[:, :t]))  # (B, H, T, D)
            ring = RollingKV(w)
            ring.position = max(0, t - w)  # the tokens before these were overwritten anyway
            for p in range(ring.position, t):  # the last W tokens, each in its slot p % W
                ring.append(keys[:, :, p : p + 1], values[:, :, p : p + 1])
            seconds = []
            for att, use_ring in ((full, False), (windowed, False), (windowed, True)):
                kv = LayerKV(max_length=t + reps)
                if not use_ring:
                    kv.extend(keys, values)
                times = []
                for i in range(reps):
                    new = x[:, t + i : t + i + 1]  # (B, 1, C)
                    start = time.perf_counter()
                    if use_ring:
                        rolling_attention(att, new, ring)
                    else:
                        cached_attention(att, new, kv)
                    times.append(time.perf_counter() - start)
                seconds.append(statistics.median(times))
            rows.append(StepSeconds(t, *seconds))
    return rows
