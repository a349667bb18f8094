"""The scores of the chapter-12 heads, and the training run that reports them.

The model, its task and its attention patterns are in
:mod:`attention.induction`. Here two scores read any attention weights: how
much a head looks one token back (:func:`previous_token_score`, against the
baseline of a head that spreads evenly, :func:`uniform_previous_token_score`)
and how much it looks at the token after the earlier copy
(:func:`induction_score`). :func:`half_scores` measures the model's
predictions on each half of repeated strings, and :func:`train_induction`
trains an :class:`attention.induction.AttentionOnlyTransformer` and reports
all of them in an :class:`InductionRun`.

Shape letters are those of :mod:`attention.induction`: ``L`` the length of
the repeated string (so T = 2L), ``N`` the number of layers, ``V`` the
vocabulary size.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from attention import _checks, _model_cache
from attention._training import clipped_adam
from attention.induction import (
    AttentionOnlyTransformer,
    InductionConfig,
    _tokens,
    repeated_tokens,
)


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
            (N, H, T, T) from :func:`attention.induction.attention_patterns` or
            (B, N, H, T, T).

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
        model: An :class:`attention.induction.AttentionOnlyTransformer`.
        tokens: Repeated sequences from :func:`attention.induction.repeated_tokens`,
            int64 (B, 2L), L >= 2.

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
    if x.shape[1] % 2 or n < 2 or not torch.equal(x[:, :n], x[:, n:]):  # exact: integer ids
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
    previous_token: Tensor  # (N, H) previous-token score of every head (NaN: no weights)
    induction: Tensor  # (N, H) induction score of every head (NaN: no weights)
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
    """Train an :class:`attention.induction.AttentionOnlyTransformer` on repeated random strings.

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
    arguments = (cfg, n_steps, b, low, high, lr, seed, n_test, str(device))
    return _model_cache.cached(
        train_induction,
        arguments,
        lambda: _train(cfg, n_steps, b, low, high, lr, seed, n_test, device),
    )


def _train(
    cfg: InductionConfig,
    n_steps: int,
    b: int,
    low: int,
    high: int,
    lr: float,
    seed: int,
    n_test: int,
    device: torch.device | str,
) -> InductionRun:
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
        x = x.to(device)  # drawn on the CPU, so every device trains on the same strings
        logits = model(x[:, :-1])  # (B, T-1, V): position t predicts token t+1
        loss = F.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten())  # (B*(T-1), V)
        losses.append(step(loss))
    model.eval()
    tests = torch.Generator().manual_seed(seed + 1)
    x = repeated_tokens(n_test, high, vocab_size=cfg.vocab_size, generator=tests).to(device)
    if model.gives_weights:
        with torch.no_grad():
            weights = model(x, return_weights=True)[1]  # (B, N, H, 2L, 2L)
        previous = previous_token_score(weights).mean(dim=0).cpu()  # (B, N, H) -> (N, H)
        induction = induction_score(weights, high).mean(dim=0).cpu()  # (B, N, H) -> (N, H)
    else:  # linear attention, DeltaNet: no weights to score
        previous = induction = torch.full((cfg.n_layers, cfg.n_heads), float("nan"))  # (N, H)
    return InductionRun(
        model=model,
        length=high,
        scores=half_scores(model, x),
        previous_token=previous,
        induction=induction,
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
