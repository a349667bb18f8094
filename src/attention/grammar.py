"""A tiny grammar, and an attention model trained on it (chapters 5 to 8).

The heatmaps of chapters 3 to 8 show untrained weights: near uniform,
because nothing has taught the layer which token matters to which. This
module gives those chapters a model that *has* learned something, small
enough to train in seconds on one CPU thread.

The grammar writes sentences of the shape

    Det [Adj] Noun Verb Prep Det [Adj] Noun

over a vocabulary of :data:`WORDS`, with two rules that reach across tokens:

* the verb depends on the subject's adjective: a ``fat`` or ``old`` animal
  rests (``sat``, ``slept``), a ``small`` or ``quick`` one moves (``ran``,
  ``jumped``); so to predict the verb at the noun, the model must read the
  adjective before it;
* the object depends on the subject: cats sit on mats and rugs, journeys
  start with steps and words; so to predict the object at its determiner or
  adjective, the model must look back past the verb and preposition to the
  subject noun.

The preposition follows from the verb, and the determiners and the object's
adjective are free. Both of the book's sentences are in the language: the
running example "Your journey starts with one step" and the plan's "The fat
cat sat on the mat" (:data:`RUNNING_EXAMPLE`, :data:`FAT_CAT`).

The model is an :class:`attention.induction.AttentionOnlyTransformer` (token
and position embeddings, causal :class:`attention.MultiHeadAttention` layers
with residuals, an unembedding); :func:`train_grammar` trains it on next-token
prediction and :func:`sentence_weights` reads its heads on a sentence.

Example:
    >>> ids = encode(FAT_CAT)
    >>> decode(ids) == FAT_CAT
    True
    >>> is_sentence(RUNNING_EXAMPLE)
    True
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
from attention.induction import AttentionOnlyTransformer, InductionConfig, attention_patterns

#: The running example of the book, as a sentence of the grammar.
RUNNING_EXAMPLE: tuple[str, ...] = ("Your", "journey", "starts", "with", "one", "step")
#: The book plan's sentence, with an adjective.
FAT_CAT: tuple[str, ...] = ("The", "fat", "cat", "sat", "on", "the", "mat")

_SUBJECT_DETS = ("The", "Your", "A")
_OBJECT_DETS = ("the", "your", "one", "a")
_OBJECT_ADJS = ("soft", "last", "green")
# noun -> (its adjectives, its objects); animals and paths.
_NOUNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "cat": (("fat", "old", "small", "quick"), ("mat", "rug")),
    "dog": (("fat", "old", "small", "quick"), ("rug", "floor")),
    "bird": (("fat", "old", "small", "quick"), ("roof", "branch")),
    "journey": (("long", "short"), ("step", "word")),
    "day": (("long", "short"), ("song", "word")),
}
_RESTING = ("sat", "slept")
_MOVING = ("ran", "jumped")
_PATH_VERBS = ("starts", "ends")
# adjective -> the verbs it allows (an animal without an adjective takes any of the four)
_ADJ_VERBS: dict[str, tuple[str, ...]] = {
    "fat": _RESTING,
    "old": _RESTING,
    "small": _MOVING,
    "quick": _MOVING,
    "long": _PATH_VERBS,
    "short": _PATH_VERBS,
}
_PREPS: dict[str, tuple[str, ...]] = {
    "sat": ("on",),
    "slept": ("on", "in"),
    "ran": ("to", "across"),
    "jumped": ("on", "over"),
    "starts": ("with",),
    "ends": ("with",),
}
#: The end of a sentence; also what fills a batch after a short sentence.
END = "."


def _vocabulary() -> tuple[str, ...]:
    words: list[str] = [END]
    groups: list[Sequence[str]] = [_SUBJECT_DETS, list(_NOUNS), list(_ADJ_VERBS), _OBJECT_DETS]
    groups += [_OBJECT_ADJS, list(_PREPS)]
    groups += [sorted({p for ps in _PREPS.values() for p in ps})]
    groups += [sorted({o for _, objs in _NOUNS.values() for o in objs})]
    for group in groups:
        words += [w for w in group if w not in words]
    return tuple(words)


#: Every token the grammar uses, in the order of their ids (id 0 is :data:`END`).
WORDS: tuple[str, ...] = _vocabulary()
_IDS = {w: i for i, w in enumerate(WORDS)}
#: The longest sentence, in tokens, without :data:`END`.
MAX_WORDS = 8


def _verbs(noun: str, adjective: str | None) -> tuple[str, ...]:
    if adjective is not None:
        return _ADJ_VERBS[adjective]
    return _PATH_VERBS if _NOUNS[noun][0] == ("long", "short") else _RESTING + _MOVING


def is_sentence(words: Sequence[str]) -> bool:
    """Whether ``words`` is a sentence of the grammar (without :data:`END`).

    Example:
        >>> is_sentence(("The", "fat", "cat", "ran", "to", "the", "mat"))
        False
    """
    w = list(words)
    if len(w) < 6 or w[0] not in _SUBJECT_DETS:
        return False
    i = 1
    adjective = w[i] if w[i] in _ADJ_VERBS else None
    i += adjective is not None
    noun = w[i]
    if noun not in _NOUNS or (adjective is not None and adjective not in _NOUNS[noun][0]):
        return False
    rest = w[i + 1 :]
    if len(rest) not in (4, 5) or rest[0] not in _verbs(noun, adjective):
        return False
    if rest[1] not in _PREPS[rest[0]] or rest[2] not in _OBJECT_DETS:
        return False
    if len(rest) == 5 and rest[3] not in _OBJECT_ADJS:
        return False
    return rest[-1] in _NOUNS[noun][1]


def encode(words: Sequence[str]) -> Tensor:
    """Token ids of ``words``, int64 of shape (T,).

    Raises:
        ValueError: if a word is not in :data:`WORDS`.
    """
    unknown = [w for w in words if w not in _IDS]
    if isinstance(words, str) or unknown:
        raise ValueError(f"words must be a sequence of words from WORDS, got unknown {unknown!r}")
    return torch.tensor([_IDS[w] for w in words], dtype=torch.int64)


def decode(ids: Tensor) -> tuple[str, ...]:
    """The words of token ids of shape (T,)."""
    t = _checks.tensor("ids", ids)
    if t.dim() != 1:
        raise ValueError(f"ids must have shape (T,), got shape {tuple(t.shape)}")
    return tuple(WORDS[i] for i in t.tolist())


def _pick(options: Sequence[str], generator: torch.Generator) -> str:
    where = generator.device
    return options[int(torch.randint(len(options), (), generator=generator, device=where))]


def _coin(generator: torch.Generator) -> bool:
    return bool(torch.rand((), generator=generator, device=generator.device) < 0.5)


def sample_sentence(generator: torch.Generator) -> tuple[str, ...]:
    """One sentence of the grammar, drawn from ``generator``.

    Each choice is uniform over what the rules allow; each adjective is there
    with probability 1/2.

    Example:
        >>> is_sentence(sample_sentence(torch.Generator().manual_seed(0)))
        True
    """
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    noun = _pick(list(_NOUNS), generator)
    adjectives, objects = _NOUNS[noun]
    adjective = _pick(adjectives, generator) if _coin(generator) else None
    verb = _pick(_verbs(noun, adjective), generator)
    words = [_pick(_SUBJECT_DETS, generator), *([adjective] if adjective else []), noun, verb]
    words += [_pick(_PREPS[verb], generator), _pick(_OBJECT_DETS, generator)]
    if _coin(generator):
        words.append(_pick(_OBJECT_ADJS, generator))
    return (*words, _pick(objects, generator))


def sample_batch(batch_size: int, generator: torch.Generator) -> Tensor:
    """``batch_size`` sentences as token ids, each followed by :data:`END`.

    Shorter sentences are filled up with :data:`END` (id 0).

    Returns:
        Token ids, int64 of shape (B, MAX_WORDS + 1).

    Example:
        >>> sample_batch(3, torch.Generator().manual_seed(0)).shape
        torch.Size([3, 9])
    """
    b = _checks.positive_int("batch_size", batch_size)
    x = torch.zeros(b, MAX_WORDS + 1, dtype=torch.int64)  # (B, T), END everywhere
    for row in range(b):
        ids = encode(sample_sentence(generator))
        x[row, : len(ids)] = ids
    return x


@dataclass(frozen=True)
class GrammarRun:
    """What :func:`train_grammar` returns."""

    model: AttentionOnlyTransformer  # the trained model, in eval mode
    losses: tuple[float, ...]  # the training loss at every step
    seconds: float  # wall-clock time of the training


def grammar_config(*, n_heads: int = 4, emb_dim: int = 32) -> InductionConfig:
    """The sizes of the grammar's model: one layer of ``n_heads`` heads."""
    return InductionConfig(
        vocab_size=len(WORDS),
        context_length=MAX_WORDS + 1,
        emb_dim=emb_dim,
        n_heads=n_heads,
        n_layers=1,
    )


