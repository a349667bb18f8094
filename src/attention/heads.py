"""Every head of a model at once, the way interpretability tools lay them out.

:func:`head_patterns` reads every head's attention weights on one sequence
and scores each head with the package's own score functions
(:func:`attention.induction_scores.previous_token_score`, and on a repeated
sequence :func:`attention.induction_scores.induction_score`). A head whose
score reaches a threshold is labelled with it: "previous token 0.99".

:func:`head_grid` draws them as small multiples, one thumbnail per (layer,
head), each titled with its layer, head and scores; clicking a thumbnail, or
focusing it and pressing Enter or Space, opens it large, with its tokens and
every weight on hover or focus. :func:`head_grid_figure` draws the same
thumbnails as a static figure, for where scripts do not run.

Works on any :class:`attention.induction.AttentionOnlyTransformer`: the
grammar model of chapter 8 (:mod:`attention.grammar`) and the induction
model of chapter 12.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from attention import _checks
from attention.induction import AttentionOnlyTransformer, attention_patterns
from attention.induction_scores import induction_score, previous_token_score
from attention.widgets import JSON_DECIMALS, Widget, _round

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: The names of the two labelled patterns, as the thumbnails print them.
PREVIOUS_TOKEN = "previous token"
INDUCTION = "induction"

#: Decimals of the scores the thumbnails print.
SCORE_DECIMALS = 2


@dataclass(frozen=True)
class HeadPatterns:
    """Every head's weights on one sequence, with its scores and labels.

    Attributes:
        weights: (N, H, T, T), as :func:`attention.induction.attention_patterns`
            returns them.
        tokens: The T token labels.
        previous_token: (N, H), the previous-token score of every head.
        induction: (N, H), the induction score of every head; ``None`` when no
            period was given.
        length: The period L of the sequence, or ``None``.
        threshold: The score a head needs to be labelled.
    """

    weights: Tensor
    tokens: tuple[str, ...]
    previous_token: Tensor
    induction: Tensor | None
    length: int | None
    threshold: float

    def label(self, layer: int, head: int) -> tuple[str, float] | None:
        """The pattern a head is labelled with, and its score; ``None`` if neither reaches it.

        A head is labelled :data:`PREVIOUS_TOKEN` or :data:`INDUCTION` when that
        score reaches :attr:`threshold`; when both do, the higher one wins.
        """
        scores = [(self.previous_token[layer, head].item(), PREVIOUS_TOKEN)]
        if self.induction is not None:
            scores.append((self.induction[layer, head].item(), INDUCTION))
        best, name = max(scores)
        return (name, best) if best >= self.threshold else None


def head_patterns(
    model: AttentionOnlyTransformer,
    tokens: Tensor,
    *,
    token_labels: Sequence[str] | None = None,
    length: int | None = None,
    threshold: float = 0.5,
) -> HeadPatterns:
    """Read and score every head of ``model`` on one sequence.

    Args:
        model: An :class:`attention.induction.AttentionOnlyTransformer`.
        tokens: One sequence of token ids, int64 of shape (T,), T >= 2.
        token_labels: T labels for the tokens. Default: the ids.
        length: The period L of a repeated sequence (``tokens[t] ==
            tokens[t - L]`` for every t >= L), to score induction heads too.
            Default: ``None``, previous-token scores only.
        threshold: The score, in (0, 1], a head needs to be labelled.
            Default: 0.5.

    Returns:
        A :class:`HeadPatterns`.

    Example:
        >>> from attention.induction import InductionConfig
        >>> model = AttentionOnlyTransformer(InductionConfig(vocab_size=8, context_length=8))
        >>> heads = head_patterns(model, torch.tensor([1, 2, 3, 1, 2, 3]), length=3)
        >>> heads.weights.shape, heads.induction.shape
        (torch.Size([2, 2, 6, 6]), torch.Size([2, 2]))
    """
    weights = attention_patterns(model, tokens)  # (N, H, T, T); checks model and shape
    t = weights.shape[-1]
    if t < 2:
        raise ValueError(f"tokens must hold at least 2 tokens, got {t}")
    if token_labels is None:
        labels = tuple(str(i) for i in tokens.tolist())
    elif isinstance(token_labels, str) or len(token_labels) != t:
        raise ValueError(f"token_labels must be a sequence of {t} labels, got {token_labels!r}")
    else:
        labels = tuple(str(label) for label in token_labels)
    limit = _checks.positive_number("threshold", threshold)
    if limit > 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    ind = None
    if length is not None:
        n = _checks.positive_int("length", length)
        if not 2 <= n < t:
            raise ValueError(f"length must be in [2, T) with T={t}, got {n}")
        if not torch.equal(tokens[n:], tokens[:-n]):  # exact: integer ids
            raise ValueError(f"tokens must repeat with period length={n}, got {tokens.tolist()}")
        ind = induction_score(weights, n)  # (N, H)
    return HeadPatterns(
        weights=weights,
        tokens=labels,
        previous_token=previous_token_score(weights),  # (N, H)
        induction=ind,
        length=length,
        threshold=limit,
    )


def _first(first: int) -> int:
    if isinstance(first, bool) or first not in (0, 1):
        raise ValueError(f"first must be 0 or 1, got {first!r}")
    return first


def _fallback(heads: HeadPatterns, title: str, first: int) -> str:
    """Where scripts do not run: one line per head, its scores and label."""
    items = []
    n_layers, n_heads = heads.previous_token.shape
    for n in range(n_layers):
        for h in range(n_heads):
            found = heads.label(n, h)
            scores = f"previous token {heads.previous_token[n, h].item():.2f}"
            if heads.induction is not None:
                scores += f", induction {heads.induction[n, h].item():.2f}"
            tag = f" (a {found[0]} head)" if found else ""
            items.append(f"<li>Layer {n + first}, head {h + first}: {scores}{tag}</li>")
    return f"<p>{html.escape(title)}</p><ul>{''.join(items)}</ul>"


def head_grid(
    model: AttentionOnlyTransformer,
    tokens: Tensor,
    *,
    token_labels: Sequence[str] | None = None,
    length: int | None = None,
    threshold: float = 0.5,
    title: str = "Every head's attention weights",
    first: int = 0,
) -> Widget:
    """Small multiples of every head of ``model`` on one sequence, to enlarge one by one.

    Each thumbnail is titled with its layer and head and its scores; a head
    whose score reaches ``threshold`` carries its label, e.g. "previous token
    0.99". A click on a thumbnail, or Enter or Space on it, opens the head
    large, with its tokens and every weight on hover or focus; Escape or the
    close button returns to the thumbnail.

    The widget's data holds the weights of
    :func:`attention.induction.attention_patterns`, rounded to
    :data:`attention.widgets.JSON_DECIMALS` decimals, and the scores of
    :func:`head_patterns`.

    Args:
        model: An :class:`attention.induction.AttentionOnlyTransformer`.
        tokens: One sequence of token ids, int64 of shape (T,), T >= 2.
        token_labels: T labels for the tokens. Default: the ids.
        length: The period of a repeated sequence, to score induction heads.
            Default: ``None``.
        threshold: The score a head needs to be labelled. Default: 0.5.
        title: The figure's caption and accessible name.
        first: The number of the first layer and head in the titles, 0 or
            1 (a chapter that counts heads from 1). Default: 0.

    Returns:
        A :class:`attention.widgets.Widget` of kind ``"heads"``.

    Example:
        >>> from attention.induction import InductionConfig
        >>> model = AttentionOnlyTransformer(InductionConfig(vocab_size=8, context_length=8))
        >>> head_grid(model, torch.tensor([1, 2, 3, 1, 2, 3]), length=3).kind
        'heads'
    """
    heads = head_patterns(
        model, tokens, token_labels=token_labels, length=length, threshold=threshold
    )
    start = _first(first)
    n_layers, n_heads = heads.previous_token.shape
    entries: list[dict[str, Any]] = []
    for n in range(n_layers):
        for h in range(n_heads):
            scores = {PREVIOUS_TOKEN: round(heads.previous_token[n, h].item(), JSON_DECIMALS)}
            if heads.induction is not None:
                scores[INDUCTION] = round(heads.induction[n, h].item(), JSON_DECIMALS)
            found = heads.label(n, h)
            entries.append(
                {
                    "layer": n,
                    "head": h,
                    "values": _round(heads.weights[n, h]),
                    "scores": scores,
                    "label": found[0] if found else None,
                }
            )
    data = {
        "title": title,
        "tokens": list(heads.tokens),
        "layers": n_layers,
        "heads": entries,
        "decimals": SCORE_DECIMALS,
        "threshold": heads.threshold,
        "first": start,
    }
    return Widget("heads", data, label=title, fallback=_fallback(heads, title, start))


def head_grid_figure(
    model: AttentionOnlyTransformer,
    tokens: Tensor,
    *,
    token_labels: Sequence[str] | None = None,
    length: int | None = None,
    threshold: float = 0.5,
    title: str | None = None,
    first: int = 0,
) -> Figure:
    """The thumbnails of :func:`head_grid` as a static figure (needs matplotlib).

    One small heatmap per head, a row per layer, each titled with its layer,
    head and label or previous-token score; the token labels on the outer
    axes only.

    Args:
        model: An :class:`attention.induction.AttentionOnlyTransformer`.
        tokens: One sequence of token ids, int64 of shape (T,), T >= 2.
        token_labels: T labels for the tokens. Default: the ids.
        length: The period of a repeated sequence, to score induction heads.
            Default: ``None``.
        threshold: The score a head needs to be labelled. Default: 0.5.
        title: The figure's title. Default: none.
        first: The number of the first layer and head in the titles, 0 or 1.
            Default: 0.

    Returns:
        A ``matplotlib.figure.Figure``.
    """
    _checks.viz_extra("head_grid_figure")
    from matplotlib.figure import Figure

    heads = head_patterns(
        model, tokens, token_labels=token_labels, length=length, threshold=threshold
    )
    start = _first(first)
    n_layers, n_heads = heads.previous_token.shape
    t = len(heads.tokens)
    figure = Figure(figsize=(1.9 * n_heads + 0.6, 2.0 * n_layers + (0.4 if title else 0.1)))
    axes = figure.subplots(n_layers, n_heads, squeeze=False, sharex=True, sharey=True)
    blocked = torch.ones(t, t, dtype=torch.bool).triu(diagonal=1)
    for n in range(n_layers):
        for h in range(n_heads):
            ax = axes[n][h]
            shown = heads.weights[n, h].masked_fill(blocked, float("nan")).numpy()
            ax.imshow(shown, cmap="viridis", vmin=0.0, vmax=1.0)
            found = heads.label(n, h)
            if found:
                note = f"{found[0]} {found[1]:.2f}"
            else:
                note = f"{PREVIOUS_TOKEN} {heads.previous_token[n, h].item():.2f}"
            ax.set_title(f"L{n + start} H{h + start}: {note}", fontsize=7)
            ax.set_xticks(range(t), heads.tokens, rotation=90, fontsize=6)
            ax.set_yticks(range(t), heads.tokens, fontsize=6)
            ax.tick_params(length=0, labelbottom=n == n_layers - 1, labelleft=h == 0)
    if title:
        figure.suptitle(title, fontsize=9)
    figure.set_layout_engine("constrained")
    return figure
