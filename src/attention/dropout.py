"""Dropout in attention, in three places (chapter 6).

Dropout switches off random parts of a network during training, and nothing
at inference. Inside attention there are three places it can go:

* ``"weights"``: zero attention weights after the softmax and scale the
  survivors by 1 / (1 - p), as :class:`attention.CausalAttention` (and the
  book) does. A row then sums to 1 only on average.
* ``"scores"``: block scores before the softmax, as a mask blocks them, so
  the softmax shares the row among the surviving keys and it still sums to 1.
* ``"context"``: zero entries of the context vectors (scaled by 1 / (1 - p)).

Every function takes the probability ``p``, a ``training`` flag and an
optional ``torch.Generator``, so a draw is reproducible without touching the
global random state. The same seed gives different masks on different devices
(and may on different platforms): only the statistics are portable.

:mod:`attention.dropout_experiment` trains a one-layer attention model on a
toy task with each placement and compares their losses and accuracies.
"""

from __future__ import annotations

from typing import Literal, overload

import torch
from torch import Tensor

from attention import _checks
from attention.causal import CausalAttention, blocked_positions
from attention.functional import masked_softmax

#: Where dropout acts inside attention.
Placement = Literal["weights", "scores", "context"]
PLACEMENTS: tuple[Placement, ...] = ("weights", "scores", "context")


def _placement(value: object) -> Placement:
    for placement in PLACEMENTS:
        if value == placement:
            return placement
    raise ValueError(f"placement must be one of {PLACEMENTS}, got {value!r}")


def _generator(generator: object) -> torch.Generator | None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator or None, got {type(generator).__name__}"
        )
    return generator


def _shape(name: str, value: object) -> tuple[int, ...]:
    if not isinstance(value, tuple | list | torch.Size):
        raise TypeError(f"{name} must be a tuple of ints, got {type(value).__name__}")
    if any(isinstance(size, bool) or not isinstance(size, int) for size in value):
        raise TypeError(f"{name} must be a tuple of ints, got {tuple(value)!r}")
    if any(size < 0 for size in value):
        raise ValueError(f"{name} must hold ints >= 0, got {tuple(value)!r}")
    return tuple(value)