def train_grammar(
    config: InductionConfig | None = None,
    *,
    steps: int = 300,
    batch_size: int = 64,
    lr: float = 1e-2,
    seed: int = 0,
) -> GrammarRun:
    """Train an attention-only model to predict the next word of the grammar.

    Minimises the next-token cross-entropy with Adam, gradients clipped to
    norm 1 and a cosine decay of the learning rate (the package's
    ``clipped_adam``). The loss counts every position up to and including the
    prediction of :data:`END`; the filling after it is not scored.

    Reproducible, and the caller's random state is left alone: the weights are
    drawn under ``torch.manual_seed(seed)`` inside ``torch.random.fork_rng``,
    the sentences from a ``torch.Generator`` seeded with ``seed``.

    When ``ATTENTION_MODEL_CACHE`` names a folder (the book's build sets it),
    a run with the same arguments and code is loaded from there instead of
    trained again (``attention._model_cache``); ``seconds`` is then the
    stored run's training time.

    Args:
        config: The model's sizes. Default: :func:`grammar_config`.
        steps: Number of batches. Default: 300.
        batch_size: Sentences per batch. Default: 64.
        lr: Adam's initial learning rate. Default: 1e-2.
        seed: Seed of the weights and the data, an int >= 0. Default: 0.

    Returns:
        A :class:`GrammarRun`.

    Example:
        >>> run = train_grammar(steps=2, batch_size=4)
        >>> len(run.losses)
        2
    """
    cfg = grammar_config() if config is None else config
    if not isinstance(cfg, InductionConfig):
        raise TypeError(f"config must be an InductionConfig, got {type(cfg).__name__}")
    if cfg.vocab_size != len(WORDS) or cfg.context_length < MAX_WORDS + 1:
        raise ValueError(
            f"config must have vocab_size={len(WORDS)} and context_length >= {MAX_WORDS + 1}, "
            f"got vocab_size={cfg.vocab_size}, context_length={cfg.context_length}"
        )
    n_steps = _checks.positive_int("steps", steps)
    b = _checks.positive_int("batch_size", batch_size)
    _checks.positive_number("lr", lr)
    _checks.non_negative_int("seed", seed)
    arguments = (cfg, n_steps, b, lr, seed)
    return _model_cache.cached(train_grammar, arguments, lambda: _train(cfg, n_steps, b, lr, seed))


