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
no normalisation, and an unembedding. Two scores measure the two patterns on
any attention weights, so tests and the chapter can check what was learned.

Shape letters in this module, besides the package's: ``L`` the length of the
repeated string (so T = 2L), ``N`` the number of layers, ``V`` the vocabulary
size.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Literal, overload

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attention import _checks
from attention._training import clipped_adam
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
            left alone).
        tokens: T, the length of each sequence, >= L. Default: 2L, the
            string once and then once again.

    Returns:
        Token ids, int64 of shape (B, T).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x = repeated_tokens(2, 4, vocab_size=10, generator=g)
        >>> x.shape, torch.equal(x[:, :4], x[:, 4:])
        (torch.Size([2, 8]), True)
    """
    b = _checks.positive_int("batch_size", batch_size)
    n = _checks.positive_int("length", length)
    v = _checks.positive_int("vocab_size", vocab_size)
    t = 2 * n if tokens is None else _checks.positive_int("tokens", tokens)
    if t < n:
        raise ValueError(f"tokens must be >= length={n}, got {t}")
    first = torch.randint(0, v, (b, n), generator=_generator(generator))  # (B, L)
    return first.repeat(1, -(-t // n))[:, :t]  # (B, L * ceil(T/L)) -> (B, T)


@dataclass(frozen=True)
class InductionConfig:
    """The sizes of an :class:`AttentionOnlyTransformer`."""

    vocab_size: int = 64  # V, distinct tokens
    context_length: int = 32  # longest sequence the model reads (learned positions)
    emb_dim: int = 32  # C, width of the residual stream
    n_heads: int = 2  # H, heads per layer
    n_layers: int = 2  # N, attention layers


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
            (C -> C, H heads, no dropout).
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
        self.layers = nn.ModuleList([MultiHeadAttention(c, c, t, 0.0, h) for _ in range(n)])
        self.out_head = nn.Linear(c, v, bias=False)

    @overload
    def forward(self, tokens: Tensor, *, return_weights: Literal[False] = False) -> Tensor: ...
    @overload
    def forward(
        self, tokens: Tensor, *, return_weights: Literal[True]
    ) -> tuple[Tensor, Tensor]: ...
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
        """
        _checks.flag("return_weights", return_weights)
        x = _tokens("tokens", tokens, self.config)
        positions = torch.arange(x.shape[1], device=x.device)  # (T,)
        h = self.tok_emb(x) + self.pos_emb(positions)  # (B, T, C) + (T, C) -> (B, T, C)
        weights = []
        for layer in self.layers:
            out, w = layer(h, return_weights=True)  # (B, T, C), (B, H, T, T)
            h = h + out  # (B, T, C): the residual stream
            weights.append(w)
        logits: Tensor = self.out_head(h)  # (B, T, C) -> (B, T, V)
        if not return_weights:
            return logits
        return logits, torch.stack(weights, dim=1)  # N x (B, H, T, T) -> (B, N, H, T, T)


def _tokens(name: str, tokens: object, config: InductionConfig) -> Tensor:
    """Return ``tokens`` if it is a (B, T) int64 tensor the model can read, else raise."""
    t = _checks.tensor(name, tokens)
    if t.dim() != 2 or t.dtype != torch.int64 or t.numel() == 0:
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


def _weights(name: str, weights: object) -> Tensor:
    w = _checks.floating(name, weights, ranks=(2, 3, 4, 5), layout="(..., T, T)")
    if w.shape[-1] != w.shape[-2]:
        raise ValueError(f"{name} must be square in its last two dimensions, got {tuple(w.shape)}")
    return w


def previous_token_score(weights: Tensor) -> Tensor:
    """How much each query attends to the token just before it, on average.

    ``score = mean_{t=1..T-1} w[t, t-1]``: 1 for a head that always looks one
    token back; ``mean_t 1/(t+1)`` for a head that spreads evenly over the
    causal past.

    Args:
        weights: Attention weights (..., T, T) with T >= 2, for example
            (N, H, T, T) from :func:`attention_patterns` or (B, N, H, T, T).

    Returns:
        Scores of shape (...), one per matrix.

    Example:
        >>> previous_token_score(torch.eye(4).roll(-1, dims=1).tril()).item()
        1.0
    """
    w = _weights("weights", weights)
    if w.shape[-1] < 2:
        raise ValueError(f"weights must cover T >= 2 tokens, got T={w.shape[-1]}")
    return w.diagonal(offset=-1, dim1=-2, dim2=-1).mean(dim=-1)  # (..., T-1) -> (...)


