"""A GPT built around the package's multi-head attention (chapters 9 to 11).

The pieces of chapter 4 of the book, building blocks first:

* :class:`GPTConfig`, the model's sizes (defaults: GPT-2 small);
* :class:`LayerNorm` (per token, across features) and :class:`GELU`;
* :class:`FeedForward` (expand 4x, GELU, project back);
* :class:`TransformerBlock` (pre-norm attention and feed-forward, each with a
  shortcut connection);
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

import torch
from torch import Tensor, nn

from attention import _checks
from attention.kv_cache import KVCache, LayerKV, cached_attention
from attention.multihead import MultiHeadAttention

_GPT_LAYOUT = "(B, T) token ids"
_HALF_TYPES = (torch.float16, torch.bfloat16)
_ID_TYPES = (torch.int64, torch.int32)  # the index dtypes nn.Embedding accepts


@dataclass(frozen=True)
class GPTConfig:
    """The sizes of a GPT; the defaults are GPT-2 small (124M).

    Example:
        >>> GPTConfig(n_layers=2).emb_dim
        768
    """

    vocab_size: int = 50257  # number of token ids V (GPT-2's BPE vocabulary)
    context_length: int = 1024  # the most tokens one forward pass may see
    emb_dim: int = 768  # model width C, the size of every token's vector
    n_heads: int = 12  # attention heads H per block; must divide emb_dim
    n_layers: int = 12  # number of transformer blocks
    drop_rate: float = 0.1  # dropout on embeddings, attention weights and shortcuts
    qkv_bias: bool = False  # give the query, key and value projections a bias

    def __post_init__(self) -> None:
        for name in ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers"):
            _checks.positive_int(name, getattr(self, name))
        _checks.probability("drop_rate", self.drop_rate)
        _checks.flag("qkv_bias", self.qkv_bias)
        if self.emb_dim % self.n_heads != 0:
            raise ValueError(
                f"emb_dim must be divisible by n_heads, got emb_dim={self.emb_dim} "
                f"and n_heads={self.n_heads}"
            )


def as_config(cfg: GPTConfig | Mapping[str, object]) -> GPTConfig:
    """Return ``cfg`` as a :class:`GPTConfig`, converting the book's dict.

    Args:
        cfg: A :class:`GPTConfig`, or a dict with exactly its seven keys, such
            as the book's ``GPT_CONFIG_124M``.

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
    missing, unknown = expected - set(cfg), set(cfg) - expected
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

    Attributes:
        scale: Learned gain, shape (C,), starts at ones.
        shift: Learned offset, shape (C,), starts at zeros.

    Example:
        >>> ln = LayerNorm(4)
        >>> ln(torch.tensor([[1.0, 2.0, 3.0, 4.0]])).mean().abs() < 1e-6
        tensor(True)
    """

    def __init__(self, emb_dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.emb_dim = _checks.positive_int("emb_dim", emb_dim)
        self.eps = _checks.positive_number("eps", eps)
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
        # In float16 a variance of 400^2 already overflows (the largest float16
        # is 65504), so half types are normalised in float32, as nn.LayerNorm
        # does, and rounded back once at the end.
        wide = x.float() if x.dtype in _HALF_TYPES else x  # (..., C)
        mean = wide.mean(dim=-1, keepdim=True)  # (..., 1)
        var = wide.var(dim=-1, keepdim=True, unbiased=False)  # (..., 1)
        norm_x = (wide - mean) / torch.sqrt(var + self.eps)  # (..., C)
        out = self.scale * norm_x + self.shift  # (..., C)
        return out.to(torch.promote_types(x.dtype, self.scale.dtype))


class GELU(nn.Module):
    """The GELU activation, in the tanh approximation GPT-2 uses.

    ``0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))``, a smooth ReLU that
    lets small negative inputs through; equals
    ``F.gelu(x, approximate="tanh")``, which computes float16 and bfloat16
    inputs in float32 and rounds the result once; so does this class.

    Example:
        >>> GELU()(torch.tensor([-1.0, 0.0, 1.0])).round(decimals=4)
        tensor([-0.1588,  0.0000,  0.8412])
    """

    def forward(self, x: Tensor) -> Tensor:
        """Apply GELU elementwise.

        Args:
            x: Tensor of any shape, floating point.

        Returns:
            Tensor of the same shape.
        """
        x = _checks.floating("x", x, layout="any shape")
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
        layers: ``nn.Sequential(Linear(C, 4C), GELU(), Linear(4C, C))``.

    Example:
        >>> FeedForward(GPTConfig(emb_dim=8, n_heads=2))(torch.rand(2, 3, 8)).shape
        torch.Size([2, 3, 8])
    """

    def __init__(self, cfg: GPTConfig | Mapping[str, object]) -> None:
        super().__init__()
        c = as_config(cfg).emb_dim
        self.layers = nn.Sequential(nn.Linear(c, 4 * c), GELU(), nn.Linear(4 * c, c))

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

    def __init__(self, cfg: GPTConfig | Mapping[str, object]) -> None:
        super().__init__()
        c = as_config(cfg)
        self.att = MultiHeadAttention(
            d_in=c.emb_dim,
            d_out=c.emb_dim,
            context_length=c.context_length,
            dropout=c.drop_rate,
            num_heads=c.n_heads,
            qkv_bias=c.qkv_bias,
        )
        self.ff = FeedForward(c)
        self.norm1 = LayerNorm(c.emb_dim)
        self.norm2 = LayerNorm(c.emb_dim)
        self.drop_shortcut = nn.Dropout(c.drop_rate)

    def forward(self, x: Tensor, *, kv: LayerKV | None = None) -> Tensor:
        """Run the block on ``x``.

        Args:
            x: Tensor of shape (B, T, C).
            kv: This layer's cache; when given, ``x`` holds only the new tokens
                and attends to the cached ones too. Default: ``None``.

        Returns:
            Tensor of shape (B, T, C).
        """
        shortcut = x
        x = self.norm1(x)  # (B, T, C)
        x = self.att(x) if kv is None else cached_attention(self.att, x, kv)  # (B, T, C)
        x = self.drop_shortcut(x) + shortcut

        shortcut = x
        x = self.ff(self.norm2(x))  # (B, T, C)
        out: Tensor = self.drop_shortcut(x) + shortcut
        return out


