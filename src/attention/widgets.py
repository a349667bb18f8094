"""Interactive figures: HTML with the package's numbers embedded as JSON.

Each function returns a :class:`Widget`, which a notebook (or the book's
executed pages) displays as HTML: a container holding its data as JSON. The
small script ``docs/_static/attention-widgets.js`` draws the chapters'
heatmaps and step-throughs in the browser, with no external libraries. Every
number a widget shows was computed here, by the package. The playground page
builds its widget on the same :class:`Widget`, in :mod:`attention.playground`.

Needs nothing beyond torch: these are data and markup, not images.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from attention import _checks
from attention.causal import CausalAttention
from attention.functional import causal_mask, masked_softmax
from attention.self_attention import SelfAttentionV1, SelfAttentionV2
from attention.simple import attention_scores, context_vector

#: Decimals kept in the embedded JSON: well below the 1e-4 the book prints.
JSON_DECIMALS = 6


class Widget:
    """One interactive figure: a kind, its JSON data and an accessible label.

    Args:
        kind: Which drawing the script makes: ``"heatmap"``, ``"steps"`` or
            ``"playground"``.
        data: JSON-serialisable data for the script.
        label: A short description, used as the figure's accessible name.
    """

    def __init__(self, kind: str, data: dict[str, Any], *, label: str) -> None:
        self.kind = kind
        self.data = data
        self.label = label

    def to_html(self) -> str:
        """The widget's HTML: a labelled container holding its data as JSON."""
        payload = json.dumps(self.data, separators=(",", ":"), allow_nan=False)
        payload = payload.replace("</", "<\\/")  # cannot close the script element early
        return (
            f'<div class="attn-widget" data-attn-kind="{self.kind}" role="group" '
            f'aria-label="{html.escape(self.label)}">'
            f'<script type="application/json" class="attn-data">{payload}</script>'
            '<noscript><p class="attn-noscript">This interactive figure needs JavaScript; '
            "the static figure beside it shows the same numbers.</p></noscript></div>"
        )

    def _repr_html_(self) -> str:
        return self.to_html()


def _round(values: Tensor) -> Any:
    """Nested lists of floats rounded for JSON; -inf (masked) becomes None."""
    rounded = values.detach().to("cpu", torch.float64).round(decimals=JSON_DECIMALS)
    return _finite_or_none(rounded.tolist())


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value if math.isfinite(value) else None


def _labels(name: str, labels: Sequence[str] | None, n: int) -> list[str]:
    if labels is None:
        return [str(i) for i in range(n)]
    if isinstance(labels, str) or len(labels) != n:
        raise ValueError(f"{name} must be a sequence of {n} labels, got {labels!r}")
    return [str(label) for label in labels]


def interactive_heatmap(
    matrix: Tensor,
    *,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    head_labels: Sequence[str] | None = None,
    blocked: Tensor | None = None,
    title: str = "Attention weights",
    row_axis: str = "query",
    col_axis: str = "key",
    decimals: int = 2,
) -> Widget:
    """An attention matrix the reader can hover, focus and click.

    Hovering or focusing a cell shows its query token, key token and value;
    clicking a row (or pressing Enter on it) highlights that query's weights;
    arrow keys move between cells. Several heads get a head selector.

    Args:
        matrix: (T_q, T_k) for one head, or (H, T_q, T_k) for several.
        row_labels: The query tokens. Default: indices.
        col_labels: The key tokens. Default: ``row_labels`` for a square matrix.
        head_labels: One name per head. Default: "head 1", "head 2", ...
        blocked: Optional (T_q, T_k) bool mask, ``True`` = blocked; blocked cells
            are drawn hatched and read "masked".
        title: The figure's caption and accessible name.
        row_axis: Name of the rows. Default: ``"query"``.
        col_axis: Name of the columns. Default: ``"key"``.
        decimals: Decimals written inside the cells (the readout shows more).

    Returns:
        A :class:`Widget` of kind ``"heatmap"``.

    Example:
        >>> from attention import TOKENS, simple_self_attention, toy_inputs
        >>> _, weights = simple_self_attention(toy_inputs(), return_weights=True)
        >>> interactive_heatmap(weights, row_labels=TOKENS).kind
        'heatmap'
    """
    m = _checks.floating("matrix", matrix, ranks=(2, 3), layout="(T_q, T_k) or (H, T_q, T_k)")
    heads = m if m.dim() == 3 else m.unsqueeze(0)  # (H, T_q, T_k)
    n_heads, n_rows, n_cols = heads.shape
    rows = _labels("row_labels", row_labels, n_rows)
    if col_labels is None and row_labels is not None and n_rows == n_cols:
        col_labels = row_labels
    cols = _labels("col_labels", col_labels, n_cols)
    names = (
        _labels("head_labels", head_labels, n_heads)
        if head_labels
        else [f"head {h + 1}" for h in range(n_heads)]
    )
    mask = None
    if blocked is not None:
        b = _checks.tensor("blocked", blocked)
        if b.dtype != torch.bool or tuple(b.shape) != (n_rows, n_cols):
            raise ValueError(
                f"blocked must be a bool tensor of shape {(n_rows, n_cols)}, "
                f"got dtype {b.dtype} and shape {tuple(b.shape)}"
            )
        mask = b.tolist()
    data = {
        "title": title,
        "rows": rows,
        "cols": cols,
        "heads": names,
        "rowAxis": row_axis,
        "colAxis": col_axis,
        "decimals": decimals,
        "values": _round(heads.masked_fill(torch.tensor(mask), 0.0) if mask else heads),
        "blocked": mask,
    }
    return Widget("heatmap", data, label=title)


