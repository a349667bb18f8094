"""Interactive figures: HTML with the package's numbers embedded as JSON.

Each function returns a :class:`Widget`, which a notebook (or the book's
executed pages) displays as HTML: a container holding its data as JSON. A
small script, ``attention/static/attention-widgets.js`` (package data,
installed with the package), draws the heatmaps and step-throughs in the
browser, with no external libraries. Every number a widget shows was computed
here, by the package. The playground page builds its widget on the same
:class:`Widget`, in :mod:`attention.playground`.

A widget's HTML draws itself wherever it is shown: it carries the shared
in-page engine (``attention-engine.js``: the arithmetic and DOM helpers every
script uses), then its script and stylesheet (the first copy on a page runs,
later copies only draw their own widget), and a static table of the same
numbers that stays in place where scripts do not run (an untrusted notebook,
a renderer without JavaScript).
The book's build removes those parts, because its pages load the script and
stylesheet once and show a static image beside each widget.

Needs nothing beyond torch: these are data and markup, not images.
"""

from __future__ import annotations

import functools
import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
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

#: The drawing scripts and stylesheets, installed with the package; the
#: book's build copies them into its ``_static`` folder (conf.py).
STATIC = Path(__file__).resolve().parent / "static"

#: The in-page engine every widget script uses (maths and DOM helpers,
#: ``STATIC/attention-engine.js``); it has no stylesheet.
ENGINE = "attention-engine"

#: The scripts that draw each kind of widget, in the order they must run:
#: ``STATIC/<name>.js``, and ``STATIC/<name>.css`` where there is one. The
#: engine comes first; the widget's own script uses it.
ASSETS: dict[str, tuple[str, ...]] = {
    "heatmap": (ENGINE, "attention-widgets"),
    "steps": (ENGINE, "attention-widgets"),
    "playground": (ENGINE, "attention-playground"),
    "heads": (ENGINE, "attention-heads"),
    "lab": (ENGINE, "attention-playground"),
    "layout": (ENGINE, "attention-layout"),
    "quiz": (ENGINE, "attention-quiz"),
    "model-lab": (ENGINE, "attention-model"),
    "kv-budget": (ENGINE, "attention-kv-budget"),
}

_PORTABLE = "attn-portable"
#: Around what a widget needs only outside the book (its fallback, script and
#: stylesheet); the book's build removes what lies between the two. Built
#: from ``_PORTABLE`` so that the API reference, which prints literal values,
#: never prints the markers themselves into its page.
PORTABLE_START = f"<!--{_PORTABLE}-->"
PORTABLE_END = f"<!--/{_PORTABLE}-->"

#: The line of each script that the stylesheet's text replaces.
_STYLESHEET_SLOT = "const STYLESHEET = null;"


@functools.cache
def inline_script(name: str) -> str:
    """The script ``STATIC/<name>.js``, carrying its stylesheet, as one ``<script>`` element.

    Run once on a page, the script adds the stylesheet to the page and draws
    every widget of its kind; run again (a second widget, a second notebook
    output), it only draws the widgets not drawn yet. The engine
    (:data:`ENGINE`) has no stylesheet: its first copy on a page defines it,
    later copies leave it as it is.

    Args:
        name: A name of :data:`ASSETS`, e.g. ``"attention-widgets"`` or
            ``"attention-engine"``.

    Returns:
        The ``<script>`` element, ready to be placed after a widget.
    """
    script = (STATIC / f"{name}.js").read_text(encoding="utf-8")
    css = STATIC / f"{name}.css"
    slots = script.count(_STYLESHEET_SLOT)
    if css.exists():
        if slots != 1:
            raise RuntimeError(f"{name}.js must hold one line {_STYLESHEET_SLOT!r}")
        # "</" inside the string cannot end the script element; the script itself has none.
        text = json.dumps(css.read_text(encoding="utf-8")).replace("</", "<\\/")
        script = script.replace(_STYLESHEET_SLOT, f"const STYLESHEET = {text};")
    elif slots:
        raise RuntimeError(f"{name}.js holds {_STYLESHEET_SLOT!r} but {name}.css does not exist")
    if "</" in script or "<!--" in script:
        raise RuntimeError(f"{name}.js must not contain '</' or '<!--' outside its stylesheet")
    return f'<script class="attn-script">{script}</script>'