def _train(cfg: InductionConfig, n_steps: int, b: int, lr: float, seed: int) -> GrammarRun:
    """The training loop of :func:`train_grammar`, its arguments checked."""
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AttentionOnlyTransformer(cfg)
    data = torch.Generator().manual_seed(seed)
    step = clipped_adam(model, lr=lr, steps=n_steps)
    losses = []
    for _ in range(n_steps):
        x = sample_batch(b, data)  # (B, T)
        target = x[:, 1:].clone()  # (B, T-1): position t predicts token t+1
        after_end = (x[:, :-1] == 0).cumsum(dim=1) > 0  # (B, T-1): at or past the first END
        target[after_end] = -100  # cross_entropy's ignore_index
        logits = model(x[:, :-1])  # (B, T-1, V)
        loss = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=-100)
        losses.append(step(loss))
    model.eval()
    return GrammarRun(model=model, losses=tuple(losses), seconds=time.perf_counter() - start)


def sentence_weights(model: AttentionOnlyTransformer, words: Sequence[str]) -> Tensor:
    """Every head's attention weights on one sentence.

    Args:
        model: A model from :func:`train_grammar` (or an untrained one).
        words: A sequence of words from :data:`WORDS`.

    Returns:
        Weights (N, H, T, T): ``[n, h, i, j]`` is how much word i attends to
        word j in head h of layer n.

    Example:
        >>> model = AttentionOnlyTransformer(grammar_config())
        >>> sentence_weights(model, FAT_CAT).shape
        torch.Size([1, 4, 7, 7])
    """
    return attention_patterns(model, encode(words))


