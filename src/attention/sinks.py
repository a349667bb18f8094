"""Where a head puts its weight when nothing is relevant: sinks and QK-norm.

A softmax row sums to one, so a head that finds nothing to read must still
spend its weight somewhere; trained models park it on the first token, the
*attention sink* of StreamingLLM (Xiao et al. 2023, arXiv:2309.17453, 3.1).

* :func:`softmax_with_sink`, :class:`SinkAttention`: a learned logit s_h per
  head joins the softmax's denominator with no value, so a row may sum to
  less than one (OpenAI 2025, gpt-oss model card, architecture section).
* :func:`qk_normalize`, :class:`QKNormAttention`: an RMSNorm on each head's
  queries and keys bounds every score (per head, as here, in Qwen3 and Gemma
  3; over the whole C-wide projection in OLMo 2: Yang et al. 2025, Qwen3
  technical report, section 2; Gemma Team 2025, Gemma 3 technical report,
  section 2; OLMo et al. 2024, 2 OLMo 2 Furious). :func:`qk_norm_experiment`
  reruns chapter 4's width experiment (:mod:`attention.scaling`) with it.
* :func:`first_token_share`, :func:`uniform_first_token_share`: the weight a
  head puts on position 0, against what a uniform head would.

Both layers are called as :class:`attention.MultiHeadAttention` is:
``layer(x, return_weights=True)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, overload

import torch
from torch import Tensor, nn

from attention import _checks
from attention.functional import causal_mask, masked_softmax
from attention.scaling import _SEED_STRIDE, SoftmaxStats, softmax_stats

_SCORES = "(B, H, T_q, T_k)"


def softmax_with_sink(scores: Tensor, sink_logits: Tensor) -> Tensor:
    """Softmax along each row with one extra, value-less logit per head.

    ``w_ij = exp(a_ij) / (exp(s_h) + sum_j exp(a_ij))``. Rows sum to
    ``1 - exp(s_h) / (exp(s_h) + sum_j exp(a_ij))``, less than one by the
    sink's share. Equals :func:`softmax_with_sink_column`, the readable form.
    A fully masked row (every score ``-inf``) gives all-zero weights, not
    NaN: the sink takes all of it (and with ``s_h = -inf`` as well, 0/0 is
    returned as 0, as :func:`attention.masked_softmax` does).

    Args:
        scores: Scores, shape (B, H, T_q, T_k), ``-inf`` where masked.
        sink_logits: One logit per head, shape (H,); ``-inf`` turns the sink off.

    Returns:
        Weights, shape (B, H, T_q, T_k); each row sums to at most one.

    Example:
        >>> w = softmax_with_sink(torch.zeros(1, 1, 1, 3), torch.zeros(1))
        >>> w.sum().item()  # three keys and the sink, each exp(0)
        0.75
    """
    a, s = _sink_inputs(scores, sink_logits)
    sink = s.view(1, -1, 1, 1)  # (H,) -> (1, H, 1, 1)
    # Subtracting the row's largest logit changes no weight, so it needs no gradient.
    top = torch.maximum(a.amax(dim=-1, keepdim=True), sink).detach()  # (B, H, T_q, 1)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))  # no -inf - -inf
    numerators = torch.exp(a - top)  # (B, H, T_q, T_k)
    # The largest term is exp(0) = 1, so the sum is at least 1 unless every
    # logit is -inf; clamping at 1 changes nothing else and turns 0/0 into 0.
    total = numerators.sum(dim=-1, keepdim=True) + torch.exp(sink - top)  # (B, H, T_q, 1)
    return numerators / total.clamp_min(1.0)  # (B, H, T_q, T_k)


def softmax_with_sink_column(scores: Tensor, sink_logits: Tensor) -> Tensor:
    """The readable form of :func:`softmax_with_sink`: a sink column, softmax, drop it.

    ``softmax([a_i1, ..., a_iT, s_h])[:T]``: the sink is a key whose value is
    never read.

    Args:
        scores: Scores, shape (B, H, T_q, T_k), ``-inf`` where masked.
        sink_logits: One logit per head, shape (H,).

    Returns:
        Weights, shape (B, H, T_q, T_k).
    """
    a, s = _sink_inputs(scores, sink_logits)
    column = s.view(1, -1, 1, 1).expand(*a.shape[:-1], 1)  # (B, H, T_q, 1)
    logits = torch.cat((a, column), dim=-1)  # (B, H, T_q, T_k + 1)
    weights = masked_softmax(logits, torch.isneginf(logits))  # (B, H, T_q, T_k + 1)
    return weights[..., :-1]  # (B, H, T_q, T_k): the sink's share dropped


def _sink_inputs(scores: object, sink_logits: object) -> tuple[Tensor, Tensor]:
    a = _checks.floating("scores", scores, ranks=(4,), layout=_SCORES)
    s = _checks.floating("sink_logits", sink_logits, ranks=(1,), layout="(H,)")
    _checks.same_size("sink_logits", s, 0, "the heads of scores", a.shape[1], "number of heads")
    _checks.same_dtype("sink_logits", s, "scores", a.dtype)
    return a, s


def qk_normalize(x: Tensor, scale: Tensor | None = None, *, eps: float = 1e-6) -> Tensor:
    """RMS-normalise each head's vectors along D, then multiply by a gain.

    ``g * x / sqrt(mean_D(x^2) + eps)``: every vector gets length at most
    ``sqrt(D)`` before the gain, so a score ``q . k / sqrt(D)`` of normalised
    vectors is at most :meth:`QKNormAttention.score_bound` in size. Equals
    ``F.rms_norm(x, (D,), g, eps)``.

    Args:
        x: Queries or keys, shape (..., D), usually (B, H, T, D).
        scale: The gain g, shape (D,), shared by all heads. Default: ``None``, ones.
        eps: Added to the mean square, > 0. Default: ``1e-6`` (Qwen3's).

    Returns:
        Tensor of the shape of ``x``.

    Example:
        >>> round(qk_normalize(torch.tensor([3.0, 4.0]), eps=1e-12).norm().item(), 4)  # sqrt(2)
        1.4142
    """
    v = _checks.floating("x", x, layout="(..., D)", min_dims=1)
    e = _checks.positive_number("eps", eps)
    normed = v * torch.rsqrt(v.pow(2).mean(dim=-1, keepdim=True) + e)  # (..., D)
    if scale is None:
        return normed
    g = _checks.floating("scale", scale, ranks=(1,), layout="(D,)")
    _checks.last_dim("scale", g, v.shape[-1], "D of x")
    return normed * g  # (..., D) * (D,) -> (..., D)


class CausalHeads(nn.Module):
    """Plain causal multi-head attention, the base of the sink and QK-norm layers.

    Projections, head split, causal mask, softmax and output projection, with
    :class:`attention.MultiHeadAttention`'s parameters under its names (no
    bias on Q, K, V), so its ``state_dict`` loads (``strict=False``).
    Subclasses change one step: ``_queries_keys`` (QK-norm) or ``_weights``
    (the sink).

    Args:
        d_model: Model width C, in and out.
        num_heads: Number of heads H; must divide C.
        context_length: The longest sequence the layer accepts.
    """

    mask: Tensor

    def __init__(self, d_model: int, num_heads: int, context_length: int) -> None:
        super().__init__()
        self.d_model = _checks.positive_int("d_model", d_model)
        self.num_heads = _checks.positive_int("num_heads", num_heads)
        self.context_length = _checks.positive_int("context_length", context_length)
        if d_model % num_heads != 0:
            raise ValueError(
                f"d_model must be divisible by num_heads, got d_model={d_model} and "
                f"num_heads={num_heads} (remainder {d_model % num_heads})"
            )
        self.head_dim = d_model // num_heads
        self.W_query = nn.Linear(d_model, d_model, bias=False)
        self.W_key = nn.Linear(d_model, d_model, bias=False)
        self.W_value = nn.Linear(d_model, d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model)
        mask = causal_mask(context_length)  # (context_length, context_length), True = blocked
        self.register_buffer("mask", mask, persistent=False)

    def _heads(self, t: Tensor) -> Tensor:
        b, n, _ = t.shape
        return t.view(b, n, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, D)

    def _queries_keys(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._heads(self.W_query(x)), self._heads(self.W_key(x))  # (B, H, T, D) each

    def _weights(self, scores: Tensor) -> Tensor:
        n = scores.shape[-1]
        return masked_softmax(scores, self.mask[:n, :n])  # (B, H, T, T)

    def scores(self, x: Tensor) -> Tensor:
        """The scores ``q . k / sqrt(D)`` of every head before the mask, (B, H, T, T)."""
        x = _checks.layer_input(
            x,
            d_in=self.d_model,
            ranks=(3,),
            layout="(B, T, C)",
            parameter=self.W_query.weight,
            context_length=self.context_length,
        )
        q, k = self._queries_keys(x)  # (B, H, T, D) each
        k_t = k.transpose(-2, -1)  # (B, H, D, T)
        return q @ k_t / math.sqrt(self.head_dim)  # (B,H,T,D) @ (B,H,D,T) -> (B,H,T,T)

    @overload
    def forward(self, x: Tensor, *, return_weights: Literal[False] = False) -> Tensor: ...
    @overload
    def forward(self, x: Tensor, *, return_weights: Literal[True]) -> tuple[Tensor, Tensor]: ...
    @overload
    def forward(self, x: Tensor, *, return_weights: bool) -> Tensor | tuple[Tensor, Tensor]: ...
    def forward(self, x: Tensor, *, return_weights: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Causal attention with every head, then the output projection.

        Args:
            x: Tokens, shape (B, T, C) with T <= context_length.
            return_weights: Also return the weights, (B, H, T, T). Default: ``False``.

        Returns:
            Context vectors (B, T, C), or the pair ``(context, weights)``.
        """
        _checks.flag("return_weights", return_weights)
        weights = self._weights(self.scores(x))  # (B, H, T, T)
        values = self._heads(self.W_value(x))  # (B, T, C) -> (B, H, T, D)
        context = (weights @ values).transpose(1, 2)  # (B,H,T,T) @ (B,H,T,D) -> (B,T,H,D)
        out: Tensor = self.out_proj(context.reshape(x.shape))  # (B, T, C)
        return (out, weights) if return_weights else out


