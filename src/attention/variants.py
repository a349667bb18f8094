"""The attention layers of today's models, as choices for chapter 12's trainable model.

Each choice is a small frozen dataclass that builds one attention layer of
model width C with H heads; :class:`attention.induction.InductionConfig`
takes one as its ``attention`` field, and every layer of an
:class:`attention.induction.AttentionOnlyTransformer` is then that kind. So a
reader can train the same model with another attention and compare, while
the book's GPT-2 classes stay as they are:

>>> from attention.induction import InductionConfig
>>> InductionConfig(attention=GQA(n_kv_heads=1)).attention
GQA(n_kv_heads=1)

* :class:`GQA`: grouped-query attention, fewer key/value heads than query
  heads (``n_kv_heads=1`` is multi-query attention).
* :class:`MLA`: multi-head latent attention, keys and values rebuilt from
  one small latent per token (:mod:`attention.latent`).
* :class:`SlidingWindow`: each query sees only the last ``window`` tokens.
* :class:`Sparse`: each query sees the ``top_k`` past tokens a small indexer
  scores highest (:mod:`attention.sparse`).
* :class:`Sinks`: a learned, value-less logit per head joins the softmax
  (:mod:`attention.sinks`).
* :class:`QKNorm`: queries and keys RMS-normalised per head before the dot
  product (:mod:`attention.sinks`).
* :class:`Linear`: attention without the softmax, a recurrence with a fixed
  D x D state per head (:mod:`attention.linear_attention`).
* :class:`DeltaNet`: the gated delta rule, a recurrence that overwrites what
  it stored under a key (:mod:`attention.linear_attention`).

The last two have no attention weights to return: a model built with them
answers ``return_weights=True`` with an error, and
:func:`attention.induction_scores.train_induction` reports NaN for their
previous-token and induction scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from attention import _checks
from attention.latent import LatentConfig, MultiHeadLatentAttention
from attention.linear_attention import GatedDeltaNet, LinearAttention
from attention.multihead import MultiHeadAttention
from attention.sinks import QKNormAttention, SinkAttention
from attention.sparse import SparseAttention

__all__ = ["GQA", "MLA", "DeltaNet", "Linear", "QKNorm", "Sinks", "SlidingWindow", "Sparse"]


@dataclass(frozen=True)
class GQA:
    """Grouped-query attention: ``n_kv_heads`` key/value heads shared by the H query heads."""

    n_kv_heads: int = 1  # H_kv, must divide H; 1 is multi-query attention
    gives_weights: ClassVar[bool] = True  # the layer can return its (B, H, T, T) weights

    def build(self, d_model: int, num_heads: int, context_length: int) -> nn.Module:
        """A :class:`attention.MultiHeadAttention` with ``num_kv_heads=n_kv_heads``, no dropout."""
        kv = _checks.positive_int("n_kv_heads", self.n_kv_heads)
        return MultiHeadAttention(d_model, d_model, context_length, 0.0, num_heads, num_kv_heads=kv)


@dataclass(frozen=True)
class MLA:
    """Multi-head latent attention (DeepSeek-V2/V3): one latent per token rebuilds K and V."""

    kv_latent_dim: int = 8  # d_c, the width of the cached latent
    rope_dim: int = 4  # d_R, the rotary key width shared by the heads (even)
    gives_weights: ClassVar[bool] = True  # the layer can return its (B, H, T, T) weights

    def build(self, d_model: int, num_heads: int, context_length: int) -> nn.Module:
        """A :class:`attention.latent.MultiHeadLatentAttention`, head width C / H."""
        if d_model % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide d_model={d_model}")
        config = LatentConfig(
            d_model=d_model,
            n_heads=num_heads,
            head_dim=d_model // num_heads,
            rope_dim=self.rope_dim,
            kv_latent_dim=self.kv_latent_dim,
            context_length=context_length,
        )
        return MultiHeadLatentAttention(config)


@dataclass(frozen=True)
class SlidingWindow:
    """Sliding-window attention: query i sees keys ``i - window < j <= i``."""

    window: int = 8  # W, the number of most recent tokens a query sees, itself included
    gives_weights: ClassVar[bool] = True  # the layer can return its (B, H, T, T) weights

    def build(self, d_model: int, num_heads: int, context_length: int) -> nn.Module:
        """A :class:`attention.MultiHeadAttention` with ``window=window``, no dropout."""
        w = _checks.positive_int("window", self.window)
        return MultiHeadAttention(d_model, d_model, context_length, 0.0, num_heads, window=w)


@dataclass(frozen=True)
class Sparse:
    """DeepSeek's sparse attention: each query attends to its ``top_k`` best-indexed tokens."""

    top_k: int = 8  # k, the past tokens each query attends to
    index_heads: int = 2  # the indexer's heads
    index_dim: int = 8  # the width of each indexer head
    gives_weights: ClassVar[bool] = True  # the layer can return its (B, H, T, T) weights

    def build(self, d_model: int, num_heads: int, context_length: int) -> nn.Module:
        """A :class:`attention.sparse.SparseAttention` of these sizes."""
        return SparseAttention(
            d_model,
            d_model,
            context_length,
            num_heads,
            top_k=self.top_k,
            index_heads=self.index_heads,
            index_dim=self.index_dim,
        )