#: The relations :func:`relations` finds, each ``(query, key)``.
RELATIONS: tuple[str, ...] = ("noun -> adjective", "verb -> subject", "object -> subject")


def relations(words: Sequence[str]) -> dict[str, tuple[int, int]]:
    """Where the grammar's relations sit in a sentence: name -> (query, key) positions.

    ``"noun -> adjective"``: the subject noun and its adjective (absent when
    the subject has none); ``"verb -> subject"``: the verb and the subject
    noun; ``"object -> subject"``: the object's determiner and the subject
    noun. The first two are the previous token; the third reaches three back.

    Example:
        >>> relations(FAT_CAT)
        {'noun -> adjective': (2, 1), 'verb -> subject': (3, 2), 'object -> subject': (5, 2)}
    """
    if not is_sentence(words):
        raise ValueError(f"words must be a sentence of the grammar, got {list(words)!r}")
    noun = 2 if words[1] in _ADJ_VERBS else 1
    found = {"noun -> adjective": (noun, noun - 1)} if noun == 2 else {}
    found |= {"verb -> subject": (noun + 1, noun), "object -> subject": (noun + 3, noun)}
    return found


def relation_scores(
    model: AttentionOnlyTransformer, sentences: int = 200, *, seed: int = 1
) -> dict[str, Tensor]:
    """Each head's mean weight on each relation, over sampled sentences.

    Args:
        model: A model on the grammar (one from :func:`train_grammar`).
        sentences: How many sentences to sample. Default: 200.
        seed: Seed of the sentences' ``torch.Generator``. Default: 1 (training
            draws from seed 0 by default).

    Returns:
        For each name in :data:`RELATIONS`, a tensor (N, H): the weight from the
        query to the key of that relation, averaged over the sentences that
        have it. A head that spreads evenly would score ``1 / (query + 1)``.

    Example:
        >>> model = AttentionOnlyTransformer(grammar_config())
        >>> relation_scores(model, 4)["verb -> subject"].shape
        torch.Size([1, 4])
    """
    if not isinstance(model, AttentionOnlyTransformer):
        raise TypeError(f"model must be an AttentionOnlyTransformer, got {type(model).__name__}")
    n = _checks.positive_int("sentences", sentences)
    generator = torch.Generator().manual_seed(_checks.non_negative_int("seed", seed))
    found: dict[str, list[Tensor]] = {name: [] for name in RELATIONS}
    for _ in range(n):
        words = sample_sentence(generator)
        weights = sentence_weights(model, words)  # (N, H, T, T)
        for name, (query, key) in relations(words).items():
            found[name].append(weights[:, :, query, key])  # (N, H)
    return {name: torch.stack(w).mean(dim=0) for name, w in found.items() if w}