def _projections(layer: object | None) -> tuple[Tensor, Tensor, Tensor] | None:
    """W_query, W_key, W_value as (d_in, d_out) matrices, as in ``x @ W``."""
    if layer is None:
        return None
    if isinstance(layer, SelfAttentionV1):
        return layer.W_query, layer.W_key, layer.W_value
    if isinstance(layer, SelfAttentionV2 | CausalAttention):
        # nn.Linear stores (d_out, d_in): transpose to the x @ W form.
        return layer.W_query.weight.T, layer.W_key.weight.T, layer.W_value.weight.T
    raise TypeError(
        "layer must be None, SelfAttentionV1, SelfAttentionV2 or CausalAttention, "
        f"got {type(layer).__name__}"
    )


def step_through(
    inputs: Tensor,
    query: int,
    *,
    tokens: Sequence[str] | None = None,
    layer: SelfAttentionV1 | SelfAttentionV2 | CausalAttention | None = None,
    scale: bool | None = None,
    causal: bool | None = None,
) -> Widget:
    """Every step of one query's attention, to step through with its numbers.

    The steps: the query and the keys; the scores ``s_j = q · k_j``; the
    scaling by ``1 / sqrt(d_k)``; the causal mask; the softmax; the weighted
    values ``w_j v_j``; and their sum, the context vector.

    Args:
        inputs: Tokens, shape (T, d_in).
        query: Index of the query token.
        tokens: Token labels. Default: indices.
        layer: Where the projections come from; ``None`` for weight-free
            attention (queries, keys and values are the inputs themselves).
        scale: Divide scores by sqrt(d_k). Default: ``False`` weight-free,
            ``True`` with a layer.
        causal: Apply the causal mask. Default: ``True`` for a
            :class:`attention.CausalAttention`, else ``False``.

    Returns:
        A :class:`Widget` of kind ``"steps"``.
    """
    x = _checks.floating("inputs", inputs, ranks=(2,), layout="(T, d_in)").detach()
    n = x.shape[0]
    if isinstance(query, bool) or not isinstance(query, int) or not 0 <= query < n:
        raise ValueError(f"query must be an int in [0, {n}), got {query!r}")
    labels = _labels("tokens", tokens, n)
    weights_qkv = _projections(layer)
    scale = (weights_qkv is not None) if scale is None else _checks.flag("scale", scale)
    causal = (
        isinstance(layer, CausalAttention) if causal is None else _checks.flag("causal", causal)
    )

    with torch.no_grad():
        if weights_qkv is None:
            queries = keys = values = x  # (T, d_in): weight-free
        else:
            w_q, w_k, w_v = weights_qkv
            queries, keys, values = x @ w_q, x @ w_k, x @ w_v  # (T, d_in) @ (d_in, d_out)
        q = queries[query]  # (d_k,)
        d_k = keys.shape[-1]
        scores = attention_scores(q, keys)  # (T,)
        scaled = scores / d_k**0.5 if scale else scores
        blocked = causal_mask(n)[query] if causal else torch.zeros(n, dtype=torch.bool)
        masked = scaled.masked_fill(blocked, -torch.inf)
        weights = masked_softmax(scaled, blocked)  # (T,)
        weighted = weights[:, None] * values  # (T, 1) * (T, d_v) -> (T, d_v)
        context = context_vector(weights, values)  # (d_v,)

    def dims(prefix: str, width: int) -> list[str]:
        return [f"{prefix}[{k}]" for k in range(width)]

    steps: list[dict[str, Any]] = [
        {
            "title": "Query and keys",
            "text": (
                f"The query is “{labels[query]}”."
                + (
                    " Without weights, queries and keys are the inputs."
                    if weights_qkv is None
                    else " Each row is a token's key, x · W_key; the query is x · W_query."
                )
            ),
            "columns": dims("k", d_k),
            "values": _round(keys),
            "extra": {"label": f"query “{labels[query]}”", "values": _round(q)},
        },
        {
            "title": "Scores",
            "text": "Each score is the dot product of the query with one key: s_j = q · k_j.",
            "columns": ["score"],
            "values": _round(scores[:, None]),
        },
    ]
    if scale:
        steps.append(
            {
                "title": "Scaling",
                "text": f"Divide by √d_k = √{d_k} = {d_k**0.5:.4f}, so scores stay moderate.",
                "columns": ["scaled score"],
                "values": _round(scaled[:, None]),
            }
        )
    if causal:
        steps.append(
            {
                "title": "Causal mask",
                "text": "Tokens after the query are set to −∞: exp(−∞) = 0, so they get no weight.",
                "columns": ["masked score"],
                "values": _round(masked[:, None]),
            }
        )
    steps += [
        {
            "title": "Softmax",
            "text": "w_j = exp(s_j) / Σ exp(s_i): positive weights that sum to 1.",
            "columns": ["weight"],
            "values": _round(weights[:, None]),
        },
        {
            "title": "Weighted values",
            "text": "Each token's value vector, multiplied by its weight: w_j · v_j.",
            "columns": dims("w·v", values.shape[-1]),
            "values": _round(weighted),
        },
        {
            "title": "Context vector",
            "text": "The sum of the weighted values: the query's context vector.",
            "columns": dims("z", values.shape[-1]),
            "values": None,
            "extra": {"label": f"context of “{labels[query]}”", "values": _round(context)},
        },
    ]
    data = {"tokens": labels, "query": query, "steps": steps}
    return Widget("steps", data, label=f"Step-through of the attention of “{labels[query]}”")
