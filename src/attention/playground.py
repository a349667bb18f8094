"""The attention playground: chapter 3's example, editable in the browser.

:func:`playground` returns the :class:`attention.widgets.Widget` that the
playground page shows; the small script ``attention/static/attention-playground.js``
(package data, which the widget's HTML carries outside the book) draws it and
recomputes attention in the browser, with no external libraries.
Every number it starts from was computed here, by the package, and the
playground's own arithmetic is tested against :func:`playground_attention`,
through the reference cases of :func:`playground_cases`.

Needs nothing beyond torch: these are data and markup, not images.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from torch import Tensor

from attention import _checks
from attention.functional import causal_mask, masked_softmax
from attention.toy import TOKENS, toy_inputs
from attention.widgets import Widget, _round


def playground_attention(
    inputs: Tensor,
    W_query: Tensor,
    W_key: Tensor,
    W_value: Tensor,
    *,
    num_heads: int = 1,
    scale: bool = True,
    causal: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """The playground's attention, the reference its browser arithmetic is tested against.

    For each head h, with ``D = d_out / H`` and the matrices' columns
    ``h*D .. (h+1)*D``: ``softmax(mask(Q_h K_h^T [/ sqrt(D)])) V_h``; the heads'
    outputs are concatenated (there is no output projection). With one head,
    scaling and no mask this is :class:`attention.SelfAttentionV1`; with the
    mask, :class:`attention.CausalAttention`; with several heads and the mask,
    :class:`attention.MultiHeadAttention` with an identity ``out_proj``. The
    tests hold it equal to those classes.

    Args:
        inputs: Tokens, shape (T, d_in).
        W_query: (d_in, d_out).
        W_key: (d_in, d_out).
        W_value: (d_in, d_out).
        num_heads: H, which must divide d_out. Default: 1.
        scale: Divide scores by sqrt(D). Default: ``True``.
        causal: Apply the causal mask. Default: ``False``.

    Returns:
        ``(scores, weights, context)``: scores (H, T, T) before the softmax
        (scaled if ``scale``, ``-inf`` where masked), weights (H, T, T) and
        context vectors (T, d_out).
    """
    x = _checks.floating("inputs", inputs, ranks=(2,), layout="(T, d_in)")
    mats: list[Tensor] = []
    for name, w in (("W_query", W_query), ("W_key", W_key), ("W_value", W_value)):
        m = _checks.floating(name, w, ranks=(2,), layout="(d_in, d_out)")
        if m.shape[0] != x.shape[1] or (mats and m.shape != mats[0].shape):
            raise ValueError(
                f"{name} must have shape (d_in, d_out) with d_in={x.shape[1]} and the "
                f"same d_out as W_query, got {tuple(m.shape)}"
            )
        mats.append(m)
    heads = _checks.positive_int("num_heads", num_heads)
    d_out = mats[0].shape[1]
    if d_out % heads:
        raise ValueError(f"num_heads must divide d_out={d_out}, got num_heads={heads}")
    n, d = x.shape[0], d_out // heads

    def split(t: Tensor) -> Tensor:  # (T, d_out) -> (H, T, D)
        return t.view(n, heads, d).transpose(0, 1)

    queries, keys, values = (split(x @ w) for w in mats)  # (T, d_in) @ (d_in, d_out)
    scores = queries @ keys.transpose(1, 2)  # (H, T, D) @ (H, D, T) -> (H, T, T)
    if scale:
        scores = scores / d**0.5
    blocked = causal_mask(n) if causal else None
    weights = masked_softmax(scores, blocked)  # (H, T, T)
    context = (weights @ values).transpose(0, 1).reshape(n, d_out)  # (H, T, D) -> (T, d_out)
    if blocked is not None:
        scores = scores.masked_fill(blocked, -torch.inf)
    return scores, weights, context


#: Widths offered by the playground's seeded matrices.
PLAYGROUND_D_OUT = (1, 2, 3, 4, 6, 8)
PLAYGROUND_SEED = 123


def _seeded_matrices(d_in: int, d_out: int) -> dict[str, Any]:
    """The matrices of ``SelfAttentionV1(d_in, d_out)`` built right after seed 123.

    Drawn from a private generator, in the layer's order, so the caller's
    random state is left alone.
    """
    g = torch.Generator().manual_seed(PLAYGROUND_SEED)
    return {
        name: _round(torch.rand(d_in, d_out, generator=g))
        for name in ("W_query", "W_key", "W_value")
    }


def _case(name: str, x: Tensor, mats: dict[str, Any] | None, **settings: Any) -> dict[str, Any]:
    d_in = x.shape[1]
    if mats is None:  # weight-free: the identity projections
        eye = torch.eye(d_in)
        w_q = w_k = w_v = eye
    else:
        w_q, w_k, w_v = (torch.tensor(mats[k]) for k in ("W_query", "W_key", "W_value"))
    scores, weights, context = playground_attention(
        x,
        w_q,
        w_k,
        w_v,
        num_heads=settings["heads"],
        scale=settings["scale"],
        causal=settings["causal"],
    )
    q = settings["query"]
    case = {
        "name": name,
        "mode": "weight-free" if mats is None else "trainable",
        **settings,
        "inputs": _round(x),
        "expected": {
            "scores": _round(scores[:, q]),
            "weights": _round(weights[:, q]),
            "context": _round(context[q]),
            "all_context": _round(context),
        },
    }
    if mats is not None:
        case.update(d_out=w_q.shape[1], **mats)
    return case


def playground_cases() -> list[dict[str, Any]]:
    """Reference cases for the playground, computed by the package.

    Each case holds the inputs, settings and matrices, and the package's
    scores, weights and context vectors for the chosen query; the browser
    tests set the playground to each case and compare.
    """
    x = toy_inputs()
    edited = x.clone()
    edited[0, 0] = 0.53  # "Your"'s first value: the journey score becomes 1.0094
    seeded = {d: _seeded_matrices(3, d) for d in PLAYGROUND_D_OUT}
    tweaked = json.loads(json.dumps(seeded[2]))
    tweaked["W_key"][1][0] = -0.5
    base = {"query": 1, "scale": False, "causal": False, "heads": 1}
    return [
        _case("chapter 3: weight-free, journey", x, None, **base),
        _case("Your's first value edited", edited, None, **base),
        _case(
            "weight-free, scaled and causal",
            x,
            None,
            **{**base, "scale": True, "causal": True, "query": 3},
        ),
        _case(
            "trainable, seed 123, d_out 2 (SelfAttentionV1)",
            x,
            seeded[2],
            **{**base, "scale": True},
        ),
        _case(
            "trainable, causal, last query",
            x,
            seeded[2],
            **{**base, "scale": True, "causal": True, "query": 5},
        ),
        _case(
            "trainable, 2 heads, causal",
            x,
            seeded[4],
            **{**base, "scale": True, "causal": True, "heads": 2, "query": 2},
        ),
        _case("trainable, 3 heads, unscaled", x, seeded[6], **{**base, "heads": 3, "query": 4}),
        _case("trainable, an edited matrix entry", x, tweaked, **{**base, "scale": True}),
    ]


def playground() -> Widget:
    """The attention playground: chapter 3's example, editable in the browser."""
    data = {
        "tokens": list(TOKENS),
        "inputs": _round(toy_inputs()),
        "seed": PLAYGROUND_SEED,
        "seeded": {str(d): _seeded_matrices(3, d) for d in PLAYGROUND_D_OUT},
        "initial": {
            "mode": "weight-free",
            "query": 1,
            "scale": False,
            "causal": False,
            "dropout": False,
            "p": 0.5,
            "d_out": 2,
            "heads": 1,
        },
        "cases": playground_cases(),
    }
    fallback = (
        "<p>The attention playground needs JavaScript: it recomputes attention in the "
        "browser as you edit the tokens, the weight matrices and the settings.</p>"
    )
    return Widget("playground", data, label="Attention playground", fallback=fallback)
