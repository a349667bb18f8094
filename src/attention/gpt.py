"""A GPT built around the package's multi-head attention (chapters 9 to 11).

The pieces of chapter 4 of the book, building blocks first:

* :class:`GPTConfig`, the model's sizes (defaults: GPT-2 small);
* :class:`LayerNorm` (per token, across features), :class:`RMSNorm` (its
  variant without the mean and the shift) and :class:`GELU`;
* :class:`FeedForward` (expand 4x, GELU, project back);
* :class:`TransformerBlock` (pre-norm attention and feed-forward, each with a
  shortcut connection) and :class:`PostNormTransformerBlock` (the same
  sub-layers, normalised after each shortcut, as in the original transformer);
* :class:`GPTModel` (embeddings, blocks, final norm, output head);
* :func:`generate_text_simple`, greedy generation, with an optional
  key-value cache (:class:`attention.kv_cache.KVCache`) that gives the same
  tokens.

Modules are created in the book's order and under the book's attribute names,
so a seeded model equals the book's and the book's ``state_dict`` loads.
The shortcut experiment lives in :mod:`attention.shortcut`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attention import _checks
from attention.kv_cache import KVCache, LayerKV, cached_attention, static_attention
from attention.multihead import MultiHeadAttention

_GPT_LAYOUT = "(B, T) token ids"
_HALF_TYPES = (torch.float16, torch.bfloat16)
_ID_TYPES = (torch.int64, torch.int32)  # the index dtypes nn.Embedding accepts
AttnImpl = Literal["manual", "sdpa"]
_OPTIONAL_KEYS = frozenset({"attn_impl"})  # GPTConfig fields the book's dict may leave out


@dataclass(frozen=True)
class GPTConfig:
    """The sizes of a GPT; the defaults are GPT-2 small (124M).

    The first seven fields are the book's ``GPT_CONFIG_124M``. The eighth,
    ``attn_impl``, is not a size but a choice of how every block's attention
    runs: ``"manual"`` (default), the book's readable forward, or ``"sdpa"``,
    the same maths through ``F.scaled_dot_product_attention`` (see
    :class:`attention.MultiHeadAttention`'s ``impl``). ``"sdpa"`` is the fast
    path as a whole: its layer norms and GELUs also call PyTorch's fused
    ``F.layer_norm`` and ``F.gelu`` (see :class:`LayerNorm`'s and
    :class:`GELU`'s ``fused``). The two give the same logits up to rounding;
    ``"sdpa"`` is faster, ``"manual"`` can return the attention weights.

    Example:
        >>> GPTConfig(n_layers=2).emb_dim
        768
        >>> GPTConfig(attn_impl="sdpa").attn_impl
        'sdpa'
    """

    vocab_size: int = 50257  # number of token ids V (GPT-2's BPE vocabulary)
    context_length: int = 1024  # the most tokens one forward pass may see
    emb_dim: int = 768  # model width C, the size of every token's vector
    n_heads: int = 12  # attention heads H per block; must divide emb_dim
    n_layers: int = 12  # number of transformer blocks
    drop_rate: float = 0.1  # dropout on embeddings, attention weights and shortcuts
    qkv_bias: bool = False  # give the query, key and value projections a bias
    attn_impl: AttnImpl = "manual"  # "manual" (readable) or "sdpa" (fused kernel)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers"):
            _checks.positive_int(name, getattr(self, name))
        _checks.probability("drop_rate", self.drop_rate)
        _checks.flag("qkv_bias", self.qkv_bias)
        if self.attn_impl not in ("manual", "sdpa"):
            raise ValueError(f"attn_impl must be 'manual' or 'sdpa', got {self.attn_impl!r}")
        if self.emb_dim % self.n_heads != 0:
            raise ValueError(
                f"emb_dim must be divisible by n_heads, got emb_dim={self.emb_dim} "
                f"and n_heads={self.n_heads}"
            )


def as_config(cfg: GPTConfig | Mapping[str, object]) -> GPTConfig:
    """Return ``cfg`` as a :class:`GPTConfig`, converting the book's dict.

    Args:
        cfg: A :class:`GPTConfig`, or a dict with exactly its keys (``attn_impl``
            may be left out), such as the book's ``GPT_CONFIG_124M``.

    Returns:
        The config; a dict is checked like the dataclass's own fields.

    Example:
        >>> as_config({"vocab_size": 10, "context_length": 4, "emb_dim": 8,
        ...            "n_heads": 2, "n_layers": 1, "drop_rate": 0.0,
        ...            "qkv_bias": False}).n_heads
        2
    """
    if isinstance(cfg, GPTConfig):
        return cfg
    if not isinstance(cfg, Mapping):
        raise TypeError(f"cfg must be a GPTConfig or a dict, got {type(cfg).__name__}")
    expected = {f.name for f in dataclasses.fields(GPTConfig)}
    missing, unknown = expected - set(cfg) - _OPTIONAL_KEYS, set(cfg) - expected
    if missing or unknown:
        raise ValueError(
            f"cfg must have exactly the keys {sorted(expected)}, "
            f"got missing {sorted(missing)} and unknown {sorted(map(str, unknown))}"
        )
    return GPTConfig(**{str(k): v for k, v in cfg.items()})  # type: ignore[arg-type]


class LayerNorm(nn.Module):
    """Layer normalisation: each token's features to mean 0 and variance 1.

    ``scale * (x - mean) / sqrt(var + eps) + shift``, with the mean and the
    *biased* variance (divide by C, not C - 1) taken over the last dimension.
    Equals ``nn.LayerNorm(C, eps)`` with ``weight = scale`` and
    ``bias = shift``. As there, float16 and bfloat16 inputs are normalised in
    float32 and the result is rounded to the input's dtype once: in float16
    the variance of values near 400 would already overflow to ``inf``.

    Args:
        emb_dim: C, the width of each token's vector.
        eps: Added to the variance so a constant vector does not divide by 0.
            Default: ``1e-5``.
        fused: Compute the same normalisation with PyTorch's
            ``F.layer_norm``, one kernel instead of eight operations: equal
            up to rounding, faster, and what a :class:`GPTModel` with
            ``attn_impl="sdpa"`` uses. Default: ``False``, the readable
            arithmetic below.

    Attributes:
        scale: Learned gain, shape (C,), starts at ones.
        shift: Learned offset, shape (C,), starts at zeros.

    Example:
        >>> ln = LayerNorm(4)
        >>> ln(torch.tensor([[1.0, 2.0, 3.0, 4.0]])).mean().abs() < 1e-6
        tensor(True)
    """

    def __init__(self, emb_dim: int, eps: float = 1e-5, *, fused: bool = False) -> None:
        super().__init__()
        self.emb_dim = _checks.positive_int("emb_dim", emb_dim)
        self.eps = _checks.positive_number("eps", eps)
        self.fused = _checks.flag("fused", fused)
        self.scale = nn.Parameter(torch.ones(emb_dim))
        self.shift = nn.Parameter(torch.zeros(emb_dim))

    def forward(self, x: Tensor) -> Tensor:
        """Normalise every token of ``x`` across its features.

        Args:
            x: Tensor of shape (..., C).

        Returns:
            Tensor of the same shape, in the dtype of ``x`` and the parameters
            (float32 if one of them is float32 and the other a half type).
        """
        x = _checks.floating("x", x, layout="(..., C)", min_dims=1)
        _checks.last_dim("x", x, self.emb_dim, "emb_dim")
        if self.fused and x.dtype == self.scale.dtype:
            # The fast path: F.layer_norm also works in float32 for half types.
            return F.layer_norm(x, (self.emb_dim,), self.scale, self.shift, self.eps)
        # In float16 a variance of 400^2 already overflows (the largest float16
        # is 65504), so half types are normalised in float32, as nn.LayerNorm
        # does, and rounded back once at the end.
        wide = x.float() if x.dtype in _HALF_TYPES else x  # (..., C)
        mean = wide.mean(dim=-1, keepdim=True)  # (..., 1)
        var = wide.var(dim=-1, keepdim=True, unbiased=False)  # (..., 1)
        norm_x = (wide - mean) / torch.sqrt(var + self.eps)  # (..., C)
        out = self.scale * norm_x + self.shift  # (..., C)
        return out.to(torch.promote_types(x.dtype, self.scale.dtype))


class RMSNorm(nn.Module):
    """Root-mean-square normalisation: each token's features to RMS 1.

    ``scale * x / sqrt(mean(x^2) + eps)``, the mean of the squares taken over
    the last dimension: :class:`LayerNorm` without the subtraction of the mean
    and without the shift. Since ``mean(x^2) = var + mean^2``, the two agree on
    a vector whose features already have mean 0. Equals
    ``nn.RMSNorm(C, eps)`` with ``weight = scale``; float16 and bfloat16
    inputs are normalised in float32 and rounded to the input's dtype once, as
    :class:`LayerNorm` does.

    Args:
        emb_dim: C, the width of each token's vector.
        eps: Added to the mean of the squares so a zero vector does not divide
            by 0. Default: ``1e-5``.

    Attributes:
        scale: Learned gain, shape (C,), starts at ones.

    Example:
        >>> y = RMSNorm(4)(torch.tensor([[1.0, 2.0, 3.0, 4.0]]))
        >>> round(y.pow(2).mean().sqrt().item(), 4)
        1.0
    """

    def __init__(self, emb_dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.emb_dim = _checks.positive_int("emb_dim", emb_dim)
        self.eps = _checks.positive_number("eps", eps)  # finite and > 0
        self.scale = nn.Parameter(torch.ones(emb_dim))

    def forward(self, x: Tensor) -> Tensor:
        """Rescale every token of ``x`` to root mean square 1, then by ``scale``.

        Args:
            x: Tensor of shape (..., C).

        Returns:
            Tensor of the same shape, in the dtype of ``x`` and the parameters
            (float32 if one of them is float32 and the other a half type).
        """
        x = _checks.floating("x", x, ranks=range(1, 8), layout="(..., C)")
        _checks.last_dim("x", x, self.emb_dim, "emb_dim")
        # As in LayerNorm: in float16 the square of 400 already overflows.
        wide = x.float() if x.dtype in _HALF_TYPES else x  # (..., C)
        mean_square = wide.pow(2).mean(dim=-1, keepdim=True)  # (..., 1)
        out = self.scale * (wide * torch.rsqrt(mean_square + self.eps))  # (..., C)
        return out.to(torch.promote_types(x.dtype, self.scale.dtype))


class GELU(nn.Module):
    """The GELU activation, in the tanh approximation GPT-2 uses.

    ``0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))``, a smooth ReLU that
    lets small negative inputs through; equals
    ``F.gelu(x, approximate="tanh")``, which computes float16 and bfloat16
    inputs in float32 and rounds the result once; so does this class.

    Args:
        fused: Call ``F.gelu(x, approximate="tanh")`` itself, one kernel
            instead of eight operations: equal up to rounding, faster, and
            what a :class:`GPTModel` with ``attn_impl="sdpa"`` uses.
            Default: ``False``, the readable formula.

    Example:
        >>> GELU()(torch.tensor([-1.0, 0.0, 1.0])).round(decimals=4)
        tensor([-0.1588,  0.0000,  0.8412])
    """

    def __init__(self, *, fused: bool = False) -> None:
        super().__init__()
        self.fused = _checks.flag("fused", fused)

    def forward(self, x: Tensor) -> Tensor:
        """Apply GELU elementwise.

        Args:
            x: Tensor of any shape, floating point.

        Returns:
            Tensor of the same shape.
        """
        x = _checks.floating("x", x, layout="any shape")
        if self.fused:
            return F.gelu(x, approximate="tanh")
        # Half types in float32, rounded once at the end, as F.gelu does: in
        # float16, 1 + tanh(...) cancels to 0 for x below about -4, and x^3
        # overflows above 40.
        wide = x.float() if x.dtype in _HALF_TYPES else x
        inner = math.sqrt(2.0 / math.pi) * (wide + 0.044715 * torch.pow(wide, 3))
        return (0.5 * wide * (1 + torch.tanh(inner))).to(x.dtype)


class FeedForward(nn.Module):
    """The position-wise feed-forward network: expand 4x, GELU, project back.

    ``W_2 GELU(W_1 x + b_1) + b_2`` applied to every token separately, with
    ``W_1`` of shape (4C, C) and ``W_2`` of shape (C, 4C).

    Args:
        cfg: A :class:`GPTConfig` or the book's dict; uses ``emb_dim``.

    Attributes:
        layers: ``nn.Sequential(Linear(C, 4C), GELU(), Linear(4C, C))``, the
            GELU ``fused`` with ``attn_impl="sdpa"``.

    Example:
        >>> FeedForward(GPTConfig(emb_dim=8, n_heads=2))(torch.rand(2, 3, 8)).shape
        torch.Size([2, 3, 8])
    """

    def __init__(self, cfg: GPTConfig | Mapping[str, object]) -> None:
        super().__init__()
        config = as_config(cfg)
        c, fused = config.emb_dim, config.attn_impl == "sdpa"  # the fast path: F.gelu
        self.layers = nn.Sequential(nn.Linear(c, 4 * c), GELU(fused=fused), nn.Linear(4 * c, c))

    def forward(self, x: Tensor) -> Tensor:
        """Transform every token of ``x`` on its own.

        Args:
            x: Tensor of shape (B, T, C).

        Returns:
            Tensor of shape (B, T, C).
        """
        first = self.layers[0]
        assert isinstance(first, nn.Linear)
        x = _checks.floating("x", x, layout="(..., C)", min_dims=1)
        _checks.last_dim("x", x, first.in_features, "emb_dim")
        _checks.matches_parameters("x", x, first.weight)
        out: Tensor = self.layers(x)  # (B, T, C) -> (B, T, 4C) -> (B, T, C)
        return out


class TransformerBlock(nn.Module):
    """One pre-norm transformer block: attention, then feed-forward.

    ``x = x + drop(att(norm1(x)))``, then ``x = x + drop(ff(norm2(x)))``: each
    sub-layer sees a normalised input and adds its result to a shortcut.

    Args:
        cfg: A :class:`GPTConfig` or the book's dict.
        n_kv_heads: Key and value heads of the attention (grouped-query
            attention); see :class:`attention.MultiHeadAttention`'s
            ``num_kv_heads``. Default: ``None``, ``n_heads``.
        rope: Rotary position embeddings in the attention. Default: ``False``.
        window: Sliding attention window. Default: ``None``.

    Attributes:
        att: :class:`attention.MultiHeadAttention` (C -> C, H heads, causal).
        ff: :class:`FeedForward`.
        norm1: :class:`LayerNorm` before attention.
        norm2: :class:`LayerNorm` before the feed-forward network.
        drop_shortcut: ``nn.Dropout`` on each sub-layer's output.

    Example:
        >>> cfg = GPTConfig(context_length=4, emb_dim=8, n_heads=2)
        >>> TransformerBlock(cfg)(torch.rand(2, 4, 8)).shape
        torch.Size([2, 4, 8])
    """

    def __init__(
        self,
        cfg: GPTConfig | Mapping[str, object],
        *,
        n_kv_heads: int | None = None,
        rope: bool = False,
        window: int | None = None,
    ) -> None:
        super().__init__()
        c = as_config(cfg)
        self.att = MultiHeadAttention(
            d_in=c.emb_dim,
            d_out=c.emb_dim,
            context_length=c.context_length,
            dropout=c.drop_rate,
            num_heads=c.n_heads,
            qkv_bias=c.qkv_bias,
            impl=c.attn_impl,
            num_kv_heads=n_kv_heads,
            rope=rope,
            window=window,
        )
        self.ff = FeedForward(c)
        fused = c.attn_impl == "sdpa"  # the fast path: F.layer_norm too
        self.norm1 = LayerNorm(c.emb_dim, fused=fused)
        self.norm2 = LayerNorm(c.emb_dim, fused=fused)
        self.drop_shortcut = nn.Dropout(c.drop_rate)

    def forward(
        self, x: Tensor, *, kv: LayerKV | None = None, padding_mask: Tensor | None = None
    ) -> Tensor:
        """Run the block on ``x``.

        Args:
            x: Tensor of shape (B, T, C).
            kv: This layer's cache; when given, ``x`` holds only the new tokens
                and attends to the cached ones too. Default: ``None``.
            padding_mask: Optional bool, ``True`` where a key is padding: (B, T),
                or (B, S + T) for the cached and new tokens with ``kv``.

        Returns:
            Tensor of shape (B, T, C).
        """
        shortcut = x
        x = self.norm1(x)  # (B, T, C)
        x = self._attend(x, kv, padding_mask)  # (B, T, C)
        x = self.drop_shortcut(x) + shortcut

        shortcut = x
        x = self.ff(self.norm2(x))  # (B, T, C)
        out: Tensor = self.drop_shortcut(x) + shortcut
        return out

    def _attend(self, x: Tensor, kv: LayerKV | None, padding_mask: Tensor | None) -> Tensor:
        """The attention sub-layer on ``x``: the whole sequence, or new tokens after ``kv``."""
        if kv is None:
            out: Tensor = self.att(x, padding_mask=padding_mask)  # (B, T, C)
            return out
        if isinstance(kv, LayerKV) and kv.max_length is not None and kv.position is not None:
            # A preallocated cache: static shapes.
            return static_attention(self.att, x, kv, padding=padding_mask)  # (B, T, C)
        return cached_attention(self.att, x, kv, padding_mask=padding_mask)  # (B, T, C)


class PostNormTransformerBlock(TransformerBlock):
    """A post-norm transformer block: normalise after each shortcut.

    ``x = norm1(x + drop(att(x)))``, then ``x = norm2(x + drop(ff(x)))``, the
    arrangement of the original transformer; :class:`TransformerBlock`
    (pre-norm, as GPT-2) normalises each sub-layer's input instead. The
    sub-layers, their names and their initialisation are those of
    :class:`TransformerBlock`, so the same seed gives the same weights and a
    pre-norm block's ``state_dict`` loads: the two differ only in where the
    norms sit.

    Args:
        cfg: A :class:`GPTConfig` or the book's dict.

    Example:
        >>> cfg = GPTConfig(context_length=4, emb_dim=8, n_heads=2)
        >>> PostNormTransformerBlock(cfg)(torch.rand(2, 4, 8)).shape
        torch.Size([2, 4, 8])
    """

    def forward(
        self, x: Tensor, *, kv: LayerKV | None = None, padding_mask: Tensor | None = None
    ) -> Tensor:
        """Run the block on ``x``.

        Args:
            x: Tensor of shape (B, T, C).
            kv: This layer's cache; when given, ``x`` holds only the new tokens
                and attends to the cached ones too. Default: ``None``.
            padding_mask: Optional bool, ``True`` where a key is padding: (B, T),
                or (B, S + T) for the cached and new tokens with ``kv``.

        Returns:
            Tensor of shape (B, T, C), every token normalised by ``norm2``.
        """
        att = self._attend(x, kv, padding_mask)  # (B, T, C)
        x = self.norm1(x + self.drop_shortcut(att))  # (B, T, C)
        out: Tensor = self.norm2(x + self.drop_shortcut(self.ff(x)))  # (B, T, C)
        return out


class GPTModel(nn.Module):
    """A GPT: embeddings, transformer blocks, a final norm and the output head.

    ``logits = out_head(final_norm(blocks(drop(tok_emb[idx] + pos_emb[0..T-1]))))``.

    Args:
        cfg: A :class:`GPTConfig` or the book's dict (``GPT_CONFIG_124M``).
        n_kv_heads: Key and value heads per attention layer, for grouped-query
            attention (each KV cache layer then stores ``n_kv_heads`` heads,
            not ``n_heads``). Default: ``None``, ``n_heads`` as in GPT-2.
        rope: Rotary position embeddings in every attention layer instead of
            the learned ``pos_emb``. Default: ``False``.
        window: Sliding-window attention: each token sees at most the last
            ``window`` tokens. Default: ``None``.

    These three options are keyword arguments, not :class:`GPTConfig` fields,
    so that the config stays the book's seven settings plus ``attn_impl``
    (which every block's attention gets as its ``impl``).

    Attributes:
        cfg: The :class:`GPTConfig`.
        tok_emb: ``nn.Embedding(vocab_size, C)``, one vector per token id.
        pos_emb: ``nn.Embedding(context_length, C)``, one vector per position;
            ``None`` with ``rope=True``.
        drop_emb: ``nn.Dropout`` on the summed embeddings.
        trf_blocks: ``nn.Sequential`` of ``n_layers`` :class:`TransformerBlock`.
        final_norm: :class:`LayerNorm` after the last block.
        out_head: ``nn.Linear(C, vocab_size, bias=False)``, logits per token id.

    Example:
        >>> cfg = GPTConfig(vocab_size=10, context_length=4, emb_dim=8, n_heads=2, n_layers=1)
        >>> GPTModel(cfg)(torch.tensor([[1, 2, 3]])).shape
        torch.Size([1, 3, 10])
    """

    def __init__(
        self,
        cfg: GPTConfig | Mapping[str, object],
        *,
        n_kv_heads: int | None = None,
        rope: bool = False,
        window: int | None = None,
    ) -> None:
        super().__init__()
        self.cfg = c = as_config(cfg)
        self.tok_emb = nn.Embedding(c.vocab_size, c.emb_dim)
        # With rope=True the attention layers rotate queries and keys instead.
        self.pos_emb = (
            None if _checks.flag("rope", rope) else nn.Embedding(c.context_length, c.emb_dim)
        )
        self.drop_emb = nn.Dropout(c.drop_rate)
        self.trf_blocks = nn.Sequential(
            *[
                TransformerBlock(c, n_kv_heads=n_kv_heads, rope=rope, window=window)
                for _ in range(c.n_layers)
            ]
        )
        self.final_norm = LayerNorm(c.emb_dim, fused=c.attn_impl == "sdpa")
        self.out_head = nn.Linear(c.emb_dim, c.vocab_size, bias=False)

    def forward(
        self, in_idx: Tensor, *, padding_mask: Tensor | None = None, cache: KVCache | None = None
    ) -> Tensor:
        """Logits for the next token after every position of ``in_idx``.

        Args:
            in_idx: Token ids, int64 or int32 tensor of shape (B, T), each
                in [0, vocab_size).
            padding_mask: Optional (B, T) bool, ``True`` where a token is
                padding (the package's polarity, as ``nn.MultiheadAttention``'s
                ``key_padding_mask``; Hugging Face's ``attention_mask`` is the
                opposite, 1 = real token). Padding is never attended to, and
                each sequence's real tokens take positions 0, 1, 2, ... as if
                it ran alone, so prompts of different lengths batch, padded on
                the left or the right. The logits at padding are meaningless.
                With a cache, the mask of the cached tokens is kept, and new
                tokens without a mask count as real. Default: ``None``.
            cache: A :class:`attention.kv_cache.KVCache`. When given, ``in_idx`` holds only the
                tokens after the S already cached; they take positions S to
                S + T - 1 and the cache grows by T. Default: ``None``.

        Returns:
            Logits, shape (B, T, vocab_size).
        """
        idx, past = self._check_inputs(in_idx, cache)  # past: S, the tokens already cached
        b, num_tokens = idx.shape
        if cache is not None and cache.max_length is not None:  # preallocated
            self._write_padding(idx, padding_mask, cache, past)
            step_logits = self.decode_step(idx, cache)  # (B, T, V)
            cache.advance(num_tokens)
            cache.batch = b
            return step_logits
        if cache is not None and not cache.layers:
            cache.layers = [LayerKV() for _ in self.trf_blocks]
        padding = self._padding(idx, padding_mask, cache)  # (B, S + T), True = padding, or None
        positions = torch.arange(past, past + num_tokens, device=idx.device)  # (T,)
        if padding is not None:  # count each sequence's positions from its first real token
            positions = ((~padding).cumsum(dim=1) - 1).clamp(min=0)[:, past:]  # (B, T)
        x = self.tok_emb(idx)  # (B, T, C)
        if self.pos_emb is not None:  # learned positions (not with rope=True)
            x = x + self.pos_emb(positions)  # (B, T, C) + (T, C) or (B, T, C) -> (B, T, C)
        x = self.drop_emb(x)
        for i, block in enumerate(self.trf_blocks):
            kv = None if cache is None else cache.layers[i]
            x = block(x, kv=kv, padding_mask=padding)  # (B, T, C)
        if cache is not None:
            cache.length, cache.batch, cache.padding = past + num_tokens, b, padding
        x = self.final_norm(x)  # (B, T, C)
        logits: Tensor = self.out_head(x)  # (B, T, C) @ (C, V) -> (B, T, V)
        return logits

    def decode_step(self, idx: Tensor, cache: KVCache, *, last_only: bool = False) -> Tensor:
        """Logits for (B, T) new ids after a preallocated cache: the fast, unchecked step.

        The step :func:`generate` runs once per new token. It checks nothing
        (``idx`` must hold ids in range, of the cache's batch, with room left
        in the cache: a checked :meth:`forward` with ``cache=`` guarantees that
        for the tokens it feeds, and generated ids are in range by
        construction) and never reads a tensor back to the host: the tokens'
        positions come from ``cache.position``, a device tensor this step
        advances by T, and every shape depends only on B, T and the cache's
        ``max_length``. So it can run under ``torch.compile(fullgraph=True)``
        or be captured in a CUDA graph. It leaves the host counter
        ``cache.length`` alone (a compiled step would recompile for each new
        value); call ``cache.advance(T)`` after it, as :func:`generate` and
        :meth:`forward` do.

        Args:
            idx: New token ids, (B, T), int64 or int32, on the model's device.
            cache: A :class:`attention.kv_cache.KVCache` built with ``max_length``.
            last_only: Compute the logits of the last token only, (B, 1, V):
                all generation needs after a prompt, and the output head is
                the largest matrix product of a small GPT. Default: ``False``.

        Returns:
            Logits, shape (B, T, vocab_size), or (B, 1, vocab_size) with ``last_only``.
        """
        if cache.max_length is None:
            raise ValueError("decode_step needs a preallocated cache: KVCache(max_length=...)")
        cache.start(len(self.trf_blocks), idx.device)
        position = cache.position
        assert position is not None
        num_tokens = idx.shape[1]
        positions = position + torch.arange(num_tokens, device=idx.device)  # (T,)
        x = self.tok_emb(idx)  # (B, T, C)
        if self.pos_emb is not None:  # learned positions: count from each first real token
            if cache.padding is None:
                x = x + self.pos_emb(positions)  # (B, T, C) + (T, C)
            else:
                counted = ((~cache.padding).cumsum(dim=1) - 1).clamp(min=0)  # (B, L)
                x = x + self.pos_emb(counted.index_select(1, positions))  # + (B, T, C)
        x = self.drop_emb(x)
        for block, kv in zip(self.trf_blocks, cache.layers, strict=True):
            x = block(x, kv=kv, padding_mask=cache.padding)  # (B, T, C)
        position.add_(num_tokens)  # in place: the same tensor next step
        if last_only:
            x = x[:, -1:]  # (B, 1, C)
        x = self.final_norm(x)  # (B, T, C)
        logits: Tensor = self.out_head(x)  # (B, T, V)
        return logits

    def _write_padding(
        self, idx: Tensor, padding_mask: Tensor | None, cache: KVCache, past: int
    ) -> None:
        """Record a (B, T) ``padding_mask`` in a preallocated cache's (B, L) padding."""
        if padding_mask is None:
            return  # new tokens without a mask are real: the buffer's slots start False
        b, num_tokens = idx.shape
        new = _checks.padding_mask("padding_mask", padding_mask, b, num_tokens, idx.device)
        if cache.padding is None:
            assert cache.max_length is not None
            cache.padding = torch.zeros(b, cache.max_length, dtype=torch.bool, device=idx.device)
        cache.padding[:, past : past + num_tokens] = new

    def _padding(
        self, idx: Tensor, padding_mask: Tensor | None, cache: KVCache | None
    ) -> Tensor | None:
        """The padding of every key, cached and new: (B, S + T) bool, or ``None``."""
        b, num_tokens = idx.shape
        cached = None if cache is None else cache.padding  # (B, S) or None
        if padding_mask is None and cached is None:
            return None
        if padding_mask is None:
            new = torch.zeros(b, num_tokens, dtype=torch.bool, device=idx.device)  # all real
        else:
            new = _checks.padding_mask("padding_mask", padding_mask, b, num_tokens, idx.device)
        if cached is None and cache is not None and cache.length > 0:  # cached: all real
            cached = torch.zeros(b, cache.length, dtype=torch.bool, device=idx.device)
        return new if cached is None else torch.cat((cached, new), dim=1)  # (B, S + T)

    def _check_inputs(self, in_idx: object, cache: object) -> tuple[Tensor, int]:
        """Check ``in_idx`` and ``cache``; return the ids and S, the tokens cached."""
        if cache is not None and not isinstance(cache, KVCache):
            raise TypeError(f"cache must be a KVCache or None, got {type(cache).__name__}")
        past = 0 if cache is None else cache.length
        idx = self._check_ids("in_idx", in_idx)
        if cache is not None and cache.batch not in (None, idx.shape[0]):
            raise ValueError(
                f"in_idx has batch size {idx.shape[0]}, but the cache holds batch size "
                f"{cache.batch}; start a new KVCache for another batch"
            )
        context_length = self.cfg.context_length
        if cache is not None and cache.max_length is not None:
            if cache.max_length > context_length:
                raise ValueError(
                    f"the cache's max_length={cache.max_length} is more than the model's "
                    f"context_length={context_length}"
                )
            if past + idx.shape[1] > cache.max_length:
                raise ValueError(
                    f"in_idx has {idx.shape[1]} tokens (plus {past} cached), more than the "
                    f"cache's max_length={cache.max_length}; start a new KVCache"
                )
        if past + idx.shape[1] > context_length:
            if past >= context_length:
                raise ValueError(
                    f"the cache already holds context_length={context_length} tokens, so "
                    f"in_idx cannot add {idx.shape[1]} more; start a new KVCache"
                )
            raise ValueError(
                f"in_idx has {idx.shape[1]} tokens (plus {past} cached), more than "
                f"context_length={context_length}; keep only the last "
                f"{context_length - past} tokens"
            )
        return idx, past

    def _check_ids(self, name: str, ids: object) -> Tensor:
        """Check token ids ``ids`` (the argument ``name``) against the model; return them."""
        idx = _token_ids(name, ids)
        if idx.dtype not in _ID_TYPES:
            raise TypeError(
                f"{name} must hold integer token ids, got dtype {idx.dtype}; the embedding "
                f"takes torch.int64 or torch.int32 (convert with {name}.long())"
            )
        if idx.device != self.tok_emb.weight.device:
            raise ValueError(
                f"{name} must be on the model's device {self.tok_emb.weight.device}, "
                f"got {idx.device}"
            )
        vocab = self.cfg.vocab_size
        in_range = ((idx >= 0) & (idx < vocab)).all()  # 0-d bool tensor, still on the device
        if _checks.compiling():
            # Reading in_range on the host would break a fullgraph=True graph (and
            # stall a GPU on every call). The assert is traced into the graph
            # instead and stops bad ids there: a RuntimeError on the CPU (torch
            # 2.6's compiler may stop first at its own bounds check of the
            # embedding, also a RuntimeError); on a GPU a device-side assert,
            # which, like any, ends the CUDA context.
            # (torch._assert_async calls this aten op; torch's stubs do not
            # export torch._assert_async itself.)
            message = f"{name} must hold ids in [0, vocab_size={vocab})"
            torch.ops.aten._assert_async.msg(in_range, message)
        elif not in_range:  # eager: one host sync; the range is read only to report it
            low, high = torch.stack(torch.aminmax(idx)).tolist()
            raise ValueError(
                f"{name} must hold ids in [0, vocab_size={vocab}), got values from {low} to {high}"
            )
        return idx


def _token_ids(name: str, ids: object) -> Tensor:
    """Return ``ids`` if it is a non-empty (B, T) tensor of integers, else raise."""
    idx = _checks.tensor(name, ids)
    if idx.dtype == torch.bool or idx.is_floating_point() or idx.is_complex():
        raise TypeError(f"{name} must hold integer token ids, got dtype {idx.dtype}")
    if idx.dim() != 2:
        raise ValueError(
            f"{name} must have shape {_GPT_LAYOUT} (2-D), got {idx.dim()} dimensions "
            f"with shape {tuple(idx.shape)}; add a batch dimension with {name}[None]"
        )
    if idx.shape[0] == 0 or idx.shape[1] == 0:
        raise ValueError(
            f"{name} must hold at least one sequence of at least one token, "
            f"got shape {tuple(idx.shape)}"
        )
    return idx


def _check_generation(
    model: object, idx: object, max_new_tokens: object, context_size: object, use_cache: object
) -> Tensor:
    """The argument checks of :func:`generate_text_simple`; return ``idx``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _checks.non_negative_int("max_new_tokens", max_new_tokens)
    size = _checks.positive_int("context_size", context_size)
    if _checks.flag("use_cache", use_cache) and not isinstance(model, GPTModel):
        raise TypeError(f"use_cache=True needs a GPTModel, got {type(model).__name__}")
    if not isinstance(model, GPTModel):
        return _token_ids("idx", idx)
    if size > model.cfg.context_length:
        raise ValueError(
            f"context_size must be at most the model's context_length="
            f"{model.cfg.context_length}, got {size}"
        )
    return model._check_ids("idx", idx)


@torch.no_grad()
def generate_text_simple(
    model: nn.Module,
    idx: Tensor,
    max_new_tokens: int,
    context_size: int,
    *,
    use_cache: bool = False,
) -> Tensor:
    """Greedy generation: append the most likely next token, again and again.

    Each step runs ``argmax(model(idx[:, -context_size:])[:, -1])`` and
    appends it. The model's mode is left alone: call ``model.eval()`` first,
    or dropout makes the choices random.

    With ``use_cache=True`` a :class:`attention.kv_cache.KVCache` keeps every layer's keys and
    values, so each step feeds only the newest token, and the tokens are the
    same as without it. While the sequence fits in ``context_size`` the cache
    grows; once it is longer, the window slides, every token's position
    changes, and each step rebuilds the cache from the last ``context_size``
    tokens (still exact, but no faster than no cache).

    Args:
        model: A :class:`GPTModel` (any module mapping (B, T) ids to
            (B, T, V) logits without the cache).
        idx: Starting ids, integer tensor of shape (B, T).
        max_new_tokens: Number of tokens to append (0 returns ``idx``).
        context_size: The most tokens the model sees per step; for a
            :class:`GPTModel`, at most its ``context_length``.
        use_cache: Use a key-value cache; needs a :class:`GPTModel`.
            Default: ``False``.

    Returns:
        Ids of shape (B, T + max_new_tokens), starting with ``idx``.

    Example:
        >>> cfg = GPTConfig(vocab_size=10, context_length=8, emb_dim=8, n_heads=2, n_layers=1)
        >>> model = GPTModel(cfg).eval()
        >>> generate_text_simple(model, torch.tensor([[1, 2]]), 3, 8).shape
        torch.Size([1, 5])
    """
    idx = _check_generation(model, idx, max_new_tokens, context_size, use_cache)
    cache: KVCache | None = None
    for _ in range(max_new_tokens):
        window = idx[:, -context_size:]  # (B, T') with T' <= context_size
        if not use_cache:
            logits = model(window)  # (B, T', V)
        elif cache is None or idx.shape[1] > context_size:
            cache = KVCache()  # first step, or the window slid: positions changed
            logits = model(window, cache=cache)  # (B, T', V)
        else:
            logits = model(idx[:, cache.length :], cache=cache)  # (B, 1, V)
        next_id = logits[:, -1, :].argmax(dim=-1, keepdim=True)  # (B, V) -> (B, 1)
        idx = torch.cat((idx, next_id), dim=1)  # (B, T + 1)
    return idx


@torch.no_grad()
def generate(
    model: GPTModel,
    idx: Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    padding_mask: Tensor | None = None,
) -> Tensor:
    """Generate tokens greedily or by sampling, with the options people expect.

    :func:`generate_text_simple` is the book's greedy loop; this is the same
    loop with the usual ways of choosing the next token. With the defaults it
    is greedy and returns exactly the ids of ``generate_text_simple`` (with
    ``context_size`` the model's context length). With ``temperature > 0``
    it samples from ``softmax(logits / temperature)``, after keeping only the
    ``top_k`` most likely tokens and then the smallest set of tokens whose
    probabilities add up to ``top_p`` (nucleus sampling), as Hugging Face's
    ``generate`` orders the two filters.

    Args:
        model: The :class:`GPTModel`; put it in eval mode first.
        idx: Starting ids, (B, T), dtype long or int.
        max_new_tokens: At most this many tokens are appended.
        temperature: 0 (default) for greedy choice; > 0 to sample, higher
            meaning flatter.
        top_k: Sample only among the k most likely tokens. Default: ``None``.
        top_p: Sample only among the most likely tokens whose probabilities
            add up to at least p, in (0, 1]. Default: ``None``.
        eos_id: An end-of-text id: a sequence that produced it gets only
            ``eos_id`` after it, and generation stops once every sequence has.
            Default: ``None``.
        generator: The random generator for sampling, for reproducible
            draws. Default: ``None`` (the global one).
        use_cache: Feed only the new token at each step, with a
            :class:`attention.kv_cache.KVCache`. Default: ``True``.
        padding_mask: Optional (B, T) bool, ``True`` where ``idx`` is
            padding, for prompts of different lengths in one batch (see
            :meth:`GPTModel.forward`); pad on the left, so that every
            sequence's new tokens follow its last real one. Default: ``None``.

    Returns:
        Ids (B, T + n) with n <= ``max_new_tokens``, starting with ``idx``.

    Example:
        >>> cfg = GPTConfig(vocab_size=10, context_length=8, emb_dim=8, n_heads=2, n_layers=1)
        >>> model = GPTModel(cfg).eval()
        >>> ids = torch.tensor([[1, 2]])
        >>> generate(model, ids, 3).tolist() == generate_text_simple(model, ids, 3, 8).tolist()
        True
    """
    if not isinstance(model, GPTModel):
        raise TypeError(f"model must be a GPTModel, got {type(model).__name__}")
    idx = model._check_ids("idx", idx)
    generator = _checks.generator_on("generator", generator, idx.device)
    _checks.non_negative_int("max_new_tokens", max_new_tokens)
    if isinstance(temperature, bool) or not isinstance(temperature, int | float):
        raise TypeError(f"temperature must be a number >= 0, got {type(temperature).__name__}")
    if not (temperature >= 0 and math.isfinite(temperature)):
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature}")
    k = None if top_k is None else _checks.positive_int("top_k", top_k)
    p = None if top_p is None else _checks.positive_number("top_p", top_p)
    if p is not None and p > 1:
        raise ValueError(f"top_p must be in (0, 1], got {p}")
    if (k is not None or p is not None) and temperature == 0:
        raise ValueError("top_k and top_p filter a sampled choice: give a temperature > 0 too")
    eos = None if eos_id is None else _checks.non_negative_int("eos_id", eos_id)
    _checks.flag("use_cache", use_cache)
    context = model.cfg.context_length
    pad = None
    if padding_mask is not None:
        b, t = idx.shape
        pad = _checks.padding_mask("padding_mask", padding_mask, b, t, idx.device)

    if use_cache and max_new_tokens > 0 and idx.shape[1] + max_new_tokens <= context:
        return _generate_preallocated(
            model, idx, max_new_tokens, pad, temperature, k, p, eos, generator
        )
    cache = KVCache() if use_cache else None
    done = torch.zeros(idx.shape[0], dtype=torch.bool, device=idx.device)  # (B,)
    for _ in range(max_new_tokens):
        window_pad = None if pad is None else pad[:, -context:]  # (B, T') or None
        if cache is not None and idx.shape[1] > context:
            cache = KVCache()  # the window slid: every position changed
        if cache is None:
            logits = model(idx[:, -context:], padding_mask=window_pad)
        elif cache.length == 0:
            logits = model(idx[:, -context:], padding_mask=window_pad, cache=cache)
        else:
            logits = model(idx[:, cache.length :], cache=cache)  # new tokens: not padding
        last = logits[:, -1, :]  # (B, V)
        if temperature == 0:
            next_id = last.argmax(dim=-1, keepdim=True)  # (B, 1)
        else:
            probs = torch.softmax(_filtered(last / temperature, k, p), dim=-1)  # (B, V)
            next_id = torch.multinomial(probs, 1, generator=generator)  # (B, 1)
        if eos is not None:
            next_id = next_id.masked_fill(done[:, None], eos)  # finished: eos again
            done |= next_id[:, 0] == eos
        idx = torch.cat((idx, next_id), dim=1)  # (B, T + 1)
        if pad is not None:
            pad = torch.cat((pad, pad.new_zeros(pad.shape[0], 1)), dim=1)  # (B, T + 1)
        if eos is not None and bool(done.all()):
            break
    return idx


_EOS_CHECK_EVERY = 16  # steps between the host reads of "has every sequence ended?"


def _generate_preallocated(
    model: GPTModel,
    idx: Tensor,
    max_new_tokens: int,
    pad: Tensor | None,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    eos: int | None,
    generator: torch.Generator | None,
) -> Tensor:
    """:func:`generate` with a preallocated cache, when every token fits in the context.

    The prompt, checked once by :func:`generate` (one host read for its id
    range), is fed in one call that computes the last token's logits only;
    then each step feeds the chosen id to :meth:`GPTModel.decode_step` and
    writes it into a preallocated output, so
    a greedy step allocates no cache and reads nothing back to the host. With
    ``eos_id`` the host reads whether every sequence has ended only every
    ``_EOS_CHECK_EVERY`` steps, and once at the end to cut the output where
    the last sequence ended, so the result equals the step-by-step loop's.
    """
    b, prompt_length = idx.shape
    total = prompt_length + max_new_tokens
    cache = KVCache(max_length=total)
    out = idx.new_empty(b, total)  # (B, T + max_new_tokens), filled as we go
    out[:, :prompt_length] = idx
    # generate() has checked idx (the one host read of the id range) and pad.
    model._write_padding(idx, pad, cache, 0)
    logits = model.decode_step(idx, cache, last_only=True)[:, -1, :]  # (B, V)
    cache.advance(prompt_length)
    done = torch.zeros(b, dtype=torch.bool, device=idx.device)  # (B,)
    all_done = torch.zeros(max_new_tokens, dtype=torch.bool, device=idx.device)  # per step
    steps = max_new_tokens
    for step in range(max_new_tokens):
        if temperature == 0:
            next_id = logits.argmax(dim=-1, keepdim=True)  # (B, 1)
        else:
            probs = torch.softmax(_filtered(logits / temperature, top_k, top_p), dim=-1)
            next_id = torch.multinomial(probs, 1, generator=generator)  # (B, 1)
        next_id = next_id.to(out.dtype)
        if eos is not None:
            next_id = next_id.masked_fill(done[:, None], eos)  # finished: eos again
            done |= next_id[:, 0] == eos
            all_done[step] = done.all()
        out[:, prompt_length + step] = next_id[:, 0]
        if step + 1 == max_new_tokens:
            break
        if eos is not None and (step + 1) % _EOS_CHECK_EVERY == 0 and bool(done.all()):
            steps = step + 1  # the host read, every _EOS_CHECK_EVERY steps
            break
        logits = model.decode_step(next_id, cache)[:, -1, :]  # (B, V)
        cache.advance(1)
    if eos is not None:  # one host read: cut after the step where the last sequence ended
        ended = all_done[:steps]
        if bool(ended.any()):
            steps = int(ended.int().argmax()) + 1
    return out[:, : prompt_length + steps]


def _filtered(logits: Tensor, top_k: int | None, top_p: float | None) -> Tensor:
    """Logits (B, V) with every token outside the top-k and the top-p nucleus at -inf."""
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]  # (B, 1): the k-th largest
        logits = logits.masked_fill(logits < kth, -torch.inf)
    if top_p is not None:
        sorted_logits, order = logits.sort(dim=-1, descending=True)  # (B, V)
        cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)  # (B, V)
        # Drop a token when the ones before it already reach top_p; the first always stays.
        drop_sorted = (cumulative - torch.softmax(sorted_logits, dim=-1)) >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
        logits = logits.masked_fill(drop, -torch.inf)
    return logits
