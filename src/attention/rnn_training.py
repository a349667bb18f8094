"""Training the encoder-decoder RNNs of chapter 1, and measuring what they learned.

:func:`train` fits an :class:`attention.rnn.Seq2Seq`, with or without
attention, to the digit task of :mod:`attention.rnn` at several lengths and
tests it at each. :func:`position_accuracy` scores a model digit by digit,
:func:`alignment` shows where an attentive decoder looks, and
:func:`influence` how much each source token still counts in the encoder's
last hidden state.

Shape letters as in :mod:`attention.rnn`: ``B`` batch, ``S`` source tokens,
``T`` output tokens, ``E`` embedding width, ``N`` hidden width, ``V``
vocabulary size.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from attention import _checks, _model_cache
from attention._training import clipped_adam
from attention.rnn import Encoder, Seq2Seq, Seq2SeqConfig, Task, _digits, digit_batch


def position_accuracy(model: Seq2Seq, source: Tensor, target: Tensor) -> Tensor:
    """How often greedy decoding of ``source`` gets each output position right.

    ``accuracy_i = mean_b [argmax_v logits[b, i, v] == target[b, i]]``.

    Args:
        model: A :class:`attention.rnn.Seq2Seq`.
        source: Digits, int64 (B, S).
        target: The correct output, int64 (B, S).

    Returns:
        Float tensor (S,): the fraction of strings whose digit i comes out right.
    """
    if not isinstance(model, Seq2Seq):
        raise TypeError(f"model must be a Seq2Seq, got {type(model).__name__}")
    tgt = _digits("target", target)
    if tgt.shape != _digits("source", source).shape:
        raise ValueError(
            f"target must have the shape of source, {tuple(source.shape)}, got {tuple(tgt.shape)}"
        )
    with torch.no_grad():
        logits: Tensor = model(source)[0]  # (B, S, V)
    return (logits.argmax(dim=-1) == tgt).float().mean(dim=0)  # (B, S) -> (S,)


@dataclass(frozen=True)
class TrainingRun:
    """What :func:`train` returns: the trained model and its test scores."""

    model: Seq2Seq  # the trained model, in eval mode
    lengths: tuple[int, ...]  # the string lengths it was trained and tested on
    accuracy: tuple[float, ...]  # fraction of digits right at each length, greedy decoding
    losses: tuple[float, ...]  # the training loss at every step
    seconds: float  # wall-clock time of training and testing


def train(
    config: Seq2SeqConfig,
    *,
    lengths: Sequence[int] = (4, 8, 12, 16, 24),
    steps: int = 600,
    batch_size: int = 64,
    lr: float = 1e-2,
    seed: int = 0,
    task: Task = "copy",
    test_size: int = 500,
    device: torch.device | str = "cpu",
) -> TrainingRun:
    """Train a :class:`attention.rnn.Seq2Seq` on a mix of lengths, then test it at each length.

    Minimises ``cross_entropy(logits, target)`` with teacher forcing, step k
    on a batch of length ``lengths[k % len(lengths)]``, with Adam, a cosine
    decay of the learning rate to zero and gradients clipped to norm 1.

    Reproducible, and the caller's random state is left alone: the weights
    are drawn under ``torch.manual_seed(seed)`` inside
    ``torch.random.fork_rng``, which restores the global state afterwards;
    training strings come from a ``torch.Generator`` seeded with ``seed``,
    test strings from one seeded with ``seed + 1``. Models this small train
    several times faster on one CPU thread (``torch.set_num_threads(1)``).

    Args:
        config: The model's sizes, and whether it attends.
        lengths: String lengths S to train on and test at. Default: (4, 8, 12, 16, 24).
        steps: Number of training batches. Default: 600.
        batch_size: B, strings per training batch. Default: 64.
        lr: Adam's initial learning rate. Default: 1e-2.
        seed: Seed of the initial weights and of the data, an int >= 0. Default: 0.
        task: ``"copy"`` or ``"reverse"``. Default: ``"copy"``.
        test_size: Fresh test strings per length. Default: 500.
        device: Where to train. Default: ``"cpu"``.

    Returns:
        A :class:`TrainingRun`: the model and one test accuracy per length.

    Example:
        >>> run = train(Seq2SeqConfig(hidden_size=8), lengths=(3,), steps=2, batch_size=4)
        >>> len(run.accuracy), len(run.losses)
        (1, 2)
    """
    sizes = tuple(_checks.positive_int("lengths", s) for s in lengths)
    if not sizes:
        raise ValueError("lengths must hold at least one length, got an empty sequence")
    n_steps = _checks.positive_int("steps", steps)
    _checks.positive_number("lr", lr)
    _checks.non_negative_int("seed", seed)
    arguments = (config, sizes, n_steps, batch_size, lr, seed, task, test_size, str(device))
    return _model_cache.cached(
        train,
        arguments,
        lambda: _train(config, sizes, n_steps, batch_size, lr, seed, task, test_size, device),
    )


def _train(
    config: Seq2SeqConfig,
    sizes: tuple[int, ...],
    n_steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    task: Task,
    test_size: int,
    device: torch.device | str,
) -> TrainingRun:
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Seq2Seq(config).to(device)
    data = torch.Generator().manual_seed(seed)
    step = clipped_adam(model, lr=lr, steps=n_steps)
    losses = []
    for k in range(n_steps):
        source, target = digit_batch(batch_size, sizes[k % len(sizes)], generator=data, task=task)
        source, target = source.to(device), target.to(device)
        logits, _ = model(source, target)  # (B, S, V)
        loss = F.cross_entropy(logits.flatten(0, 1), target.flatten())  # (B*S, V), (B*S,)
        losses.append(step(loss))
    model.eval()
    tests = torch.Generator().manual_seed(seed + 1)
    scores = []
    for s in sizes:
        source, target = digit_batch(test_size, s, generator=tests, task=task)
        scores.append(position_accuracy(model, source.to(device), target.to(device)).mean().item())
    return TrainingRun(model, sizes, tuple(scores), tuple(losses), time.perf_counter() - start)


def alignment(model: Seq2Seq, source: Tensor) -> Tensor:
    """Where a model with attention looks while it greedily decodes one string.

    Args:
        model: A :class:`attention.rnn.Seq2Seq` built with ``attention=True``.
        source: One digit string, int64 of shape (S,).

    Returns:
        Weights (T, S) with T = S: row i is the attention of output digit i
        over the source digits; every row sums to one.

    Example:
        >>> model = Seq2Seq(Seq2SeqConfig(hidden_size=8))
        >>> alignment(model, torch.tensor([3, 1, 4])).shape
        torch.Size([3, 3])
    """
    if not isinstance(model, Seq2Seq) or not model.config.attention:
        raise ValueError("model must be a Seq2Seq built with Seq2SeqConfig(attention=True)")
    src = _checks.tensor("source", source)
    if src.dim() != 1:
        raise ValueError(f"source must have shape (S,), got shape {tuple(src.shape)}")
    with torch.no_grad():
        weights: Tensor | None = model(src[None, :])[1]  # (1, S) -> (1, T, S)
    assert weights is not None  # an AttentionDecoder always returns weights
    return weights[0]  # (T, S)


def influence(encoder: Encoder, source: Tensor) -> Tensor:
    """How strongly each source token moves the encoder's last hidden state.

    ``influence_t = mean_b ||d h_S / d x_t||``: the size (Frobenius norm) of
    the Jacobian of the last state with respect to the embedding x_t of token t.

    Args:
        encoder: An :class:`attention.rnn.Encoder`, trained or not.
        source: Digits, int64 (B, S).

    Returns:
        Float tensor (S,), one influence per source position.

    Example:
        >>> influence(Encoder(4, 8), torch.randint(0, 10, (3, 6))).shape
        torch.Size([6])
    """
    if not isinstance(encoder, Encoder):
        raise TypeError(f"encoder must be an Encoder, got {type(encoder).__name__}")
    x = encoder.embedding(_digits("source", source)).detach().requires_grad_()  # (B, S, E)
    last: Tensor = encoder.gru(x)[1][0]  # (1, B, N) -> (B, N)
    rows: list[Tensor] = [  # one backward pass per hidden unit n: d h_S[n] / d x, every string
        torch.autograd.grad(last[:, n].sum(), x, retain_graph=True)[0]  # (B, S, E)
        for n in range(last.shape[-1])
    ]
    jacobian = torch.stack(rows)  # N x (B, S, E) -> (N, B, S, E)
    return jacobian.square().sum(dim=(0, 3)).sqrt().mean(dim=0)  # -> (B, S) -> (S,)
