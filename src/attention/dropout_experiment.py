"""The dropout experiment of chapter 6: does the placement matter for learning?

A tiny model, token and position embeddings, one
:class:`attention.dropout.PlacementAttention` layer and a linear head, learns
a toy task (:func:`majority_task`). :func:`train_toy` trains it once with one
placement; :func:`compare_placements` trains it without dropout and with each
of the three placements of :mod:`attention.dropout` and reports their losses
and accuracies.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attention import _checks, _model_cache
from attention.dropout import PLACEMENTS, Placement, PlacementAttention, _placement


def majority_task(
    num_sequences: int, *, vocab_size: int, num_tokens: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Random token sequences; the target at each position is the commonest token so far.

    ``target[n, t] = argmax_v count(tokens[n, :t+1] == v)``, ties to the smallest v.

    One causal attention layer can solve it: attend evenly to every token so
    far, and the blend of their embeddings is a histogram of the prefix.

    Args:
        num_sequences: N, how many sequences.
        vocab_size: V, the number of distinct tokens.
        num_tokens: T, the length of each sequence.
        generator: Source of randomness; the tokens are made on its device.

    Returns:
        ``(tokens, targets)``, both int64 of shape (N, T).

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> tokens, targets = majority_task(2, vocab_size=4, num_tokens=5, generator=g)
        >>> tokens.shape, targets.shape
        (torch.Size([2, 5]), torch.Size([2, 5]))
    """
    n = _checks.positive_int("num_sequences", num_sequences)
    v = _checks.positive_int("vocab_size", vocab_size)
    t = _checks.positive_int("num_tokens", num_tokens)
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    tokens = torch.randint(0, v, (n, t), generator=generator, device=generator.device)  # (N, T)
    counts = F.one_hot(tokens, v).cumsum(dim=1)  # (N, T, V)
    return tokens, counts.argmax(dim=-1)  # (N, T)


class TinyAttentionModel(nn.Module):
    """Token and position embeddings, one attention layer, a linear head.

    ``logits = head(attention(token_emb(x) + pos_emb))``, where ``attention``
    is a :class:`attention.dropout.PlacementAttention`, with no shortcut
    around the attention, so everything the head sees passed through it.

    Args:
        vocab_size: V, the number of distinct tokens.
        num_tokens: T, the longest sequence.
        d_model: Width of the embeddings and of the attention.
        dropout: Dropout probability in training, in [0, 1).
        placement: Where dropout acts. Default: ``"weights"``.
        generator: Source of the dropout masks. Default: ``None``.

    Example:
        >>> import torch
        >>> model = TinyAttentionModel(8, 10, 16, 0.1, placement="scores")
        >>> model(torch.zeros(2, 10, dtype=torch.int64)).shape
        torch.Size([2, 10, 8])
    """

    def __init__(
        self,
        vocab_size: int,
        num_tokens: int,
        d_model: int,
        dropout: float,
        *,
        placement: Placement = "weights",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.token_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Embedding(num_tokens, d_model)
        self.attention = PlacementAttention(
            d_model, d_model, num_tokens, dropout, placement=placement, generator=generator
        )
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, tokens: Tensor) -> Tensor:
        """Next-token logits: tokens (B, T) int64 -> logits (B, T, V)."""
        x = self.token_emb(tokens) + self.pos_emb.weight[: tokens.shape[1]]  # (B, T, d_model)
        logits: Tensor = self.head(self.attention(x))  # (B, T, d_model) -> (B, T, V)
        return logits


@dataclass(frozen=True)
class ToyRunConfig:
    """Settings of one training run of :class:`TinyAttentionModel` on :func:`majority_task`."""

    p: float = 0.1  # dropout probability
    train_size: int = 32  # training sequences, drawn with replacement into batches
    val_size: int = 1024  # validation sequences, never trained on
    vocab_size: int = 8  # distinct tokens V
    num_tokens: int = 10  # sequence length T
    d_model: int = 16  # width of embeddings and attention
    steps: int = 300  # optimiser steps
    batch_size: int = 32  # sequences per step
    lr: float = 1e-2  # Adam's learning rate
    eval_every: int = 25  # steps between validation losses in the history
    seed: int = 0  # seeds data, initial weights and dropout masks