class SinkAttention(CausalHeads):
    """Causal multi-head attention whose heads may attend to nothing (gpt-oss).

    As :class:`attention.MultiHeadAttention`, with :func:`softmax_with_sink`
    in place of the softmax: weights ``exp(a_ij) / (exp(s_h) + sum_j exp(a_ij))``.
    New: ``sinks``, one learned logit per head.

    Args:
        d_model: Model width C, in and out.
        num_heads: Number of heads H; must divide C.
        context_length: The longest sequence the layer accepts.

    Attributes:
        sinks: Parameter (H,), starts at zeros (a head then treats the sink as
            one more key with score 0); ``-inf`` gives MultiHeadAttention back.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> out, w = SinkAttention(8, 2, 6)(torch.randn(1, 6, 8), return_weights=True)
        >>> out.shape, bool((w.sum(dim=-1) < 1).all())
        (torch.Size([1, 6, 8]), True)
    """

    def __init__(self, d_model: int, num_heads: int, context_length: int) -> None:
        super().__init__(d_model, num_heads, context_length)
        self.sinks = nn.Parameter(torch.zeros(num_heads))  # new: s_h

    def _weights(self, scores: Tensor) -> Tensor:
        n = scores.shape[-1]
        blocked = scores.masked_fill(self.mask[:n, :n], -torch.inf)  # (B, H, T, T)
        return softmax_with_sink(blocked, self.sinks)  # new: the sink in the denominator


