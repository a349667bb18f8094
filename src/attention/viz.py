"""Figures of attention matrices, for the book and for readers' own notebooks.

Needs matplotlib (``pip install "attention-from-scratch[viz]"``); it is
imported only when a figure is drawn, so ``import attention`` stays light.
Figures are returned as ``matplotlib.figure.Figure`` objects built without
pyplot, so drawing many of them leaks no global state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from attention import _checks

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

#: Matrices up to this many rows and columns get their values written in the cells.
ANNOTATE_UP_TO = 12


def heatmap(
    matrix: Tensor,
    *,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    blocked: Tensor | None = None,
    title: str | None = None,
    annotate: bool | None = None,
    decimals: int = 2,
    row_axis: str = "query",
    col_axis: str = "key",
    cmap: str = "viridis",
) -> Figure:
    """Draw a (rows, cols) matrix as a labelled heatmap with a colour bar.

    Args:
        matrix: A 2-D tensor, for example attention weights (T_q, T_k).
        row_labels: One label per row (for example the query tokens).
            Default: the row indices.
        col_labels: One label per column. Default: ``row_labels`` if the
            matrix is square, else the column indices.
        blocked: Optional bool mask of the matrix's shape, ``True`` = blocked;
            blocked cells are drawn hatched grey instead of coloured.
        title: Optional title above the figure.
        annotate: Write each value in its cell. Default: only for matrices of
            at most :data:`ANNOTATE_UP_TO` rows and columns.
        decimals: Decimals of the written values. Default: 2.
        row_axis: Name of the vertical axis. Default: ``"query"``.
        col_axis: Name of the horizontal axis. Default: ``"key"``.
        cmap: A matplotlib colour map name. Default: ``"viridis"``.

    Returns:
        The figure.

    Example:
        >>> from attention import TOKENS, simple_self_attention, toy_inputs
        >>> _, weights = simple_self_attention(toy_inputs(), return_weights=True)
        >>> fig = heatmap(weights, row_labels=TOKENS)
        >>> len(fig.axes)  # the heatmap and its colour bar
        2
    """
    _checks.viz_extra("heatmap")
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    m = _checks.floating("matrix", matrix, ranks=(2,), layout="(rows, cols)")
    values = m.detach().to("cpu", torch.float64)
    n_rows, n_cols = values.shape
    rows = _labels("row_labels", row_labels, n_rows)
    if col_labels is None and row_labels is not None and n_rows == n_cols:
        col_labels = row_labels
    cols = _labels("col_labels", col_labels, n_cols)
    hidden = torch.zeros(n_rows, n_cols, dtype=torch.bool)
    if blocked is not None:
        b = _checks.tensor("blocked", blocked)
        if b.dtype != torch.bool or tuple(b.shape) != (n_rows, n_cols):
            raise ValueError(
                f"blocked must be a bool tensor of shape {(n_rows, n_cols)}, "
                f"got dtype {b.dtype} and shape {tuple(b.shape)}"
            )
        hidden = b.detach().cpu()
    if annotate is None:
        annotate = max(n_rows, n_cols) <= ANNOTATE_UP_TO
    _checks.flag("annotate", annotate)

    # Square cells: a wide matrix (a few rows of many positions) gets a wide,
    # flat figure; a square one the same size either way.
    width, height = 0.55 * max(n_cols, 4), 0.55 * max(n_rows, 4)
    fig = Figure(figsize=(width + 2.2, height + 0.9), layout="constrained")
    ax = fig.add_subplot()
    shown = values.masked_fill(hidden, float("nan")).numpy()
    image = ax.imshow(shown, cmap=cmap, aspect="equal")
    if hidden.any():
        ax.imshow(
            hidden.numpy().astype(float),
            cmap=ListedColormap(["none", "#d9d9d9"]),
            vmin=0,
            vmax=1,
            aspect="equal",
        )
        for i, j in hidden.nonzero().tolist():
            ax.add_patch(_hatch(i, j))
    fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set_xticks(range(n_cols), cols, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(n_rows), rows)
    ax.set_xlabel(col_axis)
    ax.set_ylabel(row_axis)
    if title:
        ax.set_title(title)
    if annotate:
        low, high = image.get_clim()
        middle = (low + high) / 2
        for i in range(n_rows):
            for j in range(n_cols):
                if hidden[i, j]:
                    continue
                v = float(values[i, j])
                ax.text(
                    j,
                    i,
                    f"{v:.{decimals}f}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="black" if v > middle else "white",
                )
    return fig


def _hatch(i: int, j: int) -> Rectangle:
    from matplotlib.patches import Rectangle

    return Rectangle(
        (j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", edgecolor="#8c8c8c", linewidth=0
    )


def _labels(name: str, labels: Sequence[str] | None, n: int) -> list[str]:
    if labels is None:
        return [str(i) for i in range(n)]
    if isinstance(labels, str) or len(labels) != n:
        given = "a string" if isinstance(labels, str) else f"{len(labels)} labels"
        raise ValueError(f"{name} must be a sequence of {n} labels, got {given}")
    return [str(label) for label in labels]
