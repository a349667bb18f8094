"""KV-cache bytes against context length: a chart of published models and their variants.

Every number drawn comes from :mod:`attention.kv_budget`. For each model,
:func:`kv_variants` derives the versions the reader can switch between, each
changing what :class:`~attention.kv_budget.KVLayout` can express and nothing
else:

* ``"published"``: the model as released (GQA, MLA, local and global layers).
* ``"global"``: the same model with every layer global (no sliding window);
  only for models with local layers (Gemma 3, gpt-oss).
* ``"mqa"``: the same layers with one key/value head of the model's head width
  (Shazeer 2019); for MLA this replaces the latent by that one head.
* ``"mha"``: :func:`~attention.kv_budget.as_mha`, every query head with its own
  key and value in every layer, no window, no sharing.

A variant that caches exactly what an earlier one does is left out.
:func:`kv_chart_data` computes, for each variant,
:func:`~attention.kv_budget.cache_bytes_curve` on one log-spaced grid of
context lengths (:func:`context_grid`); :func:`kv_budget_chart` embeds those
integers as JSON in a widget of kind ``"kv-budget"``, which
``attention/static/attention-kv-budget.js`` draws as an SVG line chart (log-scale
tokens, GiB) with no arithmetic of its own beyond placing points and printing
units; :func:`kv_budget_figure` draws the same numbers as a static figure.
The models' configurations and their sources are in :mod:`attention.kv_budget`.

Example:
    >>> data = kv_chart_data(max_tokens=1024)
    >>> data["tokens"][:4], data["tokens"][-1]
    ([64, 81, 102, 128], 1024)
    >>> [v["id"] for v in data["models"][3]["variants"]]  # Gemma 3 27B
    ['published', 'global', 'mqa', 'mha']
"""

from __future__ import annotations

import dataclasses
import html
import math
from collections.abc import Sequence
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from attention import _checks
from attention.kv_budget import (
    PUBLISHED,
    KVLayout,
    as_mha,
    cache_bytes_curve,
    local_layers,
    numbers_per_token,
)
from attention.shapes import PALETTE
from attention.widgets import _CELL, Widget, _th

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "VARIANTS",
    "context_grid",
    "describe",
    "format_bytes",
    "kv_budget_chart",
    "kv_budget_figure",
    "kv_chart_data",
    "kv_variants",
]

#: The variants the chart offers, in order: their id and the label of their control.
VARIANTS: tuple[tuple[str, str], ...] = (
    ("published", "As published"),
    ("global", "Every layer global"),
    ("mqa", "MQA: one KV head"),
    ("mha", "MHA: a KV head per query head"),
)

_UNITS = ("bytes", "KiB", "MiB", "GiB", "TiB")
_LINE_STYLES = {"published": "-", "global": "-.", "mqa": ":", "mha": "--"}  # as the script draws


def _cache_key(layout: KVLayout) -> tuple[object, ...]:
    """What :func:`~attention.kv_budget.cache_bytes` reads of a layout: equal keys, equal caches."""
    local = local_layers(layout)
    return (numbers_per_token(layout), local, layout.window if any(local) else None,
            layout.share_every, layout.dtype_bytes)  # fmt: skip


def kv_variants(layout: KVLayout) -> dict[str, KVLayout]:
    """The versions of one model the chart offers, by id, in the order of :data:`VARIANTS`.

    ``"global"`` (models with a window only) drops the window; ``"mqa"`` keeps
    one key/value head of width D (and drops MLA's latent); ``"mha"`` is
    :func:`~attention.kv_budget.as_mha`. A variant that caches what an earlier
    one caches (the same numbers per token, layers, windows, sharing and dtype)
    is left out.

    Args:
        layout: The model as published.

    Returns:
        A dict from variant id to :class:`~attention.kv_budget.KVLayout`,
        starting with ``"published"`` (``layout`` itself).

    Example:
        >>> from attention.kv_budget import LLAMA3_8B
        >>> list(kv_variants(LLAMA3_8B))
        ['published', 'mqa', 'mha']
    """
    if not isinstance(layout, KVLayout):
        raise TypeError(f"layout must be a KVLayout, got {type(layout).__name__}")
    candidates = {"published": layout}
    if layout.window is not None:
        candidates["global"] = dataclasses.replace(
            layout, name=f"{layout.name}, every layer global", window=None, local_per_global=None
        )
    candidates["mqa"] = dataclasses.replace(
        layout, name=f"{layout.name} with MQA", n_kv_heads=1, latent_dim=None, rope_dim=0
    )
    candidates["mha"] = as_mha(layout)
    kept: dict[str, KVLayout] = {}
    for key, candidate in candidates.items():
        if _cache_key(candidate) not in {_cache_key(other) for other in kept.values()}:
            kept[key] = candidate
    return kept


