"""The attention lab: one causal head, line by line, and four ways to break it.

:func:`lab_forward` runs the six lines of a causal head's forward pass that
the lab shows (chapters 4 to 6), one tensor a line, with the switches the
lab offers to break it on purpose: no scaling by sqrt(d_k), zeroing the
future *after* the softmax instead of ``-inf`` before it, dropout in
training with a fixed keep mask, and a query row whose every key is masked.
:func:`lab` returns the :class:`attention.widgets.Widget` that the
playground page opens on; ``attention/static/attention-playground.js``
draws it and recomputes every step in the browser, and the browser tests
hold that arithmetic to :func:`lab_cases`, computed here by the package.

Needs nothing beyond torch: these are data and markup, not images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor

from attention import _checks
from attention.dropout import keep_mask
from attention.functional import causal_mask, masked_softmax
from attention.playground import PLAYGROUND_SEED, _seeded_matrices
from attention.toy import TOKENS, toy_inputs
from attention.widgets import JSON_DECIMALS, Widget

#: The code the lab steps through, one line a step, as the package writes it
#: for one head of (T, d_k) queries and keys; ``mask`` is ``True`` = blocked.
LAB_LINES = {
    "scores": "scores = queries @ keys.T",
    "scaled": "scores = scores / keys.shape[-1] ** 0.5",
    "masked": "scores = scores.masked_fill(mask, -torch.inf)",
    "weights": "weights = torch.softmax(scores, dim=-1)",
    "zeroed": "weights = weights.masked_fill(mask, 0.0)",
    "dropped": "weights = dropout(weights)",
    "context": "context = weights @ values",
}
#: Widths of the random queries and keys (the lab's d_k slider).
LAB_D_K = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
#: Seed of the random unit-variance queries and keys.
LAB_RANDOM_SEED = 0
#: Dropout probability and the seed of the fixed keep mask.
LAB_P = 0.5
LAB_DROPOUT_SEED = 4
#: Decimals of the random queries and keys embedded in the page (and used here).
_RANDOM_DECIMALS = 4


@dataclass(frozen=True)
class LabSteps:
    """Every tensor of the lab's forward pass, each (T, T) but the contexts (T, d_v)."""

    scores: Tensor  # queries @ keys.T
    scaled: Tensor  # divided by sqrt(d_k), or the scores unchanged without scaling
    masked: Tensor  # -inf where blocked (unchanged when the mask comes after the softmax)
    weights: Tensor  # the softmax: NaN in a row whose every key is -inf
    zeroed: Tensor  # blocked weights set to 0 after the softmax (else the weights)
    dropped: Tensor  # after dropout: weights * keep / (1 - p) in training
    context: Tensor  # dropped @ values
    guarded: Tensor  # attention.functional.masked_softmax of the scaled scores
    guarded_context: Tensor  # guarded weights, after the same dropout, @ values
    max_weight: Tensor  # (T,) largest weight of each softmax row
    entropy: Tensor  # (T,) entropy of each softmax row, in nats


def lab_mask(num_tokens: int, blocked_row: int | None = None) -> Tensor:
    """The causal mask (``True`` = blocked), with every key of ``blocked_row`` blocked too."""
    mask = causal_mask(num_tokens)
    if blocked_row is not None:
        if not 0 <= _checks.non_negative_int("blocked_row", blocked_row) < num_tokens:
            raise ValueError(f"blocked_row must be below T={num_tokens}, got {blocked_row}")
        mask[blocked_row] = True
    return mask


