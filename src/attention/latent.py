"""Multi-head latent attention (MLA): a small KV cache from one shared latent.

A KV cache for multi-head attention holds ``2 * H * D`` numbers per token and
layer. MLA (DeepSeek-AI 2024, DeepSeek-V2 report, section 2.1; kept in
DeepSeek-AI 2024, DeepSeek-V3 report, section 2.1.1) caches instead one
low-rank latent ``c_kv = x W_dkv`` of width d_c, from which every head
rebuilds its keys ``k_nope = c_kv W_uk`` and values ``v = c_kv W_uv``. Were
those keys rotated by RoPE, a rotation that depends on the key's position
would sit between the query and ``W_uk``, and ``W_uk`` could no longer be
folded into the query projection (the absorbed form below). So position
enters through a *decoupled* rotary key ``k_rope = RoPE(x W_kr)`` of width
d_R, one for all heads, and a rotary part of each head's query. The cache
holds ``d_c + d_R`` numbers a token: 576 in DeepSeek-V2 and -V3 (d_c = 512,
d_R = 64; V2 report section 3.1.2, V3 report section 4.2) against MHA's
``2 * H * D`` = 32,768 (H = 128 heads of D = 128).

:class:`MultiHeadLatentAttention` has a readable forward, which builds every
head's K and V, and an *absorbed* one (``absorbed=True``), which attends over
the latent itself; a test holds the two equal. Both read and extend a
:class:`LatentCache`.

Simplifications relative to DeepSeek's layer: no RMSNorm after the two
down-projections, no YaRN context extension (nor its softmax scale), the
package's interleaved RoPE pairs (:func:`attention.position.apply_rope`),
and absorbed matrices recomputed per call instead of once after training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, overload

import torch
from torch import Tensor, nn

from attention import _checks
from attention.functional import masked_softmax
from attention.position import apply_rope

__all__ = ["LatentCache", "LatentConfig", "MultiHeadLatentAttention", "cache_numbers_per_token"]


@dataclass(frozen=True)
class LatentConfig:
    """The sizes of one :class:`MultiHeadLatentAttention` layer (defaults: a tiny one)."""

    d_model: int = 32  # C, the width of each token in and out
    n_heads: int = 4  # H, the number of heads
    head_dim: int = 8  # D, each head's content ("nope") query/key width and value width
    rope_dim: int = 4  # d_R, each head's rotary query/key width (even); the rotary key is shared
    kv_latent_dim: int = 16  # d_c, the width of the cached latent c_kv
    q_latent_dim: int | None = None  # d_c', the query latent's width; None = full-rank queries
    context_length: int = 16  # the most tokens a sequence (cache included) may hold


def cache_numbers_per_token(config: LatentConfig) -> tuple[int, int]:
    """Numbers cached per token and layer: ``(d_c + d_R, 2 * H * D)``, MLA's and MHA's.

    Example:
        >>> cache_numbers_per_token(LatentConfig(d_model=5120, n_heads=128, head_dim=128,
        ...     rope_dim=64, kv_latent_dim=512, q_latent_dim=1536))  # DeepSeek-V2
        (576, 32768)
    """
    if not isinstance(config, LatentConfig):
        raise TypeError(f"config must be a LatentConfig, got {type(config).__name__}")
    return config.kv_latent_dim + config.rope_dim, 2 * config.n_heads * config.head_dim


class LatentCache:
    """What MLA keeps per token: the latent c_kv and the rotated shared key k_rope.

    Attributes:
        latents: (B, S, d_c) for the S cached tokens, or ``None`` when empty.
        rope_keys: (B, S, d_R), already rotated to their positions, or ``None``.

    Example:
        >>> cache = LatentCache()
        >>> _ = MultiHeadLatentAttention(LatentConfig())(torch.ones(1, 3, 32), cache=cache)
        >>> cache.length, cache.nbytes  # 3 tokens x (16 + 4) numbers x 4 bytes
        (3, 240)
    """

    def __init__(self) -> None:
        self.latents: Tensor | None = None
        self.rope_keys: Tensor | None = None

    @property
    def length(self) -> int:
        """S, the number of tokens cached."""
        return 0 if self.latents is None else self.latents.shape[1]

    @property
    def nbytes(self) -> int:
        """Bytes held by the cached tensors, ``B * S * (d_c + d_R) * itemsize``."""
        return sum(t.nbytes for t in (self.latents, self.rope_keys) if t is not None)

    def extend(self, latents: Tensor, rope_keys: Tensor) -> tuple[Tensor, Tensor]:
        """Append (B, T, d_c) latents and (B, T, d_R) keys; return all S + T of each."""
        if self.latents is None or self.rope_keys is None:
            self.latents, self.rope_keys = latents, rope_keys
        else:
            _checks.same_size("x", latents, 0, "the cache", self.latents.shape[0], "batch size")
            self.latents = torch.cat((self.latents, latents), dim=1)  # (B, S + T, d_c)
            self.rope_keys = torch.cat((self.rope_keys, rope_keys), dim=1)  # (B, S + T, d_R)
        return self.latents, self.rope_keys


class MultiHeadLatentAttention(nn.Module):
    """Causal multi-head attention whose keys and values come from a shared latent.

    For head h: ``softmax((q_nope_h . k_nope_h + q_rope_h . k_rope) / sqrt(D + d_R)) v_h``,
    with ``k_nope_h``, ``v_h`` rebuilt from ``c_kv = x W_dkv`` and ``k_rope = RoPE(x W_kr)``;
    the heads are concatenated and mixed by ``out_proj``, as in MHA.

    Args:
        config: The sizes, a :class:`LatentConfig`.

    Attributes:
        W_dq: ``nn.Linear(C, d_c')``, the query down-projection, or ``None``
            for full-rank queries (then ``W_uq`` and ``W_qr`` read x itself).
        W_uq: ``nn.Linear(d_c' or C, H * D)``, every head's content query.
        W_qr: ``nn.Linear(d_c' or C, H * d_R)``, every head's rotary query.
        W_dkv: ``nn.Linear(C, d_c)``, the down-projection to the cached latent.
        W_uk: ``nn.Linear(d_c, H * D)``, content keys from the latent.
        W_uv: ``nn.Linear(d_c, H * D)``, values from the latent.
        W_kr: ``nn.Linear(C, d_R)``, the rotary key shared by all heads.
        out_proj: ``nn.Linear(H * D, C)``, mixing the heads. Every
            projection is without bias, as in DeepSeek's layer.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> layer = MultiHeadLatentAttention(LatentConfig())
        >>> out, weights = layer(torch.randn(2, 5, 32), return_weights=True)
        >>> tuple(out.shape), tuple(weights.shape)
        ((2, 5, 32), (2, 4, 5, 5))
    """

    def __init__(self, config: LatentConfig) -> None:
        super().__init__()
        if not isinstance(config, LatentConfig):
            raise TypeError(f"config must be a LatentConfig, got {type(config).__name__}")
        c = _checks.positive_int("d_model", config.d_model)
        h = _checks.positive_int("n_heads", config.n_heads)
        d = _checks.positive_int("head_dim", config.head_dim)
        r = _checks.positive_int("rope_dim", config.rope_dim)
        if r % 2:
            raise ValueError(f"rope_dim must be even (RoPE turns features in pairs), got {r}")
        d_c = _checks.positive_int("kv_latent_dim", config.kv_latent_dim)
        d_q = config.q_latent_dim
        if d_q is not None:
            _checks.positive_int("q_latent_dim", d_q)
        _checks.positive_int("context_length", config.context_length)
        self.config = config
        self.W_dq = None if d_q is None else nn.Linear(c, d_q, bias=False)
        self.W_uq = nn.Linear(c if d_q is None else d_q, h * d, bias=False)
        self.W_qr = nn.Linear(c if d_q is None else d_q, h * r, bias=False)
        self.W_dkv = nn.Linear(c, d_c, bias=False)
        self.W_uk = nn.Linear(d_c, h * d, bias=False)
        self.W_uv = nn.Linear(d_c, h * d, bias=False)
        self.W_kr = nn.Linear(c, r, bias=False)
        self.out_proj = nn.Linear(h * d, c, bias=False)

    @overload
    def forward(
        self,
        x: Tensor,
        *,
        cache: LatentCache | None = None,
        absorbed: bool = False,
        return_weights: Literal[False] = False,
    ) -> Tensor: ...
    @overload
    def forward(
        self,
        x: Tensor,
        *,
        cache: LatentCache | None = None,
        absorbed: bool = False,
        return_weights: Literal[True],
    ) -> tuple[Tensor, Tensor]: ...
    @overload
    def forward(
        self,
        x: Tensor,
        *,
        cache: LatentCache | None = None,
        absorbed: bool = False,
        return_weights: bool,
    ) -> Tensor | tuple[Tensor, Tensor]: ...
    def forward(
        self,
        x: Tensor,
        *,
        cache: LatentCache | None = None,
        absorbed: bool = False,
        return_weights: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Attend from each token of ``x`` to itself, the earlier ones and any cached ones.

        Args:
            x: Tokens, shape (B, T, C); with a cache, the T tokens after its S.
            cache: A :class:`LatentCache` to read and extend, or ``None``
                (default) to attend within ``x`` only.
            absorbed: Use :meth:`absorbed_attention` (equal to the readable
                form to float rounding). Default: ``False``.
            return_weights: Also return the weights. Default: ``False``.

        Returns:
            (B, T, C); with ``return_weights=True`` the pair ``(out, weights)``,
            weights (B, H, T, S + T) (S = 0 without a cache).
        """
        t = _checks.layer_input(
            x, d_in=self.config.d_model, ranks=(3,), layout="(B, T, C)", parameter=self.W_dkv.weight
        )
        if cache is not None and not isinstance(cache, LatentCache):
            raise TypeError(f"cache must be a LatentCache or None, got {type(cache).__name__}")
        _checks.flag("absorbed", absorbed)
        _checks.flag("return_weights", return_weights)
        if t.shape[1] == 0:
            raise ValueError(f"x must hold at least one token, got shape {tuple(t.shape)}")
        start = 0 if cache is None else cache.length
        if start + t.shape[1] > self.config.context_length:
            raise ValueError(
                f"x has {t.shape[1]} tokens after {start} cached, more than "
                f"context_length={self.config.context_length}"
            )
        b, n, h, r = t.shape[0], t.shape[1], self.config.n_heads, self.config.rope_dim
        q_in = t if self.W_dq is None else self.W_dq(t)  # (B, T, d_c') or x itself
        q_rope = self.W_qr(q_in).view(b, n, h, r).transpose(1, 2)  # (B, H, T, d_R)
        q_rope = apply_rope(q_rope, offset=start)  # rotated to positions start .. start + T - 1
        latents = self.W_dkv(t)  # (B, T, C) -> (B, T, d_c)
        rope_keys = apply_rope(self.W_kr(t), offset=start)  # (B, T, d_R)
        if cache is not None:
            latents, rope_keys = cache.extend(latents, rope_keys)  # (B, S+T, d_c), (B, S+T, d_R)
        attend = self.absorbed_attention if absorbed else self.readable_attention
        out, weights = attend(q_in, q_rope, latents, rope_keys)  # (B, T, C), (B, H, T, S+T)
        return (out, weights) if return_weights else out

    def _weights(self, nope_scores: Tensor, q_rope: Tensor, rope_keys: Tensor) -> Tensor:
        """Add the rotary scores, scale, mask the future and softmax: (B, H, T, S).

        The scale is ``1 / sqrt(D + d_R)``: a full score sums D + d_R products.
        The T queries are the last T of the S positions; ``True`` = blocked.
        """
        rope_scores = q_rope @ rope_keys.transpose(1, 2)[:, None]  # (B,H,T,d_R)@(B,1,d_R,S)
        scores = (nope_scores + rope_scores) / math.sqrt(self.config.head_dim + q_rope.shape[-1])
        n, s = scores.shape[-2:]
        query_at = torch.arange(s - n, s, device=scores.device)[:, None]  # (T, 1) positions
        blocked = torch.arange(s, device=scores.device)[None, :] > query_at  # (T, S), True=future
        return masked_softmax(scores, blocked)  # (B, H, T, S), rows sum to 1

    def readable_attention(
        self, q_in: Tensor, q_rope: Tensor, latents: Tensor, rope_keys: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Rebuild every head's K and V from the latents, then attend as MHA does.

        Args:
            q_in: What queries are made from, (B, T, d_c') or x itself (B, T, C).
            q_rope: The rotated rotary queries, (B, H, T, d_R).
            latents: c_kv, (B, S, d_c).
            rope_keys: The rotated shared rotary keys, (B, S, d_R).

        Returns:
            ``(out, weights)``: (B, T, C) and (B, H, T, S).
        """
        b, h, n, _ = q_rope.shape
        q_nope = self.W_uq(q_in).view(b, n, h, -1).transpose(1, 2)  # (B, H, T, D)
        d = q_nope.shape[-1]
        k_nope = self.W_uk(latents).view(b, -1, h, d).transpose(1, 2)  # (B, H, S, D)
        v = self.W_uv(latents).view(b, -1, h, d).transpose(1, 2)  # (B, H, S, D)
        nope_scores = q_nope @ k_nope.transpose(2, 3)  # (B,H,T,D) @ (B,H,D,S) -> (B,H,T,S)
        weights = self._weights(nope_scores, q_rope, rope_keys)  # (B, H, T, S)
        context = weights @ v  # (B,H,T,S) @ (B,H,S,D) -> (B,H,T,D)
        out = self.out_proj(context.transpose(1, 2).reshape(b, n, h * d))  # (B, T, C)
        return out, weights

    def absorbed_weights(self) -> tuple[Tensor, Tensor]:
        """The folded matrices of :meth:`absorbed_attention`, one pair per head.

        Returns:
            ``(w_qk, w_vo)``: ``W_uq_h W_uk_h^T`` of shape (H, d_c', d_c)
            (d_c' is C without a query latent), which scores a cached latent
            directly, and ``W_uv_h W_o_h`` of shape (H, d_c, C), which maps an
            average of latents to the head's share of the output.
        """
        h, d = self.config.n_heads, self.config.head_dim
        w_uq = self.W_uq.weight.view(h, d, -1)  # (H*D, d_c') -> (H, D, d_c')
        w_uk = self.W_uk.weight.view(h, d, -1)  # (H*D, d_c) -> (H, D, d_c)
        w_uv = self.W_uv.weight.view(h, d, -1)  # (H*D, d_c) -> (H, D, d_c)
        w_o = self.out_proj.weight.view(-1, h, d).transpose(0, 1)  # (C, H*D) -> (H, C, D)
        w_qk = w_uq.transpose(1, 2) @ w_uk  # (H,d_c',D) @ (H,D,d_c) -> (H,d_c',d_c)
        w_vo = w_uv.transpose(1, 2) @ w_o.transpose(1, 2)  # (H,d_c,D) @ (H,D,C) -> (H,d_c,C)
        return w_qk, w_vo

    def absorbed_attention(
        self, q_in: Tensor, q_rope: Tensor, latents: Tensor, rope_keys: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Attend over the latents themselves; equals :meth:`readable_attention`.

        In row-vector notation, with ``W_uq_h`` (d_c', D) and ``W_uk_h`` (d_c, D)
        head h's slices: ``(q W_uq_h) . (c W_uk_h) = q (W_uq_h W_uk_h^T) . c``,
        so ``W_uk`` folds into the query projection: one (d_c' or C, d_c) matrix per
        head that scores the cached c_kv directly. Likewise
        ``(sum_j w_j c_j W_uv_h) W_o_h = (sum_j w_j c_j) (W_uv_h W_o_h)``:
        ``W_uv`` folds into the output projection, and each head only averages
        latents. No per-head key or value is ever made, so a decoding step
        reads just the S x (d_c + d_R) cache. The readable form would rebuild
        2 x H x D numbers for every cached token at every step, spending in
        compute and memory traffic what the small cache saved in memory: the
        absorption is what makes the small cache usable at inference. (Here
        the folded matrices are made on each call; a deployment makes them
        once, after training.)

        Args and Returns: as :meth:`readable_attention`.
        """
        w_qk, w_vo = self.absorbed_weights()  # (H, d_c', d_c), (H, d_c, C)
        q_latent = q_in[:, None] @ w_qk  # (B,1,T,d_c') @ (H,d_c',d_c) -> (B,H,T,d_c)
        nope_scores = q_latent @ latents.transpose(1, 2)[:, None]  # (B,H,T,d_c)@(B,1,d_c,S)
        weights = self._weights(nope_scores, q_rope, rope_keys)  # (B, H, T, S)
        latent_context = weights @ latents[:, None]  # (B,H,T,S) @ (B,1,S,d_c) -> (B,H,T,d_c)
        out = (latent_context @ w_vo).sum(dim=1)  # (B,H,T,d_c)@(H,d_c,C) -> (B,H,T,C) -> (B,T,C)
        return out, weights