def describe(layout: KVLayout) -> str:
    """What one layout caches, in words: its heads, its windows, its sharing.

    Args:
        layout: A model's attention shape.

    Returns:
        A short sentence without a final full stop.

    Example:
        >>> from attention.kv_budget import GEMMA3_27B
        >>> describe(GEMMA3_27B)
        'GQA, 16 KV heads for 32 query heads; 5 local layers (window 1024) per global one'
    """
    if not isinstance(layout, KVLayout):
        raise TypeError(f"layout must be a KVLayout, got {type(layout).__name__}")
    kv_heads = layout.n_heads if layout.n_kv_heads is None else layout.n_kv_heads
    if layout.latent_dim is not None:
        heads = f"MLA, a latent of {layout.latent_dim} and a RoPE key of {layout.rope_dim}"
    elif kv_heads == layout.n_heads:
        heads = f"MHA, {kv_heads} KV heads"
    elif kv_heads == 1:
        heads = f"MQA, 1 KV head for {layout.n_heads} query heads"
    else:
        heads = f"GQA, {kv_heads} KV heads for {layout.n_heads} query heads"
    if layout.window is None:
        layers = f"all {layout.n_layers} layers global"
    elif layout.local_per_global is None:
        layers = f"all {layout.n_layers} layers local (window {layout.window})"
    else:
        local = layout.local_per_global
        plural = "s" if local > 1 else ""
        layers = f"{local} local layer{plural} (window {layout.window}) per global one"
    parts = [heads, layers]
    if layout.share_every > 1:
        parts.append(f"layers share a cache in groups of {layout.share_every}")
    return "; ".join(parts)


def context_grid(
    max_tokens: int, *, min_tokens: int = 64, per_doubling: int = 3, extra: Sequence[int] = ()
) -> list[int]:
    """Context lengths evenly spaced on a log scale, from ``min_tokens`` to ``max_tokens``.

    ``round(min_tokens * 2 ** (k / per_doubling))`` for k = 0, 1, ... while
    below ``max_tokens``, then ``max_tokens`` itself, with the values of
    ``extra`` that fall in between (a window, where a curve bends).

    Args:
        max_tokens: The last context length, larger than ``min_tokens``.
        min_tokens: The first context length. Default: 64.
        per_doubling: Points per doubling of the context. Default: 3.
        extra: Context lengths to add when inside the range. Default: none.

    Returns:
        Increasing ints, the first ``min_tokens`` and the last ``max_tokens``.

    Example:
        >>> context_grid(1000, min_tokens=100, per_doubling=2, extra=(300,))
        [100, 141, 200, 283, 300, 400, 566, 800, 1000]
    """
    low = _checks.positive_int("min_tokens", min_tokens)
    high = _checks.positive_int("max_tokens", max_tokens)
    if high <= low:
        raise ValueError(f"max_tokens must be larger than min_tokens={low}, got {high}")
    steps = _checks.positive_int("per_doubling", per_doubling)
    grid = {high}
    k = 0
    while (t := round(low * 2 ** (k / steps))) < high:
        grid.add(t)
        k += 1
    for i, t in enumerate(extra):
        if low < _checks.positive_int(f"extra[{i}]", t) < high:
            grid.add(t)
    return sorted(grid)


def format_bytes(n: int) -> str:
    """A size in the largest binary unit it fills, to three significant figures.

    Two decimals below 10, one below 100, none from 100; halves round up, as
    JavaScript's ``toFixed`` rounds them (the script prints sizes the same way).

    Args:
        n: A size in bytes, an int >= 0.

    Returns:
        The size as text, e.g. ``"4.50 GiB"``.

    Example:
        >>> format_bytes(16 * 2**30), format_bytes(9 * 2**29), format_bytes(70_272)
        ('16.0 GiB', '4.50 GiB', '68.6 KiB')
    """
    size = _checks.non_negative_int("n", n)
    power = 0
    while power < len(_UNITS) - 1 and size >= 1024 ** (power + 1):
        power += 1
    if power == 0:
        return f"{size} bytes"
    value = Fraction(size, 1024**power)  # exact: the script's double holds it exactly too
    decimals = 2 if value < 10 else 1 if value < 100 else 0
    rounded = math.floor(value * 10**decimals + Fraction(1, 2))  # half up
    whole, part = divmod(rounded, 10**decimals)
    number = f"{whole}.{part:0{decimals}d}" if decimals else str(whole)
    return f"{number} {_UNITS[power]}"