@dataclass(frozen=True)
class RunResult:
    """Losses (cross-entropy) and accuracies of a trained model, both sets in eval mode."""

    placement: str  # "none" (p = 0) or a Placement
    train_loss: float
    val_loss: float
    train_accuracy: float
    val_accuracy: float
    history: tuple[tuple[int, float], ...]  # (step, validation loss) during training


def _evaluate(model: TinyAttentionModel, tokens: Tensor, targets: Tensor) -> tuple[float, float]:
    with torch.no_grad():
        logits = model(tokens)  # (N, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        accuracy = (logits.argmax(dim=-1) == targets).float().mean()
    return float(loss), float(accuracy)


def train_toy(config: ToyRunConfig, placement: Placement | Literal["none"]) -> RunResult:
    """Train :class:`TinyAttentionModel` on :func:`majority_task` with one placement.

    ``placement="none"`` trains with p = 0. Every run with the same ``seed``
    sees the same data and starts from the same weights, so the runs differ
    only in their dropout. The global random state is left untouched.

    Args:
        config: The run's settings.
        placement: ``"none"``, ``"weights"``, ``"scores"`` or ``"context"``.

    Returns:
        The final losses and accuracies on both sets, and the history.

    Example:
        >>> config = ToyRunConfig(train_size=8, val_size=8, steps=2, eval_every=1)
        >>> len(train_toy(config, "scores").history)
        2
    """
    # A run without dropout ignores config.p: one cache entry serves every p
    # (chapter 6 compares p = 0.1 and 0.2, and trains that run once).
    key = (
        replace(config, p=0.0)
        if isinstance(config, ToyRunConfig) and placement == "none"
        else config
    )
    return _model_cache.cached(train_toy, (key, placement), lambda: _train_toy(config, placement))


def _train_toy(config: ToyRunConfig, placement: Placement | Literal["none"]) -> RunResult:
    if not isinstance(config, ToyRunConfig):
        raise TypeError(f"config must be a ToyRunConfig, got {type(config).__name__}")
    p = 0.0 if placement == "none" else _checks.probability("config.p", config.p)
    where = "weights" if placement == "none" else _placement(placement)
    steps = _checks.positive_int("config.steps", config.steps)
    every = _checks.positive_int("config.eval_every", config.eval_every)
    data = torch.Generator().manual_seed(config.seed)
    v, t = config.vocab_size, config.num_tokens
    train = majority_task(config.train_size, vocab_size=v, num_tokens=t, generator=data)
    val = majority_task(config.val_size, vocab_size=v, num_tokens=t, generator=data)
    masks = torch.Generator().manual_seed(config.seed + 1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = TinyAttentionModel(
            config.vocab_size,
            config.num_tokens,
            config.d_model,
            p,
            placement=where,
            generator=masks,
        )
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    history = []
    for step in range(1, steps + 1):
        batch = torch.randint(0, config.train_size, (config.batch_size,), generator=data)  # (B,)
        logits = model.train()(train[0][batch])  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1), train[1][batch].flatten())
        optimiser.zero_grad()
        torch.autograd.backward(loss)
        optimiser.step()
        if step % every == 0:
            history.append((step, _evaluate(model.eval(), *val)[0]))
    model.eval()
    train_loss, train_accuracy = _evaluate(model, *train)
    val_loss, val_accuracy = _evaluate(model, *val)
    name = "none" if placement == "none" else where
    return RunResult(name, train_loss, val_loss, train_accuracy, val_accuracy, tuple(history))


def compare_placements(config: ToyRunConfig) -> list[RunResult]:
    """Train the same model without dropout and with each placement.

    Args:
        config: The settings shared by all four runs.

    Returns:
        Four results: ``"none"``, ``"weights"``, ``"scores"``, ``"context"``.

    Example:
        >>> config = ToyRunConfig(train_size=8, val_size=8, steps=2)
        >>> [r.placement for r in compare_placements(config)]
        ['none', 'weights', 'scores', 'context']
    """
    runs: tuple[Placement | Literal["none"], ...] = ("none", *PLACEMENTS)
    return [train_toy(config, placement) for placement in runs]
