"""The RNN comes back: attention without the softmax is a recurrence with a D x D state.

Without the softmax, causal attention ``o_t = sum_{j<=t} (q_t . k_j) v_j`` can be
carried from token to token by one running D x D matrix (Katharopoulos et al.
2020, "Transformers are RNNs", section 3.4). Two such memories:

* **Linear attention** (Katharopoulos et al. 2020, section 3.2) with
  ``phi(x) = elu(x) + 1``: ``S_t = S_{t-1} + v_t phi(k_t)^T``,
  ``z_t = z_{t-1} + phi(k_t)``, ``o_t = S_t phi(q_t) / (z_t . phi(q_t))``. It
  only adds: nothing written is ever corrected or forgotten.
* **The gated delta rule** (Yang, Kautz, Hatamizadeh 2024, "Gated Delta
  Networks", section 3; the delta rule of Schlag et al. 2021 and Yang et al.
  2024, "Parallelizing Linear Transformers with the Delta Rule"):
  ``S_t = alpha_t S_{t-1} (I - beta_t k_t k_t^T) + beta_t v_t k_t^T``,
  ``o_t = S_t q_t``: the memory fades by ``alpha_t``, then what it recalls for
  ``k_t`` moves towards ``v_t`` at rate ``beta_t``.

Every state is stored as (D_v, D), values by keys, written ``v k^T`` and read
``S q`` as in the delta-rule papers (Katharopoulos et al. store the transpose).
Each memory has a readable recurrent form and a chunked form for training
(Yang et al. 2024, section 3): chunks of L tokens are computed in parallel and
hand the state on; for the delta rule one small unit-lower-triangular solve per
chunk (the UT transform of the WY representation) replaces the token-by-token
corrections. Tests hold the forms equal.

Either layer may also pass its queries, keys and values through a short
causal depthwise convolution (:class:`ShortConv`, the option ``short_conv``),
as the reference DeltaNet and Gated DeltaNet layers do (fla-org/
flash-linear-attention, ``fla/layers/delta_net.py``): then the key written at
token t can hold token t - 1 too, which associative recall needs.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attention import _checks

__all__ = [
    "GatedDeltaNet",
    "LinearAttention",
    "ShortConv",
    "delta_rule_chunked",
    "delta_rule_recurrent",
    "feature_map",
    "kv_cache_size",
    "linear_attention_chunked",
    "linear_attention_quadratic",
    "linear_attention_recurrent",
    "recurrent_state_size",
]

Mode = Literal["chunked", "recurrent"]
_LAYOUT = "(B, H, T, D)"


def _heads(q: object, k: object, v: object) -> tuple[Tensor, Tensor, Tensor]:
    """Check queries, keys and values: floating (B, H, T, D), keys shaped as queries."""
    q_ = _checks.floating("q", q, ranks=(4,), layout=_LAYOUT)
    k_ = _checks.floating("k", k, ranks=(4,), layout=_LAYOUT)
    v_ = _checks.floating("v", v, ranks=(4,), layout=_LAYOUT)
    if k_.shape != q_.shape:
        raise ValueError(f"k must have the shape of q, {tuple(q_.shape)}, got {tuple(k_.shape)}")
    for dim, what in ((0, "batch size B"), (1, "number of heads H"), (2, "number of tokens T")):
        _checks.same_size("v", v_, dim, "q", q_.shape[dim], what)
    _checks.same_dtype("k", k_, "q", q_.dtype)
    _checks.same_dtype("v", v_, "q", q_.dtype)
    return q_, k_, v_


def _gate(name: str, x: object, q: Tensor, *, zero_ok: bool) -> Tensor:
    """Check a per-head, per-token gate: shape (B, H, T), values in [0, 1] or (0, 1]."""
    g = _checks.floating(name, x, ranks=(3,), layout="(B, H, T)")
    if g.shape != q.shape[:-1]:
        raise ValueError(
            f"{name} must have shape (B, H, T) = {tuple(q.shape[:-1])}, got {tuple(g.shape)}"
        )
    _checks.same_dtype(name, g, "q", q.dtype)
    low_ok = g >= 0 if zero_ok else g > 0
    if not _checks.compiling() and not bool((low_ok & (g <= 1)).all()):
        interval = "[0, 1]" if zero_ok else "(0, 1]"
        low, high = g.min().item(), g.max().item()
        raise ValueError(f"{name} must lie in {interval}, got values {low:.4g} to {high:.4g}")
    return g


def feature_map(x: Tensor) -> Tensor:
    """``phi(x) = elu(x) + 1``: positive features, so every normaliser is > 0.

    Example:
        >>> feature_map(torch.tensor([-1.0, 0.0, 2.0]))
        tensor([0.3679, 1.0000, 3.0000])
    """
    return F.elu(x) + 1  # same shape as x, every entry > 0


def linear_attention_quadratic(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Causal linear attention, all tokens at once: the (T, T) form.

    ``O = (M * phi(Q) phi(K)^T) V / rowsum(M * phi(Q) phi(K)^T)`` with M the
    causal mask (1 where key j <= query i): softmax attention with
    ``exp(q . k)`` replaced by ``phi(q) . phi(k)``.

    Args:
        q: Queries (B, H, T, D).
        k: Keys (B, H, T, D).
        v: Values (B, H, T, D_v).

    Returns:
        Outputs (B, H, T, D_v).

    Example:
        >>> x = torch.ones(1, 1, 3, 2)
        >>> linear_attention_quadratic(x, x, torch.arange(3.0).view(1, 1, 3, 1)).flatten()
        tensor([0.0000, 0.5000, 1.0000])
    """
    q, k, v = _heads(q, k, v)
    scores = (feature_map(q) @ feature_map(k).mT).tril()  # (B,H,T,D) @ (B,H,D,T) -> (B,H,T,T)
    return (scores @ v) / scores.sum(-1, keepdim=True)  # (B,H,T,T) @ (B,H,T,D_v) / (B,H,T,1)