def lab_forward(
    queries: Tensor,
    keys: Tensor,
    values: Tensor,
    *,
    scale: bool = True,
    mask_after: bool = False,
    blocked_row: int | None = None,
    keep: Tensor | None = None,
    p: float = LAB_P,
) -> LabSteps:
    """One causal head, step by step, as the lab shows it (and breaks it).

    ``softmax(mask(Q K^T / sqrt(d_k))) V``, each step kept: the lines of
    :data:`LAB_LINES`. With the defaults this is the head of
    :class:`attention.CausalAttention` in evaluation mode.

    Args:
        queries: (T, d_k).
        keys: (T, d_k).
        values: (T, d_v).
        scale: Divide the scores by sqrt(d_k). Default: ``True``.
        mask_after: Skip the ``-inf`` before the softmax and set the blocked
            weights to 0 after it instead (the rows then sum to less than 1).
            Default: ``False``.
        blocked_row: A query whose every key is blocked, or ``None``.
        keep: Training mode's keep mask (T, T) bool, ``True`` = kept, as
            :func:`attention.dropout.keep_mask` draws it; ``None`` for
            evaluation (no dropout).
        p: The dropout probability the kept weights are scaled by, 1 / (1 - p).

    Returns:
        The :class:`LabSteps`.
    """
    q = _checks.floating("queries", queries, ranks=(2,), layout="(T, d_k)")
    k = _checks.floating("keys", keys, ranks=(2,), layout="(T, d_k)")
    v = _checks.floating("values", values, ranks=(2,), layout="(T, d_v)")
    if k.shape != q.shape or v.shape[0] != q.shape[0]:
        raise ValueError(
            f"keys must have the shape of queries {tuple(q.shape)} and values as many rows, "
            f"got keys {tuple(k.shape)} and values {tuple(v.shape)}"
        )
    rate = _checks.probability("p", p)
    mask = lab_mask(q.shape[0], blocked_row)  # (T, T)
    scores = q @ k.T  # (T, d_k) @ (d_k, T) -> (T, T)
    scaled = scores / k.shape[-1] ** 0.5 if scale else scores
    masked = scaled if mask_after else scaled.masked_fill(mask, -torch.inf)
    weights = torch.softmax(masked, dim=-1)  # (T, T)
    zeroed = weights.masked_fill(mask, 0.0) if mask_after else weights

    def dropout(w: Tensor) -> Tensor:
        if keep is None:
            return w
        kept = _checks.mask("keep", keep, w.shape, "the weights'")
        return w * kept / (1.0 - rate)

    dropped = dropout(zeroed)
    guarded = masked_softmax(scaled, mask)
    return LabSteps(
        scores=scores,
        scaled=scaled,
        masked=masked,
        weights=weights,
        zeroed=zeroed,
        dropped=dropped,
        context=dropped @ v,  # (T, T) @ (T, d_v) -> (T, d_v)
        guarded=guarded,
        guarded_context=dropout(guarded) @ v,
        max_weight=weights.max(dim=-1).values,
        entropy=torch.special.entr(weights).sum(dim=-1),
    )


def _encode(values: Tensor) -> Any:
    """Nested lists for JSON; NaN and infinities as the strings JavaScript's Number() reads."""

    def one(x: Any) -> Any:
        if isinstance(x, list):
            return [one(e) for e in x]
        if math.isnan(x):
            return "NaN"
        if math.isinf(x):
            return "Infinity" if x > 0 else "-Infinity"
        return x

    return one(values.detach().to("cpu", torch.float64).round(decimals=JSON_DECIMALS).tolist())


def lab_inputs() -> dict[str, Any]:
    """The lab's inputs: the book's head (seed 123, d_k = 2) and random unit-variance ones.

    ``"book"``: the queries, keys and values of chapter 4's six tokens through
    the matrices of ``SelfAttentionV1(3, 2)`` after ``torch.manual_seed(123)``.
    ``"random"``: standard normal queries and keys of width 512 (the slider
    takes the first d_k columns), rounded to four decimals, with the book's
    values.
    """
    x = toy_inputs()
    w = {name: torch.tensor(m) for name, m in _seeded_matrices(3, 2).items()}
    g = torch.Generator().manual_seed(LAB_RANDOM_SEED)
    wide = torch.randn(2, len(TOKENS), max(LAB_D_K), generator=g).round(decimals=_RANDOM_DECIMALS)
    values = x @ w["W_value"]  # (T, d_in) @ (d_in, d_v) -> (T, d_v)
    return {
        "book": {"queries": x @ w["W_query"], "keys": x @ w["W_key"], "values": values},
        "random": {"queries": wide[0], "keys": wide[1], "values": values},
    }