def induction_score(weights: Tensor, length: int) -> Tensor:
    """How much each query in the repeat attends to the token after its earlier copy.

    On a string of period L, ``score = mean_{t=L..T-1} w[t, t-L+1]``: the
    token at t - L is the same as the token at t, so t - L + 1 holds the token
    that comes next. 1 for a perfect induction head.

    Args:
        weights: Attention weights (..., T, T) on sequences with period L.
        length: L, the period, with 2 <= L < T.

    Returns:
        Scores of shape (...), one per matrix.

    Example:
        >>> induction_score(torch.eye(6).roll(-3, dims=1).tril(), 4).item()
        1.0
    """
    w = _weights("weights", weights)
    n = _checks.positive_int("length", length)
    if not 2 <= n < w.shape[-1]:
        raise ValueError(f"length must be in [2, T) with T={w.shape[-1]}, got {n}")
    return w.diagonal(offset=1 - n, dim1=-2, dim2=-1)[..., 1:].mean(dim=-1)  # rows L..T-1


@dataclass(frozen=True)
class HalfScores:
    """Next-token loss and accuracy on each half of repeated sequences."""

    first_loss: float  # cross-entropy predicting tokens 1 .. L-1 (unpredictable)
    second_loss: float  # cross-entropy predicting tokens L+1 .. 2L-1 (repeats)
    first_accuracy: float  # fraction of tokens 1 .. L-1 predicted right
    second_accuracy: float  # fraction of tokens L+1 .. 2L-1 predicted right


def half_scores(model: AttentionOnlyTransformer, tokens: Tensor) -> HalfScores:
    """Score a model's next-token predictions on each half of repeated sequences.

    Position t predicts token t + 1. The first half (targets 1 .. L-1) is
    random: the best possible loss is ``log V`` and accuracy ``1/V``. The
    second half (targets L+1 .. 2L-1) repeats the first. Target L, the first
    repeated token, belongs to neither: nothing before it announces the repeat.

    Args:
        model: An :class:`AttentionOnlyTransformer`.
        tokens: Repeated sequences from :func:`repeated_tokens`, int64 (B, 2L), L >= 2.

    Returns:
        A :class:`HalfScores`.

    Example:
        >>> model = AttentionOnlyTransformer(InductionConfig(vocab_size=8, context_length=8))
        >>> x = repeated_tokens(3, 4, vocab_size=8, generator=torch.Generator())
        >>> 0.0 <= half_scores(model, x).second_accuracy <= 1.0
        True
    """
    if not isinstance(model, AttentionOnlyTransformer):
        raise TypeError(f"model must be an AttentionOnlyTransformer, got {type(model).__name__}")
    x = _tokens("tokens", tokens, model.config)
    n = x.shape[1] // 2
    if x.shape[1] % 2 or n < 2 or not torch.equal(x[:, :n], x[:, n:]):
        raise ValueError(
            f"tokens must be strings of L >= 2 tokens followed by themselves, "
            f"got shape {tuple(x.shape)}"
        )
    with torch.no_grad():
        logits: Tensor = model(x)  # (B, 2L, V)
    halves = {"first": slice(0, n - 1), "second": slice(n, 2 * n - 1)}  # predicting positions
    out: dict[str, float] = {}
    for name, rows in halves.items():
        pred = logits[:, rows]  # (B, L-1, V)
        target = x[:, rows.start + 1 : rows.stop + 1]  # (B, L-1)
        out[f"{name}_loss"] = F.cross_entropy(pred.flatten(0, 1), target.flatten()).item()
        out[f"{name}_accuracy"] = (pred.argmax(dim=-1) == target).float().mean().item()
    return HalfScores(**out)


@dataclass(frozen=True)
class InductionRun:
    """What :func:`train_induction` returns: the model, its scores, its history."""

    model: AttentionOnlyTransformer  # the trained model, in eval mode
    length: int  # L of the test sequences
    scores: HalfScores  # loss and accuracy on each half of the test sequences
    previous_token: Tensor  # (N, H) previous-token score of every head
    induction: Tensor  # (N, H) induction score of every head
    losses: tuple[float, ...]  # the training loss at every step
    seconds: float  # wall-clock time of training and testing