def linear_attention_recurrent(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Causal linear attention as an RNN: one token at a time, a fixed-size state.

    ``S_t = S_{t-1} + v_t phi(k_t)^T``, ``z_t = z_{t-1} + phi(k_t)``,
    ``o_t = S_t phi(q_t) / (z_t . phi(q_t))``. Equals
    :func:`linear_attention_quadratic`.

    Args:
        q: Queries (B, H, T, D).
        k: Keys (B, H, T, D).
        v: Values (B, H, T, D_v).

    Returns:
        Outputs (B, H, T, D_v).

    Example:
        >>> x = torch.ones(1, 1, 3, 2)
        >>> linear_attention_recurrent(x, x, torch.arange(3.0).view(1, 1, 3, 1)).flatten()
        tensor([0.0000, 0.5000, 1.0000])
    """
    q, k, v = _heads(q, k, v)
    fq, fk = feature_map(q), feature_map(k)  # (B, H, T, D)
    state = q.new_zeros(*v.shape[:2], v.shape[-1], k.shape[-1])  # S: (B, H, D_v, D)
    norm = q.new_zeros(k.shape[:2] + k.shape[-1:])  # z: (B, H, D)
    outputs = []
    for t in range(q.shape[2]):
        state = state + v[:, :, t, :, None] * fk[:, :, t, None, :]  # (B,H,D_v,1)*(B,H,1,D)
        norm = norm + fk[:, :, t]  # (B, H, D)
        read = (state @ fq[:, :, t, :, None]).squeeze(-1)  # (B,H,D_v,D) @ (B,H,D,1) -> (B,H,D_v)
        outputs.append(read / (norm * fq[:, :, t]).sum(-1, keepdim=True))  # (B,H,D_v) / (B,H,1)
    return torch.stack(outputs, dim=2)  # T x (B, H, D_v) -> (B, H, T, D_v)


def linear_attention_chunked(q: Tensor, k: Tensor, v: Tensor, *, chunk_size: int = 16) -> Tensor:
    """Causal linear attention by chunks: quadratic inside a chunk, the state across.

    For the tokens of one chunk, ``O = (S phi(Q)^T)^T + (M * phi(Q) phi(K)^T) V``
    over ``z . phi(q) + rowsum(M * phi(Q) phi(K)^T)``, where S and z hold every
    earlier chunk; then the chunk is added to them. Equals
    :func:`linear_attention_recurrent`; ``chunk_size >= T`` is
    :func:`linear_attention_quadratic`.

    Args:
        q: Queries (B, H, T, D).
        k: Keys (B, H, T, D).
        v: Values (B, H, T, D_v).
        chunk_size: L, tokens per chunk (the last may be shorter). Default: 16.

    Returns:
        Outputs (B, H, T, D_v).

    Example:
        >>> x, v = torch.ones(1, 1, 3, 2), torch.arange(3.0).view(1, 1, 3, 1)
        >>> linear_attention_chunked(x, x, v, chunk_size=2).flatten()
        tensor([0.0000, 0.5000, 1.0000])
    """
    q, k, v = _heads(q, k, v)
    size = _checks.positive_int("chunk_size", chunk_size)
    fq, fk = feature_map(q), feature_map(k)  # (B, H, T, D)
    state = q.new_zeros(*v.shape[:2], v.shape[-1], k.shape[-1])  # S: (B, H, D_v, D)
    norm = q.new_zeros(*k.shape[:2], 1, k.shape[-1])  # z: (B, H, 1, D)
    outputs = []
    for start in range(0, q.shape[2], size):
        cq, ck, cv = (x[:, :, start : start + size] for x in (fq, fk, v))  # (B, H, L, D or D_v)
        scores = (cq @ ck.mT).tril()  # (B,H,L,D) @ (B,H,D,L) -> (B,H,L,L)
        read = cq @ state.mT + scores @ cv  # (B,H,L,D)@(B,H,D,D_v) + (B,H,L,L)@(B,H,L,D_v)
        total = (cq * norm).sum(-1, keepdim=True) + scores.sum(-1, keepdim=True)  # (B, H, L, 1)
        outputs.append(read / total)  # (B, H, L, D_v)
        state = state + cv.mT @ ck  # (B,H,D_v,L) @ (B,H,L,D) -> (B,H,D_v,D)
        norm = norm + ck.sum(2, keepdim=True)  # (B, H, 1, D)
    return torch.cat(outputs, dim=2)  # (B, H, T, D_v)


def delta_rule_recurrent(
    q: Tensor, k: Tensor, v: Tensor, beta: Tensor, alpha: Tensor | None = None
) -> Tensor:
    """The gated delta rule, one token at a time: the readable form.

    ``S_t = alpha_t S_{t-1} (I - beta_t k_t k_t^T) + beta_t v_t k_t^T``, that is
    ``S_t = alpha_t S_{t-1} + beta_t (v_t - alpha_t S_{t-1} k_t) k_t^T``: the
    memory decays, then what it recalls for ``k_t`` moves towards ``v_t``;
    ``o_t = S_t q_t``. ``alpha = 1`` is the plain delta rule (DeltaNet). Keys
    are meant to have unit length (the layer normalises them); the maths holds
    for any keys.

    Args:
        q: Queries (B, H, T, D).
        k: Keys (B, H, T, D).
        v: Values (B, H, T, D_v).
        beta: Writing strengths (B, H, T), in [0, 1].
        alpha: Decays (B, H, T), in (0, 1]. Default: ``None``, all 1.

    Returns:
        Outputs (B, H, T, D_v).

    Example:
        >>> k = torch.tensor([1.0, 0.0]).expand(1, 1, 2, 2)  # the same key twice
        >>> v = torch.tensor([[3.0], [5.0]]).view(1, 1, 2, 1)
        >>> delta_rule_recurrent(k, k, v, torch.ones(1, 1, 2)).flatten()  # overwritten
        tensor([3., 5.])
    """
    q, k, v = _heads(q, k, v)
    b = _gate("beta", beta, q, zero_ok=True)  # (B, H, T)
    a = torch.ones_like(b) if alpha is None else _gate("alpha", alpha, q, zero_ok=False)
    state = q.new_zeros(*v.shape[:2], v.shape[-1], k.shape[-1])  # S: (B, H, D_v, D)
    outputs = []
    for t in range(q.shape[2]):
        state = a[:, :, t, None, None] * state  # (B, H, D_v, D): forget a little
        recalled = state @ k[:, :, t, :, None]  # (B,H,D_v,D) @ (B,H,D,1) -> (B,H,D_v,1)
        error = v[:, :, t, :, None] - recalled  # (B, H, D_v, 1): what the memory gets wrong
        state = state + b[:, :, t, None, None] * error * k[:, :, t, None, :]  # (B, H, D_v, D)
        outputs.append((state @ q[:, :, t, :, None]).squeeze(-1))  # (B, H, D_v)
    return torch.stack(outputs, dim=2)  # T x (B, H, D_v) -> (B, H, T, D_v)


def delta_rule_chunked(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    beta: Tensor,
    alpha: Tensor | None = None,
    *,
    chunk_size: int = 16,
) -> Tensor:
    """The gated delta rule by chunks, in matrix products (the WY / UT form).

    Inside a chunk that starts from state S, with ``g_t = prod_{i<=t} alpha_i``
    and ``G_ti = g_t / g_i``, the state after token t is
    ``g_t S + sum_{i<=t} G_ti u_i k_i^T``, where the written vectors u solve the
    unit-lower-triangular system ``(I + A) U = diag(beta) V - diag(beta g) K S^T``,
    ``A_ti = beta_t G_ti (k_t . k_i)`` for i < t. Then
    ``O = diag(g) Q S^T + (M * G * Q K^T) U`` and the next chunk starts from
    ``g_L S + U^T diag(G_Li) K``. Equals :func:`delta_rule_recurrent`.

    Args:
        q: Queries (B, H, T, D).
        k: Keys (B, H, T, D), meant to have unit length.
        v: Values (B, H, T, D_v).
        beta: Writing strengths (B, H, T), in [0, 1].
        alpha: Decays (B, H, T), in (0, 1]. Default: ``None``, all 1.
        chunk_size: L, tokens per chunk (the last may be shorter). Default: 16.

    Returns:
        Outputs (B, H, T, D_v).

    Example:
        >>> k = torch.tensor([1.0, 0.0]).expand(1, 1, 2, 2)
        >>> v = torch.tensor([[3.0], [5.0]]).view(1, 1, 2, 1)
        >>> delta_rule_chunked(k, k, v, torch.ones(1, 1, 2), chunk_size=2).flatten()
        tensor([3., 5.])
    """
    q, k, v = _heads(q, k, v)
    b = _gate("beta", beta, q, zero_ok=True)  # (B, H, T)
    a = torch.ones_like(b) if alpha is None else _gate("alpha", alpha, q, zero_ok=False)
    size = _checks.positive_int("chunk_size", chunk_size)
    state = q.new_zeros(*v.shape[:2], v.shape[-1], k.shape[-1])  # S: (B, H, D_v, D)
    outputs = []
    for start in range(0, q.shape[2], size):
        cq, ck, cv = (x[:, :, start : start + size] for x in (q, k, v))  # (B, H, L, D or D_v)
        cb = b[:, :, start : start + size, None]  # (B, H, L, 1)
        log_g = a[:, :, start : start + size].log().cumsum(-1)  # (B, H, L): log g_t
        g = log_g.exp()[..., None]  # (B, H, L, 1): decay since the chunk began
        length = cq.shape[2]
        causal = torch.ones(length, length, dtype=torch.bool, device=q.device).tril()  # (L, L)
        # Differences of logs, blocked above the diagonal before exp: G_ti = g_t / g_i.
        gaps = (log_g[..., :, None] - log_g[..., None, :]).masked_fill(~causal, -torch.inf)
        decay = gaps.exp()  # (B, H, L, L), zero above the diagonal
        a_mat = (cb * decay * (ck @ ck.mT)).tril(-1)  # (B, H, L, L): strictly lower
        eye = torch.eye(length, dtype=q.dtype, device=q.device)  # (L, L)
        rhs = cb * cv - (cb * g * ck) @ state.mT  # (B,H,L,D_v) - (B,H,L,D) @ (B,H,D,D_v)
        # The UT transform: U = (I + A)^-1 rhs, by forward substitution.
        written = torch.linalg.solve_triangular(eye + a_mat, rhs, upper=False)  # U: (B,H,L,D_v)
        start_read = (g * cq) @ state.mT  # (B,H,L,D) @ (B,H,D,D_v) -> (B,H,L,D_v)
        outputs.append(start_read + (decay * (cq @ ck.mT)) @ written)  # (B, H, L, D_v)
        to_end = (log_g[..., -1:] - log_g).exp()[..., None]  # (B, H, L, 1): g_L / g_i
        state = g[..., -1:, :] * state + written.mT @ (to_end * ck)  # (B,H,D_v,L) @ (B,H,L,D)
    return torch.cat(outputs, dim=2)  # (B, H, T, D_v)


def recurrent_state_size(num_heads: int, head_dim: int, *, normaliser: bool = False) -> int:
    """Numbers one layer's recurrent state holds, however long the sequence.

    ``H * D * D`` for the matrices S, plus ``H * D`` with linear attention's normaliser z.

    Args:
        num_heads: H, heads per layer.
        head_dim: D, the width of each head's keys and values.
        normaliser: Count z too, as linear attention keeps it. Default: ``False``.

    Returns:
        The count, an int.

    Example:
        >>> recurrent_state_size(4, 16), recurrent_state_size(4, 16, normaliser=True)
        (1024, 1088)
    """
    h = _checks.positive_int("num_heads", num_heads)
    d = _checks.positive_int("head_dim", head_dim)
    return h * d * d + (h * d if _checks.flag("normaliser", normaliser) else 0)


def kv_cache_size(num_heads: int, head_dim: int, tokens: int) -> int:
    """Numbers one softmax layer's KV cache holds after T tokens: ``2 * H * D * T``.

    It outgrows :func:`recurrent_state_size` once T exceeds D / 2.

    Args:
        num_heads: H, heads per layer.
        head_dim: D, the width of each head's keys and values.
        tokens: T, tokens cached.

    Returns:
        The count, an int.

    Example:
        >>> kv_cache_size(4, 16, 8), kv_cache_size(4, 16, 1024)
        (1024, 131072)
    """
    h = _checks.positive_int("num_heads", num_heads)
    return (
        2 * h * _checks.positive_int("head_dim", head_dim) * _checks.positive_int("tokens", tokens)
    )


class ShortConv(nn.Module):
    """A short causal depthwise convolution over the tokens: each channel mixes its last K values.

    ``y_t[c] = sum_{j=0}^{K-1} w[c, j] x_{t-K+1+j}[c]``, with zeros before the
    first token, so ``y_t`` depends on tokens ``t - K + 1 .. t`` only. With
    ``K = 1`` and ``w = 1`` it is the identity.

    Args:
        channels: C, the width of the input and output.
        kernel_size: K, the tokens each output sees, itself included.

    Example:
        >>> conv = ShortConv(1, 2)
        >>> _ = conv.conv.weight.data.copy_(torch.tensor([[[1.0, 10.0]]]))  # w[0] = (1, 10)
        >>> conv(torch.tensor([[[1.0], [2.0], [3.0]]])).flatten().tolist()
        [10.0, 21.0, 32.0]
    """

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        self.channels = _checks.positive_int("channels", channels)
        self.kernel_size = _checks.positive_int("kernel_size", kernel_size)
        # groups=C: one filter per channel (depthwise), no mixing across channels.
        self.conv = nn.Conv1d(channels, channels, kernel_size, groups=channels, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """Convolve ``x`` (B, T, C) along T, causally; returns (B, T, C)."""
        x = _checks.layer_input(
            x, d_in=self.channels, ranks=(3,), layout="(B, T, C)", parameter=self.conv.weight
        )
        padded = F.pad(x.transpose(1, 2), (self.kernel_size - 1, 0))  # (B, C, K - 1 + T)
        out: Tensor = self.conv(padded).transpose(1, 2)  # (B, C, T) -> (B, T, C)
        return out


class LinearAttention(nn.Module):
    """Causal multi-head linear attention: ``out_proj(concat_h linattn(x W_q, x W_k, x W_v))``.

    Args:
        d_model: Model width C; the input and output width.
        num_heads: Number of heads H; must divide ``d_model`` (head width D = C / H).
        mode: ``"chunked"`` (default, for training) or ``"recurrent"`` (token by
            token); both give the same numbers to float rounding.
        chunk_size: L, tokens per chunk in ``"chunked"`` mode. Default: 16.
        short_conv: K, the kernel of a :class:`ShortConv` applied to the
            queries, keys and values after their projections, so that each can
            carry the last K tokens; 0 (default) for none.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> LinearAttention(8, num_heads=2)(torch.randn(2, 5, 8)).shape
        torch.Size([2, 5, 8])
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        *,
        mode: Mode = "chunked",
        chunk_size: int = 16,
        short_conv: int = 0,
    ) -> None:
        super().__init__()
        self.d_model = _checks.positive_int("d_model", d_model)
        self.num_heads = _checks.positive_int("num_heads", num_heads)
        if d_model % num_heads:
            raise ValueError(
                f"num_heads must divide d_model, got d_model={d_model} and num_heads={num_heads}"
            )
        if mode not in ("chunked", "recurrent"):
            raise ValueError(f"mode must be 'chunked' or 'recurrent', got {mode!r}")
        self.mode: Mode = mode
        self.chunk_size = _checks.positive_int("chunk_size", chunk_size)
        self.head_dim = d_model // num_heads
        self.W_query = nn.Linear(d_model, d_model, bias=False)
        self.W_key = nn.Linear(d_model, d_model, bias=False)
        self.W_value = nn.Linear(d_model, d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model)
        self.short_conv = _checks.non_negative_int("short_conv", short_conv)
        # Built after the projections, and only if asked: short_conv=0 draws the same weights
        # and has the same modules as a layer without the option.
        self.short_convs = (
            nn.ModuleList(ShortConv(d_model, self.short_conv) for _ in range(3))  # q, k, v
            if self.short_conv
            else None
        )

    def _split(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, self.head_dim).transpose(1, 2)  # (B,T,C) -> (B,H,T,D)

    def _mix(self, x: Tensor, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Every head's memory: (B, H, T, D) each -> (B, H, T, D)."""
        if self.mode == "recurrent":
            return linear_attention_recurrent(q, k, v)
        return linear_attention_chunked(q, k, v, chunk_size=self.chunk_size)

    def forward(self, x: Tensor) -> Tensor:
        """Causal mixing of the tokens ``x`` (B, T, C); returns (B, T, C)."""
        x = _checks.layer_input(
            x, d_in=self.d_model, ranks=(3,), layout="(B, T, C)", parameter=self.W_query.weight
        )
        qkv = [w(x) for w in (self.W_query, self.W_key, self.W_value)]  # 3 x (B, T, C)
        if self.short_convs is not None:
            qkv = [conv(y) for conv, y in zip(self.short_convs, qkv, strict=True)]  # 3 x (B, T, C)
        q, k, v = (self._split(y) for y in qkv)  # (B, H, T, D) each
        heads = self._mix(x, q, k, v)  # (B, H, T, D)
        merged = heads.transpose(1, 2).reshape(x.shape)  # (B, H, T, D) -> (B, T, C)
        out: Tensor = self.out_proj(merged)  # (B, T, C)
        return out


class GatedDeltaNet(LinearAttention):
    """Causal multi-head gated delta rule: a memory that corrects itself and fades.

    New relative to :class:`LinearAttention`: queries and keys are L2-normalised
    per head instead of passed through ``phi``; each head reads a writing
    strength ``beta_t = sigmoid(x_t W_beta)`` and a decay
    ``alpha_t = exp(-softplus(x_t W_alpha))`` from its token; the memory is
    :func:`delta_rule_chunked` (or :func:`delta_rule_recurrent`). Left out from
    Yang, Kautz, Hatamizadeh (2024): the SiLU on q, k, v (their short causal
    convolutions are the option ``short_conv``), the output norm and gate, and
    Mamba2's learned per-head scale of the decay.

    Args: as :class:`LinearAttention` (whose ``short_conv`` adds the
    convolutions, without the SiLU), and

    * ``alpha_bias``: the starting bias of ``W_alpha``, the same for every
      head; ``-4.0`` starts every decay near ``exp(-softplus(-4)) = 0.98``, a
      memory that hardly fades, as the reference implementation starts its
      decays near 1. Default: ``None``, ``nn.Linear``'s random bias (decays
      near 0.5).

    Example:
        >>> _ = torch.manual_seed(0)
        >>> GatedDeltaNet(8, num_heads=2)(torch.randn(2, 5, 8)).shape
        torch.Size([2, 5, 8])
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        *,
        mode: Mode = "chunked",
        chunk_size: int = 16,
        short_conv: int = 0,
        alpha_bias: float | None = None,
    ) -> None:
        super().__init__(
            d_model, num_heads, mode=mode, chunk_size=chunk_size, short_conv=short_conv
        )
        self.W_beta = nn.Linear(d_model, num_heads)
        self.W_alpha = nn.Linear(d_model, num_heads)
        if alpha_bias is not None:
            if isinstance(alpha_bias, bool) or not isinstance(alpha_bias, int | float):
                raise TypeError(
                    f"alpha_bias must be a float or None, got {type(alpha_bias).__name__}"
                )
            if not math.isfinite(alpha_bias):
                raise ValueError(f"alpha_bias must be finite, got {alpha_bias}")
            with torch.no_grad():  # after the default draw, so the other weights stay the same
                self.W_alpha.bias.fill_(alpha_bias)

    def _mix(self, x: Tensor, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)  # (B, H, T, D), unit rows
        beta = torch.sigmoid(self.W_beta(x)).transpose(1, 2)  # (B, T, H) -> (B, H, T)
        alpha = torch.exp(-F.softplus(self.W_alpha(x))).transpose(1, 2)  # (B, T, H) -> (B, H, T)
        if self.mode == "recurrent":
            return delta_rule_recurrent(q, k, v, beta, alpha)
        return delta_rule_chunked(q, k, v, beta, alpha, chunk_size=self.chunk_size)