def keep_mask(
    shape: tuple[int, ...] | torch.Size,
    p: float,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Draw which entries survive dropout: each independently, with probability 1 - p.

    ``keep = uniform(0, 1) >= p``

    Args:
        shape: Shape of the mask, for example (B, T, T).
        p: Probability of dropping an entry, in [0, 1).
        generator: Source of randomness, on the mask's device. Default:
            ``None``, the global generator.
        device: Device of the mask. Default: the generator's device, else the
            default device.

    Returns:
        Boolean tensor of ``shape``, ``True`` = kept.

    Example:
        >>> import torch
        >>> keep_mask((2, 3), 0.0).all().item()
        True
    """
    rate = _checks.probability("p", p)
    size = _shape("shape", shape)
    g = _generator(generator)
    where = device if device is not None or g is None else g.device
    if where is not None:
        g = _checks.generator_on("generator", g, where)
    return torch.rand(size, generator=g, device=where) >= rate  # shape


def inverted_dropout(
    x: Tensor, p: float, *, training: bool, generator: torch.Generator | None = None
) -> Tensor:
    """Zero each entry with probability p in training; scale the rest by 1 / (1 - p).

    ``out = x * keep / (1 - p)`` in training, ``out = x`` otherwise.

    The scaling keeps every entry's expected value equal to ``x``, so the
    network sees the same average signal in training and at inference. This
    is what ``nn.Dropout`` computes.

    Args:
        x: Any floating-point tensor, shape (...).
        p: Probability of dropping an entry, in [0, 1).
        training: Drop only if ``True``; else return ``x`` unchanged.
        generator: Source of randomness. Default: ``None``, the global generator.

    Returns:
        Tensor of the shape of ``x``: every entry 0 or ``x / (1 - p)``.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> set(inverted_dropout(torch.ones(100), 0.5, training=True, generator=g).tolist())
        {0.0, 2.0}
    """
    t = _checks.floating("x", x, layout="any shape")
    rate = _checks.probability("p", p)
    if not _checks.flag("training", training) or rate == 0.0:
        return t
    keep = keep_mask(t.shape, rate, generator=_generator(generator), device=t.device)
    return t * keep / (1.0 - rate)


def drop_scores(
    blocked: Tensor, p: float, *, training: bool, generator: torch.Generator | None = None
) -> Tensor:
    """Add randomly dropped keys to a mask of blocked scores.

    ``blocked | (not keep)``, except in rows that would lose every key.

    Each key a query can see is dropped with probability p; dropped scores are
    then treated exactly like masked ones (``-inf`` before the softmax), so
    each row's weights still sum to 1. A row in which every visible key was
    drawn for dropping keeps all of its keys instead (it is left undropped):
    otherwise it would have no key at all, and its weights would be 0 / 0.

    Args:
        blocked: Boolean mask of shape (..., T_q, T_k), ``True`` = blocked
            (for example a causal mask, expanded to the scores' shape).
        p: Probability of dropping a visible key, in [0, 1).
        training: Drop only if ``True``; else return ``blocked`` unchanged.
        generator: Source of randomness. Default: ``None``, the global generator.

    Returns:
        Boolean mask of the shape of ``blocked``, ``True`` = blocked or dropped.

    Example:
        >>> import torch
        >>> from attention import causal_mask
        >>> g = torch.Generator().manual_seed(0)
        >>> drop_scores(causal_mask(3), 0.5, training=True, generator=g)[0].tolist()
        [False, True, True]
    """
    m = _checks.tensor("blocked", blocked)
    if m.dtype != torch.bool:
        raise TypeError(f"blocked must have dtype torch.bool (True = blocked), got {m.dtype}")
    rate = _checks.probability("p", p)
    if not _checks.flag("training", training) or rate == 0.0:
        return m
    g = _generator(generator)
    keep = keep_mask(m.shape, rate, generator=g, device=m.device)  # (..., T_q, T_k)
    dropped = m | ~keep  # (..., T_q, T_k)
    emptied = dropped.all(dim=-1, keepdim=True) & ~m.all(dim=-1, keepdim=True)  # (..., T_q, 1)
    return torch.where(emptied, m, dropped)  # (..., T_q, T_k)


def dropout_attention(
    queries: Tensor,
    keys: Tensor,
    values: Tensor,
    *,
    p: float,
    placement: Placement,
    training: bool,
    blocked: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Scaled dot-product attention with dropout at one of three places.

    ``softmax(Q K^T / sqrt(D)) V``, with dropout on the scores (as extra
    blocked keys), on the weights, or on the context vectors.

    Args:
        queries: Queries, shape (..., T_q, D).
        keys: Keys, shape (..., T_k, D).
        values: Values, shape (..., T_k, D_v).
        p: Dropout probability, in [0, 1).
        placement: ``"scores"``, ``"weights"`` or ``"context"``.
        training: Apply dropout only if ``True``.
        blocked: Boolean mask broadcastable to (..., T_q, T_k), ``True`` =
            blocked, or ``None``. Default: ``None``.
        generator: Source of randomness. Default: ``None``, the global generator.

    Returns:
        ``(context, weights)``: context (..., T_q, D_v) and the weights
        (..., T_q, T_k) after any dropout on them.

    Example:
        >>> import torch
        >>> x = torch.rand(1, 4, 2)
        >>> context, weights = dropout_attention(
        ...     x, x, x, p=0.5, placement="weights", training=False
        ... )
        >>> bool(torch.allclose(weights.sum(dim=-1), torch.ones(1, 4), atol=1e-6, rtol=0))
        True
    """
    where = _placement(placement)
    q, k, v = _check_qkv(queries, keys, values)
    scores = q @ k.transpose(-2, -1)  # (..., T_q, D) @ (..., D, T_k) -> (..., T_q, T_k)
    scores = scores / k.shape[-1] ** 0.5
    if where == "scores":
        if blocked is not None:  # checked before expand, which would fail less clearly
            blocked = _checks.mask("blocked", blocked, scores.shape, "the scores'")
        base = torch.zeros_like(scores, dtype=torch.bool) if blocked is None else blocked
        base = base.expand(scores.shape)  # (..., T_q, T_k)
        blocked = drop_scores(base, p, training=training, generator=generator)
    weights = masked_softmax(scores, blocked)  # (..., T_q, T_k)
    if where == "weights":
        weights = inverted_dropout(weights, p, training=training, generator=generator)
    context = weights @ v  # (..., T_q, T_k) @ (..., T_k, D_v) -> (..., T_q, D_v)
    if where == "context":
        context = inverted_dropout(context, p, training=training, generator=generator)
    return context, weights


def _check_qkv(queries: object, keys: object, values: object) -> tuple[Tensor, Tensor, Tensor]:
    """The tensor checks of :func:`dropout_attention`; return the three tensors."""
    q = _checks.floating("queries", queries, ranks=(2, 3, 4), layout="(..., T_q, D)")
    k = _checks.floating("keys", keys, ranks=(2, 3, 4), layout="(..., T_k, D)")
    v = _checks.floating("values", values, ranks=(2, 3, 4), layout="(..., T_k, D_v)")
    _checks.last_dim("keys", k, q.shape[-1], "queries' D")
    _checks.same_size("values", v, -2, "keys", k.shape[-2], "number of tokens T_k")
    _checks.same_dtype("keys", k, "queries", q.dtype)
    _checks.same_dtype("values", v, "queries", q.dtype)
    return q, k, v


class PlacementAttention(CausalAttention):
    """:class:`attention.CausalAttention` with a choice of where dropout acts.

    ``dropout_attention(x W_q, x W_k, x W_v, placement=placement)`` with the
    causal mask. With ``placement="weights"`` it is the book's layer; the
    parameters are created in the same order, so the same seed gives the same
    layer, and in eval mode the same outputs.

    Args:
        d_in: Width of each input token.
        d_out: Width of queries, keys, values and the output.
        context_length: The longest sequence the layer accepts.
        dropout: Dropout probability in training, in [0, 1).
        qkv_bias: Give the three projections a bias. Default: ``False``.
        placement: ``"weights"``, ``"scores"`` or ``"context"``.
            Default: ``"weights"``.
        generator: Source of the dropout masks. Default: ``None``, the
            global generator.

    Example:
        >>> import torch
        >>> from attention import toy_inputs
        >>> layer = PlacementAttention(3, 2, 6, 0.1, placement="scores")
        >>> layer(toy_inputs()[None]).shape
        torch.Size([1, 6, 2])
    """

    def __init__(
        self,
        d_in: int,
        d_out: int,
        context_length: int,
        dropout: float,
        qkv_bias: bool = False,
        *,
        placement: Placement = "weights",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(d_in, d_out, context_length, dropout, qkv_bias)
        self.placement: Placement = _placement(placement)  # new
        self.generator = _generator(generator)  # new

    @overload
    def forward(
        self,
        x: Tensor,
        *,
        padding_mask: Tensor | None = None,
        return_weights: Literal[False] = False,
    ) -> Tensor: ...
    @overload
    def forward(
        self, x: Tensor, *, padding_mask: Tensor | None = None, return_weights: Literal[True]
    ) -> tuple[Tensor, Tensor]: ...
    @overload
    def forward(
        self, x: Tensor, *, padding_mask: Tensor | None = None, return_weights: bool
    ) -> Tensor | tuple[Tensor, Tensor]: ...
    def forward(
        self, x: Tensor, *, padding_mask: Tensor | None = None, return_weights: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Attend causally, dropping out at ``self.placement`` in training.

        Args:
            x: Tokens, shape (B, T, d_in) with T <= context_length.
            padding_mask: Optional (B, T) bool, ``True`` where a token is padding.
            return_weights: Also return the attention weights (after any
                dropout on them). Default: ``False``.

        Returns:
            Context vectors (B, T, d_out); with ``return_weights=True`` the
            pair ``(context, weights)``, weights of shape (B, T, T).
        """
        _checks.flag("return_weights", return_weights)
        x = _checks.layer_input(
            x,
            d_in=self.d_in,
            ranks=(3,),
            layout="(B, T, d_in)",
            parameter=self.W_query.weight,
            context_length=self.context_length,
        )
        blocked = blocked_positions(self.mask, x.shape[1], padding_mask, x)  # (T, T) or (B, T, T)
        context, weights = dropout_attention(
            self.W_query(x),  # (B, T, d_out)
            self.W_key(x),  # (B, T, d_out)
            self.W_value(x),  # (B, T, d_out)
            p=self.dropout.p,
            placement=self.placement,  # new
            training=self.training,
            blocked=blocked,
            generator=self.generator,  # new
        )  # (B, T, d_out) and (B, T, T)
        return (context, weights) if return_weights else context
