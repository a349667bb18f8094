"""The KV cache is the budget: bytes of a whole model's cache after T tokens.

While a model generates, each attention layer keeps, for every token seen so
far, what later queries will need of it. At long context this cache, not the
weights, decides how many sequences fit on a GPU. Three numbers set its size.

* **Numbers per token and layer.** MHA, GQA and MQA keep a key and a value for
  each of H_kv key/value heads of width D, ``2 H_kv D`` numbers with H_kv = H,
  H / g or 1 (Shazeer 2019; Ainslie et al. 2023). Multi-head latent attention
  (MLA) keeps one latent of width d_c, from which every head's key and value
  are rebuilt, and one RoPE key of width d_rope that all heads share:
  ``d_c + d_rope`` (DeepSeek-AI 2024a, section 2.1 and table 1).
* **Tokens per layer.** A global layer keeps all T tokens, a local layer with a
  sliding window of W the last ``min(T, W)``
  (:func:`attention.complexity.keys_per_query`). Gemma 3 has five local layers
  per global one; gpt-oss alternates them.
* **Layers with a cache of their own.** With cross-layer attention (Brandon et
  al. 2024) each group of ``share_every`` consecutive layers reads the keys and
  values of its first layer: ``n_layers / share_every`` caches.

So ``bytes = B * dtype_bytes * numbers per token and layer * sum of the tokens
each layer keeps``: :func:`cache_bytes`, equal to
:func:`attention.complexity.kv_cache_bytes` where every layer is alike. The
constants at the end are five published models, checked against their papers
and released ``config.json`` (sources beside each); :func:`as_mha` shows what
each would cost with plain multi-head attention.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from attention import _checks
from attention.complexity import keys_per_query

__all__ = [
    "DEEPSEEK_V3",
    "GEMMA3_27B",
    "GPT_OSS_120B",
    "LLAMA3_8B",
    "PUBLISHED",
    "QWEN3_8B",
    "KVLayout",
    "as_mha",
    "bytes_per_token",
    "cache_bytes",
    "cache_bytes_curve",
    "local_layers",
    "numbers_per_token",
    "tokens_per_layer",
]


@dataclass(frozen=True)
class KVLayout:
    """A model's attention shape, as far as its KV cache sees it; defaults: GPT-2 small.

    Each field is checked when the layout is made. With ``latent_dim`` set the
    layers are MLA, and ``n_kv_heads`` and ``head_dim`` count only for
    :func:`as_mha`.

    Example:
        >>> KVLayout(n_layers=2, n_heads=4, n_kv_heads=1, head_dim=8).n_kv_heads
        1
    """

    name: str = "GPT-2 small"  # a label for tables and charts
    n_layers: int = 12  # attention layers
    n_heads: int = 12  # H, query heads per layer
    n_kv_heads: int | None = None  # H_kv, key/value heads; must divide n_heads; None: H (MHA)
    head_dim: int = 64  # D, the width of one key head (and of one value head)
    latent_dim: int | None = None  # MLA's d_c: one latent per token replaces the K/V heads
    rope_dim: int = 0  # MLA's d_rope: the RoPE key all heads share; needs latent_dim
    window: int | None = None  # W, the span of the local layers; None: every layer global
    local_per_global: int | None = None  # with window: local layers before each global one
    share_every: int = 1  # consecutive layers sharing one cache (cross-layer attention)
    dtype_bytes: int = 4  # bytes per cached number: 4 for float32, 2 for bfloat16

    def __post_init__(self) -> None:
        layers = _checks.positive_int("n_layers", self.n_layers)
        heads = _checks.positive_int("n_heads", self.n_heads)
        if self.n_kv_heads is not None:
            kv_heads = _checks.positive_int("n_kv_heads", self.n_kv_heads)
            if heads % kv_heads:
                raise ValueError(f"n_heads={heads} must be divisible by n_kv_heads={kv_heads}")
        _checks.positive_int("head_dim", self.head_dim)
        if self.latent_dim is not None:
            _checks.positive_int("latent_dim", self.latent_dim)
        if _checks.non_negative_int("rope_dim", self.rope_dim) and self.latent_dim is None:
            raise ValueError(f"rope_dim={self.rope_dim} is MLA's RoPE key and needs latent_dim")
        if self.window is not None:
            _checks.positive_int("window", self.window)
        if self.local_per_global is not None:
            _checks.positive_int("local_per_global", self.local_per_global)
            if self.window is None:
                raise ValueError(f"local_per_global={self.local_per_global} needs a window")
        share = _checks.positive_int("share_every", self.share_every)
        if layers % share:
            raise ValueError(f"share_every={share} must divide n_layers={layers}")
        _checks.positive_int("dtype_bytes", self.dtype_bytes)


def _layout(layout: object) -> KVLayout:
    """Return ``layout`` if it is a :class:`KVLayout`, else raise ``TypeError``."""
    if not isinstance(layout, KVLayout):
        raise TypeError(f"layout must be a KVLayout, got {type(layout).__name__}")
    return layout


def numbers_per_token(layout: KVLayout) -> int:
    """Numbers one layer caches for one token.

    ``2 * H_kv * D`` (a key and a value per key/value head), or
    ``d_c + d_rope`` for MLA (the latent and the shared RoPE key).

    Args:
        layout: The model's attention shape.

    Returns:
        The count, an int.

    Example:
        >>> numbers_per_token(KVLayout(n_heads=4, n_kv_heads=2, head_dim=8))
        32
        >>> numbers_per_token(KVLayout(latent_dim=16, rope_dim=4))
        20
    """
    lay = _layout(layout)
    if lay.latent_dim is not None:
        return lay.latent_dim + lay.rope_dim
    kv_heads = lay.n_heads if lay.n_kv_heads is None else lay.n_kv_heads
    return 2 * kv_heads * lay.head_dim


def local_layers(layout: KVLayout) -> tuple[bool, ...]:
    """Which layers attend within the sliding window, first layer first.

    Without a window none; with one, all, or, given ``local_per_global``,
    that many local layers then one global layer, repeated from the first.

    Args:
        layout: The model's attention shape.

    Returns:
        One bool per layer (``True`` = local), a tuple of length n_layers.

    Example:
        >>> local_layers(KVLayout(n_layers=4, window=8, local_per_global=1))
        (True, False, True, False)
    """
    lay = _layout(layout)
    if lay.window is None:
        return (False,) * lay.n_layers
    if lay.local_per_global is None:
        return (True,) * lay.n_layers
    period = lay.local_per_global + 1  # the local layers, then their global one
    return tuple(layer % period != lay.local_per_global for layer in range(lay.n_layers))


def tokens_per_layer(layout: KVLayout, *, context_length: int) -> tuple[int, ...]:
    """Tokens each layer keeps in a cache of its own after T tokens.

    T for a global layer, ``min(T, W)`` for a local one, and 0 for a layer
    that reads the cache of the first layer of its group of ``share_every``.

    Args:
        layout: The model's attention shape.
        context_length: T, the number of tokens so far.

    Returns:
        One count per layer, a tuple of length n_layers.

    Example:
        >>> tokens_per_layer(KVLayout(n_layers=4, window=8, local_per_global=1,
        ...                           share_every=2), context_length=100)
        (8, 0, 8, 0)
    """
    lay = _layout(layout)
    t = _checks.positive_int("context_length", context_length)
    kept = []
    for layer, local in enumerate(local_layers(lay)):
        if layer % lay.share_every:  # reads the K/V of its group's first layer
            kept.append(0)
        else:
            kept.append(keys_per_query(t, window=lay.window if local else None))
    return tuple(kept)


def cache_bytes(layout: KVLayout, *, context_length: int, batch_size: int = 1) -> int:
    """Bytes of a model's whole KV cache after T tokens, for B sequences.

    ``B * dtype_bytes * numbers_per_token * sum(tokens_per_layer)``.

    Args:
        layout: The model's attention shape.
        context_length: T, the number of tokens so far.
        batch_size: B, the number of sequences. Default: 1.

    Returns:
        The size in bytes, an int.

    Example:
        >>> cache_bytes(KVLayout(), context_length=1024) == 72 * 2**20  # GPT-2 small
        True
    """
    lay = _layout(layout)
    b = _checks.positive_int("batch_size", batch_size)
    tokens = sum(tokens_per_layer(lay, context_length=context_length))
    return b * lay.dtype_bytes * numbers_per_token(lay) * tokens


def bytes_per_token(layout: KVLayout) -> int:
    """Bytes one token adds to one sequence's cache while no window is full.

    ``(n_layers / share_every) * numbers_per_token * dtype_bytes``: the cache
    at T = 1. Past a window the local layers drop a token per new one.

    Args:
        layout: The model's attention shape.

    Returns:
        The size in bytes, an int.

    Example:
        >>> bytes_per_token(KVLayout())  # GPT-2 small in float32: 72 KiB
        73728
    """
    return cache_bytes(layout, context_length=1)


def cache_bytes_curve(
    layout: KVLayout, context_lengths: Sequence[int], *, batch_size: int = 1
) -> list[int]:
    """:func:`cache_bytes` at each of several context lengths, for a chart.

    Args:
        layout: The model's attention shape.
        context_lengths: The values of T, a non-empty list or tuple of positive ints.
        batch_size: B, the number of sequences. Default: 1.

    Returns:
        The sizes in bytes, a list as long as ``context_lengths``.

    Example:
        >>> cache_bytes_curve(KVLayout(n_layers=1, window=2, dtype_bytes=1), [1, 2, 3])
        [1536, 3072, 3072]
    """
    if not isinstance(context_lengths, list | tuple | range):
        kind = type(context_lengths).__name__
        raise TypeError(f"context_lengths must be a list or tuple of ints, got {kind}")
    if not context_lengths:
        raise ValueError("context_lengths must hold at least one context length, got none")
    curve = []
    for i, t in enumerate(context_lengths):
        _checks.positive_int(f"context_lengths[{i}]", t)
        curve.append(cache_bytes(layout, context_length=t, batch_size=batch_size))
    return curve


def as_mha(layout: KVLayout) -> KVLayout:
    """The same model with plain multi-head attention.

    Same layers, query heads, head width and dtype, but no GQA, MLA, window
    or sharing: every query head has its own key and value in every layer.

    Args:
        layout: The model's attention shape.

    Returns:
        A new :class:`KVLayout` named ``"<name> as MHA"``.

    Example:
        >>> as_mha(KVLayout(n_heads=4, n_kv_heads=1, window=8)).n_kv_heads is None
        True
    """
    lay = _layout(layout)
    return dataclasses.replace(lay, name=f"{lay.name} as MHA", n_kv_heads=None,
                               latent_dim=None, rope_dim=0, window=None,
                               local_per_global=None, share_every=1)  # fmt: skip


# Published models, cached in bfloat16 (the dtype of each released config.json).
# Grattafiori et al. 2024, table 3: 32 layers, 32 query heads of width 128, 8 KV heads.
LLAMA3_8B = KVLayout(name="Llama 3 8B", n_layers=32, n_heads=32, n_kv_heads=8, head_dim=128,
                     dtype_bytes=2)  # fmt: skip
# Yang et al. 2025, table 1: 36 layers, 32 query heads, 8 KV heads; head_dim 128 and no
# sliding window (use_sliding_window false) from Qwen/Qwen3-8B's config.json.
QWEN3_8B = KVLayout(name="Qwen3-8B", n_layers=36, n_heads=32, n_kv_heads=8, head_dim=128,
                    dtype_bytes=2)  # fmt: skip
# DeepSeek-AI 2024b, section 4.2, and deepseek-ai/DeepSeek-V3's config.json: 61 layers,
# 128 heads of width d_h = 128, latent d_c = 512 (kv_lora_rank), RoPE key of width 64
# (qk_rope_head_dim). as_mha gives keys and values of width d_h, as DeepSeek-AI 2024a's
# table 1 does (the model's uncompressed keys are 128 + 64 wide).
DEEPSEEK_V3 = KVLayout(name="DeepSeek-V3", n_layers=61, n_heads=128, head_dim=128,
                       latent_dim=512, rope_dim=64, dtype_bytes=2)  # fmt: skip
# Gemma Team 2025, section 2: five local layers (span 1024) per global one, the first layer
# local; google/gemma-3-27b's config.json: 62 layers, 32 query heads, 16 KV heads of width
# 128, sliding_window 1024, sliding_window_pattern 6 (layers 6, 12, ..., 60 global).
GEMMA3_27B = KVLayout(name="Gemma 3 27B", n_layers=62, n_heads=32, n_kv_heads=16, head_dim=128,
                      window=1024, local_per_global=5, dtype_bytes=2)  # fmt: skip
# OpenAI 2025, architecture section: layers alternate between 128-token banded windows and dense
# attention; 64 query heads of width 64, 8 KV heads. openai/gpt-oss-120b's config.json:
# 36 layers, sliding_window 128, layer_types starting with a sliding layer.
GPT_OSS_120B = KVLayout(name="gpt-oss-120b", n_layers=36, n_heads=64, n_kv_heads=8, head_dim=64,
                        window=128, local_per_global=1, dtype_bytes=2)  # fmt: skip
PUBLISHED = (LLAMA3_8B, QWEN3_8B, DEEPSEEK_V3, GEMMA3_27B, GPT_OSS_120B)