class GPTModel(nn.Module):
    """A GPT: embeddings, transformer blocks, a final norm and the output head.

    ``logits = out_head(final_norm(blocks(drop(tok_emb[idx] + pos_emb[0..T-1]))))``.

    Args:
        cfg: A :class:`GPTConfig` or the book's dict (``GPT_CONFIG_124M``).

    Attributes:
        cfg: The :class:`GPTConfig`.
        tok_emb: ``nn.Embedding(vocab_size, C)``, one vector per token id.
        pos_emb: ``nn.Embedding(context_length, C)``, one vector per position.
        drop_emb: ``nn.Dropout`` on the summed embeddings.
        trf_blocks: ``nn.Sequential`` of ``n_layers`` :class:`TransformerBlock`.
        final_norm: :class:`LayerNorm` after the last block.
        out_head: ``nn.Linear(C, vocab_size, bias=False)``, logits per token id.

    Example:
        >>> cfg = GPTConfig(vocab_size=10, context_length=4, emb_dim=8, n_heads=2, n_layers=1)
        >>> GPTModel(cfg)(torch.tensor([[1, 2, 3]])).shape
        torch.Size([1, 3, 10])
    """

    def __init__(self, cfg: GPTConfig | Mapping[str, object]) -> None:
        super().__init__()
        self.cfg = c = as_config(cfg)
        self.tok_emb = nn.Embedding(c.vocab_size, c.emb_dim)
        self.pos_emb = nn.Embedding(c.context_length, c.emb_dim)
        self.drop_emb = nn.Dropout(c.drop_rate)
        self.trf_blocks = nn.Sequential(*[TransformerBlock(c) for _ in range(c.n_layers)])
        self.final_norm = LayerNorm(c.emb_dim)
        self.out_head = nn.Linear(c.emb_dim, c.vocab_size, bias=False)

    def forward(self, in_idx: Tensor, *, cache: KVCache | None = None) -> Tensor:
        """Logits for the next token after every position of ``in_idx``.

        Args:
            in_idx: Token ids, int64 or int32 tensor of shape (B, T), each
                in [0, vocab_size).
            cache: A :class:`attention.kv_cache.KVCache`. When given, ``in_idx`` holds only the
                tokens after the S already cached; they take positions S to
                S + T - 1 and the cache grows by T. Default: ``None``.

        Returns:
            Logits, shape (B, T, vocab_size).
        """
        idx, past = self._check_inputs(in_idx, cache)  # past: S, the tokens already cached
        b, num_tokens = idx.shape
        if cache is not None and not cache.layers:
            cache.layers = [LayerKV() for _ in self.trf_blocks]
        positions = torch.arange(past, past + num_tokens, device=idx.device)  # (T,)
        x = self.tok_emb(idx) + self.pos_emb(positions)  # (B, T, C) + (T, C) -> (B, T, C)
        x = self.drop_emb(x)
        for i, block in enumerate(self.trf_blocks):
            x = block(x, kv=None if cache is None else cache.layers[i])  # (B, T, C)
        if cache is not None:
            cache.length, cache.batch = past + num_tokens, b
        x = self.final_norm(x)  # (B, T, C)
        logits: Tensor = self.out_head(x)  # (B, T, C) @ (C, V) -> (B, T, V)
        return logits

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
            # instead and stops bad ids there: a RuntimeError on the CPU; on a GPU
            # a device-side assert, which, like any, ends the CUDA context.
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
