"""Multi-query associative recall: what a fixed-size state costs (chapter "attention today").

Linear attention and the gated delta rule (:mod:`attention.linear_attention`)
are RNNs with one D x D state per head, the bottleneck of chapter 1. This
module measures what that state costs on multi-query associative recall
(MQAR; Arora et al. 2023, "Zoology: Measuring and Improving Recall in
Efficient Language Models", arXiv:2312.04927, section 3): a sequence lists N
key-value pairs, then asks for keys again; the model must answer each with its
value. Softmax attention keeps every key (its KV cache grows with T); a
recurrence must fit all N pairs in its state.

:func:`recall_batch` draws the sequences, :func:`train_recall` trains an
:class:`attention.induction.AttentionOnlyTransformer` with any choice from
:mod:`attention.variants` on a mix of pair counts and tests it at each count,
and :func:`recall_curve` does so for several choices: accuracy against the
number of pairs, as chapter 1 plots accuracy against length.

The recurrent choices of :data:`CHOICES` carry what their papers' layers
have and the attention-only model lacks: a short causal convolution on the
queries, keys and values (``short_conv=3``), so that the key written at a
value's position can hold the token before it (the key of the pair), as the
reference DeltaNet and Gated DeltaNet layers do (fla-org/flash-linear-attention,
``fla/layers/delta_net.py`` and ``gated_deltanet.py``: ``ShortConvolution``
of kernel 4 on q, k and v, "crucial to the performance"). Softmax attention
needs none: its first layer finds the previous token through the learned
positions. DeltaNet also starts its decays near 1 (``alpha_bias=-4.0``), as
the reference starts its own; with ``nn.Linear``'s random bias (decays near
0.5: every token halves the memory) it learns more slowly, to 0.95, 0.75,
0.46 at the defaults below.

Measured at the defaults (one thread, seed 0; :func:`recall_curve` on
:data:`CHOICES`, N = 2, 4, 8, about 10 CPU-seconds): softmax recalls
1.00, 1.00, 0.99 of the queries, linear attention 1.00, 0.96, 0.80 and
DeltaNet 1.00, 0.98, 0.83. Each recurrent layer's state holds H x D x D =
4 x 8 x 8 = 256 numbers (288 with linear attention's normaliser), and its
convolutions the last K - 1 = 2 inputs of q, k and v (3 x 2 x 32 = 192
more), however many pairs come; softmax's KV cache holds 2 H D T = 64 T
numbers, 384, 768 and 1536 at N = 2, 4, 8 (T = 6, 12, 24). Without the
convolutions linear attention gives 0.92, 0.66, 0.33 and DeltaNet 0.50,
0.29, 0.21 (and at N = 4 to 32 with 600 steps, the earlier defaults, both
stayed near chance). The fall at N = 8 is partly how hard a
crowded state is to learn in 300 steps: with 1200 steps linear attention and
DeltaNet both reach 0.96 there. Larger N show the limit itself: at N = 8,
16, 32 (vocabulary 128, 1000 steps, about 85 CPU-seconds) softmax gives
1.00, 1.00, 0.96, linear attention 0.96, 0.81, 0.49 and DeltaNet 0.98, 0.81,
0.47. Across seeds 0 to 2 DeltaNet was ahead of linear attention at N = 8
by 0.02 to 0.13.

Simplified from the papers: attention-only models (no MLPs, no norms), a
vocabulary of 64 rather than Zoology's thousands, the convolutions without
their SiLU, DeltaNet without its output norm and gate, and one model trained
on a mix of pair counts and tested at each.

Shape letters besides the package's: ``N`` pairs, ``Q`` queries, ``V``
vocabulary size; a sequence has T = 2N + Q tokens.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from attention import _checks, _model_cache, variants
from attention._training import clipped_adam
from attention.induction import AttentionChoice, AttentionOnlyTransformer, InductionConfig

IGNORE = -100  # the target of a position that is not scored (cross_entropy's ignore_index)

PAIR_COUNTS = (2, 4, 8)  # the default pair counts N: sequences of 6, 12 and 24 tokens
CHOICES: tuple[AttentionChoice | None, ...] = (
    None,  # softmax attention, its KV cache growing with T
    variants.Linear(short_conv=3),  # linear attention, a D x D state per head
    variants.DeltaNet(short_conv=3, alpha_bias=-4.0),  # the gated delta rule, decays near 1
)


def recall_batch(
    batch_size: int,
    num_pairs: int,
    *,
    vocab_size: int,
    num_queries: int | None = None,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """MQAR sequences ``k_1 v_1 ... k_N v_N q_1 ... q_Q`` and the values each query asks for.

    Keys are drawn from ``0 .. V/2 - 1`` without repetition within a sequence,
    values uniformly from ``V/2 .. V - 1`` (the two halves of the vocabulary
    are disjoint, as in Zoology). The queries are Q of the keys in a random
    order. Only query positions are scored: ``targets[b, 2N + i]`` is the
    value bound to ``q_i``, every other target is -100. Unlike Zoology the
    queries follow each other directly, with no filler tokens between them.

    Args:
        batch_size: B, the number of sequences.
        num_pairs: N, the key-value pairs, at most V // 2.
        vocab_size: V, an even int >= 4.
        num_queries: Q, the keys asked again, 1 <= Q <= N. Default: N, all of them.
        generator: Where the tokens are drawn from (the global random state is
            left alone); they are made on its device.

    Returns:
        ``(tokens, targets)``, both int64 of shape (B, 2N + Q).

    Example:
        >>> x, y = recall_batch(1, 2, vocab_size=8, generator=torch.Generator().manual_seed(0))
        >>> x.tolist(), y.tolist()
        ([[2, 7, 3, 7, 2, 3]], [[-100, -100, -100, -100, 7, 7]])
    """
    b = _checks.positive_int("batch_size", batch_size)
    n = _checks.positive_int("num_pairs", num_pairs)
    v = _checks.positive_int("vocab_size", vocab_size)
    if v < 4 or v % 2:
        raise ValueError(f"vocab_size must be an even int >= 4, got {v}")
    if n > v // 2:
        raise ValueError(
            f"num_pairs must be <= vocab_size // 2 = {v // 2} (distinct keys), got {n}"
        )
    q = n if num_queries is None else _checks.positive_int("num_queries", num_queries)
    if q > n:
        raise ValueError(f"num_queries must be <= num_pairs={n}, got {q}")
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    g, half = generator, v // 2
    keys = torch.rand(b, half, generator=g, device=g.device).argsort(dim=1)[:, :n]  # (B, N)
    values = torch.randint(half, v, (b, n), generator=g, device=g.device)  # (B, N)
    asked = torch.rand(b, n, generator=g, device=g.device).argsort(dim=1)[:, :q]  # (B, Q)
    pairs = torch.stack([keys, values], dim=2).flatten(1)  # (B, N, 2) -> (B, 2N)
    tokens = torch.cat([pairs, keys.gather(1, asked)], dim=1)  # (B, 2N) + (B, Q) -> (B, T)
    targets = torch.full_like(tokens, IGNORE)  # (B, T)
    targets[:, 2 * n :] = values.gather(1, asked)  # (B, Q): the value bound to each query
    return tokens, targets


def recall_accuracy(model: AttentionOnlyTransformer, tokens: Tensor, targets: Tensor) -> float:
    """The fraction of scored positions (targets != -100) whose argmax logit is the target.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> model = AttentionOnlyTransformer(InductionConfig(vocab_size=8, context_length=6))
        >>> 0.0 <= recall_accuracy(model, *recall_batch(2, 2, vocab_size=8, generator=g)) <= 1.0
        True
    """
    scored = targets != IGNORE  # (B, T)
    with torch.no_grad():
        guess = model(tokens).argmax(dim=-1)  # (B, T, V) -> (B, T)
    return float((guess[scored] == targets[scored]).float().mean().item())


@dataclass(frozen=True)
class RecallRun:
    """What :func:`train_recall` returns: the model and its accuracy at each pair count."""

    model: AttentionOnlyTransformer  # the trained model, in eval mode
    pairs: tuple[int, ...]  # the pair counts N it was trained on and tested at
    accuracy: tuple[float, ...]  # fraction of queries answered right at each N (test batch)
    losses: tuple[float, ...]  # the training loss at every step
    seconds: float  # wall-clock time of training and testing


def train_recall(
    choice: AttentionChoice | None,
    num_pairs: Sequence[int] = PAIR_COUNTS,
    *,
    steps: int = 300,
    batch_size: int = 32,
    lr: float = 2e-2,
    seed: int = 0,
    d_model: int = 32,
    n_heads: int = 4,
    n_layers: int = 2,
    vocab_size: int = 64,
    test_size: int = 256,
    device: torch.device | str = "cpu",
) -> RecallRun:
    """Train an attention-only model on MQAR at a mix of pair counts; test it at each.

    Step k trains on a batch with N = ``num_pairs[k % len(num_pairs)]``,
    minimising ``cross_entropy`` over the query positions only, with Adam, a
    cosine decay of the learning rate to zero and gradients clipped to norm 1.
    The weights are drawn under ``torch.manual_seed(seed)`` inside
    ``torch.random.fork_rng``; training data come from a CPU generator seeded
    with ``seed``, test data from one seeded with ``seed + 1``, so every
    choice and device sees the same sequences. Cached by
    ``attention._model_cache``.

    Args:
        choice: The attention of every layer, from :mod:`attention.variants`;
            None for softmax :class:`attention.MultiHeadAttention`.
        num_pairs: The pair counts N. Default: :data:`PAIR_COUNTS`, (2, 4, 8).
        steps: Training batches. Default: 300.
        batch_size: B, sequences per batch. Default: 32.
        lr: Adam's initial learning rate. Default: 2e-2.
        seed: Seed of the weights and data, an int >= 0. Default: 0.
        d_model: C, the model width; head width D = C / H. Default: 32.
        n_heads: H, heads per layer. Default: 4.
        n_layers: Attention layers. Default: 2.
        vocab_size: V, even, >= 2 max(N). Default: 64.
        test_size: Test sequences per pair count. Default: 256.
        device: Where to train. Default: ``"cpu"``.

    Returns:
        A :class:`RecallRun`.

    Example:
        >>> run = train_recall(None, (2,), steps=2, batch_size=4, vocab_size=8, test_size=4)
        >>> run.pairs, len(run.accuracy), len(run.losses)
        ((2,), 1, 2)
    """
    if isinstance(num_pairs, int) or not isinstance(num_pairs, Sequence) or not num_pairs:
        raise TypeError(f"num_pairs must be a non-empty sequence of ints, got {num_pairs!r}")
    sizes = tuple(_checks.positive_int("num_pairs", n) for n in num_pairs)
    cfg = InductionConfig(
        vocab_size=_checks.positive_int("vocab_size", vocab_size),
        context_length=3 * max(sizes),
        emb_dim=_checks.positive_int("d_model", d_model),
        n_heads=_checks.positive_int("n_heads", n_heads),
        n_layers=_checks.positive_int("n_layers", n_layers),
        attention=choice,
    )
    if vocab_size % 2 or 2 * max(sizes) > vocab_size:
        raise ValueError(
            f"vocab_size must be even and >= 2 * max(num_pairs) = {2 * max(sizes)}, "
            f"got {vocab_size}"
        )
    n_steps = _checks.positive_int("steps", steps)
    b = _checks.positive_int("batch_size", batch_size)
    n_test = _checks.positive_int("test_size", test_size)
    _checks.positive_number("lr", lr)
    _checks.non_negative_int("seed", seed)
    arguments = (cfg, sizes, n_steps, b, lr, seed, n_test, str(device))
    return _model_cache.cached(
        train_recall,
        arguments,
        lambda: _train(cfg, sizes, n_steps, b, lr, seed, n_test, device),
    )


def _train(
    cfg: InductionConfig,
    sizes: tuple[int, ...],
    n_steps: int,
    b: int,
    lr: float,
    seed: int,
    n_test: int,
    device: torch.device | str,
) -> RecallRun:
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AttentionOnlyTransformer(cfg).to(device)
    data = torch.Generator().manual_seed(seed)
    step = clipped_adam(model, lr=lr, steps=n_steps)
    losses = []
    for k in range(n_steps):
        x, y = recall_batch(b, sizes[k % len(sizes)], vocab_size=cfg.vocab_size, generator=data)
        x, y = x.to(device), y.to(device)  # drawn on the CPU: every device, the same data
        logits = model(x)  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=IGNORE)
        losses.append(step(loss))
    model.eval()
    tests = torch.Generator().manual_seed(seed + 1)
    scores = []
    for n in sizes:
        x, y = recall_batch(n_test, n, vocab_size=cfg.vocab_size, generator=tests)
        scores.append(recall_accuracy(model, x.to(device), y.to(device)))
    return RecallRun(model, sizes, tuple(scores), tuple(losses), time.perf_counter() - start)


def recall_curve(
    choices: Sequence[AttentionChoice | None] = CHOICES,
    pair_counts: Sequence[int] = PAIR_COUNTS,
    *,
    steps: int = 300,
    batch_size: int = 32,
    lr: float = 2e-2,
    seed: int = 0,
    vocab_size: int = 64,
    test_size: int = 256,
    device: torch.device | str = "cpu",
) -> tuple[RecallRun, ...]:
    """:func:`train_recall` for each choice, with the same seed and settings.

    ``runs[i].accuracy[j]`` is choice i's accuracy at ``pair_counts[j]``: one
    line of the plot "accuracy against the number of pairs" per choice. The
    model sizes are :func:`train_recall`'s defaults (C = 32, H = 4, so D = 8
    and a D x D state of 64 numbers per head; two layers). The defaults give
    the module's measured curve: :data:`CHOICES` (softmax, linear attention
    and DeltaNet with their short convolutions) at N = 2, 4, 8.

    Args:
        choices: One attention choice per line (None for softmax). Default:
            :data:`CHOICES`.
        pair_counts: The pair counts N. Default: :data:`PAIR_COUNTS`, (2, 4, 8).
        steps: Training batches per choice. Default: 300.
        batch_size: B, sequences per batch. Default: 32.
        lr: Adam's initial learning rate. Default: 2e-2.
        seed: Seed of the weights and data, the same for every choice. Default: 0.
        vocab_size: V, even, >= 2 max(N). Default: 64.
        test_size: Test sequences per pair count. Default: 256.
        device: Where to train. Default: ``"cpu"``.

    Returns:
        One :class:`RecallRun` per choice, in order.

    Example:
        >>> runs = recall_curve([None], (2,), steps=1, batch_size=2, vocab_size=8, test_size=2)
        >>> len(runs), runs[0].pairs
        (1, (2,))
    """
    return tuple(
        train_recall(
            c,
            pair_counts,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            vocab_size=vocab_size,
            test_size=test_size,
            device=device,
        )
        for c in choices
    )