class Widget:
    """One interactive figure: a kind, its JSON data and an accessible label.

    Args:
        kind: Which drawing the script makes: ``"heatmap"``, ``"steps"`` or
            ``"playground"`` or ``"heads"`` (:mod:`attention.heads`).
        data: JSON-serialisable data for the script.
        label: A short description, used as the figure's accessible name.
        fallback: HTML shown instead where scripts do not run (a static
            table of the same numbers); the script removes it when it draws.
    """

    def __init__(self, kind: str, data: dict[str, Any], *, label: str, fallback: str = "") -> None:
        if kind not in ASSETS:
            raise ValueError(f"kind must be one of {sorted(ASSETS)}, got {kind!r}")
        self.kind = kind
        self.data = data
        self.label = label
        self.fallback = fallback

    def to_html(self, *, portable: bool = True) -> str:
        """The widget's HTML: a labelled container holding its data as JSON.

        Args:
            portable: Also carry the static fallback, the engine, the drawing
                script and its stylesheet, between :data:`PORTABLE_START` and
                :data:`PORTABLE_END`, so that the HTML draws itself on any
                page or notebook. ``False`` gives the container alone, as the
                book's pages show it (they load the script themselves).

        Returns:
            One ``<div class="attn-widget">`` element.
        """
        payload = json.dumps(self.data, separators=(",", ":"), allow_nan=False)
        payload = payload.replace("</", "<\\/")  # cannot close the script element early
        portable_part = (
            f'{PORTABLE_START}<div class="attn-fallback">{self.fallback}</div>'
            f"{''.join(inline_script(name) for name in ASSETS[self.kind])}{PORTABLE_END}"
            if portable
            else ""
        )
        return (
            f'<div class="attn-widget" data-attn-kind="{self.kind}" role="group" '
            f'aria-label="{html.escape(self.label)}">'
            f'<script type="application/json" class="attn-data">{payload}</script>'
            '<noscript><p class="attn-noscript">'
            "This interactive part of the page needs JavaScript.</p></noscript>"
            f"{portable_part}</div>"
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


# ---------------------------------------------------------------- fallbacks
# Where scripts do not run, the widget shows these static tables of its
# numbers. They use inline styles alone: a notebook that does not trust an
# output drops its scripts and stylesheets but keeps the markup.

# Viridis at nine evenly spaced points, as in attention-widgets.js.
_VIRIDIS = (
    (68, 1, 84), (71, 45, 123), (59, 82, 139), (44, 114, 142), (33, 145, 140),
    (40, 174, 128), (94, 201, 98), (173, 220, 48), (253, 231, 37),
)  # fmt: skip
_CELL = "padding:0.2em 0.45em;text-align:right;font-variant-numeric:tabular-nums"


def _viridis(t: float) -> tuple[int, int, int]:
    x = min(1.0, max(0.0, t)) * (len(_VIRIDIS) - 1)
    i = min(len(_VIRIDIS) - 2, math.floor(x))
    f = x - i
    r, g, b = (round(a + f * (c - a)) for a, c in zip(_VIRIDIS[i], _VIRIDIS[i + 1], strict=True))
    return r, g, b


def _text_on(rgb: tuple[int, int, int]) -> str:
    """Black or white, whichever contrasts more (WCAG 2 luminance), as the script picks."""
    lin = [
        c / 255 / 12.92 if c / 255 <= 0.04045 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in rgb
    ]
    return "#000" if 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2] > 0.179 else "#fff"


def _number(value: float | None, decimals: int) -> str:
    """A number as the script prints it; None stands for a masked -infinity."""
    return "−∞" if value is None else f"{value:.{decimals}f}".replace("-", "−")


def _th(text: str, scope: str) -> str:
    return f'<th scope="{scope}" style="{_CELL}">{html.escape(text)}</th>'


def _heatmap_fallback(data: dict[str, Any]) -> str:
    """One coloured table of values per head."""
    blocked = data["blocked"]
    tables = []
    for h, name in enumerate(data["heads"]):
        values = data["values"][h]
        shown = [
            v
            for i, row in enumerate(values)
            for j, v in enumerate(row)
            if not blocked or not blocked[i][j]
        ]
        low, high = min(shown), max(shown)
        caption = data["title"] if len(data["heads"]) == 1 else f"{data['title']}: {name}"
        head = _th(f"{data['rowAxis']} ↓ {data['colAxis']} →", "col") + "".join(
            _th(c, "col") for c in data["cols"]
        )
        rows = []
        for i, row in enumerate(values):
            cells = [_th(data["rows"][i], "row")]
            for j, v in enumerate(row):
                if blocked and blocked[i][j]:
                    cells.append(f'<td style="{_CELL}">masked</td>')
                    continue
                rgb = _viridis((v - low) / (high - low) if high > low else 0.5)
                style = f"{_CELL};background-color:rgb{rgb};color:{_text_on(rgb)}"
                cells.append(f'<td style="{style}">{_number(v, data["decimals"])}</td>')
            rows.append(f"<tr>{''.join(cells)}</tr>")
        tables.append(
            f'<table style="border-collapse:collapse;margin:0.5em 0">'
            f"<caption>{html.escape(caption)}</caption>"
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        )
    return "".join(tables)


def _steps_fallback(data: dict[str, Any]) -> str:
    """Every step one after another: its title, its sentence and its table."""
    tokens, query, steps = data["tokens"], data["query"], data["steps"]
    parts = []
    for k, step in enumerate(steps):
        head = _th("token", "col") + "".join(_th(c, "col") for c in step["columns"])
        rows = []
        for i, row in enumerate(step["values"] or []):
            weight = ";font-weight:700" if i == query else ""
            cells = "".join(f'<td style="{_CELL}{weight}">{_number(v, 4)}</td>' for v in row)
            rows.append(f"<tr>{_th(tokens[i], 'row')}{cells}</tr>")
        if "extra" in step:
            extra = step["extra"]
            cells = "".join(f'<td style="{_CELL}">{_number(v, 4)}</td>' for v in extra["values"])
            rows.append(f"<tr>{_th(extra['label'], 'row')}{cells}</tr>")
        parts.append(
            f"<p><strong>Step {k + 1} of {len(steps)}: {html.escape(step['title'])}</strong></p>"
            f"<p>{html.escape(step['text'])}</p>"
            f'<table style="border-collapse:collapse;margin:0 0 0.75em">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        )
    return "".join(parts)


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
    return Widget("heatmap", data, label=title, fallback=_heatmap_fallback(data))


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
    return Widget(
        "steps",
        data,
        label=f"Step-through of the attention of “{labels[query]}”",
        fallback=_steps_fallback(data),
    )