def _models(models: object) -> tuple[KVLayout, ...]:
    if isinstance(models, str) or not isinstance(models, Sequence) or not models:
        raise ValueError(f"models must be a non-empty sequence of KVLayout, got {models!r}")
    names: set[str] = set()
    for i, layout in enumerate(models):
        if not isinstance(layout, KVLayout):
            raise TypeError(f"models[{i}] must be a KVLayout, got {type(layout).__name__}")
        if layout.name in names:
            raise ValueError(f"models must have distinct names, got {layout.name!r} twice")
        names.add(layout.name)
    return tuple(models)


def kv_chart_data(
    models: Sequence[KVLayout] = PUBLISHED,
    *,
    max_tokens: int = 131_072,
    min_tokens: int = 64,
    per_doubling: int = 3,
    dtype_bytes: int = 2,
    batch_size: int = 1,
) -> dict[str, Any]:
    """Every curve of the chart: cache bytes on one grid of context lengths.

    For each model and each of its :func:`kv_variants`,
    ``cache_bytes_curve(variant, tokens, batch_size=batch_size)`` with the
    variant cached at ``dtype_bytes`` bytes per number.

    Args:
        models: The models, each a :class:`~attention.kv_budget.KVLayout` with
            a name of its own. Default: :data:`attention.kv_budget.PUBLISHED`.
        max_tokens: The longest context drawn. Default: 131072 (128K).
        min_tokens: The shortest context drawn. Default: 64.
        per_doubling: Grid points per doubling of the context. Default: 3.
        dtype_bytes: Bytes per cached number. Default: 2 (bfloat16).
        batch_size: B, the sequences cached. Default: 1.

    Returns:
        A JSON-ready dict: ``tokens`` (the grid, :func:`context_grid` with
        every model's window added), ``variants`` (id and label, as
        :data:`VARIANTS`), ``models`` (each with ``name``, ``colour`` from
        :data:`attention.shapes.PALETTE`, and ``variants``: ``id``,
        ``detail`` from :func:`describe`, and ``bytes``, one int per token
        count), ``dtypeBytes`` and ``batchSize``.
    """
    layouts = _models(models)
    width = _checks.positive_int("dtype_bytes", dtype_bytes)
    batch = _checks.positive_int("batch_size", batch_size)
    windows = sorted({lay.window for lay in layouts if lay.window is not None})
    tokens = context_grid(max_tokens, min_tokens=min_tokens, per_doubling=per_doubling,
                          extra=windows)  # fmt: skip
    entries = []
    for i, layout in enumerate(layouts):
        variants = []
        for key, variant in kv_variants(dataclasses.replace(layout, dtype_bytes=width)).items():
            curve = cache_bytes_curve(variant, tokens, batch_size=batch)
            variants.append({"id": key, "detail": describe(variant), "bytes": curve})
        entries.append(
            {"name": layout.name, "colour": PALETTE[i % len(PALETTE)], "variants": variants}
        )
    return {
        "tokens": tokens,
        "variants": [{"id": key, "label": label} for key, label in VARIANTS],
        "models": entries,
        "dtypeBytes": width,
        "batchSize": batch,
    }


def _fallback(data: dict[str, Any]) -> str:
    """One table per model: its sizes at every power-of-two context length of the grid."""
    labels = {v["id"]: v["label"] for v in data["variants"]}
    rows_at = [i for i, t in enumerate(data["tokens"]) if t & (t - 1) == 0 or i == 0]
    if len(data["tokens"]) - 1 not in rows_at:
        rows_at.append(len(data["tokens"]) - 1)
    tables = []
    for model in data["models"]:
        head = _th("context (tokens)", "col") + "".join(
            _th(labels[v["id"]], "col") for v in model["variants"]
        )
        rows = []
        for i in rows_at:
            cells = "".join(
                f'<td style="{_CELL}">{format_bytes(v["bytes"][i])}</td>' for v in model["variants"]
            )
            tokens = f"{data['tokens'][i]:,}"
            rows.append(f"<tr>{_th(tokens, 'row')}{cells}</tr>")
        details = "; ".join(f"{labels[v['id']]}: {v['detail']}" for v in model["variants"])
        tables.append(
            '<table style="border-collapse:collapse;margin:0.5em 0">'
            f"<caption>{html.escape(model['name'])}: KV cache of {data['batchSize']} "
            f"sequence{'s' if data['batchSize'] > 1 else ''}, {data['dtypeBytes']} bytes per "
            f"number ({html.escape(details)})</caption>"
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        )
    return "".join(tables)