class QKNormAttention(CausalHeads):
    """Causal multi-head attention with RMS-normalised queries and keys (Qwen3, Gemma 3).

    As :class:`attention.MultiHeadAttention`, with each head's queries and keys
    passed through :func:`qk_normalize` before the scores, so every score is at
    most :meth:`score_bound` in size however large ``x`` grows.

    Args:
        d_model: Model width C, in and out.
        num_heads: Number of heads H; must divide C.
        context_length: The longest sequence the layer accepts.
        eps: The norm's epsilon. Default: ``1e-6``.

    Attributes:
        q_scale: The gain g_q, a Parameter (D,) shared by the heads, starting at ones.
        k_scale: The gain g_k, likewise.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> layer, x = QKNormAttention(8, 2, 6), torch.randn(1, 6, 8)
        >>> layer.score_bound(), bool(layer.scores(x).abs().max() <= layer.score_bound())
        (2.0, True)
    """

    def __init__(self, d_model: int, num_heads: int, context_length: int, eps: float = 1e-6):
        super().__init__(d_model, num_heads, context_length)
        self.eps = _checks.positive_number("eps", eps)
        self.q_scale = nn.Parameter(torch.ones(self.head_dim))  # new: g_q
        self.k_scale = nn.Parameter(torch.ones(self.head_dim))  # new: g_k

    def _queries_keys(self, x: Tensor) -> tuple[Tensor, Tensor]:
        q, k = super()._queries_keys(x)  # (B, H, T, D) each
        q = qk_normalize(q, self.q_scale, eps=self.eps)  # new: (B, H, T, D), RMS 1 times g_q
        return q, qk_normalize(k, self.k_scale, eps=self.eps)  # new: (B, H, T, D)

    def score_bound(self) -> float:
        """The largest score this layer allows: ``sqrt(D) * max_i |g_q,i g_k,i|``.

        Normalised vectors u, v have ``|u|, |v| <= sqrt(D)``, so
        ``|sum_i g_q,i g_k,i u_i v_i| <= max_i |g_q,i g_k,i| |u| |v| <= max_i |g_q,i g_k,i| D``;
        dividing by sqrt(D) gives the bound, ``sqrt(D)`` with unit gains.
        """
        return math.sqrt(self.head_dim) * (self.q_scale * self.k_scale).abs().max().item()


