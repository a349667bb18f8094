"""A tiny attention-only transformer that learns induction heads (chapter 12).

The task: a random string of L tokens followed by the same string again. The
first half cannot be predicted; the second half can, but only by a two-step
mechanism that one attention head cannot carry out alone. A head in layer 0
copies each token's *previous* token into its position (a previous-token
head); a head in layer 1 then matches the current token against those copies,
which finds the position right after the earlier occurrence, and copies the
token found there (an induction head; Olsson et al., 2022).

The model has token and learned position embeddings, two layers of
:class:`attention.MultiHeadAttention` with residual connections, no MLPs and
no normalisation, and an unembedding. ``InductionConfig(attention=...)``
swaps every layer for another kind of attention from
:mod:`attention.variants` (grouped-query, latent, sliding-window, sparse,
linear, gated DeltaNet, ...), so the same model can be trained with each.
:mod:`attention.induction_scores` trains it and scores the two patterns on
its attention weights, so tests and the chapter can check what was learned.

Shape letters in this module, besides the package's: ``L`` the length of the
repeated string (so T = 2L), ``N`` the number of layers, ``V`` the vocabulary
size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, Protocol, overload

import torch
from torch import Tensor, nn

from attention import _checks
from attention.multihead import MultiHeadAttention


def _generator(value: object) -> torch.Generator:
    if not isinstance(value, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(value).__name__}")
    return value


def repeated_tokens(
    batch_size: int,
    length: int,
    *,
    vocab_size: int,
    generator: torch.Generator,
    tokens: int | None = None,
) -> Tensor:
    """Random strings of ``length`` tokens, each repeated to fill ``tokens`` positions.

    ``x[b, t] = x[b, t mod L]``, and ``x[b, :L]`` is uniform over
    ``0 .. vocab_size - 1``.

    Args:
        batch_size: B, the number of sequences.
        length: L, the length of the random string (the period).
        vocab_size: V, the number of distinct tokens.
        generator: Where the tokens are drawn from (the global random state is
            left alone); they are made on its device.
        tokens: T, the length of each sequence, >= L. Default: 2L, the
            string once and then once again.

    Returns:
        Token ids, int64 of shape (B, T).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x = repeated_tokens(2, 4, vocab_size=10, generator=g)
        >>> x.shape, torch.equal(x[:, :4], x[:, 4:])  # exact: integer ids
        (torch.Size([2, 8]), True)
    """
    b = _checks.positive_int("batch_size", batch_size)
    n = _checks.positive_int("length", length)
    v = _checks.positive_int("vocab_size", vocab_size)
    t = 2 * n if tokens is None else _checks.positive_int("tokens", tokens)
    if t < n:
        raise ValueError(f"tokens must be >= length={n}, got {t}")
    g = _generator(generator)
    first = torch.randint(0, v, (b, n), generator=g, device=g.device)  # (B, L), where g draws
    return first.repeat(1, -(-t // n))[:, :t]  # (B, L * ceil(T/L)) -> (B, T)


class AttentionChoice(Protocol):
    """What builds every attention layer of the model; :mod:`attention.variants` has them."""

    gives_weights: ClassVar[bool]  # whether the layer can return its (B, H, T, T) weights

    def build(self, d_model: int, num_heads: int, context_length: int) -> nn.Module:
        """One causal layer, (B, T, C) -> (B, T, C)."""
        ...


@dataclass(frozen=True)
class InductionConfig:
    """The sizes of an :class:`AttentionOnlyTransformer`, and the kind of its attention."""

    vocab_size: int = 64  # V, distinct tokens
    context_length: int = 32  # longest sequence the model reads (learned positions)
    emb_dim: int = 32  # C, width of the residual stream
    n_heads: int = 2  # H, heads per layer
    n_layers: int = 2  # N, attention layers
    attention: AttentionChoice | None = None  # from attention.variants; None: MultiHeadAttention


class AttentionOnlyTransformer(nn.Module):
    """Embeddings, N causal multi-head attention layers with residuals, unembedding.

    ``h_0 = tok_emb(x) + pos_emb(t)``; ``h_{n+1} = h_n + attn_n(h_n)``;
    ``logits = out_head(h_N)``. No MLPs and no layer norm: everything the model
    computes, it computes with attention.

    Args:
        config: The sizes (an :class:`InductionConfig`).

    Attributes:
        tok_emb: ``nn.Embedding(V, C)``.
        pos_emb: ``nn.Embedding(context_length, C)``, learned positions.
        layers: ``nn.ModuleList`` of N :class:`attention.MultiHeadAttention`
            (C -> C, H heads, no dropout), or of the layers
            ``config.attention`` builds.
        out_head: ``nn.Linear(C, V, bias=False)``.

    Example:
        >>> model = AttentionOnlyTransformer(InductionConfig(vocab_size=8, context_length=6))
        >>> model(torch.zeros(2, 6, dtype=torch.long)).shape
        torch.Size([2, 6, 8])
    """

    def __init__(self, config: InductionConfig) -> None:
        super().__init__()
        if not isinstance(config, InductionConfig):
            raise TypeError(f"config must be an InductionConfig, got {type(config).__name__}")
        v = _checks.positive_int("vocab_size", config.vocab_size)
        t = _checks.positive_int("context_length", config.context_length)
        c = _checks.positive_int("emb_dim", config.emb_dim)
        h = _checks.positive_int("n_heads", config.n_heads)
        n = _checks.positive_int("n_layers", config.n_layers)
        self.config = config
        self.tok_emb = nn.Embedding(v, c)
        self.pos_emb = nn.Embedding(t, c)
        choice = config.attention
        layers: list[nn.Module]
        if choice is None:
            layers = [MultiHeadAttention(c, c, t, 0.0, h) for _ in range(n)]
        elif callable(getattr(choice, "build", None)):
            layers = [choice.build(c, h, t) for _ in range(n)]
        else:
            raise TypeError(
                f"attention must be a choice from attention.variants (or None), "
                f"got {type(choice).__name__}"
            )
        self.layers = nn.ModuleList(layers)
        self.out_head = nn.Linear(c, v, bias=False)

    @overload
    def forward(self, tokens: Tensor, *, return_weights: Literal[False] = False) -> Tensor: ...
    @overload
    def forward(
        self, tokens: Tensor, *, return_weights: Literal[True]
    ) -> tuple[Tensor, Tensor]: ...
    @overload
    def forward(
        self, tokens: Tensor, *, return_weights: bool
    ) -> Tensor | tuple[Tensor, Tensor]: ...
    def forward(
        self, tokens: Tensor, *, return_weights: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Next-token logits at every position, optionally with every head's weights.

        Args:
            tokens: Token ids, int64 of shape (B, T) with T <= context_length.
            return_weights: Also return the attention weights. Default: ``False``.

        Returns:
            Logits (B, T, V); with ``return_weights=True`` the pair
            ``(logits, weights)``, weights of shape (B, N, H, T, T).

        Raises:
            ValueError: If ``return_weights=True`` and the layers have no
                attention weights (linear attention, DeltaNet).
        """
        if _checks.flag("return_weights", return_weights) and not self.gives_weights:
            raise ValueError(
                f"return_weights=True needs layers with attention weights; "
                f"{type(self.config.attention).__name__} layers have none"
            )
        x = _tokens("tokens", tokens, self.config)
        positions = torch.arange(x.shape[1], device=x.device)  # (T,)
        h = self.tok_emb(x) + self.pos_emb(positions)  # (B, T, C) + (T, C) -> (B, T, C)
        weights = []
        for layer in self.layers:
            if return_weights:
                out, w = layer(h, return_weights=True)  # (B, T, C), (B, H, T, T)
                weights.append(w)
            else:
                out = layer(h)  # (B, T, C)
            h = h + out  # (B, T, C): the residual stream
        logits: Tensor = self.out_head(h)  # (B, T, C) -> (B, T, V)
        if not return_weights:
            return logits
        return logits, torch.stack(weights, dim=1)  # N x (B, H, T, T) -> (B, N, H, T, T)

    @property
    def gives_weights(self) -> bool:
        """Whether ``return_weights=True`` works: the layers compute attention weights."""
        return self.config.attention is None or bool(self.config.attention.gives_weights)