@dataclass(frozen=True)
class Sinks:
    """Causal softmax attention with a learned sink logit per head (gpt-oss)."""

    gives_weights: ClassVar[bool] = True  # the layer can return its (B, H, T, T) weights

    def build(self, d_model: int, num_heads: int, context_length: int) -> nn.Module:
        """A :class:`attention.sinks.SinkAttention`."""
        return SinkAttention(d_model, num_heads, context_length)


@dataclass(frozen=True)
class QKNorm:
    """Causal softmax attention with RMS-normalised queries and keys (Qwen3, Gemma 3)."""

    gives_weights: ClassVar[bool] = True  # the layer can return its (B, H, T, T) weights

    def build(self, d_model: int, num_heads: int, context_length: int) -> nn.Module:
        """A :class:`attention.sinks.QKNormAttention`."""
        return QKNormAttention(d_model, num_heads, context_length)


@dataclass(frozen=True)
class Linear:
    """Linear attention (Katharopoulos et al. 2020): no softmax, a D x D state per head."""

    chunk_size: int = 16  # tokens per chunk of the parallel form used for training
    short_conv: int = 0  # K of a causal depthwise conv on q, k, v (ShortConv); 0: none
    gives_weights: ClassVar[bool] = False  # a recurrence: no (B, H, T, T) weights

    def build(self, d_model: int, num_heads: int, context_length: int) -> nn.Module:
        """A :class:`attention.linear_attention.LinearAttention` in its chunked form."""
        return LinearAttention(
            d_model, num_heads, chunk_size=self.chunk_size, short_conv=self.short_conv
        )


@dataclass(frozen=True)
class DeltaNet:
    """The gated delta rule (Yang et al. 2025): a D x D state that overwrites per key."""

    chunk_size: int = 16  # tokens per chunk of the parallel form used for training
    short_conv: int = 0  # K of a causal depthwise conv on q, k, v (ShortConv); 0: none
    alpha_bias: float | None = None  # starting bias of the decay's projection; None: random
    gives_weights: ClassVar[bool] = False  # a recurrence: no (B, H, T, T) weights

    def build(self, d_model: int, num_heads: int, context_length: int) -> nn.Module:
        """A :class:`attention.linear_attention.GatedDeltaNet` in its chunked form."""
        return GatedDeltaNet(
            d_model,
            num_heads,
            chunk_size=self.chunk_size,
            short_conv=self.short_conv,
            alpha_bias=self.alpha_bias,
        )