def train_induction(
    config: InductionConfig | None = None,
    *,
    steps: int = 1500,
    batch_size: int = 64,
    min_length: int = 4,
    max_length: int | None = None,
    lr: float = 1e-2,
    seed: int = 0,
    test_size: int = 200,
    device: torch.device | str = "cpu",
) -> InductionRun:
    """Train an :class:`AttentionOnlyTransformer` on repeated random strings.

    Minimises the next-token ``cross_entropy`` over every position with Adam,
    a cosine decay of the learning rate to zero and gradients clipped to norm
    1. Each training sequence fills the whole context with a random string
    repeated as often as it fits, so every position is trained at every step;
    each step draws its own L between ``min_length`` and ``max_length``, so
    that no head can find the earlier copy by its position alone (with a
    fixed L one head could attend to t - L + 1 by position and skip the
    composition the task is meant to need). Testing uses L = ``max_length``
    and sequences of 2L tokens.

    Reproducible, and the caller's random state is left alone: the weights
    are drawn under ``torch.manual_seed(seed)`` inside
    ``torch.random.fork_rng``; training strings and their lengths come from a
    ``torch.Generator`` seeded with ``seed``, test strings from one seeded
    with ``seed + 1``. Models this small train faster on one CPU thread
    (``torch.set_num_threads(1)``).

    Args:
        config: The model's sizes. Default: ``InductionConfig()``.
        steps: Number of training batches. Default: 1500.
        batch_size: B, sequences per batch. Default: 64.
        min_length: Shortest L drawn for training, >= 2. Default: 4.
        max_length: Longest L, with 2L <= context_length. Default:
            ``context_length // 2``.
        lr: Adam's initial learning rate. Default: 1e-2.
        seed: Seed of the weights and the data, an int >= 0. Default: 0.
        test_size: Test sequences (of L = ``max_length``). Default: 200.
        device: Where to train. Default: ``"cpu"``.

    Returns:
        An :class:`InductionRun`.

    Example:
        >>> run = train_induction(InductionConfig(context_length=8), steps=2, test_size=4)
        >>> run.induction.shape, len(run.losses)
        (torch.Size([2, 2]), 2)
    """
    cfg = InductionConfig() if config is None else config
    n_steps = _checks.positive_int("steps", steps)
    b = _checks.positive_int("batch_size", batch_size)
    n_test = _checks.positive_int("test_size", test_size)
    low = _checks.positive_int("min_length", min_length)
    high = cfg.context_length // 2 if max_length is None else max_length
    _checks.positive_int("max_length", high)
    if not 2 <= low <= high or 2 * high > cfg.context_length:
        raise ValueError(
            f"need 2 <= min_length <= max_length <= context_length // 2, got min_length={low}, "
            f"max_length={high}, context_length={cfg.context_length}"
        )
    _checks.positive_number("lr", lr)
    _checks.non_negative_int("seed", seed)
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AttentionOnlyTransformer(cfg).to(device)
    data = torch.Generator().manual_seed(seed)
    t_max = cfg.context_length
    step = clipped_adam(model, lr=lr, steps=n_steps)
    losses = []
    for _ in range(n_steps):
        n = int(torch.randint(low, high + 1, (), generator=data))
        x = repeated_tokens(b, n, vocab_size=cfg.vocab_size, generator=data, tokens=t_max)
        logits = model(x[:, :-1])  # (B, T-1, V): position t predicts token t+1
        loss = F.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten())  # (B*(T-1), V)
        losses.append(step(loss))
    model.eval()
    tests = torch.Generator().manual_seed(seed + 1)
    x = repeated_tokens(n_test, high, vocab_size=cfg.vocab_size, generator=tests).to(device)
    with torch.no_grad():
        weights = model(x, return_weights=True)[1]  # (B, N, H, 2L, 2L)
    return InductionRun(
        model=model,
        length=high,
        scores=half_scores(model, x),
        previous_token=previous_token_score(weights).mean(dim=0).cpu(),  # (B, N, H) -> (N, H)
        induction=induction_score(weights, high).mean(dim=0).cpu(),  # (B, N, H) -> (N, H)
        losses=tuple(losses),
        seconds=time.perf_counter() - start,
    )


def uniform_previous_token_score(tokens: int) -> float:
    """The previous-token score of a head that spreads evenly over its causal past.

    ``mean_{t=1..T-1} 1/(t+1)``: query t sees t + 1 tokens, so one of them
    gets 1/(t+1). The baseline a real previous-token head must beat.

    Args:
        tokens: T, the sequence length, >= 2.

    Returns:
        The score, a float in (0, 1).

    Example:
        >>> round(uniform_previous_token_score(2), 2)
        0.5
    """
    t = _checks.positive_int("tokens", tokens)
    if t < 2:
        raise ValueError(f"tokens must be >= 2, got {t}")
    return math.fsum(1 / (i + 1) for i in range(1, t)) / (t - 1)