@dataclass(frozen=True)
class QKNormPoint:
    """One width of :func:`qk_norm_experiment`: the same queries and keys three ways."""

    d_k: int  # width of queries and keys
    unscaled: SoftmaxStats  # softmax(Q K^T)
    scaled: SoftmaxStats  # softmax(Q K^T / sqrt(d_k))
    qk_norm: SoftmaxStats  # softmax(norm(Q) norm(K)^T / sqrt(d_k)), unit gains


def qk_norm_experiment(
    d_ks: Sequence[int],
    *,
    input_std: float = 1.0,
    num_sequences: int = 64,
    num_tokens: int = 32,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> list[QKNormPoint]:
    """Chapter 4's width experiment, with QK-normed scores alongside.

    Draws the queries, keys and upstream gradients of
    :func:`attention.scaling.scaling_experiment` (the same numbers, for the
    same seed), multiplies queries and keys by ``input_std``, and measures
    them with :func:`attention.scaling.softmax_stats` unscaled, scaled and
    QK-normed. Plain scaled scores spread like ``input_std**2``, unscaled ones
    like ``input_std**2 * sqrt(d_k)``; QK-normed ones stay near 1 for both.

    Args:
        d_ks: The widths, positive ints.
        input_std: Standard deviation of the queries' and keys' entries, > 0.
            Default: 1.0, chapter 4's experiment.
        num_sequences: B, sequences per width. Default: 64.
        num_tokens: T, tokens per sequence, at least 2. Default: 32.
        seed: Seeds the private generators. Default: 0.
        device: Where to draw and compute. Default: ``"cpu"``.

    Returns:
        One :class:`QKNormPoint` per width, in the order of ``d_ks``.

    Example:
        >>> p = qk_norm_experiment([1024], input_std=3.0, num_sequences=4, num_tokens=8)[0]
        >>> round(p.scaled.score_std), round(p.qk_norm.score_std)
        (9, 1)
    """
    if isinstance(d_ks, str | bytes) or not isinstance(d_ks, Sequence):
        raise TypeError(f"d_ks must be a sequence of positive ints, got {type(d_ks).__name__}")
    if len(d_ks) == 0:
        raise ValueError("d_ks must hold at least one width, got an empty sequence")
    widths = [_checks.positive_int(f"d_ks[{i}]", d) for i, d in enumerate(d_ks)]
    sigma = _checks.positive_number("input_std", input_std)
    batch = _checks.positive_int("num_sequences", num_sequences)
    tokens = _checks.positive_int("num_tokens", num_tokens)
    if tokens < 2:
        raise ValueError(f"num_tokens must be at least 2, got {tokens}")
    _checks.non_negative_int("seed", seed)
    points = []
    for d_k in widths:
        # scaling_experiment's seeding and order of draws: its numbers, to the bit.
        g = torch.Generator(device=device).manual_seed(seed * _SEED_STRIDE + d_k)
        q = sigma * torch.randn(batch, tokens, d_k, generator=g, device=device)  # (B, T, d_k)
        k = sigma * torch.randn(batch, tokens, d_k, generator=g, device=device)  # (B, T, d_k)
        u = torch.randn(batch, tokens, tokens, generator=g, device=device)  # (B, T, T)
        normed = softmax_stats(qk_normalize(q), qk_normalize(k), u, scale=True)
        unscaled, scaled = (softmax_stats(q, k, u, scale=s) for s in (False, True))
        points.append(QKNormPoint(d_k, unscaled, scaled, normed))
    return points


def first_token_share(weights: Tensor, *, start: int = 1) -> Tensor:
    """Mean weight each head puts on position 0, over queries at positions >= ``start``.

    ``share_h = mean_{b, t >= start} w[b, h, t, 0]``. Query 0 can see only
    position 0 in causal attention, so ``start=1`` (default) leaves it out.

    Args:
        weights: Causal attention weights, (B, H, T, T) or (B, N, H, T, T) for N layers.
        start: The first query position counted, 0 <= start < T. Default: 1.

    Returns:
        Shares, shape (H,) or (N, H).

    Example:
        >>> first_token_share(torch.ones(1, 1, 3, 3).tril() / torch.arange(1.0, 4).view(3, 1))
        tensor([0.4167])
    """
    w = _checks.floating("weights", weights, ranks=(4, 5), layout="(B, H, T, T) or (B, N, H, T, T)")
    if w.shape[-1] != w.shape[-2]:
        raise ValueError(f"weights must be square in its last two dimensions, got {tuple(w.shape)}")
    first = _start("start", start, w.shape[-1])
    return w[..., first:, 0].mean(dim=(0, -1))  # (B, [N,] H, T - start) -> ([N,] H)


def uniform_first_token_share(num_tokens: int, *, start: int = 1) -> float:
    """The share a head attending uniformly would put on position 0: ``mean_{t >= start} 1/(t+1)``.

    Query t of a causal head sees t + 1 keys; divide :func:`first_token_share`
    by this to say "k times the uniform share".

    Args:
        num_tokens: T, the sequence length.
        start: The first query position counted, 0 <= start < T. Default: 1.

    Returns:
        The share, a float in (0, 1].

    Example:
        >>> round(uniform_first_token_share(3), 4)  # (1/2 + 1/3) / 2
        0.4167
    """
    n = _checks.positive_int("num_tokens", num_tokens)
    first = _start("start", start, n)
    return sum(1 / (t + 1) for t in range(first, n)) / (n - first)


def _start(name: str, value: object, num_tokens: int) -> int:
    s = _checks.non_negative_int(name, value)
    if s >= num_tokens:
        raise ValueError(f"{name} must be below the number of tokens T={num_tokens}, got {s}")
    return s