def kv_budget_chart(
    models: Sequence[KVLayout] = PUBLISHED,
    *,
    max_tokens: int = 131_072,
    min_tokens: int = 64,
    per_doubling: int = 3,
    dtype_bytes: int = 2,
    batch_size: int = 1,
) -> Widget:
    """KV-cache bytes against context length, with the models and variants to switch.

    The chart draws one line per chosen model and variant (colour: model;
    dashes: variant) against a log-scale token axis, on a linear or
    logarithmic bytes axis; a slider (or the pointer over the chart) picks a
    context length, and a table reads every drawn line's size there. The
    numbers are :func:`kv_chart_data`'s; a static table of them stays where
    scripts do not run.

    Args:
        models: The models. Default: :data:`attention.kv_budget.PUBLISHED`.
        max_tokens: The longest context drawn. Default: 131072 (128K).
        min_tokens: The shortest context drawn. Default: 64.
        per_doubling: Grid points per doubling of the context. Default: 3.
        dtype_bytes: Bytes per cached number. Default: 2 (bfloat16).
        batch_size: B, the sequences cached. Default: 1.

    Returns:
        A :class:`~attention.widgets.Widget` of kind ``"kv-budget"``.

    Example:
        >>> kv_budget_chart(max_tokens=4096).kind
        'kv-budget'
    """
    data = kv_chart_data(models, max_tokens=max_tokens, min_tokens=min_tokens,
                         per_doubling=per_doubling, dtype_bytes=dtype_bytes,
                         batch_size=batch_size)  # fmt: skip
    return Widget(
        "kv-budget",
        data,
        label="KV-cache size against context length, by model and variant",
        fallback=_fallback(data),
    )


def kv_budget_figure(
    models: Sequence[KVLayout] = PUBLISHED,
    *,
    variants: Sequence[str] = ("published", "mha"),
    max_tokens: int = 131_072,
    dtype_bytes: int = 2,
    batch_size: int = 1,
    title: str | None = None,
) -> Figure:
    """The chart's lines as a static figure (needs matplotlib), for where scripts do not run.

    Args:
        models: The models. Default: :data:`attention.kv_budget.PUBLISHED`.
        variants: The variant ids drawn, from :data:`VARIANTS`. Default:
            ``("published", "mha")``.
        max_tokens: The longest context drawn. Default: 131072 (128K).
        dtype_bytes: Bytes per cached number. Default: 2 (bfloat16).
        batch_size: B, the sequences cached. Default: 1.
        title: The figure's title. Default: none.

    Returns:
        A ``matplotlib.figure.Figure``: one line per model and variant, bytes
        (ticks in GiB) against tokens, both on log scales.
    """
    _checks.viz_extra("kv_budget_figure")
    from matplotlib.figure import Figure

    known = [key for key, _ in VARIANTS]
    if isinstance(variants, str) or not variants or any(v not in known for v in variants):
        raise ValueError(f"variants must be a non-empty sequence of ids from {known}, "
                         f"got {variants!r}")  # fmt: skip
    data = kv_chart_data(models, max_tokens=max_tokens, dtype_bytes=dtype_bytes,
                         batch_size=batch_size)  # fmt: skip
    labels = dict(VARIANTS)
    figure = Figure(figsize=(8.4, 3.8))
    ax = figure.subplots()
    drawn = []
    for model in data["models"]:
        for variant in model["variants"]:
            if variant["id"] in variants:
                drawn += variant["bytes"]
                ax.plot(
                    data["tokens"],
                    variant["bytes"],
                    color=model["colour"],
                    linestyle=_LINE_STYLES[variant["id"]],
                    label=f"{model['name']}, {labels[variant['id']]}",
                )
    tokens = data["tokens"]
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    # Tick labels are plain numbers, every two doublings of the context and every power of
    # ten of GiB, so the figure's alternative text (the book reads it from the labels and
    # the legend) names the axes, not a tick.
    x_ticks = [t for t in tokens if t & (t - 1) == 0 and (t // tokens[0]).bit_length() % 2]
    ax.set_xticks(x_ticks, [f"{t:,}" for t in x_ticks])
    low, high = (math.floor(math.log10(min(drawn) / 2**30)),
                 math.ceil(math.log10(max(drawn) / 2**30)))  # fmt: skip
    y_ticks = [10.0**k * 2**30 for k in range(low, high + 1)]
    ax.set_yticks(y_ticks, [f"{10.0**k:g}" for k in range(low, high + 1)])
    ax.set_xlabel("context length (tokens, log scale)")
    ax.set_ylabel("KV cache (GiB, log scale)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the lines
    if title:
        ax.set_title(title, fontsize=10)
    figure.set_layout_engine("constrained")
    return figure