def _tokens(name: str, tokens: object, config: InductionConfig) -> Tensor:
    """Return ``tokens`` if it is a (B, T) int64 tensor the model can read, else raise."""
    t = _checks.tensor(name, tokens)
    if t.dtype != torch.int64:
        raise TypeError(f"{name} must be an int64 tensor of token ids, got dtype {t.dtype}")
    if t.dim() != 2 or t.numel() == 0:
        raise ValueError(
            f"{name} must be a non-empty int64 tensor of shape (B, T), "
            f"got dtype {t.dtype} and shape {tuple(t.shape)}"
        )
    if t.shape[1] > config.context_length:
        raise ValueError(
            f"{name} has {t.shape[1]} tokens, more than context_length={config.context_length}"
        )
    if t.min() < 0 or t.max() >= config.vocab_size:
        raise ValueError(
            f"{name} must hold ids 0 to {config.vocab_size - 1}, "
            f"got values {t.min().item()} to {t.max().item()}"
        )
    return t


def attention_patterns(model: AttentionOnlyTransformer, tokens: Tensor) -> Tensor:
    """Every head's attention weights for one sequence, for plotting.

    Args:
        model: An :class:`AttentionOnlyTransformer`.
        tokens: One sequence of token ids, int64 of shape (T,).

    Returns:
        Weights (N, H, T, T): ``[n, h, i, j]`` is how much query i attends to
        key j in head h of layer n; each row sums to one, zero above the diagonal.

    Example:
        >>> model = AttentionOnlyTransformer(InductionConfig(vocab_size=8, context_length=6))
        >>> attention_patterns(model, torch.arange(5)).shape
        torch.Size([2, 2, 5, 5])
    """
    if not isinstance(model, AttentionOnlyTransformer):
        raise TypeError(f"model must be an AttentionOnlyTransformer, got {type(model).__name__}")
    t = _checks.tensor("tokens", tokens)
    if t.dim() != 1:
        raise ValueError(f"tokens must have shape (T,), got shape {tuple(t.shape)}")
    with torch.no_grad():
        weights: Tensor = model(t[None, :], return_weights=True)[1]  # (1, N, H, T, T)
    return weights[0]  # (N, H, T, T)