def lab_keep() -> Tensor:
    """The fixed (T, T) keep mask of the lab's training mode (``True`` = kept)."""
    g = torch.Generator().manual_seed(LAB_DROPOUT_SEED)
    return keep_mask((len(TOKENS), len(TOKENS)), LAB_P, generator=g)


def _run(settings: dict[str, Any], inputs: dict[str, Any]) -> LabSteps:
    head = inputs[settings["source"]]
    d_k = settings["d_k"] if settings["source"] == "random" else head["queries"].shape[1]
    return lab_forward(
        head["queries"][:, :d_k],
        head["keys"][:, :d_k],
        head["values"],
        scale=settings["scale"],
        mask_after=settings["mask_after"],
        blocked_row=settings["blocked_row"],
        keep=lab_keep() if settings["training"] else None,
    )


#: The lab's starting settings: the book's head, scaled, masked before the softmax, evaluation.
LAB_INITIAL: dict[str, Any] = {
    "source": "book",
    "d_k": 2,
    "scale": True,
    "mask_after": False,
    "blocked_row": None,
    "training": False,
}


def lab_cases() -> list[dict[str, Any]]:
    """Reference cases for the lab, computed by the package.

    Each case holds the settings and every step's tensor, the softmax rows'
    maximum and entropy and the guard's weights and context; the browser
    tests set the lab to each case and compare, the broken variants included.
    """
    inputs = lab_inputs()
    variants: list[tuple[str, dict[str, Any]]] = [
        ("the book's head, as the chapter runs it", {}),
        ("no scaling", {"scale": False}),
        ("random queries and keys, d_k 512, scaled", {"source": "random", "d_k": 512}),
        (
            "random, d_k 512, no scaling: saturated",
            {"source": "random", "d_k": 512, "scale": False},
        ),
        ("random, d_k 8, no scaling", {"source": "random", "d_k": 8, "scale": False}),
        ("zero the future after the softmax", {"mask_after": True}),
        ("dropout in training, fixed mask", {"training": True}),
        ("zero after the softmax, in training", {"mask_after": True, "training": True}),
        ("every key of row 2 masked: NaN and the guard", {"blocked_row": 2}),
        (
            "row 4 masked, training, no scaling",
            {"blocked_row": 4, "training": True, "scale": False},
        ),
    ]
    cases = []
    for name, change in variants:
        settings = {**LAB_INITIAL, **change}
        steps = _run(settings, inputs)
        cases.append(
            {
                "name": name,
                "settings": settings,
                "expected": {f.name: _encode(getattr(steps, f.name)) for f in fields(LabSteps)},
            }
        )
    return cases


def lab() -> Widget:
    """The attention lab: one causal head, line by line, with four ways to break it."""
    inputs = lab_inputs()
    data = {
        "tokens": list(TOKENS),
        "lines": LAB_LINES,
        "inputs": {
            src: {name: _encode(t) for name, t in head.items()} for src, head in inputs.items()
        },
        "seed": PLAYGROUND_SEED,
        "random_seed": LAB_RANDOM_SEED,
        "d_k": list(LAB_D_K),
        "p": LAB_P,
        "dropout_seed": LAB_DROPOUT_SEED,
        "keep": lab_keep().tolist(),
        "initial": LAB_INITIAL,
        "cases": lab_cases(),
    }
    fallback = (
        "<p>The attention lab needs JavaScript: it steps through one head's forward pass "
        "in the browser, line by line, and lets you break it on purpose.</p>"
    )
    return Widget("lab", data, label="Attention lab", fallback=fallback)
